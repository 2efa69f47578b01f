"""VP and VE score-SDE schedulers: marginals against the SDE, the Euler–Maruyama and Langevin moves, config
round trips and errors."""

import math

import pytest
import torch

from hfgen.schedulers.score_sde import ScoreSDEScheduler, VESDEScheduler, VPSDEScheduler

SCHEDULERS = [VPSDEScheduler(), VESDEScheduler(), VPSDEScheduler(beta_min=0.5, beta_max=5.0)]


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_vp_marginals_are_the_closed_forms_and_preserve_variance():
    scheduler = VPSDEScheduler(beta_min=0.1, beta_max=20.0)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    integral = 0.1 * t + 0.5 * t**2 * 19.9
    m, s = scheduler.marginal_coefficients(t)
    torch.testing.assert_close(m, torch.exp(-0.5 * integral))
    torch.testing.assert_close(m**2 + s**2, torch.ones_like(t))
    torch.testing.assert_close(scheduler.diffusion(t) ** 2, 0.1 + 19.9 * t)
    assert float(m[-1]) == pytest.approx(math.exp(-0.5 * 10.05))


def test_ve_marginal_is_the_variance_accumulated_since_time_zero():
    scheduler = VESDEScheduler(sigma_min=0.01, sigma_max=50.0)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    sigma = 0.01 * 5000.0**t
    m, s = scheduler.marginal_coefficients(t)
    torch.testing.assert_close(m, torch.ones_like(t))
    torch.testing.assert_close(s**2, sigma**2 - 0.01**2)
    torch.testing.assert_close(scheduler.diffusion(t) ** 2, 2 * sigma**2 * math.log(5000.0))
    torch.testing.assert_close(scheduler.drift(torch.ones(3, 2), 0.4), torch.zeros(3, 2))


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=["vp", "ve", "vp-other-betas"])
def test_marginals_solve_the_moment_equations_of_the_sde(scheduler):
    # For dx = a(t) x dt + g(t) dW: dm/dt = a m and dσ²/dt = 2 a σ² + g² (central differences, float64).
    t = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64)
    h = 1e-6
    m, s = scheduler.marginal_coefficients(t)
    m_plus, s_plus = scheduler.marginal_coefficients(t + h)
    m_minus, s_minus = scheduler.marginal_coefficients(t - h)
    a, g = scheduler.drift_coefficient(t), scheduler.diffusion(t)
    torch.testing.assert_close((m_plus - m_minus) / (2 * h), a * m, rtol=1e-6, atol=0)
    torch.testing.assert_close((s_plus**2 - s_minus**2) / (2 * h), 2 * a * s**2 + g**2, rtol=1e-6, atol=0)


@pytest.mark.parametrize("scheduler", SCHEDULERS[:2], ids=["vp", "ve"])
def test_add_noise_and_training_inputs_follow_the_forward_marginal(scheduler):
    x0 = torch.randn(6, 2, dtype=torch.float64)
    z = torch.randn(6, 2, dtype=torch.float64)
    t = torch.linspace(0.1, 1.0, 6, dtype=torch.float64)
    m, s = scheduler.marginal_coefficients(t)
    torch.testing.assert_close(scheduler.add_noise(x0, z, t), m[:, None] * x0 + s[:, None] * z)
    x_t, times, noise = scheduler.sample_training_inputs(x0, generator=seeded())
    assert times.shape == (6,) and bool((times >= scheduler.config.sampling_eps).all()) and bool((times <= 1).all())
    torch.testing.assert_close(x_t, scheduler.add_noise(x0, noise, times))


@pytest.mark.parametrize("scheduler", SCHEDULERS[:2], ids=["vp", "ve"])
def test_prior(scheduler):
    x = scheduler.sample_prior(4000, 2, generator=seeded(), dtype=torch.float64)
    assert x.std().item() == pytest.approx(scheduler.prior_std, rel=0.05)
    normal = torch.distributions.Normal(0.0, scheduler.prior_std)
    torch.testing.assert_close(scheduler.prior_log_prob(x[:5]), normal.log_prob(x[:5]).sum(1))


