"""Tests of hfgen.data.toy: sampling, exact densities and entropies, geometry, configs and input checks."""

import json
import math

import pytest
import torch
from scipy import stats
from sklearn.datasets import make_moons

from hfgen.data import (
    TOY_DISTRIBUTIONS,
    Checkerboard,
    EightGaussians,
    SampleOnly,
    Shifted,
    StandardGaussian,
    ToyDistribution,
    TwoBalls,
    TwoMoons,
    get_toy_distribution,
    toy_from_config,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_distributions() -> list[ToyDistribution]:
    """One instance of every kind, with non-default parameters where that matters."""
    return [
        StandardGaussian(),
        StandardGaussian(dim=3),
        Checkerboard(),
        EightGaussians(),
        EightGaussians(radius=1.5, std=0.4),
        TwoMoons(),
        TwoBalls(),
        TwoBalls(dim=3, radius=0.7, separation=3.0),
        Shifted(Checkerboard(), [0.5, -1.25]),
        Shifted(EightGaussians(), torch.tensor([1.0, 2.0])),
        Shifted(TwoMoons(noise=0.05), (3.0, 0.0)),
        Shifted(Shifted(TwoBalls(), [1.0, 0.0]), [0.0, -2.0]),
        SampleOnly(lambda n, g: torch.randn(n, 4, generator=g, dtype=torch.float64), dim=4),
    ]


def with_density() -> list[ToyDistribution]:
    return [d for d in all_distributions() if d.has_log_prob]


def midpoint_grid(
    low: float, high: float, step: float, y_range: tuple[float, float] | None = None
) -> tuple[torch.Tensor, float]:
    """Cell-centre grid on [low, high] × y_range (default [low, high]), float64, and the area of one cell."""
    x_axis = torch.arange(low, high, step, dtype=torch.float64) + step / 2
    y_axis = x_axis if y_range is None else torch.arange(*y_range, step, dtype=torch.float64) + step / 2
    grid = torch.stack(torch.meshgrid(x_axis, y_axis, indexing="ij"), dim=-1).reshape(-1, 2)
    return grid, step**2


# ----------------------------------------------------------------------------------------------------------
# Sampling: shapes, dtypes, repeatability


@pytest.mark.parametrize("dist", all_distributions(), ids=repr)
def test_sample_shape_dtype_and_repeatability(dist: ToyDistribution) -> None:
    x = dist.sample(257, seeded(0))
    assert x.shape == (257, dist.dim)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x, dist.sample(257, seeded(0)))
    assert not torch.equal(x, dist.sample(257, seeded(1)))
    assert dist.sample(1).shape == (1, dist.dim)


def test_generator_fixture_gives_repeatable_samples(generator: torch.Generator) -> None:
    assert torch.equal(Checkerboard().sample(10, generator), Checkerboard().sample(10, seeded(0)))


# ----------------------------------------------------------------------------------------------------------
# Densities integrate to one, entropies match Monte Carlo


@pytest.mark.parametrize(
    ("dist", "low", "high", "step", "y_range", "tol"),
    [
        (Checkerboard(), -2.5, 2.5, 0.01, None, 1e-12),  # midpoints never on a cell edge: exact count
        (Shifted(Checkerboard(), [0.3, -0.7]), -3.5, 3.5, 0.01, None, 1e-12),
        (EightGaussians(), -4.5, 4.5, 0.03, None, 1e-12),
        (EightGaussians(radius=1.0, std=0.6), -7.0, 7.0, 0.03, None, 1e-12),
        (Shifted(EightGaussians(), [0.5, -1.0]), -5.5, 5.5, 0.03, None, 1e-12),
        (StandardGaussian(), -9.0, 9.0, 0.03, None, 1e-12),
        (TwoBalls(), -1.5, 1.5, 0.002, (-0.5, 0.5), 2e-4),  # lattice points in a disc: boundary error
        (Shifted(TwoBalls(), [0.25, 1.0]), -1.25, 1.75, 0.002, (0.5, 1.5), 2e-4),
    ],
    ids=repr,
)
def test_log_prob_integrates_to_one(dist: ToyDistribution, low, high, step, y_range, tol) -> None:
    grid, area = midpoint_grid(low, high, step, y_range)
    log_p = dist.log_prob(grid)
    assert log_p.shape == (grid.shape[0],)
    assert log_p.dtype == torch.float64
    total = log_p.exp().sum().item() * area
    assert total == pytest.approx(1.0, abs=tol)


