"""SDEdit (Meng et al. 2022) on the DDPM and flow-matching pipelines: strength 0 returns the input, strength 1 samples
the model, and with exact models of Gaussian data a Gaussian input comes out as the closed-form Gaussian."""

import math

import pytest
import torch
from diffusers import DDPMScheduler
from factories import GaussianEpsilonOracle, GaussianVelocity, tiny_ddpm_pipeline

from hfgen import ConstantAlphaDDPMScheduler, DDPMPointsPipeline, FlowMatchingPipeline, flow_match_scheduler

MEAN, VAR = [0.5, -1.0], [0.25, 2.0]
START_MEAN, START_VAR = [-1.0, 1.0], [1.0, 0.5]
N = 20_000


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def gaussian_points(mean, var, n, seed):
    return torch.tensor(mean) + torch.tensor(var).sqrt() * torch.randn(n, 2, generator=seeded(seed))


def ddim_gaussian_pipeline(T=400, final_alpha_bar=1e-4) -> DDPMPointsPipeline:
    """Deterministic DDIM with the exact ε of N(MEAN, diag VAR): on T fine steps it follows the probability-flow ODE,
    which maps each level's Gaussian affinely onto the data's."""
    scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(T, final_alpha_bar, sampler="ddim")
    oracle = GaussianEpsilonOracle(MEAN, VAR, scheduler.alphas_cumprod.log().tolist())
    pipeline = DDPMPointsPipeline(oracle, scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def fm_gaussian_pipeline(solver="euler") -> FlowMatchingPipeline:
    pipeline = FlowMatchingPipeline(GaussianVelocity(MEAN, VAR), flow_match_scheduler(solver))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def assert_moments(points, mean, var, mean_tol=0.03, var_rtol=0.04):
    torch.testing.assert_close(points.double().mean(0), torch.as_tensor(mean).double(), atol=mean_tol, rtol=0)
    torch.testing.assert_close(points.double().var(0), torch.as_tensor(var).double(), atol=0, rtol=var_rtol)


# ------------------------------------------------------------------------------------------------------ DDPM


@pytest.mark.parametrize("scheduler", ["constant", "diffusers"])
def test_ddpm_strength_zero_returns_the_input(scheduler):
    pipe = tiny_ddpm_pipeline()
    if scheduler == "diffusers":
        pipe.scheduler = DDPMScheduler(num_train_timesteps=10, clip_sample=False)
    x = torch.randn(7, 2, generator=seeded())
    out = pipe(start_samples=x, strength=0.0, generator=seeded(1), return_trajectory=True)
    assert torch.equal(out.samples, x) and out.nfe == 0 and out.timesteps == [0]


def test_ddpm_sdedit_runs_the_grid_steps_below_strength_times_T_from_the_noised_input():
    pipe = tiny_ddpm_pipeline(num_train_timesteps=10)
    x = torch.randn(5, 2, generator=seeded())
    out = pipe(start_samples=x, strength=0.45, generator=seeded(1), return_trajectory=True)
    assert out.timesteps == [4, 3, 2, 1, 0] and out.nfe == 4
    # the first state is x noised to level 4 with the generator's first draw
    z = torch.randn(5, 2, generator=seeded(1))
    a = pipe.scheduler.alpha_bar(4).float()
    torch.testing.assert_close(out.trajectory[0], a.sqrt() * x + (1 - a).sqrt() * z)
    # on a 5-step grid (levels 10, 8, 6, 4, 2) strength 0.45 keeps 4 and 2
    strided = pipe(num_inference_steps=5, start_samples=x, strength=0.45, generator=seeded(1), return_trajectory=True)
    assert strided.timesteps == [4, 2, 0]


def ddim_gain(scheduler, var, level):
    r"""Deterministic DDIM with the exact ε of ``N(μ, v)`` is affine: ``x_s − √ᾱ_s μ = g_t (x_t − √ᾱ_t μ)`` with
    ``g_t = (√(ᾱ_s ᾱ_t) v + √((1 − ᾱ_s)(1 − ᾱ_t))) / (ᾱ_t v + 1 − ᾱ_t)``; the gain from ``level`` to 0 is their
    product (per coordinate)."""
    v, gain = torch.tensor(var, dtype=torch.float64), torch.ones(len(var), dtype=torch.float64)
    ab = scheduler.alphas_cumprod
    for t in range(level, 0, -1):
        a_t, a_s = ab[t], ab[t - 1]
        gain = gain * ((a_s * a_t).sqrt() * v + ((1 - a_s) * (1 - a_t)).sqrt()) / (a_t * v + 1 - a_t)
    return gain


def test_ddim_gain_tends_to_the_probability_flow_gain():
    # As the steps shrink, DDIM follows the probability-flow ODE, whose map from level t is x ↦ μ + √(v / c_t)
    # (x − √ᾱ_t μ), c_t = ᾱ_t v + 1 − ᾱ_t.
    errors = []
    for T in (400, 4000):
        scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(T, 1e-4)
        a, v = scheduler.alpha_bar(T // 2), torch.tensor(VAR, dtype=torch.float64)
        errors.append(float((ddim_gain(scheduler, VAR, T // 2) ** 2 / (v / (a * v + 1 - a)) - 1).abs().max()))
    assert errors[1] < 0.02 and errors[0] / errors[1] > 5  # first order in the step size


def test_ddpm_sdedit_maps_a_gaussian_to_the_closed_form_gaussian():
    # Start points N(a, A) noised to t_0 are N(√ᾱ a, ᾱ A + 1 − ᾱ); the affine DDIM map sends them to the Gaussian
    # with mean μ + G √ᾱ (a − μ) and variance G² (ᾱ A + 1 − ᾱ), point by point.
    pipe = ddim_gaussian_pipeline()
    x = gaussian_points(START_MEAN, START_VAR, N, seed=3)
    out = pipe(start_samples=x, strength=0.5, generator=seeded(4), return_trajectory=True)
    assert out.timesteps[0] == 200
    a, gain = pipe.scheduler.alpha_bar(200), ddim_gain(pipe.scheduler, VAR, 200)
    mu, a_mean, a_var = (torch.tensor(z, dtype=torch.float64) for z in (MEAN, START_MEAN, START_VAR))
    z = torch.randn(N, 2, generator=seeded(4), dtype=torch.float64)  # the oracle runs the pipeline in float64
    noised = a.sqrt() * x.double() + (1 - a).sqrt() * z
    torch.testing.assert_close(out.trajectory[0].double(), noised, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.samples.double(), mu + gain * (noised - a.sqrt() * mu), atol=2e-4, rtol=0)
    assert_moments(out.samples, mu + gain * a.sqrt() * (a_mean - mu), gain**2 * (a * a_var + 1 - a))


def test_ddpm_strength_one_gives_the_models_distribution():
    pipe = ddim_gaussian_pipeline()
    gain_sq = ddim_gain(pipe.scheduler, VAR, 400) ** 2  # the model: N(μ, G²) from x_T ~ N(0, I), ᾱ_T = 1e-4
    x = gaussian_points(START_MEAN, START_VAR, N, seed=3)
    edited = pipe(start_samples=x, strength=1.0, generator=seeded(4)).samples
    fresh = pipe(N, generator=seeded(5)).samples
    for samples in (edited, fresh):
        assert_moments(samples, MEAN, gain_sq)


# ----------------------------------------------------------------------------------------------- flow matching


def test_fm_strength_zero_returns_the_input_and_one_is_plain_sampling():
    pipe = fm_gaussian_pipeline()
    x = torch.randn(6, 2, generator=seeded())
    assert torch.equal(pipe(start_samples=x, strength=0.0).samples, x)
    edited = pipe(num_inference_steps=20, start_samples=x, strength=1.0, generator=seeded(2)).samples
    plain = pipe(num_samples=6, num_inference_steps=20, generator=seeded(2)).samples
    torch.testing.assert_close(edited, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("solver", ["euler", "heun", "midpoint"])
def test_fm_sdedit_takes_the_schedulers_steps_from_one_minus_strength(solver):
    pipe = fm_gaussian_pipeline(solver)
    x = torch.randn(6, 2, generator=seeded())
    out = pipe(num_inference_steps=10, start_samples=x, strength=0.3, generator=seeded(2), return_trajectory=True)
    assert out.trajectory.shape == (4, 6, 2)  # round(0.3 · 10) = 3 steps of size 0.1 from t_0 = 0.7
    start = 0.3 * torch.randn(6, 2, generator=seeded(2)).double() + 0.7 * x.double()  # the oracle runs in float64
    torch.testing.assert_close(out.trajectory[0], start)
    # the same steps by hand (Euler; Heun / midpoint: the scheduler's two-stage rules)
    y, h = start, 0.1
    for i in range(3):
        t = 0.7 + i * h
        k1 = pipe.velocity_field(y, t)
        if solver == "euler":
            y = y + h * k1
        elif solver == "heun":
            y = y + 0.5 * h * (k1 + pipe.velocity_field(y + h * k1, t + h))
        else:
            y = y + h * pipe.velocity_field(y + 0.5 * h * k1, t + 0.5 * h)
    torch.testing.assert_close(out.samples, y, atol=1e-5, rtol=1e-5)


def test_fm_sdedit_maps_a_gaussian_to_the_closed_form_gaussian():
    # On the linear path x_{t_0} = s x_0 + (1 − s) x with t_0 = 1 − s, and the exact flow from t_0 to 1 maps
    # N(t_0 μ, C_{t_0}), C_t = (1 − t)² + t² v, affinely onto N(μ, v): y = μ + √(v / C_{t_0}) (x_{t_0} − t_0 μ).
    pipe = fm_gaussian_pipeline()
    x = gaussian_points(START_MEAN, START_VAR, N, seed=3)
    s = 0.6
    t0 = 1 - s
    out = pipe(start_samples=x, strength=s, ode_solver="dopri5", rtol=1e-7, atol=1e-7, generator=seeded(4)).samples
    mu, v, a_mean, a_var = (torch.tensor(z, dtype=torch.float64) for z in (MEAN, VAR, START_MEAN, START_VAR))
    gain = (v / ((1 - t0) ** 2 + t0**2 * v)).sqrt()
    assert_moments(out, mu + gain * (t0 * a_mean - t0 * mu), gain**2 * (s**2 + t0**2 * a_var))
    # the map is affine per point: check it exactly on the same draws
    z = torch.randn(N, 2, generator=seeded(4)).double()
    exact = mu + gain * (s * z + t0 * x.double() - t0 * mu)
    torch.testing.assert_close(out.double(), exact, atol=2e-4, rtol=0)


# -------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("make", ["ddpm", "fm"])
def test_bad_sdedit_inputs_are_refused_naming_the_argument(make):
    pipe = tiny_ddpm_pipeline() if make == "ddpm" else fm_gaussian_pipeline()
    x = torch.randn(4, 2)
    for strength in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="strength"):
            pipe(start_samples=x, strength=strength)
    with pytest.raises(TypeError, match="strength"):
        pipe(start_samples=x, strength="0.5")
    with pytest.raises(ValueError, match="strength"):
        pipe(start_samples=x)
    with pytest.raises(ValueError, match="start_samples"):
        pipe(strength=0.5)
    with pytest.raises(ValueError, match="start_samples"):
        pipe(start_samples=torch.randn(4, 3), strength=0.5)
    with pytest.raises(ValueError, match="start_samples.*NaN"):
        pipe(start_samples=torch.tensor([[0.0, math.nan], [1.0, 1.0]]), strength=0.5)
