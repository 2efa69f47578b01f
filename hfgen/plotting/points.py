"""Figures of 2-D points: samples over a reference, snapshots of a trajectory, histograms over time and the DDPM
forward and reverse processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from torch import Tensor

from hfgen.checks import check_number
from hfgen.plotting.panels import (
    check_bounds,
    check_num_snapshots,
    check_trajectory,
    data_box,
    figure_and_axes,
    new_figure,
    points_2d,
    scatter_points,
    set_square,
    snapshot_indices,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_diffusion_forward",
    "plot_diffusion_reverse",
    "plot_histograms_over_time",
    "plot_samples",
    "plot_trajectory",
]


def plot_samples(
    samples: Tensor,
    *,
    reference: Tensor | None = None,
    bounds: tuple[float, float] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Scatter plot of 2-D samples, optionally over reference samples (say, the data) in another colour.

    ``bounds = (low, high)`` fixes both axes to ``[low, high]``; the aspect is equal. When ``ax`` is given the
    plot is drawn into it and its figure is returned.
    """
    points = points_2d("samples", samples)
    ref = None if reference is None else points_2d("reference", reference)
    box = None if bounds is None else check_bounds("bounds", bounds)
    fig, ax = figure_and_axes(ax)
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], s=2, alpha=0.3, color="tab:gray", label="reference", rasterized=True)
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", label="samples", rasterized=True)
    if ref is not None:  # below the axes: inside, it would hide part of the data (a checkerboard cell)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, markerscale=4, frameon=False)
    set_square(ax, box)
    if title is not None:
        ax.set_title(title)
    return fig


def _snapshot_row(trajectory: Tensor, indices: Sequence[int], box: tuple[float, float], titles: list[str]) -> Figure:
    """One scatter panel of ``trajectory[k]`` per ``k`` in ``indices``, all over ``box²``, titled in turn."""
    panels = [points_2d(f"trajectory[{k}]", trajectory[k]) for k in indices]
    fig, axes = new_figure(len(panels))
    for ax, points, title in zip(axes, panels, titles, strict=True):
        scatter_points(ax, points)
        set_square(ax, box)
        ax.set_title(title)
    return fig


def plot_trajectory(
    trajectory: Tensor,
    times: Sequence[float] | Tensor,
    num_snapshots: int = 6,
    bounds: tuple[float, float] | None = None,
) -> Figure:
    """A row of scatter plots of ``x_t`` at evenly spaced snapshots of a sampled trajectory.

    ``trajectory[k]`` holds the ``(N, 2)`` points at time ``times[k]``; the snapshots are the indices
    ``round(j (S − 1) / (num_snapshots − 1))``, ``j = 0 … num_snapshots − 1``, so the first (``t = 0``, the
    source) and last (``t = 1``, the data) are always shown. Without ``bounds`` all panels share the data's
    range.
    """
    check_trajectory(trajectory, "have shape (S, N, 2) (steps, points, 2)")
    times = [float(s) for s in times]
    num_steps = trajectory.shape[0]
    if len(times) != num_steps:
        raise ValueError(f"times must have one entry per step of trajectory ({num_steps}), got {len(times)}.")
    check_num_snapshots(num_snapshots)
    box = data_box(trajectory, bounds)
    indices = snapshot_indices(num_steps, num_snapshots)
    return _snapshot_row(trajectory, indices, box, [f"t = {times[k]:.2f}" for k in indices])


