"""Langevin (ULA) and MALA schedulers on a Gaussian energy: ULA's exact biased law, MALA's unbiased one."""

import math

import pytest
import torch
from conformance import seeded
from factories import QuadraticEnergy

from hfgen.methods.energy import langevin_chain
from hfgen.schedulers.langevin import LangevinScheduler, MALAScheduler

NUM_CHAINS = 20_000


def moments_close(samples, mean, covariance, sigmas=4.0):
    """Sample mean and covariance equal ``mean``/``covariance`` within ``sigmas`` Monte-Carlo standard errors."""
    n = samples.shape[0]
    diag = torch.diagonal(covariance)
    assert torch.all((samples.mean(0) - mean).abs() < sigmas * torch.sqrt(diag / n))
    cov_se = torch.sqrt((diag[:, None] * diag[None, :] + covariance.square()) / n)
    assert torch.all((torch.cov(samples.T) - covariance).abs() < sigmas * cov_se)
    return cov_se


def test_ula_on_a_gaussian_has_its_exact_discretised_law():
    # E = ½ (x − μ)ᵀA(x − μ): x' − μ = M (x − μ) + √(2η) z with M = I − ηA. From x_0 = 0, after k steps
    # mean = μ − M^k μ and covariance C_k = 2η Σ_{j<k} M^{2j} → 2η (I − M²)⁻¹, not A⁻¹.
    model, eta, steps = QuadraticEnergy(), 0.2, 60
    mu, a = model.mu.detach(), model.a.detach()
    m = torch.eye(2, dtype=torch.float64) - eta * a
    mean = mu - torch.linalg.matrix_power(m, steps) @ mu
    covariance = sum(2 * eta * torch.linalg.matrix_power(m, 2 * j) for j in range(steps))
    stationary = 2 * eta * torch.linalg.inv(torch.eye(2, dtype=torch.float64) - m @ m)
    torch.testing.assert_close(covariance, stationary, atol=1e-7, rtol=0)  # 60 steps: at stationarity

    start = torch.zeros(NUM_CHAINS, 2, dtype=torch.float64)
    out = langevin_chain(model, start, LangevinScheduler(step_size=eta), steps, generator=seeded())
    cov_se = moments_close(out.sample, mean, stationary)
    # The O(η) bias is far outside the Monte-Carlo error: the test tells ULA from an exact sampler.
    assert ((stationary - model.covariance()).abs() / cov_se).max() > 10
    assert out.acceptance_rate is None and out.num_evaluations == steps


def test_mala_samples_the_gaussian_without_bias():
    model, eta = QuadraticEnergy(), 0.2
    start = torch.zeros(NUM_CHAINS, 2, dtype=torch.float64)
    out = langevin_chain(model, start, MALAScheduler(step_size=eta), 100, generator=seeded(1))
    moments_close(out.sample, model.mu.detach(), model.covariance())
    assert 0.6 < out.acceptance_rate < 1.0
    assert out.num_evaluations == 200


def test_mala_accept_reject_follows_the_metropolis_ratio():
    model, eta = QuadraticEnergy(), 0.7
    x = torch.randn(64, 2, generator=seeded(2), dtype=torch.float64)
    scheduler = MALAScheduler(step_size=eta)
    scheduler.set_timesteps(1)
    assert scheduler.timesteps.tolist() == [0, 0] and scheduler.state_in_first_order

    def evaluate(points):
        points = points.clone().requires_grad_(True)
        energy = model(points, return_dict=False)[0]
        return energy.detach(), -torch.autograd.grad(energy.sum(), points)[0]

    energy_x, score_x = evaluate(x)
    proposal = scheduler.step(score_x, 0, x, generator=seeded(3), energy=energy_x)
    assert not proposal.step_complete and not scheduler.state_in_first_order
    g = seeded(3)
    torch.testing.assert_close(
        proposal.prev_sample,
        x + eta * score_x + math.sqrt(2 * eta) * torch.randn(64, 2, generator=g, dtype=torch.float64),
    )
    x_new = proposal.prev_sample
    energy_new, score_new = evaluate(x_new)
    final = scheduler.step(score_new, 0, x_new, generator=g, energy=energy_new)
    # The same uniforms, drawn after the proposal noise from the same generator, decide by hand:
    log_q_fwd = -(x_new - x - eta * score_x).square().sum(-1) / (4 * eta)
    log_q_bwd = -(x - x_new - eta * score_new).square().sum(-1) / (4 * eta)
    g = seeded(3)
    torch.randn(64, 2, generator=g, dtype=torch.float64)
    accept = torch.rand(64, generator=g, dtype=torch.float64).log() < energy_x - energy_new + log_q_bwd - log_q_fwd
    assert 0 < int(accept.sum()) < 64
    torch.testing.assert_close(final.accepted, accept)
    torch.testing.assert_close(final.prev_sample, torch.where(accept[:, None], x_new, x))
    assert final.step_complete and scheduler.state_in_first_order


def test_mala_rejects_a_proposal_with_non_finite_energy():
    scheduler = MALAScheduler(step_size=0.1)
    scheduler.set_timesteps(1)
    x = torch.zeros(3, 2, dtype=torch.float64)
    proposal = scheduler.step(torch.zeros(3, 2), 0, x, energy=torch.zeros(3, dtype=torch.float64)).prev_sample
    final = scheduler.step(torch.zeros(3, 2), 0, proposal, energy=torch.full((3,), float("nan"), dtype=torch.float64))
    assert not final.accepted.any()
    torch.testing.assert_close(final.prev_sample, x)


def test_ula_step_is_the_langevin_update():
    scheduler = LangevinScheduler(step_size=0.3)
    scheduler.set_timesteps(2)
    assert scheduler.timesteps.tolist() == [0, 1] and len(scheduler) == 2
    x, score = torch.randn(5, 2, generator=seeded(4)), torch.randn(5, 2, generator=seeded(5))
    prev, complete = scheduler.step(score, 0, x, generator=seeded(6), return_dict=False)
    torch.testing.assert_close(prev, x + 0.3 * score + math.sqrt(0.6) * torch.randn(5, 2, generator=seeded(6)))
    assert complete


@pytest.mark.parametrize("cls", [LangevinScheduler, MALAScheduler])
@pytest.mark.parametrize("step_size", [0.0, -0.1, float("nan"), float("inf")])
def test_step_size_must_be_positive(cls, step_size):
    with pytest.raises(ValueError, match="step_size"):
        cls(step_size=step_size)


@pytest.mark.parametrize("cls", [LangevinScheduler, MALAScheduler])
def test_scheduler_state_checks_and_config_round_trip(cls, tmp_path):
    with pytest.raises(TypeError, match="step_size"):
        cls(step_size="0.1")
    scheduler = cls(step_size=0.25)
    kwargs = {"energy": torch.zeros(2)} if cls is MALAScheduler else {}
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler.step(torch.zeros(2, 2), 0, torch.zeros(2, 2), **kwargs)
    with pytest.raises((ValueError, TypeError), match="num_inference_steps"):
        scheduler.set_timesteps(0)
    scheduler.set_timesteps(1)
    with pytest.raises(ValueError, match="shape"):
        scheduler.step(torch.zeros(2, 3), 0, torch.zeros(2, 2), **kwargs)
    scheduler.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert isinstance(loaded, cls) and loaded.config.step_size == 0.25


def test_mala_needs_the_energy():
    scheduler = MALAScheduler()
    scheduler.set_timesteps(1)
    with pytest.raises(ValueError, match="energy"):
        scheduler.step(torch.zeros(2, 2), 0, torch.zeros(2, 2))
