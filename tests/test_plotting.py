"""Figures of hfgen.plotting: returned (never shown), with the expected panels and the plotted values."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from hfgen.methods.continuous_flows import deform_gaussian_example
from hfgen.plotting import (
    plot_density,
    plot_histograms_over_time,
    plot_samples,
    plot_trajectory,
    plot_velocity_field,
)

pytestmark = pytest.mark.usefixtures("no_pyplot_figures_left")


def test_plot_samples_draws_samples_and_reference(generator):
    samples = torch.randn(100, 2, generator=generator)
    fig = plot_samples(samples, reference=samples + 3, bounds=(-4, 6), title="samples")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.collections) == 2 and ax.get_legend() is not None
    np.testing.assert_allclose(ax.collections[1].get_offsets(), samples.numpy(), rtol=1e-6)
    assert ax.get_xlim() == (-4, 6) and ax.get_title() == "samples"


def test_plot_samples_into_given_axes(generator):
    fig = Figure()
    ax = fig.subplots()
    assert plot_samples(torch.randn(10, 2, generator=generator), ax=ax) is fig
    assert len(ax.collections) == 1 and ax.get_legend() is None


def test_plot_trajectory_shows_evenly_spaced_snapshots_with_first_and_last(generator):
    trajectory = torch.randn(11, 50, 2, generator=generator)
    fig = plot_trajectory(trajectory, torch.linspace(0, 1, 11), num_snapshots=6)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == [
        "t = 0.00",
        "t = 0.20",
        "t = 0.40",
        "t = 0.60",
        "t = 0.80",
        "t = 1.00",
    ]
    np.testing.assert_allclose(fig.axes[-1].collections[0].get_offsets(), trajectory[-1].numpy(), rtol=1e-6)
    assert len(plot_trajectory(trajectory[:3], [0.0, 0.5, 1.0]).axes) == 3


def test_plot_velocity_field_draws_the_field_on_the_grid():
    data_mean = torch.tensor([0.2, -0.1])

    def optimal(x, t):  # v*(x, 0) = E[x_1] − x points at the data mean
        return data_mean - x

    fig = plot_velocity_field(lambda x, t: 0.9 * (data_mean - x), 0.0, grid_size=5, reference=optimal)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["learned, t = 0.00", "reference, t = 0.00"]
    quiver = fig.axes[1].collections[0]
    grid = np.asarray(quiver.get_offsets())
    assert grid.shape == (25, 2) and grid.min() == -0.5 and grid.max() == 0.5
    np.testing.assert_allclose(np.stack([quiver.U, quiver.V], axis=1), data_mean.numpy() - grid, atol=1e-6)
    assert len(plot_velocity_field(optimal, grid_size=4).axes) == 1


def test_plot_density_image_is_the_density_on_the_pixel_centres():
    mean, std = torch.tensor([0.5, -1.0]), 0.8
    normal = torch.distributions.Normal(mean, std)

    def gaussian_log_prob(x):
        return normal.log_prob(x).sum(dim=1)

    fig = plot_density(gaussian_log_prob, bounds=(-3, 3), grid_size=20, batch_size=7, title="N")
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the heat map and its colour bar
    image = np.asarray(fig.axes[0].images[0].get_array())
    centres = -3 + (np.arange(20) + 0.5) * 0.3
    xs, ys = np.meshgrid(centres, centres, indexing="xy")  # row i holds y_i, column j holds x_j
    density = np.exp(-((xs - 0.5) ** 2 + (ys + 1.0) ** 2) / (2 * std**2)) / (2 * math.pi * std**2)
    np.testing.assert_allclose(image, density, rtol=1e-5, atol=1e-12)
    assert fig.axes[0].images[0].get_extent() == [-3, 3, -3, 3]


def test_plot_histograms_over_time_of_the_tanh_cubed_deformation(generator):
    example = deform_gaussian_example(300, times=(0.0, 0.25, 0.5), generator=generator)
    fig = plot_histograms_over_time(dict(reversed(example.samples.items())), bins=20)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["t = 0.00", "t = 0.25", "t = 0.50"]
    counts = np.asarray(fig.axes[0].collections[0].get_array())
    assert counts.sum() == ((example.samples[0.0].abs() <= 3).all(dim=1)).sum()


@pytest.mark.parametrize(
    ("draw", "message"),
    [
        (lambda: plot_samples(torch.zeros(5, 3)), r"shape \(N, 2\)"),
        (lambda: plot_samples(torch.zeros(5, 2), reference=torch.zeros(5)), "reference"),
        (lambda: plot_samples(torch.zeros(5, 2), bounds=(1, -1)), "bounds"),
        (lambda: plot_trajectory(torch.zeros(4, 2), [0, 1, 2, 3]), r"shape \(S, N, 2\)"),
        (lambda: plot_trajectory(torch.zeros(4, 3, 2), [0, 1]), "times"),
        (lambda: plot_trajectory(torch.zeros(4, 3, 2), [0, 1, 2, 3], num_snapshots=1), "num_snapshots"),
        (lambda: plot_velocity_field(lambda x, t: x[:, :1]), r"shape \(N, 2\)"),
        (lambda: plot_density(lambda x: x), "log_prob_fn"),
        (lambda: plot_histograms_over_time({0.0: torch.zeros(5, 2, 1)}), r"shape \(N, 2\)"),
        (lambda: plot_histograms_over_time({}), "samples_by_time"),
    ],
)
def test_bad_inputs_raise_value_errors(draw, message):
    with pytest.raises(ValueError, match=message):
        draw()


def test_non_tensor_points_raise_type_error():
    with pytest.raises(TypeError, match="torch.Tensor"):
        plot_samples(np.zeros((5, 2)))


def test_the_trajectory_animation_is_a_gif_with_one_frame_per_state(tmp_path):
    from PIL import Image

    from hfgen.plotting import trajectory_animation

    trajectory = torch.stack([torch.randn(50, 2, generator=torch.Generator().manual_seed(k)) for k in range(4)])
    trajectory_animation(trajectory, [0.0, 0.3, 0.6, 1.0], bounds=(-3, 3)).save(tmp_path / "flow.gif")
    with Image.open(tmp_path / "flow.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 4
    with pytest.raises(ValueError, match="one entry per state"):
        trajectory_animation(trajectory, [0.0, 1.0])


def test_a_long_trajectory_is_animated_on_evenly_spaced_states_with_the_first_and_the_last(tmp_path):
    from PIL import Image

    from hfgen.plotting import trajectory_animation

    steps = 100
    trajectory = torch.linspace(0, 1, steps + 1)[:, None, None].expand(steps + 1, 3, 2).contiguous()
    animation = trajectory_animation(trajectory, torch.linspace(0, 1, steps + 1), bounds=(-1, 2), max_frames=5)
    titles = []
    for frame in range(5):
        animation.animation._func(frame)
        titles.append(animation.figure.axes[0].get_title())
    assert titles == ["t = 0.00", "t = 0.25", "t = 0.50", "t = 0.75", "t = 1.00"]
    animation.save(tmp_path / "flow.gif")
    with Image.open(tmp_path / "flow.gif") as gif:
        assert gif.n_frames == 5
    with pytest.raises(ValueError, match="max_frames"):
        trajectory_animation(trajectory, torch.linspace(0, 1, steps + 1), max_frames=1)


def test_the_velocity_over_time_has_one_panel_per_time():
    from hfgen.plotting import plot_velocity_over_time

    fig = plot_velocity_over_time(lambda x, t: -x * (1 - t), times=(0.0, 0.5, 1.0), grid_size=5)
    assert [ax.get_title() for ax in fig.axes] == ["v(x, t), t = 0.00", "v(x, t), t = 0.50", "v(x, t), t = 1.00"]