@pytest.mark.parametrize("dist", with_density(), ids=repr)
def test_monte_carlo_entropy_matches(dist: ToyDistribution) -> None:
    n = 200_000
    log_p = dist.log_prob(dist.sample(n, seeded(3)).double())
    assert torch.isfinite(log_p).all()  # every sample is in the support
    standard_error = log_p.std().item() / math.sqrt(n)
    assert -log_p.mean().item() == pytest.approx(dist.entropy, abs=4 * standard_error + 1e-9)


def test_standard_gaussian_closed_forms() -> None:
    for dim in (1, 2, 5):
        dist = StandardGaussian(dim)
        assert dist.entropy == pytest.approx(0.5 * dim * math.log(2 * math.pi * math.e), rel=1e-14)
        x = torch.randn(7, dim, generator=seeded(0), dtype=torch.float64)
        normal = torch.distributions.MultivariateNormal(torch.zeros(dim), torch.eye(dim))
        torch.testing.assert_close(dist.log_prob(x).float(), normal.log_prob(x.float()))
    samples = StandardGaussian(3).sample(100_000, seeded(0))
    torch.testing.assert_close(samples.mean(0), torch.zeros(3), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), torch.eye(3), atol=0.02, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# Checkerboard


def test_checkerboard_filled_pattern_is_exact() -> None:
    expected = {(-2, -2), (-2, 0), (-1, -1), (-1, 1), (0, -2), (0, 0), (1, -1), (1, 1)}
    assert set(Checkerboard.FILLED_CELLS) == expected
    dist = Checkerboard()
    for i in range(-3, 3):
        for j in range(-3, 3):
            centre = torch.tensor([[i + 0.5, j + 0.5]])
            filled = (i, j) in expected
            assert dist.in_support(centre).item() == filled
            assert dist.log_prob(centre.double()).item() == (-math.log(8) if filled else -math.inf)
    # half-open cells [i, i+1): the corner (0, 0) belongs to the filled cell (0, 0); x = 2 is off the board
    corners = torch.tensor([[0.0, 0.0], [-2.0, -2.0], [2.0, 1.5], [1.5, 2.0], [-1.0, 0.0]])
    assert dist.in_support(corners).tolist() == [True, True, False, False, False]
    assert dist.entropy == pytest.approx(math.log(8), rel=1e-15)


def test_checkerboard_samples_are_uniform_over_the_filled_cells() -> None:
    n = 80_000
    x = Checkerboard().sample(n, seeded(0))
    assert Checkerboard().in_support(x).all()
    assert (x >= -2).all() and (x < 2).all()
    cells = torch.floor(x).long()
    counts = {cell: 0 for cell in ((i, j) for i in range(-2, 2) for j in range(-2, 2))}
    for cell, count in zip(*torch.unique(cells, dim=0, return_counts=True), strict=True):
        counts[tuple(cell.tolist())] = count.item()
    sigma = math.sqrt(n * (1 / 8) * (7 / 8))
    for cell, count in counts.items():
        if (cell[0] + cell[1]) % 2 == 0:
            assert abs(count - n / 8) < 4 * sigma, (cell, count)
        else:
            assert count == 0, (cell, count)
    # uniform inside the cells: the offset from the cell corner is U[0, 1)²
    offset = (x - torch.floor(x)).double()
    assert offset.mean(0).tolist() == pytest.approx([0.5, 0.5], abs=0.005)
    assert offset.var(0).tolist() == pytest.approx([1 / 12, 1 / 12], abs=0.002)


# ----------------------------------------------------------------------------------------------------------
# Eight Gaussians