def test_euler_maruyama_step_is_the_discretised_reverse_sde():
    scheduler = VPSDEScheduler(prediction_type="score")
    scheduler.set_timesteps(4)
    x = torch.randn(5, 2, dtype=torch.float64)
    score = torch.randn(5, 2, dtype=torch.float64)
    t, h = 1.0, 0.999 / 4
    beta = 0.1 + 19.9 * t
    out = scheduler.step(score, scheduler.timesteps[0], x, generator=seeded())
    mean = x - (-0.5 * beta * x - beta * score) * h
    torch.testing.assert_close(out.prev_sample_mean, mean)
    torch.testing.assert_close(out.prev_sample, mean + math.sqrt(beta * h) * torch.randn(5, 2, generator=seeded(),
                               dtype=torch.float64))  # fmt: skip
    last = scheduler.step(score, scheduler.timesteps[-1], x, generator=seeded())
    assert torch.equal(last.prev_sample, last.prev_sample_mean), "the final step to ε adds no noise"
    prev, mean_only = scheduler.step(score, scheduler.timesteps[1], x, generator=seeded(), return_dict=False)
    assert prev.shape == mean_only.shape == (5, 2)


def test_epsilon_prediction_is_the_score_times_minus_sigma():
    by_score = VESDEScheduler(prediction_type="score")
    by_epsilon = VESDEScheduler(prediction_type="epsilon")
    x, score = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    sigma = by_score.marginal_coefficients(0.3)[1]
    torch.testing.assert_close(by_epsilon.convert_model_output(-sigma * score, 0.3), score)
    for scheduler in (by_score, by_epsilon):
        scheduler.set_timesteps(3)
    t = by_score.timesteps[1]
    sigma_t = by_score.marginal_coefficients(t)[1]
    a = by_score.step(score, t, x, generator=seeded()).prev_sample
    b = by_epsilon.step(-sigma_t * score, t, x, generator=seeded()).prev_sample
    torch.testing.assert_close(a, b)


def test_probability_flow_drift_is_f_minus_half_g_squared_score():
    scheduler = VPSDEScheduler()
    x, score = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    beta = 0.1 + 19.9 * 0.6
    torch.testing.assert_close(scheduler.probability_flow_drift(x, 0.6, score), -0.5 * beta * x - 0.5 * beta * score)


def test_langevin_corrector_converges_to_the_marginal_and_keeps_it():
    # Target p_t = N(c, v I) at fixed t, start N(c + 3, 4 I). With the exact score the step size settles at
    # δ ≈ 2 snr² v, the chain relaxes at rate ≈ δ/v = 2 snr² per step and its stationary variance is
    # v / (1 − δ/(2v)) ≈ v (1 + snr²): a 2.6 % bias for snr = 0.16.
    scheduler = VPSDEScheduler(prediction_type="score", snr=0.16)
    centre, variance = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5
    x = centre + 3.0 + 2.0 * torch.randn(4000, 2, generator=seeded(1), dtype=torch.float64)
    generator = seeded()
    for _ in range(600):
        x = scheduler.step_correct(-(x - centre) / variance, 0.5, x, generator=generator).prev_sample
    assert (x.mean(0) - centre).abs().max() < 4.5 * math.sqrt(variance / 4000)
    stationary = variance * (1 + 0.16**2)
    assert (x.var(0) - stationary).abs().max() < 4.5 * stationary * math.sqrt(2 / 4000) + 0.01 * variance


def test_langevin_step_size_follows_the_signal_to_noise_ratio():
    scheduler = VESDEScheduler(prediction_type="score", snr=0.2)
    x = torch.zeros(3, 2, dtype=torch.float64)
    score = torch.tensor([[3.0, 4.0], [0.0, 5.0], [5.0, 0.0]], dtype=torch.float64)  # ‖s‖ = 5 for each row
    noise = torch.randn(3, 2, generator=seeded(), dtype=torch.float64)
    delta = 2 * (0.2 * noise.norm(dim=1).mean() / 5.0) ** 2
    out = scheduler.step_correct(score, 0.5, x, generator=seeded())
    torch.testing.assert_close(out.prev_sample_mean, delta * score)
    torch.testing.assert_close(out.prev_sample, delta * score + (2 * delta).sqrt() * noise)