def plot_histograms_over_time(
    samples_by_time: Mapping[float, Tensor],
    bins: int = 100,
    bounds: tuple[float, float] = (-3, 3),
) -> Figure:
    """A row of 2-D histograms of samples at several times, one panel per time in increasing order.

    The course's figure of ``N(0, I)`` deformed by ``dz/dt = tanh(z³)`` at ``t = 0, 0.1, …, 0.5`` (see
    :func:`hfgen.methods.continuous_flows.deform_gaussian_example`).
    """
    if not samples_by_time:
        raise ValueError("samples_by_time must map at least one time to an (N, 2) tensor, got an empty one.")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}.")
    box = check_bounds("bounds", bounds)
    panels = [(float(s), points_2d(f"samples_by_time[{s}]", x)) for s, x in sorted(samples_by_time.items())]
    fig, axes = new_figure(len(panels))
    for ax, (s, points) in zip(axes, panels, strict=True):
        ax.hist2d(points[:, 0], points[:, 1], bins=bins, range=[box, box], cmap="viridis")
        set_square(ax, box)
        ax.set_title(f"t = {s:.2f}")
    return fig


def _diffusion_panels(
    trajectory: Tensor,
    timesteps: Sequence[int] | Tensor,
    alpha: float,
    indices: Sequence[int],
    bounds: tuple[float, float] | None,
) -> Figure:
    """Scatter plots of ``trajectory[k]`` for ``k`` in ``indices``, titled with ``t`` and ``ᾱ_t = α^t``."""
    steps = [int(timesteps[k]) for k in indices]
    titles = [f"t = {t}, ᾱ_t = {alpha**t:.3g}" for t in steps]
    return _snapshot_row(trajectory, indices, data_box(trajectory, bounds), titles)


def _check_diffusion_inputs(trajectory: Tensor, timesteps: Sequence[int] | Tensor, alpha: float) -> list[int]:
    check_trajectory(trajectory, "have shape (K, N, 2) (states, points, 2)")
    steps = [int(t) for t in timesteps]
    if len(steps) != trajectory.shape[0] or any(t < 0 for t in steps):
        raise ValueError(
            f"timesteps must hold one step t >= 0 per state of trajectory ({trajectory.shape[0]}), got {steps}."
        )
    check_number(alpha, "alpha", 0, 1, True, True)
    return steps


def plot_diffusion_forward(
    trajectory: Tensor,
    timesteps: Sequence[int] | Tensor,
    alpha: float,
    *,
    bounds: tuple[float, float] | None = None,
) -> Figure:
    r"""The DDPM forward process as a row of scatter plots, one per state ``x_t``, titled with ``t`` and ``ᾱ_t``.

    ``trajectory[k]`` holds the ``(N, 2)`` points at step ``timesteps[k]`` of ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z``,
    ``ᾱ_t = α^t`` (for example :meth:`hfgen.pipelines.DDPMPointsPipeline.forward_trajectory`): the course's
    "tuning T and α" figure, where the data should turn into ``N(0, I)`` slowly and be noise by ``t = T``.
    Without ``bounds`` all panels share the range of the points.
    """
    _check_diffusion_inputs(trajectory, timesteps, alpha)
    return _diffusion_panels(trajectory, timesteps, float(alpha), list(range(trajectory.shape[0])), bounds)


def plot_diffusion_reverse(
    trajectory: Tensor,
    timesteps: Sequence[int] | Tensor,
    alpha: float,
    *,
    num_snapshots: int = 6,
    bounds: tuple[float, float] | None = None,
) -> Figure:
    r"""The DDPM reverse process ``x_T → … → x_0`` at evenly spaced snapshots, titled with ``t`` and ``ᾱ_t = α^t``.

    ``trajectory`` ``(S + 1, N, 2)`` and ``timesteps`` (``T, …, 0``) are what
    :class:`hfgen.pipelines.DDPMPointsPipeline` returns with ``return_trajectory=True``; the snapshots are the
    states ``round(j S / (num_snapshots − 1))``, ``j = 0 … num_snapshots − 1``, so ``x_T`` and ``x_0`` are shown.
    """
    _check_diffusion_inputs(trajectory, timesteps, alpha)
    check_num_snapshots(num_snapshots)
    indices = snapshot_indices(trajectory.shape[0], num_snapshots)
    return _diffusion_panels(trajectory, timesteps, float(alpha), indices.tolist(), bounds)