def test_eight_gaussians_components_have_the_stated_means_and_covariance() -> None:
    radius, std, n = 2.0, 0.25, 160_000
    x = EightGaussians(radius, std).sample(n, seeded(0)).double()
    centres = torch.tensor(
        [[radius * math.cos(k * math.pi / 4), radius * math.sin(k * math.pi / 4)] for k in range(8)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(EightGaussians.centres(radius, dtype=torch.float64), centres)
    nearest = torch.cdist(x, centres).argmin(dim=1)  # components are ≈ 6 std apart: assignment is reliable
    for k in range(8):
        points = x[nearest == k]
        assert abs(points.shape[0] - n / 8) < 4 * math.sqrt(n / 8)
        torch.testing.assert_close(points.mean(0), centres[k], atol=4 * std / math.sqrt(n / 8), rtol=0)
        covariance = std**2 * torch.eye(2, dtype=torch.float64)
        torch.testing.assert_close(torch.cov(points.T), covariance, atol=3e-3, rtol=0)


def test_eight_gaussians_log_prob_is_the_exact_mixture_density() -> None:
    dist = EightGaussians(radius=1.5, std=0.7)
    x = torch.randn(50, 2, generator=seeded(1), dtype=torch.float64) * 2
    density = torch.zeros(50, dtype=torch.float64)
    for k in range(8):
        angle = k * math.pi / 4
        centre = torch.tensor([1.5 * math.cos(angle), 1.5 * math.sin(angle)], dtype=torch.float64)
        density += torch.exp(-((x - centre) ** 2).sum(1) / (2 * 0.49)) / (2 * math.pi * 0.49) / 8
    torch.testing.assert_close(dist.log_prob(x), density.log(), rtol=1e-12, atol=1e-12)
    assert dist.log_prob(x.float()).dtype == torch.float32


def test_eight_gaussians_entropy_by_quadrature() -> None:
    # documented value for the defaults, and an independent brute-force −Σ p log p h² on a fine grid
    dist = EightGaussians()
    assert dist.entropy == pytest.approx(2.138431179966537, abs=1e-10)
    grid, area = midpoint_grid(-4.5, 4.5, 0.03)
    log_p = dist.log_prob(grid)
    assert -(log_p.exp() * log_p).sum().item() * area == pytest.approx(dist.entropy, abs=1e-10)
    # limits: coincident components give one Gaussian; far-apart ones give log 8 + Gaussian entropy
    gaussian_entropy = math.log(2 * math.pi * math.e * 0.3**2)
    assert EightGaussians(radius=0.0, std=0.3).entropy == pytest.approx(gaussian_entropy, abs=1e-12)
    separated = EightGaussians(radius=20.0, std=0.3).entropy
    assert separated == pytest.approx(math.log(8) + gaussian_entropy, abs=1e-12)
    # overlap lowers the entropy below the separated limit
    assert dist.entropy < math.log(8) + math.log(2 * math.pi * math.e * 0.25**2) - 1e-3


# ----------------------------------------------------------------------------------------------------------
# Two moons


def invert_moons_map(x: torch.Tensor) -> torch.Tensor:
    """Undo x = 2·(p − (0.5, 0.25)): back to scikit-learn's coordinates."""
    return x.double() / 2 + torch.tensor([0.5, 0.25], dtype=torch.float64)


def test_moons_noise_free_samples_lie_on_the_sklearn_arcs() -> None:
    x = TwoMoons(noise=0.0).sample(20_000, seeded(0))
    p = invert_moons_map(x)
    on_outer = ((p.norm(dim=1) - 1).abs() < 1e-5) & (p[:, 1] >= -1e-6)
    inner_offset = p - torch.tensor([1.0, 0.5], dtype=torch.float64)
    on_inner = ((inner_offset.norm(dim=1) - 1).abs() < 1e-5) & (p[:, 1] <= 0.5 + 1e-6)
    assert (on_outer | on_inner).all()
    assert abs(on_outer.double().mean().item() - 0.5) < 4 * math.sqrt(0.25 / 20_000)
    # θ ~ U[0, π] on the outer arc (cos θ, sin θ) and the inner arc (1 − cos θ, 0.5 − sin θ)
    theta_outer = torch.atan2(p[on_outer, 1], p[on_outer, 0])
    theta_inner = torch.atan2(-inner_offset[on_inner, 1], -inner_offset[on_inner, 0])
    for theta in (theta_outer, theta_inner):
        assert stats.kstest(theta.numpy() / math.pi, "uniform").pvalue > 1e-3
    # centred: E p = (0.5, 0.25), so the samples have mean 0
    torch.testing.assert_close(x.double().mean(0), torch.zeros(2, dtype=torch.float64), atol=0.02, rtol=0)


def test_moons_match_sklearn_make_moons_after_the_affine_map() -> None:
    reference, _ = make_moons(n_samples=400, noise=0.0, shuffle=False)
    mapped = 2 * (torch.from_numpy(reference) - torch.tensor([0.5, 0.25], dtype=torch.float64))
    ours = TwoMoons(noise=0.0).sample(50_000, seeded(1)).double()
    # every scikit-learn point is on our curve and vice versa (densely sampled curves)
    assert torch.cdist(mapped, ours).min(dim=1).values.max() < 0.01
    assert torch.cdist(ours[:2000], mapped).min(dim=1).values.max() < 0.03
    assert ours.min(0).values.tolist() == pytest.approx([-3.0, -1.5], abs=1e-3)
    assert ours.max(0).values.tolist() == pytest.approx([3.0, 1.5], abs=1e-3)


def test_moons_noise_is_gaussian_with_the_stated_scale_in_output_coordinates() -> None:
    noise, n = 0.3, 100_000
    eps = (TwoMoons(noise).sample(n, seeded(2)) - TwoMoons(0.0).sample(n, seeded(2))).double() / noise
    torch.testing.assert_close(eps.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.015, rtol=0)
    torch.testing.assert_close(torch.cov(eps.T), torch.eye(2, dtype=torch.float64), atol=0.015, rtol=0)


def test_moons_is_sample_only() -> None:
    moons = TwoMoons()
    assert not moons.has_log_prob
    with pytest.raises(NotImplementedError, match="sample-only.*no closed-form density.*'checkerboard'"):
        moons.log_prob(torch.zeros(3, 2))
    with pytest.raises(NotImplementedError, match="sample-only"):
        moons.entropy  # noqa: B018
    with pytest.raises(NotImplementedError, match="unbounded support"):
        moons.in_support(torch.zeros(3, 2))


# ----------------------------------------------------------------------------------------------------------
# Two balls


@pytest.mark.parametrize("radius", [0.25, 0.5, 1.3])
def test_two_balls_entropy_closed_form(radius: float) -> None:
    assert TwoBalls(radius=radius, separation=3.0).entropy == pytest.approx(math.log(2 * math.pi * radius**2))
    ball_volume_3d = 4 / 3 * math.pi * radius**3
    assert TwoBalls(3, radius, 3.0).entropy == pytest.approx(math.log(2 * ball_volume_3d))
    assert TwoBalls(1, radius, 3.0).entropy == pytest.approx(math.log(4 * radius))


@pytest.mark.parametrize("dim", [2, 3])
def test_two_balls_samples_are_uniform_in_each_ball(dim: int) -> None:
    radius, separation, n = 0.5, 2.0, 40_000
    dist = TwoBalls(dim, radius, separation)
    x = dist.sample(n, seeded(0)).double()
    assert dist.in_support(x).all()
    right = x[:, 0] > 0
    assert abs(right.double().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)
    centre = torch.zeros(n, dim, dtype=torch.float64)
    centre[:, 0] = torch.where(right, separation / 2, -separation / 2)
    offset = x - centre
    # radial CDF of the uniform law on a d-ball: P(|X − c| ≤ s) = (s/R)^d, so (|X − c|/R)^d ~ U[0, 1]
    u = (offset.norm(dim=1) / radius) ** dim
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3
    direction = offset / offset.norm(dim=1, keepdim=True)
    torch.testing.assert_close(direction.mean(0), torch.zeros(dim, dtype=torch.float64), atol=0.02, rtol=0)


def test_two_balls_support_and_log_prob() -> None:
    dist = TwoBalls(radius=0.5, separation=2.0)
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.5, 0.0], [1.0, -0.49], [0.0, 0.0], [1.51, 0.0], [-1.0, 0.6]])
    inside = torch.tensor([True, True, True, True, False, False, False])
    assert torch.equal(dist.in_support(x), inside)
    expected = torch.where(inside, -math.log(2 * math.pi * 0.25), -math.inf)
    torch.testing.assert_close(dist.log_prob(x), expected)