def test_sampling_grid():
    scheduler = VPSDEScheduler(sampling_eps=1e-3)
    scheduler.set_timesteps(4)
    assert scheduler.grid == pytest.approx([1.0, 0.75025, 0.5005, 0.25075, 1e-3])
    assert scheduler.timesteps.tolist() == pytest.approx(scheduler.grid[:-1]) and len(scheduler) == 4
    scheduler.set_timesteps(2, start_time=0.5)
    assert scheduler.grid == pytest.approx([0.5, 0.2505, 1e-3])


@pytest.mark.parametrize("cls", [VPSDEScheduler, VESDEScheduler])
def test_scheduler_config_round_trip(tmp_path, cls):
    scheduler = cls(sampling_eps=2e-3, prediction_type="score", snr=0.1, num_corrector_steps=3)
    scheduler.save_config(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    loaded = cls.from_pretrained(tmp_path)
    public = {key: value for key, value in scheduler.config.items() if not key.startswith("_")}
    assert type(loaded) is cls and {key: loaded.config[key] for key in public} == public
    again = cls.from_config(scheduler.config)
    t = torch.tensor([0.2, 0.9], dtype=torch.float64)
    for a, b in zip(again.marginal_coefficients(t), scheduler.marginal_coefficients(t), strict=True):
        assert torch.equal(a, b)
    assert isinstance(loaded, ScoreSDEScheduler)


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "match"),
    [
        (VPSDEScheduler, {"beta_min": 0.0}, ValueError, "beta_min"),
        (VPSDEScheduler, {"beta_min": 2.0, "beta_max": 1.0}, ValueError, "beta_max"),
        (VPSDEScheduler, {"beta_max": float("inf")}, ValueError, "beta_max"),
        (VESDEScheduler, {"sigma_min": 1.0, "sigma_max": 1.0}, ValueError, "sigma_max"),
        (VESDEScheduler, {"sigma_min": -0.1}, ValueError, "sigma_min"),
        (VPSDEScheduler, {"sampling_eps": 0.0}, ValueError, "sampling_eps"),
        (VESDEScheduler, {"sampling_eps": 1.0}, ValueError, "sampling_eps"),
        (VPSDEScheduler, {"prediction_type": "v_prediction"}, ValueError, "prediction_type"),
        (VPSDEScheduler, {"snr": 0.0}, ValueError, "snr"),
        (VESDEScheduler, {"snr": "high"}, TypeError, "snr"),
        (VPSDEScheduler, {"num_corrector_steps": 0}, ValueError, "num_corrector_steps"),
        (VPSDEScheduler, {"num_corrector_steps": True}, ValueError, "num_corrector_steps"),
    ],
)
def test_bad_scheduler_arguments(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_bad_steps_and_times():
    scheduler = VPSDEScheduler()
    x = torch.zeros(3, 2)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler.step(x, 1.0, x)
    for steps, error in ((0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="num_inference_steps"):
            scheduler.set_timesteps(steps)
    for start in (1e-3, 1.5, 0.0):
        with pytest.raises(ValueError, match="start_time"):
            scheduler.set_timesteps(3, start_time=start)
    scheduler.set_timesteps(4)
    with pytest.raises(ValueError, match="not a step start"):
        scheduler.step(x, 0.6, x)
    with pytest.raises(ValueError, match="not a step start"):
        scheduler.step(x, 1e-3, x)
    with pytest.raises(ValueError, match="model_output"):
        scheduler.step(torch.zeros(3, 3), 1.0, x)
    with pytest.raises(ValueError, match=r"timestep.*\[0, 1\]"):
        scheduler.marginal_coefficients(1.2)
    with pytest.raises(ValueError, match=r"timestep.*\(0, 1\]"):
        scheduler.convert_model_output(x, 0.0)
    with pytest.raises(ValueError, match="one entry per sample"):
        scheduler.add_noise(x, x, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="noise"):
        scheduler.add_noise(x, torch.zeros(2, 2), 0.5)
    with pytest.raises(TypeError, match="timestep"):
        scheduler.marginal_coefficients("late")
