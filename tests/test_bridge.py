"""γ-step Schrödinger bridge: scheduler maths, mean matching, IPF against the Gaussian closed form, pipeline."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conformance import seeded
from factories import (
    COV0,
    COV1,
    MEAN0,
    MEAN1,
    gaussian_sampler,
    population_dsb_ipf,
    reset_accelerate,
    tiny_bridge_pipeline,
)

from hfgen import (
    BridgeScheduler,
    GaussianSchrodingerBridge,
    HfgenPipeline,
    SchrodingerBridgePipeline,
    StepwiseAffineMean,
)
from hfgen.data import Shifted, TwoBalls
from hfgen.methods.schrodinger_bridge import (
    mean_matching_loss,
    mean_matching_targets,
    reference_mean,
    simulate_chain,
    step_weights,
)
from hfgen.models import TimeMLP
from hfgen.training import SchrodingerBridgeArguments, SchrodingerBridgeTask, Trainer


class AffineBridgeTask(SchrodingerBridgeTask):
    """The shipped bridge task with StepwiseAffineMean networks between two Gaussians (N(MEAN0, COV0) at X_0 and
    N(MEAN1, COV1) at X_N), trained by the shipped Trainer; ``num_phases`` keeps the first phases of the plan."""

    def __init__(self, args, num_phases=None):
        super().__init__(args)
        self.source = SimpleNamespace(dim=2, sample=gaussian_sampler(MEAN0, COV0))
        self.target = SimpleNamespace(dim=2, sample=gaussian_sampler(MEAN1, COV1))
        self.num_phases = num_phases

    def build_models(self):
        self.models = {d: StepwiseAffineMean(dim=2, num_steps=self.args.num_steps) for d in ("forward", "backward")}
        return self.models

    def phases(self):
        return super().phases()[: self.num_phases]

    def pipeline(self, forward, backward):
        return forward, backward

    def evaluate(self, trainer, pipeline, num_samples, num_likelihood_points, seed):
        return {}, None


def train_affine_bridge(tmp_path, num_phases=None, **overrides):
    """Run the Trainer on :class:`AffineBridgeTask`: full-cache Adam fits of the affine means."""
    settings = {
        "output_dir": str(tmp_path), "num_steps": 5, "gamma": 0.2, "schedule": "constant", "ipf_iterations": 1,
        "half_iteration_steps": 300, "train_batch_size": 4096, "num_trajectories": 20_000, "refresh_every": 10**6,
        "learning_rate": 0.05, "lr_warmup_steps": 0, "loss_weighting": "none", "checkpointing_steps": 0,
        "validation_steps": 0, "plots": False, "report_to": "none", **overrides,
    }  # fmt: skip
    task = AffineBridgeTask(SchrodingerBridgeArguments(**settings), num_phases)
    trainer = Trainer(task)
    trainer.train()
    trainer.end()
    reset_accelerate()
    return task


def affine_chain_moments(model, mean, cov, gammas):
    """Exact mean, covariance and Cov(X_0, X_N) of the forward chain of a StepwiseAffineMean from N(mean, cov)."""
    mean, cov = torch.tensor(mean, dtype=torch.float64), torch.tensor(cov, dtype=torch.float64)
    cross, eye = cov.clone(), torch.eye(len(mean), dtype=torch.float64)
    for k in range(len(gammas)):
        w, d = model.weight[k].detach().double(), model.bias[k].detach().double()
        mean, cov, cross = w @ mean + d, w @ cov @ w.T + 2 * float(gammas[k]) * eye, cross @ w.T
    return mean, cov, cross


# --- scheduler ---------------------------------------------------------------------------------------------------


def test_constant_schedule_defaults_to_gamma_two_over_n():
    scheduler = BridgeScheduler()
    assert scheduler.num_steps == 20 and torch.allclose(scheduler.gammas, torch.full((20,), 0.1, dtype=torch.float64))
    assert scheduler.total_time == pytest.approx(2.0) and scheduler.reference_variance == pytest.approx(4.0)
    torch.testing.assert_close(scheduler.times, torch.linspace(0, 2, 21, dtype=torch.float64))


@pytest.mark.parametrize("num_steps", [1, 2, 7, 20])
def test_symmetric_schedule_keeps_the_total_and_rises_then_falls(num_steps):
    scheduler = BridgeScheduler(num_steps=num_steps, gamma=0.05, schedule="symmetric")
    gammas = scheduler.gammas
    assert gammas.sum().item() == pytest.approx(num_steps * 0.05)
    torch.testing.assert_close(gammas, gammas.flip(0))
    half = gammas[: (num_steps + 1) // 2]
    assert (half.diff() > 0).all()
    if num_steps == 20:
        assert gammas.max() / gammas.min() == pytest.approx(10.0)


@pytest.mark.parametrize("power", [0.0, 1.0, 2.0])
def test_schedule_power_shapes_the_symmetric_ramp(power):
    # γ_k ∝ min(k + 1, N − k)^p with Σ_k γ_k = N γ: for N = 4 the ramp is 1, 2, 2, 1
    scheduler = BridgeScheduler(num_steps=4, gamma=0.1, schedule="symmetric", schedule_power=power)
    weights = torch.tensor([1.0, 2.0**power, 2.0**power, 1.0], dtype=torch.float64)
    torch.testing.assert_close(scheduler.gammas, 0.4 * weights / weights.sum())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": "symmetric", "schedule_power": -1.0}, "schedule_power"),
        ({"schedule": "symmetric", "schedule_power": float("nan")}, "schedule_power"),
        ({"schedule": "constant", "schedule_power": 2.0}, "constant"),
    ],
)
def test_bad_schedule_power_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BridgeScheduler(num_steps=4, **kwargs)


def test_step_adds_exactly_sqrt_two_gamma_noise_and_runs_both_directions():
    scheduler = BridgeScheduler(num_steps=3, gamma=0.2, schedule="symmetric")
    mean = torch.randn(5, 2)
    for direction, expected in (("forward", [0, 1, 2]), ("backward", [3, 2, 1])):
        scheduler.set_timesteps(direction=direction)
        assert scheduler.timesteps.tolist() == expected
        generator, replay = seeded(1), seeded(1)
        for t in scheduler.timesteps:
            step = int(t) if direction == "forward" else int(t) - 1  # step k joins X_k and X_{k+1}
            out = scheduler.step(mean, t, mean, generator=generator)
            assert torch.equal(out.mean, mean)
            # the noise is √(2γ_k) Z with Z drawn from the generator
            expected = mean + math.sqrt(2 * float(scheduler.gammas[step])) * torch.randn(5, 2, generator=replay)
            torch.testing.assert_close(out.prev_sample, expected)


def test_final_step_noise_off_returns_the_mean_at_the_last_step():
    scheduler = BridgeScheduler(num_steps=2, final_step_noise=False)
    scheduler.set_timesteps(direction="forward")
    mean = torch.ones(3, 2)
    assert not torch.equal(scheduler.step(mean, 0, mean, generator=seeded()).prev_sample, mean)
    assert torch.equal(scheduler.step(mean, 1, mean, generator=seeded()).prev_sample, mean)


def test_scheduler_errors():
    for kwargs, error, match in (
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"num_steps": 2.5}, ValueError, "num_steps"),
        ({"gamma": 0.0}, ValueError, "gamma"),
        ({"gamma": -0.1}, ValueError, "gamma"),
        ({"schedule": "cosine"}, ValueError, "schedule"),
        ({"final_step_noise": 1}, TypeError, "final_step_noise"),
    ):
        with pytest.raises(error, match=match):
            BridgeScheduler(**kwargs)
    scheduler = BridgeScheduler(num_steps=3)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler.step(torch.zeros(1, 2), 0, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="direction"):
        scheduler.set_timesteps(direction="sideways")
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(5)
    scheduler.set_timesteps(direction="forward")
    with pytest.raises(ValueError, match="next timestep"):
        scheduler.step(torch.zeros(1, 2), 2, torch.zeros(1, 2))


# --- reference chains and mean matching ---------------------------------------------------------------------------


def test_brownian_reference_ends_with_variance_sigma_squared():
    scheduler = BridgeScheduler(num_steps=10, gamma=0.1)
    start = torch.zeros(40_000, 2)
    trajectory = simulate_chain(reference_mean(scheduler, "forward"), start, scheduler, "forward", seeded())
    assert trajectory.shape == (11, 40_000, 2) and torch.equal(trajectory[0], start)
    # Var(X_N) = 2 Σγ = 2; the sample variance has relative std √(2/n) = 0.7 %
    torch.testing.assert_close(trajectory[-1].var(0), torch.full((2,), 2.0), rtol=0.03, atol=0)
    backward = simulate_chain(reference_mean(scheduler, "backward"), start, scheduler, "backward", seeded())
    assert torch.equal(backward[-1], start)  # states come back in index order: X_N = start is last


def test_ornstein_uhlenbeck_reference_keeps_the_standard_gaussian():
    scheduler = BridgeScheduler(num_steps=10, gamma=0.2, schedule="symmetric")
    trajectory = simulate_chain(
        reference_mean(scheduler, "backward", "ornstein_uhlenbeck"), torch.randn(40_000, 2, generator=seeded(1)),
        scheduler, "backward", seeded(2),
    )  # fmt: skip
    torch.testing.assert_close(trajectory.var(1), torch.ones(11, 2), rtol=0.04, atol=0)
    with pytest.raises(ValueError, match="γ_k < 1/2"):
        reference_mean(BridgeScheduler(num_steps=2, gamma=0.6), "forward", "ornstein_uhlenbeck")
    with pytest.raises(ValueError, match="kind"):
        reference_mean(scheduler, "forward", "langevin")


def test_mean_matching_targets_for_a_known_linear_forward_map():
    # F_k(x) = A x + c for every k: the backward target at state k + 1 is X_{k+1} + A (X_k − X_{k+1}).
    a, c = torch.tensor([[0.9, 0.1], [-0.2, 0.8]]), torch.tensor([0.3, -0.1])
    scheduler = BridgeScheduler(num_steps=4, gamma=0.1)

    def forward(x, timestep):
        return x @ a.T + c

    trajectory = simulate_chain(forward, torch.randn(6, 2, generator=seeded()), scheduler, "forward", seeded(1))
    inputs, timesteps, targets = mean_matching_targets(trajectory, forward, "backward")
    assert inputs.shape == (24, 2) and timesteps.tolist() == [k + 1.0 for k in range(4) for _ in range(6)]
    x_k, x_next = trajectory[:-1].reshape(-1, 2), trajectory[1:].reshape(-1, 2)
    torch.testing.assert_close(inputs, x_next)
    torch.testing.assert_close(targets, x_next + (x_k - x_next) @ a.T)
    # and for the forward network, given a backward map B(x) = A x + c: target X_k + A (X_{k+1} − X_k)
    inputs, timesteps, targets = mean_matching_targets(trajectory, forward, "forward")
    assert timesteps.tolist() == [float(k) for k in range(4) for _ in range(6)]
    torch.testing.assert_close(targets, x_k + (x_next - x_k) @ a.T)
    # the Brownian reference gives the plain regression of X_k on X_{k+1}
    _, _, targets = mean_matching_targets(trajectory, reference_mean(scheduler, "forward"), "backward")
    torch.testing.assert_close(targets, x_k)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_step_weights_divide_by_the_step_size_of_each_pair(direction):
    scheduler = BridgeScheduler(num_steps=4, gamma=0.1, schedule="symmetric")  # γ_k = 0.4 (1, 2, 2, 1) / 6
    trajectory = simulate_chain(lambda x, t: 0.5 * x, torch.randn(3, 2, generator=seeded()), scheduler, "forward")
    inputs, timesteps, targets = mean_matching_targets(trajectory, lambda x, t: 0.5 * x, direction)
    weights = step_weights(scheduler, timesteps, direction)
    # pairs come step-major, k = 0 … 3, three trajectories each; γ̄ / γ_k = (6 / 4) / (1, 2, 2, 1)
    torch.testing.assert_close(weights, torch.tensor([1.5, 0.75, 0.75, 1.5]).repeat_interleave(3))
    assert weights.mean().item() == pytest.approx(1.125)  # γ̄ · mean(1 / γ_k) ≥ 1
    model = TimeMLP(dim=2, hidden_size=8, num_layers=1, time_scale=1.0)
    errors = (model(inputs, timesteps, return_dict=False)[0] - targets).square().sum(1)
    torch.testing.assert_close(
        mean_matching_loss(model, inputs, timesteps, targets, weights), (weights * errors).mean()
    )
    torch.testing.assert_close(mean_matching_loss(model, inputs, timesteps, targets), errors.mean())


def test_first_half_iteration_learns_the_exact_gaussian_time_reversal(tmp_path):
    # Brownian chain from N(m, S): V_k = S + 2 t_k I and E[X_k | X_{k+1} = y] = m + V_k V_{k+1}^{-1} (y − m).
    task = train_affine_bridge(tmp_path, num_phases=1)  # IPF's first half-iteration: b against the reference
    model, scheduler = task.models["backward"], task.scheduler
    cov0, eye, mean0 = torch.tensor(COV0), torch.eye(2), torch.tensor(MEAN0)
    for k in range(5):
        v_k, v_next = cov0 + 2 * float(scheduler.times[k]) * eye, cov0 + 2 * float(scheduler.times[k + 1]) * eye
        gain = v_k @ torch.linalg.inv(v_next)
        # least-squares error of a per-step regression with 20 000 points: about 0.01
        torch.testing.assert_close(model.weight[k + 1].detach(), gain, atol=0.04, rtol=0)
        torch.testing.assert_close(model.bias[k + 1].detach(), mean0 - gain @ mean0, atol=0.04, rtol=0)
    assert torch.equal(task.models["forward"].weight.detach(), torch.eye(2).repeat(6, 1, 1))  # not trained yet


def test_the_diffusion_stage_turns_the_standard_gaussian_into_the_data_up_to_an_order_gamma_bias(tmp_path):
    # Σγ = 2 in both runs; mean matching is accurate to O(γ) (the OU mean √(1 − 2γ) x is not close to x when γ is
    # large), and OU noising keeps Π(1 − 2γ_k) ≈ 1 % of the data.
    errors = []
    for num_steps in (10, 40):
        task = train_affine_bridge(
            tmp_path / str(num_steps), num_phases=1, stage="diffusion", num_steps=num_steps, gamma=None,
            num_trajectories=8000, train_batch_size=8000, half_iteration_steps=400,
        )  # fmt: skip
        mean, cov, _ = affine_chain_moments(
            task.models["forward"], [0.0, 0.0], torch.eye(2).tolist(), task.scheduler.gammas
        )
        errors.append([(mean - torch.tensor(MEAN1)).abs().max(), (cov - torch.tensor(COV1)).abs().max()])
    coarse, fine = torch.tensor(errors[0]), torch.tensor(errors[1])
    assert (fine < 0.1).all()
    assert (fine < coarse / 2.5).all()  # 4× smaller steps: about 4× smaller errors


def test_simulate_chain_checks_its_direction():
    scheduler = BridgeScheduler(num_steps=4)
    with pytest.raises(ValueError, match="direction"):
        simulate_chain(lambda x, t: x, torch.zeros(3, 2), scheduler, "up")


# --- the Gaussian oracle -------------------------------------------------------------------------------------------


def test_closed_form_in_one_dimension():
    # maximising the Gaussian entropy term gives c² + σ² c − a²b² = 0: c = (√(σ⁴ + 4a²b²) − σ²) / 2
    a, b, s2 = 1.5, 0.7, 0.8
    bridge = GaussianSchrodingerBridge([0.0], [[a**2]], [1.0], [[b**2]], s2)
    assert bridge.cross_covariance.item() == pytest.approx((math.sqrt(s2**2 + 4 * a**2 * b**2) - s2) / 2, rel=1e-12)


def test_closed_form_has_the_gibbs_precision_and_the_right_limits():
    generator = seeded(3)
    m0, m1 = torch.randn(3, 3, generator=generator, dtype=torch.float64), torch.randn(3, 3, generator=generator)
    cov0, cov1 = m0 @ m0.T + 0.1 * torch.eye(3, dtype=torch.float64), (m1 @ m1.T).double() + 0.2 * torch.eye(3)
    s2 = 0.9
    bridge = GaussianSchrodingerBridge(torch.zeros(3), cov0, torch.ones(3), cov1, s2)
    precision = torch.linalg.inv(bridge.joint_covariance)
    torch.testing.assert_close(precision[:3, 3:], -torch.eye(3, dtype=torch.float64) / s2, atol=1e-10, rtol=0)
    # σ → 0: the OT (Monge) coupling, X_N = T X_0 with T = Σ0^{-1/2} (Σ0^{1/2} Σ1 Σ0^{1/2})^{1/2} Σ0^{-1/2}
    from hfgen.methods.schrodinger_bridge import _symmetric_sqrt

    root, inv_root = _symmetric_sqrt(cov0), _symmetric_sqrt(cov0, inverse=True)
    monge = inv_root @ _symmetric_sqrt(root @ cov1 @ root) @ inv_root
    small = GaussianSchrodingerBridge(torch.zeros(3), cov0, torch.ones(3), cov1, 1e-6)
    torch.testing.assert_close(small.cross_covariance, cov0 @ monge.T, atol=1e-5, rtol=0)
    # σ → ∞: independence
    assert GaussianSchrodingerBridge(torch.zeros(3), cov0, torch.ones(3), cov1, 1e6).cross_covariance.abs().max() < 1e-5
    x0, x1 = bridge.sample(200_000, seeded(5))
    empirical = torch.cov(torch.cat([x0, x1], 1).T)
    torch.testing.assert_close(empirical, bridge.joint_covariance, atol=0.05, rtol=0)


def test_closed_form_matches_sinkhorn_on_gaussian_samples():
    from hfgen.methods.couplings import sinkhorn_plan

    n, s2 = 800, 2.0
    x0, x1 = gaussian_sampler(MEAN0, COV0)(n, seeded(6)), gaussian_sampler(MEAN1, COV1)(n, seeded(7))
    plan = sinkhorn_plan(x0, x1, reg=2 * s2)  # entropic OT with cost ‖x − y‖² and ε = 2σ²
    a, b = (x0 - x0.mean(0)).double(), (x1 - x1.mean(0)).double()
    cross = a.T @ plan @ b
    # closed form for the empirical covariances of the samples, so that only the plan's own sampling error is left
    bridge = GaussianSchrodingerBridge(MEAN0, torch.cov(a.T), MEAN1, torch.cov(b.T), s2)
    torch.testing.assert_close(cross, bridge.cross_covariance, atol=0.03, rtol=0)


def test_dsb_ipf_on_gaussian_moments_converges_to_the_closed_form_as_gamma_vanishes():
    # IPF with exact least squares on exact moments: what fit_direction does with infinitely many trajectories.
    bridge = GaussianSchrodingerBridge(MEAN0, COV0, MEAN1, COV1, 2.0)
    errors = []
    for n in (20, 160):  # γ = 2 / (2n): the same σ² = 2 Σγ = 2
        mean, cov, cross = population_dsb_ipf(MEAN0, COV0, MEAN1, COV1, torch.full((n,), 1.0 / n), 3)
        errors.append(
            [
                (mean - bridge.mean1).abs().max(),
                (cov - bridge.cov1).abs().max(),
                (cross - bridge.cross_covariance).abs().max(),
            ]
        )
    coarse, fine = torch.tensor(errors[0]), torch.tensor(errors[1])
    assert (fine < torch.tensor([0.01, 0.01, 0.01])).all()  # measured 0.007, 0.006, 0.006
    assert (fine[:2] < coarse[:2] / 5).all()  # O(γ): 8× smaller steps, 7–8× smaller bias


@pytest.mark.slow
def test_ipf_with_affine_means_recovers_the_closed_form_gaussian_bridge(tmp_path):
    # N = 20 steps of γ = 0.05 (σ² = 2 Σγ = 2), 3 IPF iterations, 8000 trajectories per half-iteration, trained by
    # the shipped Trainer (full-cache Adam on each half-iteration).
    task = train_affine_bridge(
        tmp_path, num_steps=20, gamma=0.05, ipf_iterations=3, num_trajectories=8000, train_batch_size=8000,
        half_iteration_steps=400,
    )  # fmt: skip
    forward, backward, scheduler = task.models["forward"], task.models["backward"], task.scheduler
    bridge = GaussianSchrodingerBridge(MEAN0, COV0, MEAN1, COV1, scheduler.reference_variance)
    learned = affine_chain_moments(forward, MEAN0, COV0, scheduler.gammas)
    population = population_dsb_ipf(MEAN0, COV0, MEAN1, COV1, scheduler.gammas, 3)
    exact = (bridge.mean1, bridge.cov1, bridge.cross_covariance)
    # Tolerance = discretisation bias of DSB at this γ (population − exact: 0.055, 0.050, 0.019) + Monte-Carlo
    # error of the fitted maps (learned − population: ≤ 0.02 over 5 seeds at 8000 trajectories; allow 0.05).
    for name, got, limit, truth in zip(("mean", "cov", "cross-cov"), learned, population, exact, strict=True):
        assert (got - limit).abs().max() < 0.05, name
        assert (got - truth).abs().max() < (limit - truth).abs().max() + 0.05, name
    # the coupling is neither independent nor the OT one: C ≈ [[0.24, 0.06], [0.03, 0.24]]
    assert learned[2].diagonal().min() > 0.15
    # the pipeline with the learned pair transports with these moments (20 000 samples: ±0.02)
    pipe = SchrodingerBridgePipeline(forward, backward, BridgeScheduler(num_steps=20, gamma=0.05))
    pipe.set_progress_bar_config(disable=True)
    x0 = gaussian_sampler(MEAN0, COV0)(20_000, seeded(1))
    x_n = pipe.transport(x0, "forward", generator=seeded(2)).double()
    torch.testing.assert_close(x_n.mean(0), learned[0], atol=0.04, rtol=0)
    torch.testing.assert_close(torch.cov(x_n.T), learned[1], atol=0.06, rtol=0)
    cross = (x0.double() - x0.double().mean(0)).T @ (x_n - x_n.mean(0)) / len(x0)
    torch.testing.assert_close(cross, learned[2], atol=0.04, rtol=0)
    back = pipe.transport(gaussian_sampler(MEAN1, COV1)(20_000, seeded(3)), "backward", generator=seeded(4))
    # the backward chain carries its own O(γ) bias (0.14 measured on the mean): a coarse check of direction
    torch.testing.assert_close(back.double().mean(0), bridge.mean0, atol=0.2, rtol=0)


# --- pipeline -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_samples_trajectory_and_repeatability(direction):
    pipe = tiny_bridge_pipeline(source=TwoBalls(), target=Shifted(TwoBalls(), [0.0, 3.0]))
    out = pipe(num_samples=9, direction=direction, generator=seeded(), return_trajectory=True)
    assert out.samples.shape == (9, 2) and out.trajectory.shape == (5, 9, 2) and out.nfe == 4
    start = (pipe.source_distribution if direction == "forward" else pipe.target_distribution).sample(9, seeded())
    torch.testing.assert_close(out.trajectory[0], start)
    torch.testing.assert_close(out.trajectory[-1], out.samples)
    again = pipe(num_samples=9, direction=direction, generator=seeded()).samples
    assert torch.equal(again, out.samples)
    assert not torch.equal(pipe(num_samples=9, direction=direction, generator=seeded(1)).samples, out.samples)
    np_out = pipe(num_samples=3, direction=direction, output_type="np", return_trajectory=True)
    assert isinstance(np_out.samples, np.ndarray) and isinstance(np_out.trajectory, np.ndarray)


def test_pipeline_runs_the_same_chain_as_simulate_chain():
    scheduler = BridgeScheduler(num_steps=6)
    forward, backward = StepwiseAffineMean(2, 6), StepwiseAffineMean(2, 6)
    with torch.no_grad():
        forward.weight.mul_(0.9)
        backward.bias.add_(0.5)
    pipe = SchrodingerBridgePipeline(forward, backward, scheduler)
    pipe.set_progress_bar_config(disable=True)
    x = torch.randn(7, 2)
    for direction, model in (("forward", forward), ("backward", backward)):
        _, trajectory = pipe.transport(x, direction, generator=seeded(), return_trajectory=True)
        expected = simulate_chain(model, x, scheduler, direction, seeded())
        torch.testing.assert_close(trajectory, expected if direction == "forward" else expected.flip(0))


def test_save_and_load_give_identical_samples(tmp_path):
    pipe = tiny_bridge_pipeline(source=TwoBalls(), target=Shifted(TwoBalls(), [0.0, 3.0]))
    pipe.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "backward_model",
        "forward_model",
        "model_index.json",
        "pipeline_schrodinger_bridge.py",
        "scheduler",
        "weights_sha256.json",
    ]
    assert (tmp_path / "forward_model" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(tmp_path.rglob("*.bin"))
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["source"]["name"] == "two_balls" and index["target"]["name"] == "shifted"
    for loader in (SchrodingerBridgePipeline, HfgenPipeline):
        loaded = loader.from_pretrained(tmp_path)
        loaded.set_progress_bar_config(disable=True)
        assert isinstance(loaded, SchrodingerBridgePipeline)
        assert isinstance(loaded.target_distribution, Shifted)
        for direction in ("forward", "backward"):
            torch.testing.assert_close(
                loaded(num_samples=20, direction=direction, generator=seeded()).samples,
                pipe(num_samples=20, direction=direction, generator=seeded()).samples,
            )


def test_pipeline_errors():
    pipe = tiny_bridge_pipeline()
    with pytest.raises(ValueError, match="direction"):
        pipe(num_samples=2, direction="sideways")
    with pytest.raises(ValueError, match="direction"):
        pipe.transport(torch.zeros(2, 2), "up")
    with pytest.raises(ValueError, match=r"source_samples.*\(N, 2\)"):
        pipe(source_samples=torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"`x`.*\(N, 2\)"):
        pipe.transport(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(num_samples=2, num_inference_steps=10)
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_samples=2, output_type="pil")
    with pytest.raises((ValueError, TypeError), match="num_samples"):
        pipe(num_samples=0)
    with pytest.raises(ValueError, match="dimension"):
        SchrodingerBridgePipeline(
            pipe.forward_model, pipe.backward_model, pipe.scheduler, target={"name": "gaussian", "dim": 3}
        )
    with pytest.raises(ValueError, match="backward_model"):
        SchrodingerBridgePipeline(pipe.forward_model, StepwiseAffineMean(dim=3, num_steps=4), pipe.scheduler)
    with pytest.raises(ValueError, match="timestep"):
        StepwiseAffineMean(2, 4)(torch.zeros(1, 2), 5)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_mean_matching_targets_use_the_other_mean_at_its_own_timestep(direction):
    # a time-dependent other mean m(x, j) = (1 + j) x makes every index of the DSB targets visible
    trajectory = torch.randn(4, 2, 2, generator=seeded(9), dtype=torch.float64)  # X_0 … X_3, two chains
    other = lambda x, t: (1 + torch.as_tensor(t, dtype=x.dtype)).reshape(-1, 1) * x  # noqa: E731
    inputs, timesteps, targets = mean_matching_targets(trajectory, other, direction)
    for k in range(3):
        rows = slice(2 * k, 2 * k + 2)
        here, there = trajectory[k], trajectory[k + 1]
        if direction == "backward":  # input X_{k+1} at k + 1; target X_{k+1} + F_k(X_k) − F_k(X_{k+1})
            expected_input, expected_t, j = there, k + 1, k
            expected = there + (1 + j) * here - (1 + j) * there
        else:  # input X_k at k; target X_k + B_{k+1}(X_{k+1}) − B_{k+1}(X_k)
            expected_input, expected_t, j = here, k, k + 1
            expected = here + (1 + j) * there - (1 + j) * here
        torch.testing.assert_close(inputs[rows], expected_input)
        assert timesteps[rows].tolist() == [expected_t, expected_t]
        torch.testing.assert_close(targets[rows], expected)