def test_bounded_samples_pass_in_support_despite_float32_rounding() -> None:
    # far from the origin float32 spacing (~3e-5) is coarse: rounding alone would put ~1e-4 of the points
    # just outside the balls; those are redrawn, and support tests run in float64 for every input dtype
    dist = TwoBalls(radius=0.5, separation=1000.0)
    x = dist.sample(200_000, seeded(0))
    assert dist.in_support(x).all() and dist.in_support(x.double()).all()
    assert torch.isfinite(dist.log_prob(x)).all()
    shifted = Shifted(TwoBalls(), [1000.0, -7.3])
    y = shifted.sample(200_000, seeded(0))
    assert torch.isfinite(shifted.log_prob(y)).all() and torch.isfinite(shifted.log_prob(y.double())).all()


def test_out_of_support_draws_are_redrawn_from_the_same_generator() -> None:
    class UnitInterval(ToyDistribution):
        """U[0, 1) drawn as U[0, 2) with the draws ≥ 1 rejected."""

        name = "unit_interval"
        has_log_prob = False
        has_bounded_support = True
        dim = 1

        def _params(self) -> dict:
            return {}

        def _sample(self, num_samples, generator, device):
            return 2 * torch.rand(num_samples, 1, generator=generator, device=device)

        def _in_support(self, x):
            return x[:, 0] < 1

    x = UnitInterval().sample(20_000, seeded(0))
    assert (x >= 0).all() and (x < 1).all()
    assert torch.equal(x, UnitInterval().sample(20_000, seeded(0)))
    assert stats.kstest(x[:, 0].numpy(), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("separation", [1.0, 0.5, -3.0])
def test_two_balls_must_be_disjoint(separation: float) -> None:
    with pytest.raises(ValueError, match=r"separation must be > 2 \* radius"):
        TwoBalls(radius=0.5, separation=separation)


# ----------------------------------------------------------------------------------------------------------
# Shifted


def test_shifted_relations() -> None:
    shift = torch.tensor([0.75, -1.5])
    for base in (Checkerboard(), EightGaussians(), TwoBalls(), StandardGaussian()):
        dist = Shifted(base, shift)
        x = torch.randn(100, 2, generator=seeded(4)) * 2
        torch.testing.assert_close(dist.log_prob(x), base.log_prob(x - shift))
        assert dist.entropy == base.entropy
        torch.testing.assert_close(dist.sample(64, seeded(5)), base.sample(64, seeded(5)) + shift)
        assert dist.has_bounded_support == base.has_bounded_support
        if base.has_bounded_support:
            assert torch.equal(dist.in_support(x), base.in_support(x - shift))
    nested = Shifted(Shifted(Checkerboard(), [1.0, 0.0]), [0.0, 2.0])
    x = torch.randn(100, 2, generator=seeded(6)) * 3
    torch.testing.assert_close(nested.log_prob(x), Checkerboard().log_prob(x - torch.tensor([1.0, 2.0])))


def test_shifted_sample_only_base_stays_sample_only() -> None:
    dist = Shifted(TwoMoons(), [1.0, 1.0])
    assert not dist.has_log_prob
    with pytest.raises(NotImplementedError, match="sample-only"):
        dist.log_prob(torch.zeros(2, 2))
    with pytest.raises(NotImplementedError, match="sample-only"):
        dist.entropy  # noqa: B018


@pytest.mark.parametrize(
    ("shift", "error", "match"),
    [
        ([1.0], ValueError, "length base.dim = 2"),
        (torch.zeros(2, 1), ValueError, "1-D tensor"),
        ([1.0, float("nan")], ValueError, r"`shift\[1\]` must be a finite number, got nan"),
        ("ab", TypeError, "sequence of floats"),
        ([1.0, "a"], TypeError, r"`shift\[1\]` must be a finite number, got 'a' \(str\)"),
    ],
)
def test_shifted_rejects_bad_shift(shift, error, match) -> None:
    with pytest.raises(error, match=match):
        Shifted(Checkerboard(), shift)


def test_shifted_rejects_bad_base() -> None:
    with pytest.raises(TypeError, match="base must be a ToyDistribution"):
        Shifted({"name": "checkerboard"}, [0.0, 0.0])


# ----------------------------------------------------------------------------------------------------------
# Registry and configs


def test_registry_names() -> None:
    names = {"gaussian", "checkerboard", "8gaussians", "moons", "two_balls", "shifted"}
    assert set(TOY_DISTRIBUTIONS) == names
    for name, cls in TOY_DISTRIBUTIONS.items():
        assert cls.name == name
    assert isinstance(get_toy_distribution("8gaussians", radius=3.0), EightGaussians)
    assert get_toy_distribution("shifted", base=Checkerboard(), shift=[1.0, 1.0]).shift == (1.0, 1.0)


@pytest.mark.parametrize("dist", [d for d in all_distributions() if not isinstance(d, SampleOnly)], ids=repr)
def test_config_round_trip(dist: ToyDistribution) -> None:
    config = dist.to_config()
    rebuilt = toy_from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is type(dist)
    assert rebuilt.to_config() == config
    assert repr(rebuilt) == repr(dist)
    assert torch.equal(rebuilt.sample(50, seeded(7)), dist.sample(50, seeded(7)))


def test_every_registered_distribution_round_trips() -> None:
    for name in TOY_DISTRIBUTIONS:
        kwargs = {"base": EightGaussians(std=0.3), "shift": [1.0, -2.0]} if name == "shifted" else {}
        dist = get_toy_distribution(name, **kwargs)
        assert toy_from_config(dist.to_config()).to_config() == dist.to_config()


def test_nested_shifted_config_is_nested() -> None:
    dist = Shifted(Shifted(TwoBalls(3, 0.25, 1.0), [1.0, 0.0, 0.0]), [0.0, 0.5, 0.0])
    assert dist.to_config() == {
        "name": "shifted",
        "base": {
            "name": "shifted",
            "base": {"name": "two_balls", "dim": 3, "radius": 0.25, "separation": 1.0},
            "shift": [1.0, 0.0, 0.0],
        },
        "shift": [0.0, 0.5, 0.0],
    }


def test_repr_is_informative() -> None:
    assert repr(EightGaussians(radius=3.0, std=0.1)) == "EightGaussians(radius=3.0, std=0.1)"
    assert repr(Shifted(Checkerboard(), [1, 2])) == "Shifted(base=Checkerboard(), shift=(1.0, 2.0))"
    assert "name='ring'" in repr(SampleOnly(lambda n, g: torch.zeros(n, 2), dim=2, name="ring"))


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"radius": 1.0}, ValueError, "'name' key"),
        ({"name": "spiral"}, ValueError, "unknown toy distribution 'spiral'; available: .*'checkerboard'"),
        ({"name": "checkerboard", "size": 4}, TypeError, r"unexpected arguments \['size'\]"),
        ([("name", "gaussian")], TypeError, "config must be a dict"),
    ],
)
def test_bad_configs(config, error, match) -> None:
    with pytest.raises(error, match=match):
        toy_from_config(config)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match=r"available: \['8gaussians', 'checkerboard', 'gaussian', 'moons'"):
        get_toy_distribution("swiss_roll")


