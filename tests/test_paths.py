"""Probability paths, couplings and the CFM loss against closed forms."""

import itertools

import pytest
import torch

from hfgen.methods.couplings import couple, ot_assignment
from hfgen.methods.flow_matching import CosinePath, LinearPath, VPPath, cfm_loss, get_path
from hfgen.models import TimeMLP

ALL_PATHS = [LinearPath(), LinearPath(sigma_min=0.1), VPPath(), CosinePath()]


@pytest.mark.parametrize("path", ALL_PATHS, ids=repr)
def test_target_velocity_is_the_time_derivative_of_the_path(path):
    x0, x1 = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64) * 0.98 + 0.01
    _, derivative = torch.func.jvp(lambda s: path.sample(x0, x1, s), (t,), (torch.ones_like(t),))
    torch.testing.assert_close(path.target_velocity(x0, x1, t), derivative, rtol=1e-10, atol=1e-10)


def test_endpoints():
    x0, x1 = torch.randn(4, 3), torch.randn(4, 3)
    for path in (LinearPath(), CosinePath()):
        torch.testing.assert_close(path.sample(x0, x1, 0.0), x0)
        torch.testing.assert_close(path.sample(x0, x1, 1.0), x1)
    sigma_min = LinearPath(sigma_min=0.1)
    torch.testing.assert_close(sigma_min.sample(x0, x1, 1.0), x1 + 0.1 * x0)
    vp = VPPath()
    torch.testing.assert_close(vp.sample(x0, x1, 1.0), x1)
    assert vp.alpha(torch.tensor(0.0)) < 1e-2  # exp(-½ T(1)) = exp(-5.025)
    torch.testing.assert_close(vp.alpha(torch.tensor(0.3)) ** 2 + vp.sigma(torch.tensor(0.3)) ** 2, torch.tensor(1.0))


def test_linear_target_is_the_displacement():
    x0, x1 = torch.randn(4, 2), torch.randn(4, 2)
    torch.testing.assert_close(LinearPath().target_velocity(x0, x1, torch.rand(4)), x1 - x0)


def test_get_path_errors():
    assert isinstance(get_path("vp", beta_min=0.2), VPPath)
    with pytest.raises(ValueError, match="unknown path"):
        get_path("spiral")
    with pytest.raises(ValueError, match="sigma_min"):
        LinearPath(sigma_min=1.0)


def brute_force_cost(x0, x1):
    return min(((x0[list(perm)] - x1) ** 2).sum().item() for perm in itertools.permutations(range(len(x0))))


def test_ot_assignment_is_exact_on_tiny_sets():
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        x0, x1 = torch.randn(6, 2, generator=generator), torch.randn(6, 2, generator=generator)
        perm = ot_assignment(x0, x1)
        assert sorted(perm.tolist()) == list(range(6))
        assert ((x0[perm] - x1) ** 2).sum().item() == pytest.approx(brute_force_cost(x0, x1), rel=1e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_ot_assignment_matches_scipy_on_larger_sets_with_and_without_ties(ties):
    from scipy.optimize import linear_sum_assignment

    generator = torch.Generator().manual_seed(5)
    x0, x1 = torch.randn(257, 3, generator=generator), torch.rand(257, 3, generator=generator)
    if ties:  # repeated points make the optimal permutation non-unique
        x0[100:200] = x0[0]
        x1[::2] = x1[1]
    perm = ot_assignment(x0, x1)
    assert sorted(perm.tolist()) == list(range(257))
    cost = torch.cdist(x1.double(), x0.double()).square().numpy()
    rows, cols = linear_sum_assignment(cost)
    assert cost[range(257), perm.numpy()].sum() == pytest.approx(cost[rows, cols].sum(), rel=1e-12)


def test_ot_coupling_never_increases_the_matched_cost():
    generator = torch.Generator().manual_seed(4)
    for _ in range(10):
        x0, x1 = torch.randn(64, 2, generator=generator), torch.rand(64, 2, generator=generator) * 4 - 2
        c0, c1 = couple(x0, x1, "ot")
        assert torch.equal(c1, x1)
        assert torch.equal(c0.sort(0).values, x0.sort(0).values)  # a permutation of the source batch
        assert ((c0 - c1) ** 2).sum() <= ((x0 - x1) ** 2).sum() + 1e-5


def test_coupling_errors():
    with pytest.raises(ValueError, match="unknown coupling"):
        couple(torch.zeros(2, 2), torch.zeros(2, 2), "sinkhorn-ish")
    with pytest.raises(ValueError, match="equal shape"):
        ot_assignment(torch.zeros(3, 2), torch.zeros(4, 2))


def test_cfm_loss_value_for_a_known_model():
    class Zero(torch.nn.Module):
        def forward(self, x, t, return_dict=False):
            return (torch.zeros_like(x),)

    x0, x1 = torch.randn(8, 2), torch.randn(8, 2)
    expected = ((x1 - x0) ** 2).sum(1).mean()
    torch.testing.assert_close(cfm_loss(Zero(), x0, x1, t=torch.rand(8)), expected)


def test_optimal_velocity_at_time_zero_is_mean_minus_x():
    # At t = 0, x_t = x_0 carries no information about x_1, so the CFM minimiser is v*(x, 0) = E[x_1] − x.
    torch.manual_seed(0)
    data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    model = TimeMLP(dim=2, hidden_size=32, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=400)
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        x1 = data[torch.randint(len(data), (256,), generator=generator)]
        x0 = torch.rand(256, 2, generator=generator) - 0.5  # source on the evaluation square
        loss = cfm_loss(model, x0, x1, t=torch.zeros(256))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.5, 0.5, 9), torch.linspace(-0.5, 0.5, 9), indexing="ij"), -1)
    grid = grid.reshape(-1, 2)
    with torch.no_grad():
        learned = model(grid, 0.0).sample
    optimal = data.mean(0) - grid
    assert (learned - optimal).norm(dim=1).max() < 0.05 * optimal.norm(dim=1).max()


def test_logit_normal_times_have_a_normal_logit_with_the_given_mean_and_spread():
    from scipy import stats

    from hfgen.methods.flow_matching import sample_path_times

    t = sample_path_times(20_000, "logit_normal", torch.Generator().manual_seed(0), mean=-0.5, std=1.5).double()
    assert bool(((t > 0) & (t < 1)).all())
    logit = torch.log(t) - torch.log1p(-t)
    assert stats.kstest(logit.numpy(), "norm", args=(-0.5, 1.5)).pvalue > 1e-3
    uniform = sample_path_times(1_000, "uniform", torch.Generator().manual_seed(1))
    assert torch.equal(uniform, torch.rand(1_000, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="time_law"):
        sample_path_times(4, "cosine")
    with pytest.raises(ValueError, match="logit_normal_std"):
        sample_path_times(4, "logit_normal", std=-1.0)
