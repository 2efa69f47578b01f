"""Brownian-bridge path and the entropic-OT (Sinkhorn) minibatch coupling of SB-CFM against closed forms."""

import itertools

import pytest
import torch

from hfgen.methods.couplings import COUPLINGS, couple, ot_assignment, sinkhorn_assignment, sinkhorn_plan
from hfgen.methods.flow_matching import BrownianBridgePath, cfm_loss, get_path


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_endpoints_are_the_pinned_points_whatever_the_noise():
    path, x0, x1, noise = BrownianBridgePath(0.7), torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(path.sample(x0, x1, 0.0, noise), x0)
    torch.testing.assert_close(path.sample(x0, x1, 1.0, noise), x1)


def test_mean_and_variance_of_x_t():
    path, n = BrownianBridgePath(sigma=0.8), 200_000
    x0, x1 = torch.tensor([[1.0, -2.0]]).expand(n, 2), torch.tensor([[3.0, 0.5]]).expand(n, 2)
    t = 0.3
    x_t = path.sample(x0, x1, t, torch.randn(n, 2, generator=seeded()))
    torch.testing.assert_close(x_t.mean(0), 0.7 * x0[0] + 0.3 * x1[0], atol=4 * 0.8 * 0.21**0.5 / n**0.5, rtol=0)
    # Var = σ² t(1 − t) = 0.1344; the sample variance has relative std √(2/n) = 0.3 %.
    torch.testing.assert_close(x_t.var(0), torch.full((2,), 0.64 * 0.21), rtol=0.015, atol=0)
    torch.testing.assert_close(path.std(torch.tensor(t)) ** 2, torch.tensor(0.64 * 0.21))


def test_velocity_is_the_time_derivative_at_fixed_noise():
    path = BrownianBridgePath(sigma=1.3)
    x0, x1, noise = (torch.randn(6, 2, dtype=torch.float64) for _ in range(3))
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    _, derivative = torch.func.jvp(lambda s: path.sample(x0, x1, s, noise), (t,), (torch.ones_like(t),))
    torch.testing.assert_close(path.target_velocity(x0, x1, t, noise), derivative, rtol=1e-10, atol=1e-10)
    h = 1e-6  # central finite differences agree too
    finite = (path.sample(x0, x1, t + h, noise) - path.sample(x0, x1, t - h, noise)) / (2 * h)
    torch.testing.assert_close(path.target_velocity(x0, x1, t, noise), finite, rtol=1e-6, atol=1e-6)


def test_velocity_stays_finite_at_the_ends():
    path, x0, x1, noise = BrownianBridgePath(), torch.randn(2, 2), torch.randn(2, 2), torch.randn(2, 2)
    assert torch.isfinite(path.target_velocity(x0, x1, torch.tensor([0.0, 1.0]), noise)).all()


def test_cfm_loss_draws_the_noise_from_the_generator():
    class Zero(torch.nn.Module):
        def forward(self, x, t, return_dict=False):
            return (torch.zeros_like(x),)

    path, x0, x1, t = BrownianBridgePath(0.5), torch.randn(8, 2), torch.randn(8, 2), torch.rand(8) * 0.8 + 0.1
    noise = torch.randn(8, 2, generator=seeded(3))
    expected = path.target_velocity(x0, x1, t, noise).square().sum(1).mean()
    torch.testing.assert_close(cfm_loss(Zero(), x0, x1, path, t=t, generator=seeded(3)), expected)
    assert cfm_loss(Zero(), x0, x1, path, t=t, generator=seeded(4)) != expected


def test_get_path_describe_and_errors():
    path = get_path("brownian", sigma=0.5)
    assert isinstance(path, BrownianBridgePath) and path.sigma == 0.5 and "σ = 0.5" in path.describe()
    for sigma in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            BrownianBridgePath(sigma)
    with pytest.raises(ValueError, match="noise"):
        path.sample(torch.zeros(2, 2), torch.zeros(2, 2), 0.5)
    with pytest.raises(ValueError, match="noise"):
        path.target_velocity(torch.zeros(2, 2), torch.zeros(2, 2), 0.5, torch.zeros(3, 2))