# ----------------------------------------------------------------------------------------------------------
# SampleOnly


def test_sample_only_wraps_a_sampler() -> None:
    def ring(n: int, generator: torch.Generator | None) -> torch.Tensor:
        angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.stack([angle.cos(), angle.sin()], dim=1)

    dist = SampleOnly(ring, dim=2, name="ring")
    x = dist.sample(100, seeded(0))
    assert x.dtype == torch.float32
    torch.testing.assert_close(x.norm(dim=1), torch.ones(100))
    assert not dist.has_log_prob
    with pytest.raises(NotImplementedError, match="sample-only"):
        dist.log_prob(x)
    with pytest.raises(ValueError, match="cannot be serialised"):
        dist.to_config()


@pytest.mark.parametrize(
    ("sampler", "error", "match"),
    [
        (lambda n, g: torch.zeros(n, 3), ValueError, r"shape \(num_samples, dim\) = \(5, 2\), got \(5, 3\)"),
        (lambda n, g: torch.zeros(n + 1, 2), ValueError, r"got \(6, 2\)"),
        (lambda n, g: torch.zeros(n), ValueError, r"got \(5,\)"),
        (lambda n, g: torch.full((n, 2), float("nan")), ValueError, "non-finite"),
        (lambda n, g: [[0.0, 0.0]] * n, TypeError, "must return a torch.Tensor"),
    ],
)
def test_sample_only_checks_the_sampler_output(sampler, error, match) -> None:
    with pytest.raises(error, match=match):
        SampleOnly(sampler, dim=2).sample(5)


