"""Energy-based model: EnergyMLP, the ML loss, ∇_θ log Z, quadrature log Z, the replay buffer, the Langevin (ULA) and
MALA schedulers on a Gaussian energy (ULA's exact biased law, MALA's unbiased one) and EnergyPipeline, with the
pipeline and the schedulers through the shared conformance classes (tests/conformance.py)."""

import math

import numpy as np
import pytest
import torch
from conformance import PipelineConformance, SchedulerConformance, seeded
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from factories import publish_to_local_hub_cache

from hfgen.methods.energy import (
    ReplayBuffer,
    energy_and_gradient,
    langevin_chain,
    log_partition_by_quadrature,
    maximum_likelihood_loss,
    quadrature_grid,
)
from hfgen.models.energy import EnergyMLP
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.energy import EnergyPipeline, EnergyPipelineOutput
from hfgen.schedulers.langevin import LangevinScheduler, MALAScheduler

WIDE = ((-10.0, 10.0), (-10.0, 10.0))


GAUSSIAN_MEAN = [0.5, -1.0]
GAUSSIAN_PRECISION = [[2.0, 0.6], [0.6, 1.0]]


class QuadraticEnergy(ModelMixin, ConfigMixin):
    r"""``E(x) = ½ (x − μ)ᵀ A (x − μ)`` in float64, so ``p = N(μ, A⁻¹)`` and ``log Z = (D/2) log 2π − ½ log det A``.
    ``μ`` and ``A`` are the parameters ``mu`` and ``a`` (the gradients of ``log Z`` in them are known)."""

    @register_to_config
    def __init__(
        self, mean: list[float] = GAUSSIAN_MEAN, precision: list[list[float]] = GAUSSIAN_PRECISION, dim: int = 2
    ):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.tensor(mean, dtype=torch.float64))
        self.a = torch.nn.Parameter(torch.tensor(precision, dtype=torch.float64))

    def forward(self, sample, return_dict=True):
        centred = sample - self.mu
        energy = 0.5 * ((centred @ self.a) * centred).sum(-1)
        return {"energy": energy} if return_dict else (energy,)

    def log_partition(self) -> torch.Tensor:
        """``(D/2) log 2π − ½ log det A`` (differentiable)."""
        symmetric = 0.5 * (self.a + self.a.T)
        return 0.5 * self.config.dim * math.log(2 * math.pi) - 0.5 * torch.logdet(symmetric)

    def covariance(self) -> torch.Tensor:
        return torch.linalg.inv(self.a.detach())

    def sample_exact(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` exact draws of ``N(μ, A⁻¹)``."""
        z = torch.randn(n, self.config.dim, generator=generator, dtype=torch.float64)
        return self.mu.detach() + z @ torch.linalg.cholesky(self.covariance()).T


def tiny_energy_pipeline(sampler: str = "langevin", step_size: float = 0.05, seed: int = 0) -> EnergyPipeline:
    """A random-weight width-8 EnergyMLP with a confining well, and a ULA or MALA scheduler."""
    torch.manual_seed(seed)
    model = EnergyMLP(dim=2, hidden_size=8, num_layers=2, confinement=0.5)
    scheduler = LangevinScheduler(step_size=step_size) if sampler == "langevin" else MALAScheduler(step_size=step_size)
    pipeline = EnergyPipeline(model, scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def energy_fn(model):
    return lambda x: model(x, return_dict=False)[0]


def flat_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


# --- model -----------------------------------------------------------------------------------------------------


def test_energy_mlp_shapes_confinement_and_checks():
    torch.manual_seed(0)
    free = EnergyMLP(dim=3, hidden_size=8, num_layers=2)
    confined = EnergyMLP(dim=3, hidden_size=8, num_layers=2, confinement=0.7)
    confined.load_state_dict(free.state_dict())
    x = torch.randn(5, 3)
    assert free(x).energy.shape == (5,)
    torch.testing.assert_close(confined(x).energy, free(x).energy + 0.35 * x.square().sum(-1))
    assert free(x, return_dict=False)[0].shape == (5,)
    with pytest.raises(ValueError, match="activation"):
        EnergyMLP(activation="relu")  # not smooth: ∇E would jump
    with pytest.raises(ValueError, match="confinement"):
        EnergyMLP(confinement=-1.0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        free(torch.randn(5, 2))


def test_energy_and_gradient_and_score_of_a_quadratic():
    model = QuadraticEnergy()
    x = torch.randn(6, 2, generator=seeded(), dtype=torch.float64)
    with torch.no_grad():  # works under no_grad too
        energy, gradient = energy_and_gradient(model, x)
    centred = x - model.mu.detach()
    torch.testing.assert_close(gradient, centred @ model.a.detach())
    torch.testing.assert_close(energy, 0.5 * ((centred @ model.a.detach()) * centred).sum(-1))
    assert all(p.grad is None for p in model.parameters())  # the parameters' gradients are untouched


# --- log Z: quadrature and its gradient --------------------------------------------------------------------------


def test_quadrature_log_partition_of_a_gaussian_matches_the_closed_form():
    model = QuadraticEnergy().requires_grad_(False)
    exact = float(model.log_partition())
    out = log_partition_by_quadrature(energy_fn(model), WIDE, grid_size=128)
    assert abs(float(out.log_partition) - exact) < 1e-6
    assert out.error_estimate < 1e-6 and out.border_ratio < 1e-6 and out.grid_size == 128 and out.bounds == WIDE
    # On a coarse grid the stated error (the change from the half grid) bounds the true error.
    coarse = log_partition_by_quadrature(energy_fn(model), WIDE, grid_size=16)
    assert 1e-5 < abs(float(coarse.log_partition) - exact) <= coarse.error_estimate


def test_quadrature_refuses_a_grid_that_misses_mass_and_bad_arguments():
    model = QuadraticEnergy()
    with pytest.raises(ValueError, match="does not cover"):
        log_partition_by_quadrature(energy_fn(model), ((-3.0, 3.0), (-3.0, 3.0)), grid_size=64)
    with pytest.raises(ValueError, match="does not cover"):
        log_partition_by_quadrature(energy_fn(model))  # [−6, 6]²: 4.5σ from the mean, density ratio 4e-5 at the edge
    for grid_size in (7, 2, 64.0):
        with pytest.raises(ValueError, match="grid_size"):
            log_partition_by_quadrature(energy_fn(model), WIDE, grid_size=grid_size)
    with pytest.raises(ValueError, match="bounds"):
        log_partition_by_quadrature(energy_fn(model), ((1.0, -1.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="finite"):
        log_partition_by_quadrature(lambda x: torch.full((x.shape[0],), float("nan")), WIDE, grid_size=8)


def test_quadrature_grid_cells():
    points, area = quadrature_grid(((0.0, 2.0), (-1.0, 1.0)), 4)
    assert points.shape == (16, 2) and area == pytest.approx(0.25)
    torch.testing.assert_close(points[:4, 0], torch.tensor([0.25, 0.75, 1.25, 1.75], dtype=torch.float64))
    torch.testing.assert_close(points[::4, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75], dtype=torch.float64))


def test_gradient_of_log_partition_of_a_gaussian_matches_the_closed_form():
    # log Z = log 2π − ½ log det A: ∂/∂A = −½ A⁻¹ = −E_p[∂E/∂A] = −½ Σ, and ∂/∂μ = 0.
    model = QuadraticEnergy()
    log_partition_by_quadrature(energy_fn(model), WIDE, grid_size=128).log_partition.backward()
    torch.testing.assert_close(model.a.grad, -0.5 * model.covariance(), atol=1e-9, rtol=0)
    torch.testing.assert_close(model.mu.grad, torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0)


def test_gradient_of_log_partition_is_minus_the_expected_energy_gradient():
    # The course's identity ∇_θ log Z = −E_p[∇_θ E] on an MLP energy: a central finite difference of log Z along a
    # random parameter direction against the p-weighted average of ∇_θ E over the grid.
    torch.manual_seed(1)
    model = EnergyMLP(dim=2, hidden_size=8, num_layers=2, confinement=1.0).double()
    bounds, n = ((-8.0, 8.0), (-8.0, 8.0)), 128
    direction = [torch.randn_like(p) for p in model.parameters()]

    def log_z_at(shift):
        with torch.no_grad():
            for p, d in zip(model.parameters(), direction, strict=True):
                p.add_(shift * d)
            value = float(log_partition_by_quadrature(energy_fn(model), bounds, n).log_partition)
            for p, d in zip(model.parameters(), direction, strict=True):
                p.sub_(shift * d)
        return value

    h = 1e-5
    finite_difference = (log_z_at(h) - log_z_at(-h)) / (2 * h)
    points, _ = quadrature_grid(bounds, n)
    with torch.no_grad():
        weights = torch.softmax(-model(points).energy, 0)
    model.zero_grad()
    (weights * model(points).energy).sum().backward()  # E_p[E] with p held fixed: its gradient is E_p[∇_θ E]
    expected_gradient = sum((p.grad * d).sum() for p, d in zip(model.parameters(), direction, strict=True))
    assert abs(finite_difference) > 1e-2
    assert finite_difference == pytest.approx(-float(expected_gradient), rel=1e-6)


# --- the maximum-likelihood loss ---------------------------------------------------------------------------------


def test_loss_gradient_with_exact_samples_is_minus_the_log_likelihood_gradient():
    model = QuadraticEnergy()
    data = torch.randn(40, 2, generator=seeded(2), dtype=torch.float64) * 1.3 + torch.tensor([1.0, 0.0]).double()
    # Exact gradient of ℓ(θ) = mean(−E(data)) − log Z(θ), log Z in closed form.
    model.zero_grad()
    (-model(data, return_dict=False)[0].mean() - model.log_partition()).backward()
    exact = flat_grad(model).clone()
    # −∇L with L = mean E(data) − mean E(x⁻), x⁻ exact samples of p_θ, over 20 batches of 20,000.
    estimates = []
    for batch in range(20):
        model.zero_grad()
        samples = model.sample_exact(20_000, seeded(100 + batch))
        maximum_likelihood_loss(model, data, samples).loss.backward()
        estimates.append(-flat_grad(model))
    estimates = torch.stack(estimates)
    standard_error = estimates.std(0) / math.sqrt(20)
    assert torch.all((estimates.mean(0) - exact).abs() < 5 * standard_error + 1e-12)
    assert (exact.abs() / standard_error).max() > 20  # the gradient is far from zero: the test can fail


def test_loss_value_with_regularisation():
    model = QuadraticEnergy()
    data = torch.randn(7, 2, generator=seeded(3), dtype=torch.float64)
    samples = torch.randn(5, 2, generator=seeded(4), dtype=torch.float64)
    with torch.no_grad():
        e_data, e_samples = model(data, return_dict=False)[0], model(samples, return_dict=False)[0]
    out = maximum_likelihood_loss(model, data, samples, regularization=0.1)
    expected = e_data.mean() - e_samples.mean() + 0.1 * (e_data.square().mean() + e_samples.square().mean())
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.data_energy, e_data.mean())
    torch.testing.assert_close(out.sample_energy, e_samples.mean())
    with pytest.raises(ValueError, match="regularization"):
        maximum_likelihood_loss(model, data, samples, regularization=-1.0)
    with pytest.raises(ValueError, match="samples"):
        maximum_likelihood_loss(model, data, torch.zeros(3, 3, dtype=torch.float64))


# --- replay buffer ------------------------------------------------------------------------------------------------


def test_replay_buffer_is_deterministic_and_round_trips_its_state():
    a, b = ReplayBuffer(50, 2, generator=seeded(5)), ReplayBuffer(50, 2, generator=seeded(5))
    torch.testing.assert_close(a.chains, b.chains)
    assert float(a.chains.min()) >= -4 and float(a.chains.max()) <= 4
    ga, gb = seeded(6), seeded(6)
    for _ in range(3):
        batch_a, batch_b = a.sample(10, ga), b.sample(10, gb)
        torch.testing.assert_close(batch_a.samples, batch_b.samples)
        a.update(batch_a.indices, batch_a.samples + 100.0)
        b.update(batch_b.indices, batch_b.samples + 100.0)
    state = a.state_dict()
    assert set(state) == {"chains"} and isinstance(state["chains"], torch.Tensor)
    restored = ReplayBuffer(50, 2, generator=seeded(99))
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.chains, a.chains)
    torch.testing.assert_close(restored.sample(10, seeded(7)).samples, a.sample(10, seeded(7)).samples)
    with pytest.raises(ValueError, match="chains"):
        restored.load_state_dict({"chains": torch.zeros(3, 2)})


def test_replay_buffer_restarts_the_requested_fraction_from_noise():
    buffer = ReplayBuffer(1000, 2, reinit_fraction=0.0, generator=seeded(8))
    buffer.update(torch.arange(1000), torch.full((1000, 2), 50.0))  # all chains far outside the noise box
    kept = buffer.sample(200, seeded(9))
    assert len(set(kept.indices.tolist())) == 200 and not kept.reinitialized.any()
    torch.testing.assert_close(kept.samples, torch.full((200, 2), 50.0))
    buffer.reinit_fraction = 0.3
    batch = buffer.sample(1000, seeded(10))
    restarted = batch.samples.abs().max(1).values <= 4.0
    torch.testing.assert_close(restarted, batch.reinitialized)
    assert abs(float(batch.reinitialized.double().mean()) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 1000)
    with pytest.raises(ValueError, match="batch_size"):
        buffer.sample(1001, seeded())
    with pytest.raises(ValueError, match="reinit_fraction"):
        ReplayBuffer(10, 2, reinit_fraction=1.5)
    with pytest.raises(ValueError, match="low"):
        ReplayBuffer(10, 2, low=1.0, high=-1.0)


def test_a_diverging_chain_names_the_step():
    with pytest.raises(FloatingPointError, match="step 2 of 5"):
        langevin_chain(QuadraticEnergy(), torch.ones(3, 2, dtype=torch.float64), LangevinScheduler(1e200), 5)


# --- Langevin and MALA schedulers ------------------------------------------------------------------------------------

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


class TestLangevinScheduler(SchedulerConformance):
    scheduler_class = LangevinScheduler
    scheduler_kwargs = {"step_size": 0.03}

    def model_output(self, sample, t):
        return -sample  # the score of N(0, I)


class TestMALAScheduler(TestLangevinScheduler):
    # A MALA step also takes the energy at `sample` (for its Metropolis test): E(x) = ½‖x‖², whose score is −x.
    scheduler_class = MALAScheduler
    scheduler_kwargs = {"step_size": 0.3}

    def call_step(self, scheduler, sample, t, generator):
        energy = 0.5 * sample.square().sum(dim=1)
        return scheduler.step(self.model_output(sample, t), t, sample, generator=generator, energy=energy)


# --- pipeline ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["langevin", "mala"])
def test_pipeline_same_generator_same_samples_and_round_trip(sampler, tmp_path):
    pipe = tiny_energy_pipeline(sampler)
    out = pipe(num_samples=8, num_inference_steps=5, generator=seeded(11))
    assert isinstance(out, EnergyPipelineOutput) and out.samples.shape == (8, 2)
    assert out.nfe == (5 if sampler == "langevin" else 10)
    assert (out.acceptance_rate is None) == (sampler == "langevin")
    torch.testing.assert_close(pipe(num_samples=8, num_inference_steps=5, generator=seeded(11)).samples, out.samples)
    assert not torch.equal(pipe(num_samples=8, num_inference_steps=5, generator=seeded(12)).samples, out.samples)
    pipe.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model" / "diffusion_pytorch_model.safetensors").is_file()
    for loaded in (
        EnergyPipeline.from_pretrained(tmp_path / "saved"),
        HfgenPipeline.from_pretrained(tmp_path / "saved"),
    ):
        assert isinstance(loaded, EnergyPipeline) and type(loaded.scheduler) is type(pipe.scheduler)
        loaded.set_progress_bar_config(disable=True)
        again = loaded(num_samples=8, num_inference_steps=5, generator=seeded(11)).samples
        torch.testing.assert_close(again, out.samples, rtol=0, atol=0)
    publish_to_local_hub_cache(tmp_path / "saved", f"hfgen-tests/ebm-{sampler}")
    from_hub = EnergyPipeline.from_pretrained(f"hfgen-tests/ebm-{sampler}")
    from_hub.set_progress_bar_config(disable=True)
    torch.testing.assert_close(
        from_hub(num_samples=8, num_inference_steps=5, generator=seeded(11)).samples, out.samples
    )


def test_pipeline_saves_its_start_box(tmp_path):
    torch.manual_seed(0)
    pipe = EnergyPipeline(
        EnergyMLP(dim=2, hidden_size=8, num_layers=1), LangevinScheduler(), start_low=1.0, start_high=2.0
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path)
    loaded = EnergyPipeline.from_pretrained(tmp_path)
    assert (loaded.config.start_low, loaded.config.start_high) == (1.0, 2.0)
    trajectory = loaded(num_samples=50, num_inference_steps=1, generator=seeded(), return_trajectory=True).trajectory
    assert float(trajectory[0].min()) >= 1.0 and float(trajectory[0].max()) <= 2.0
    with pytest.raises(ValueError, match="start_low"):
        EnergyPipeline(EnergyMLP(dim=2), LangevinScheduler(), start_low=2.0, start_high=1.0)
    with pytest.raises(TypeError, match="scheduler"):
        EnergyPipeline(EnergyMLP(dim=2), None)


def test_pipeline_return_dict_output_types_and_trajectory():
    pipe = tiny_energy_pipeline()
    out = pipe(num_samples=4, num_inference_steps=3, generator=seeded(13), return_trajectory=True)
    assert out.trajectory.shape == (4, 4, 2)
    torch.testing.assert_close(out.trajectory[-1], out.samples)
    samples, trajectory, nfe, rate = pipe(
        num_samples=4, num_inference_steps=3, generator=seeded(13), return_trajectory=True, return_dict=False
    )
    torch.testing.assert_close(samples, out.samples)
    assert nfe == 3 and rate is None
    array = pipe(num_samples=4, num_inference_steps=3, generator=seeded(13), output_type="np")
    assert isinstance(array.samples, np.ndarray)
    np.testing.assert_allclose(array.samples, out.samples.numpy())
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_samples=4, num_inference_steps=3, output_type="pil")


def test_pipeline_step_size_override_and_start_samples():
    pipe = tiny_energy_pipeline(step_size=0.05)
    start = torch.randn(6, 2, generator=seeded(14))
    out = pipe(num_inference_steps=4, step_size=0.2, generator=seeded(15), start_samples=start)
    expected = langevin_chain(pipe.model, start, LangevinScheduler(step_size=0.2), 4, seeded(15)).sample
    torch.testing.assert_close(out.samples, expected)
    assert pipe.scheduler.config.step_size == 0.05  # the override does not change the pipeline's scheduler
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="step_size"):
            pipe(num_samples=2, num_inference_steps=2, step_size=bad)
    with pytest.raises(ValueError, match="start_samples"):
        pipe(num_inference_steps=2, start_samples=torch.zeros(3, 3))


@pytest.mark.parametrize(("argument", "value"), [("num_samples", 0), ("num_samples", 1.5), ("num_inference_steps", 0)])
def test_pipeline_refuses_bad_counts(argument, value):
    kwargs = {"num_samples": 2, "num_inference_steps": 2, argument: value}
    with pytest.raises((ValueError, TypeError), match=argument):
        tiny_energy_pipeline()(**kwargs)


def test_pipeline_stops_a_nan_chain_naming_the_step():
    pipe = EnergyPipeline(QuadraticEnergy(), LangevinScheduler(step_size=1e200))
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(FloatingPointError, match="step 2"):
        pipe(num_inference_steps=5, start_samples=torch.ones(3, 2, dtype=torch.float64))


def test_pipeline_score_and_log_prob_of_a_gaussian():
    model = QuadraticEnergy()
    pipe = EnergyPipeline(model, MALAScheduler())
    x = torch.randn(5, 2, generator=seeded(16), dtype=torch.float64)
    torch.testing.assert_close(pipe.score(x), -(x - model.mu.detach()) @ model.a.detach())
    torch.testing.assert_close(pipe.energy(x), model(x, return_dict=False)[0].detach())
    reference = torch.distributions.MultivariateNormal(model.mu.detach(), covariance_matrix=model.covariance())
    log_p = pipe.log_prob(x, bounds=WIDE, grid_size=128)
    torch.testing.assert_close(log_p, reference.log_prob(x), atol=1e-6, rtol=0)
    z = pipe.log_partition(bounds=WIDE, grid_size=128)
    assert z.error_estimate < 1e-6
    with pytest.raises(ValueError, match="does not cover"):
        pipe.log_prob(x)  # the default [−6, 6]² is too small for this Gaussian
    three_d = EnergyPipeline(EnergyMLP(dim=3, hidden_size=4, num_layers=1), LangevinScheduler())
    with pytest.raises(ValueError, match="2-D"):
        three_d.log_prob(torch.zeros(2, 3))


class TestEnergyPipeline(PipelineConformance):
    pipeline_class = EnergyPipeline
    kind = "energy"
    tiny = staticmethod(tiny_energy_pipeline)
    other_schedulers = (lambda: LangevinScheduler(step_size=0.05),)  # ULA beside get_pipeline's MALA
    call_kwargs = {"num_samples": 6, "num_inference_steps": 3}
    output_type_kwargs = {"return_trajectory": True}

    def get_pipeline(self):
        return tiny_energy_pipeline("mala")

    def float64_call(self, pipeline, dtype):
        return pipeline.score(torch.randn(4, 2, generator=seeded()).to(dtype))