def test_sinkhorn_plan_has_uniform_marginals():
    x0, x1 = torch.randn(7, 2, generator=seeded()), torch.randn(5, 2, generator=seeded(1)) + 1
    plan = sinkhorn_plan(x0, x1, reg=0.5)
    assert plan.shape == (7, 5) and (plan >= 0).all()
    torch.testing.assert_close(plan.sum(1), torch.full((7,), 1 / 7, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(plan.sum(0), torch.full((5,), 1 / 5, dtype=torch.float64), rtol=0, atol=1e-9)


def test_sinkhorn_plan_is_the_gibbs_kernel_scaled():
    # The entropic plan is π_ij = u_i exp(−C_ij / reg) v_j: log π + C/reg has rank one in (i, j).
    x0, x1 = torch.randn(6, 2, generator=seeded(2)), torch.randn(6, 2, generator=seeded(3))
    reg = 0.8
    log_kernel = sinkhorn_plan(x0, x1, reg).log() + torch.cdist(x0.double(), x1.double()).square() / reg
    centred = log_kernel - log_kernel.mean(0) - log_kernel.mean(1, keepdim=True) + log_kernel.mean()
    assert centred.abs().max() < 1e-6


def test_sinkhorn_tends_to_exact_ot_as_the_regularisation_vanishes():
    generator = seeded(5)
    for _ in range(3):
        x0, x1 = torch.randn(6, 2, generator=generator), torch.randn(6, 2, generator=generator)
        best = min(itertools.permutations(range(6)), key=lambda p: ((x0[list(p)] - x1) ** 2).sum().item())
        permutation = torch.zeros(6, 6, dtype=torch.float64)
        permutation[list(best), range(6)] = 1 / 6  # x0[best[j]] is matched with x1[j]
        plan = sinkhorn_plan(x0, x1, reg=1e-3)
        assert (plan - permutation).abs().max() < 1e-3
        assert torch.equal(sinkhorn_assignment(x0, x1, 1e-3, seeded()), ot_assignment(x0, x1))
        c0, c1 = couple(x0, x1, "sinkhorn", generator=seeded(), sigma=0.02)
        assert torch.equal(c0, x0[ot_assignment(x0, x1)]) and torch.equal(c1, x1)


def test_sinkhorn_assignment_draws_pairs_from_the_plan():
    # x1 holds 4 distinct points repeated 500 times: by symmetry the plan splits each 4 × 4 column evenly over
    # its copies, so one call draws 500 indices from each π(· | j) of the 4 × 4 plan.
    x0, points = torch.randn(4, 2, generator=seeded(6)), torch.randn(4, 2, generator=seeded(7))
    plan = sinkhorn_plan(x0, points, reg=1.0)
    copies = 500
    drawn = sinkhorn_assignment(x0, points.repeat_interleave(copies, 0), 1.0, seeded(8)).reshape(4, copies)
    frequency = torch.stack([torch.bincount(row, minlength=4) for row in drawn], 1).double() / copies
    # frequency[i, j] estimates π(i | j) = 4 π[i, j]; binomial standard error ≤ √(¼ / 500) = 0.022: allow 4
    assert (frequency - 4 * plan).abs().max() < 0.09
    assert torch.equal(sinkhorn_assignment(x0, points, 1.0, seeded(9)), sinkhorn_assignment(x0, points, 1.0, seeded(9)))


def test_sinkhorn_coupling_errors():
    assert "sinkhorn" in COUPLINGS
    with pytest.raises(ValueError, match="reg"):
        sinkhorn_plan(torch.zeros(2, 2), torch.zeros(2, 2), 0.0)
    with pytest.raises(ValueError, match="point shape"):
        sinkhorn_plan(torch.zeros(2, 2), torch.zeros(2, 3), 1.0)