def test_sample_only_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="sampler must be callable"):
        SampleOnly("not a function", dim=2)
    with pytest.raises(ValueError, match="`dim` must be an int >= 1, got 0"):
        SampleOnly(lambda n, g: torch.zeros(n, 2), dim=0)


# ----------------------------------------------------------------------------------------------------------
# Input validation


@pytest.mark.parametrize("num_samples", [0, -1, 2.5, True, "3", None])
@pytest.mark.parametrize("dist", [Checkerboard(), TwoMoons(), StandardGaussian(3)], ids=repr)
def test_bad_num_samples(dist: ToyDistribution, num_samples) -> None:
    with pytest.raises(ValueError, match=rf"`num_samples` must be an int >= 1, got {num_samples!r}"):
        dist.sample(num_samples)


def test_bad_generator() -> None:
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        Checkerboard().sample(3, 0)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.zeros(5, 3), ValueError, r"x must have shape \(N, 2\), got \(5, 3\)"),
        (torch.zeros(5), ValueError, r"x must have shape \(N, 2\), got \(5,\)"),
        (torch.zeros(2, 5, 2), ValueError, r"got \(2, 5, 2\)"),
        (torch.zeros(5, 2, dtype=torch.long), TypeError, "floating-point tensor, got dtype torch.int64"),
        ([[0.0, 0.0]], TypeError, "x must be a torch.Tensor"),
    ],
)
@pytest.mark.parametrize("dist", [Checkerboard(), EightGaussians(), TwoBalls(), Shifted(TwoBalls(), [1, 1])], ids=repr)
def test_bad_points(dist: ToyDistribution, x, error, match) -> None:
    with pytest.raises(error, match=match):
        dist.log_prob(x)
    if dist.has_bounded_support:
        with pytest.raises(error, match=match):
            dist.in_support(x)


def test_unbounded_distributions_have_no_in_support() -> None:
    for dist in (StandardGaussian(), EightGaussians(), Shifted(EightGaussians(), [1.0, 0.0])):
        with pytest.raises(NotImplementedError, match="unbounded support"):
            dist.in_support(torch.zeros(2, 2))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: StandardGaussian(dim=0), ValueError, "`dim` must be an int >= 1, got 0"),
        (lambda: StandardGaussian(dim=2.0), ValueError, r"`dim` must be an int >= 1, got 2.0 \(float\)"),
        (lambda: EightGaussians(std=0.0), ValueError, "`std` must be a finite number > 0, got 0.0"),
        (lambda: EightGaussians(radius=-1.0), ValueError, "`radius` must be a finite number >= 0, got -1.0"),
        (lambda: EightGaussians(radius="2"), TypeError, r"`radius` must be a finite number >= 0, got '2' \(str\)"),
        (lambda: TwoMoons(noise=-0.1), ValueError, "`noise` must be a finite number >= 0, got -0.1"),
        (lambda: TwoMoons(noise=float("inf")), ValueError, "`noise` must be a finite number >= 0, got inf"),
        (lambda: TwoBalls(radius=0.0), ValueError, "`radius` must be a finite number > 0, got 0.0"),
        (lambda: TwoBalls(dim=True), ValueError, r"`dim` must be an int >= 1, got True \(bool\)"),
    ],
)
def test_bad_parameters(build, error, match) -> None:
    with pytest.raises(error, match=match):
        build()
