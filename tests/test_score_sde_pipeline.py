"""ScoreSDEPipeline: exact-score sampling and log-densities against closed forms, SDEdit, conformance, errors.

With Gaussian data N(μ, Σ) every marginal is Gaussian, p_t = N(m_t μ, C_t), C_t = m_t² Σ + σ_t² I, and the
probability-flow ODE is affine: x_s = m_s μ + C_s^{1/2} C_t^{-1/2} (x_t − m_t μ) (the C_t commute, and
y = C_t^{1/2} u with u constant solves dy/dt = (a + ½ g² C_t^{-1}) y since dC/dt = 2a C + g² I).
"""

import numpy as np
import pytest
import torch
from factories import COV, MEAN, SDES, exact_score_pipeline, tiny_score_sde_pipeline

from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.score_sde import ScoreSDEPipeline
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler

MU = torch.tensor(MEAN, dtype=torch.float64)
SIGMA = torch.tensor(COV, dtype=torch.float64)
EYE = torch.eye(2, dtype=torch.float64)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def marginal_cov(scheduler, t):
    m, s = scheduler.marginal_coefficients(t)
    return float(m), m**2 * SIGMA + s**2 * EYE


def spd_power(matrix, power):
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values**power) @ vectors.T


def pf_map(scheduler, x, t_from, t_to):
    """Closed-form probability-flow transport of N(μ, Σ) data from time t_from to t_to."""
    m_from, c_from = marginal_cov(scheduler, t_from)
    m_to, c_to = marginal_cov(scheduler, t_to)
    a = spd_power(c_to, 0.5) @ spd_power(c_from, -0.5)
    return m_to * MU + (x - m_from * MU) @ a.T


def public_config(component):
    return {key: value for key, value in component.config.items() if not key.startswith("_")}


def assert_gaussian_moments(x, mean, cov, bias=0.0):
    """Sample mean/covariance within 4.5 Monte-Carlo standard errors (+ an allowance for discretisation)."""
    n = x.shape[0]
    mean_se = (torch.diagonal(cov) / n).sqrt()
    cov_se = ((torch.outer(torch.diagonal(cov), torch.diagonal(cov)) + cov**2) / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= 4.5 * mean_se + bias).all(), (x.mean(0), mean)
    assert ((torch.cov(x.T) - cov).abs() <= 4.5 * cov_se + bias).all(), (torch.cov(x.T), cov)


# Log-densities by the probability-flow ODE.


@pytest.mark.parametrize("sde", ["vp", "ve"])
def test_log_prob_with_the_exact_score_is_the_closed_form_density_of_the_flow(sde):
    # The model density is the prior pulled back by the affine PF map Φ from t = ε to 1:
    # log p(x) = log π(Φ(x)) + ½ log det C_1 − ½ log det C_ε, whatever the prior mismatch and ε.
    pipe = exact_score_pipeline(sde)
    scheduler = pipe.scheduler
    eps = scheduler.config.sampling_eps
    x = torch.distributions.MultivariateNormal(MU, SIGMA).sample((8,))
    end = pf_map(scheduler, x, eps, 1.0)
    log_det = 0.5 * (torch.logdet(marginal_cov(scheduler, 1.0)[1]) - torch.logdet(marginal_cov(scheduler, eps)[1]))
    expected = scheduler.prior_log_prob(end) + log_det
    torch.testing.assert_close(pipe.log_prob(x, rtol=1e-9, atol=1e-9), expected, rtol=0, atol=1e-6)


def test_log_prob_with_the_exact_score_is_the_data_density_within_a_millinat():
    # Two errors separate log p_ε of the model from log N(x; μ, Σ). (1) Truncation at ε = 1e-5: C_ε − Σ and
    # (1 − m_ε) μ are O(B(ε)) = O(1e-6), far below 1e-3. (2) The prior N(0, I) replaces p_1 = N(m_1 μ, C_1):
    # the error is about |x(1)|·m_1|μ|; β_max = 40 makes m_1 = e^{-B(1)/2} ≈ 4.5e-5 (with β_max = 20 it is
    # 6.6e-3 and the error reaches 1e-2).
    pipe = exact_score_pipeline("vp", beta_max=40.0, sampling_eps=1e-5)
    target = torch.distributions.MultivariateNormal(MU, SIGMA)
    x = target.sample((16,))
    log_p = pipe.log_prob(x, rtol=1e-9, atol=1e-9)
    assert not log_p.requires_grad
    assert (log_p - target.log_prob(x)).abs().max() < 1e-3


def test_hutchinson_is_exact_when_the_jacobian_is_a_multiple_of_the_identity():
    # With Σ = c I the PF drift is (a + ½ g² / C_t) x + const: Rademacher probes give εᵀ(λI)ε = λ D exactly.
    pipe = exact_score_pipeline("vp", covariances=([[0.4, 0.0], [0.0, 0.4]],))
    x = torch.randn(6, 2, dtype=torch.float64, generator=seeded())
    exact = pipe.log_prob(x, rtol=1e-9, atol=1e-9)
    hutchinson = pipe.log_prob(x, divergence="hutchinson", generator=seeded(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(hutchinson, exact, rtol=0, atol=1e-7)


# Sampling with the exact score.


@pytest.mark.parametrize("sde", ["vp", "ve"])
def test_probability_flow_samples_follow_the_closed_form_transport(sde):
    pipe = exact_score_pipeline(sde)
    out = pipe(num_samples=2000, num_inference_steps=4, sampler="probability_flow", generator=seeded(),
               return_trajectory=True, rtol=1e-9, atol=1e-9)  # fmt: skip
    eps = pipe.scheduler.config.sampling_eps
    assert out.timesteps[0] == 1.0 and out.timesteps[-1] == eps and len(out.timesteps) == 5
    torch.testing.assert_close(out.trajectory[0], pipe.scheduler.prior_std * torch.randn(2000, 2, generator=seeded(),
                               dtype=torch.float64))  # fmt: skip
    for t, state in zip(out.timesteps, out.trajectory, strict=True):
        torch.testing.assert_close(state, pf_map(pipe.scheduler, out.trajectory[0], 1.0, t), rtol=0, atol=1e-6)
    # The prior is N(0, σ_p² I) rather than p_1, so the samples are N(μ, Σ) up to O(m_1 |μ|, σ_min²) = 7e-3.
    assert_gaussian_moments(out.samples, MU, SIGMA, bias=7e-3)


@pytest.mark.parametrize("sde", ["vp", "ve"])
@pytest.mark.parametrize("sampler", ["euler_maruyama", "predictor_corrector"])
def test_reverse_sde_with_the_exact_score_samples_the_data_distribution(sde, sampler):
    pipe = exact_score_pipeline(sde, snr=0.05)
    samples = pipe(num_samples=3000, num_inference_steps=300, sampler=sampler, generator=seeded()).samples
    assert samples.dtype == torch.float64
    # Euler–Maruyama with h = 1/300 is biased by O(h): measured under 1e-2 on these moments.
    assert_gaussian_moments(samples, MU, SIGMA, bias=1.5e-2)


def test_epsilon_and_score_parametrisations_give_the_same_samples():
    by_score = exact_score_pipeline("vp", prediction_type="score")
    by_epsilon = exact_score_pipeline("vp", prediction_type="epsilon")
    points = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(by_epsilon.score(points, 0.3), by_score.score(points, 0.3))
    for sampler in ("euler_maruyama", "predictor_corrector"):
        a = by_score(num_samples=50, num_inference_steps=20, sampler=sampler, generator=seeded()).samples
        b = by_epsilon(num_samples=50, num_inference_steps=20, sampler=sampler, generator=seeded()).samples
        torch.testing.assert_close(a, b)


def test_score_is_the_gaussian_score_of_the_marginal():
    pipe = exact_score_pipeline("ve")
    x = torch.randn(7, 2, dtype=torch.float64)
    t = torch.linspace(0.1, 1.0, 7, dtype=torch.float64)
    expected = torch.stack(
        [-torch.linalg.solve(marginal_cov(pipe.scheduler, float(s))[1], xi - MU) for xi, s in zip(x, t, strict=True)]
    )
    torch.testing.assert_close(pipe.score(x, t), expected)


# SDEdit.


@pytest.mark.parametrize("sampler", ["euler_maruyama", "predictor_corrector", "probability_flow"])
def test_sdedit_strength_zero_returns_the_input_exactly(sampler):
    pipe = exact_score_pipeline("vp")
    x = torch.randn(9, 2, dtype=torch.float64)
    out = pipe(start_samples=x, strength=0.0, sampler=sampler, num_inference_steps=5, return_trajectory=True)
    assert torch.equal(out.samples, x) and out.nfe == 0 and out.timesteps == [0.0]


def test_sdedit_strength_one_samples_the_target_from_any_start():
    pipe = exact_score_pipeline("vp")
    far = torch.full((3000, 2), 5.0, dtype=torch.float64)
    out = pipe(start_samples=far, strength=1.0, num_inference_steps=300, generator=seeded())
    # m_1 · 5 = 0.033 of the start survives in x_1 and shrinks to C_ε^{1/2} C_1^{-1/2} m_1 · 5 ≈ 0.025.
    assert_gaussian_moments(out.samples, MU, SIGMA, bias=4e-2)


def test_sdedit_gaussian_to_gaussian_by_the_probability_flow_is_the_closed_form_transport():
    # Start points N(a, I), strength s: x_{t0} = m_{t0} x + σ_{t0} z ~ N(m_{t0} a, (m² + σ²) I) = N(m_{t0} a, I)
    # for VP, then the PF-ODE of the N(μ, Σ) model maps it affinely to t = ε.
    pipe = exact_score_pipeline("vp")
    scheduler, strength, a = pipe.scheduler, 0.4, torch.tensor([2.0, -1.0], dtype=torch.float64)
    start = a + torch.randn(3000, 2, dtype=torch.float64, generator=seeded(1))
    out = pipe(start_samples=start, strength=strength, sampler="probability_flow", num_inference_steps=3,
               generator=seeded(), return_trajectory=True, rtol=1e-9, atol=1e-9)  # fmt: skip
    assert out.timesteps[0] == strength and out.timesteps[-1] == scheduler.config.sampling_eps
    m0 = float(scheduler.marginal_coefficients(strength)[0])
    perturbed = out.trajectory[0]
    assert_gaussian_moments(perturbed, m0 * a, EYE)
    assert_gaussian_moments(perturbed - m0 * start, torch.zeros(2, dtype=torch.float64), (1 - m0**2) * EYE)
    eps = scheduler.config.sampling_eps
    torch.testing.assert_close(out.samples, pf_map(scheduler, perturbed, strength, eps), rtol=0, atol=1e-6)
    transport = spd_power(marginal_cov(scheduler, eps)[1], 0.5) @ spd_power(marginal_cov(scheduler, strength)[1], -0.5)
    m_eps = float(scheduler.marginal_coefficients(eps)[0])
    assert_gaussian_moments(out.samples, m_eps * MU + transport @ (m0 * (a - MU)), transport @ transport.T)


# Conformance.


@pytest.mark.parametrize("sampler", ["euler_maruyama", "predictor_corrector", "probability_flow"])
def test_samples_shape_repeatability_and_trajectory(sampler):
    pipe = tiny_score_sde_pipeline("vp", num_corrector_steps=2)
    kwargs = {"num_samples": 6, "num_inference_steps": 4, "sampler": sampler, "return_trajectory": True}
    a = pipe(generator=seeded(), **kwargs)
    b = pipe(generator=seeded(), **kwargs)
    c = pipe(generator=seeded(1), **kwargs)
    assert a.samples.shape == (6, 2) and a.samples.dtype == torch.float32
    assert torch.equal(a.samples, b.samples) and not torch.equal(a.samples, c.samples)
    assert a.trajectory.shape == (5, 6, 2) and torch.equal(a.trajectory[-1], a.samples)
    assert a.timesteps == pytest.approx([1.0, 0.75025, 0.5005, 0.25075, 1e-3])
    if sampler == "euler_maruyama":
        assert a.nfe == 4
    elif sampler == "predictor_corrector":
        assert a.nfe == 4 * 3
    else:
        assert a.nfe > 0


def test_fixed_grid_ode_solver_steps_on_the_grid():
    # Euler on the PF-ODE is x_{i+1} = x_i − h F(x_i, t_i): the same as the scheduler's mean step with g²/2.
    pipe = exact_score_pipeline("vp")
    kwargs = {"num_samples": 3, "num_inference_steps": 5, "sampler": "probability_flow"}
    out = pipe(ode_solver="euler", return_trajectory=True, generator=seeded(), **kwargs)
    assert out.nfe == 5 and out.trajectory.shape == (6, 3, 2)
    x = out.trajectory[0]
    for t, s in zip(out.timesteps, out.timesteps[1:], strict=False):
        x = x + (s - t) * pipe.scheduler.probability_flow_drift(x, t, pipe.score(x, t))
    torch.testing.assert_close(out.samples, x)
    assert torch.equal(pipe(ode_solver="euler", generator=seeded(), **kwargs).samples, out.samples)
    assert pipe(ode_solver="rk4", **kwargs).nfe == 5 * 4


def test_return_dict_false_and_numpy_output():
    pipe = tiny_score_sde_pipeline("vp")
    samples, trajectory, nfe, timesteps = pipe(
        num_samples=3, num_inference_steps=2, generator=seeded(), return_dict=False, return_trajectory=True
    )
    assert samples.shape == (3, 2) and trajectory.shape == (3, 3, 2) and nfe == 2 and len(timesteps) == 3
    out = pipe(num_samples=3, num_inference_steps=2, output_type="np", return_trajectory=True, generator=seeded())
    assert isinstance(out.samples, np.ndarray) and isinstance(out.trajectory, np.ndarray)
    np.testing.assert_array_equal(out.samples, samples.numpy())


@pytest.mark.parametrize(("sde", "prediction_type"), [("vp", "score"), ("ve", "epsilon")])
def test_save_and_load_give_identical_samples(tmp_path, sde, prediction_type):
    pipe = tiny_score_sde_pipeline(sde, seed=3, snr=0.1, prediction_type=prediction_type)
    pipe.save_pretrained(tmp_path)
    names = ["model_index.json", "pipeline_score_sde.py", "scheduler", "score_model", "weights_sha256.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert (tmp_path / "score_model" / "diffusion_pytorch_model.safetensors").is_file()
    for loader in (ScoreSDEPipeline, HfgenPipeline):
        loaded = loader.from_pretrained(tmp_path)
        loaded.set_progress_bar_config(disable=True)
        assert isinstance(loaded.scheduler, SDES[sde])
        assert public_config(loaded.scheduler) == public_config(pipe.scheduler)
        for sampler in ("predictor_corrector", "probability_flow"):
            kwargs = {"num_samples": 8, "num_inference_steps": 3, "sampler": sampler}
            assert torch.equal(loaded(generator=seeded(), **kwargs).samples, pipe(generator=seeded(), **kwargs).samples)


def test_score_is_the_network_output_read_by_prediction_type():
    pipe = tiny_score_sde_pipeline("vp")
    x = torch.randn(4, 2)
    with torch.no_grad():
        epsilon = pipe.score_model(x, torch.tensor(0.5)).sample
    sigma = float(pipe.scheduler.marginal_coefficients(0.5)[1])
    torch.testing.assert_close(pipe.score(x, 0.5), -epsilon / sigma)


# Bad inputs.


@pytest.mark.parametrize("num_samples", [0, -1, 2.5, True])
def test_bad_num_samples(num_samples):
    with pytest.raises((ValueError, TypeError), match="num_samples"):
        tiny_score_sde_pipeline()(num_samples=num_samples, num_inference_steps=2)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, None])
def test_bad_num_inference_steps(steps):
    with pytest.raises((ValueError, TypeError), match="num_inference_steps"):
        tiny_score_sde_pipeline()(num_samples=2, num_inference_steps=steps)


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_strength_outside_the_unit_interval_is_refused(strength):
    with pytest.raises(ValueError, match=r"`strength` must lie in \[0, 1\]"):
        tiny_score_sde_pipeline()(start_samples=torch.zeros(3, 2), strength=strength, num_inference_steps=2)


def test_bad_sdedit_inputs():
    pipe = tiny_score_sde_pipeline()
    with pytest.raises(ValueError, match="start_samples"):
        pipe(start_samples=torch.zeros(3, 5), strength=0.5, num_inference_steps=2)
    with pytest.raises(ValueError, match="start_samples.*NaN"):
        pipe(start_samples=torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), strength=0.5, num_inference_steps=2)
    with pytest.raises(ValueError, match="both `strength` and `start_samples`"):
        pipe(strength=0.5, num_inference_steps=2)
    with pytest.raises(ValueError, match="both `strength` and `start_samples`"):
        pipe(start_samples=torch.zeros(3, 2), num_inference_steps=2)
    with pytest.raises(TypeError, match="strength"):
        pipe(start_samples=torch.zeros(3, 2), strength="half", num_inference_steps=2)
    with pytest.raises(ValueError, match="sampling_eps"):
        pipe(start_samples=torch.zeros(3, 2), strength=5e-4, num_inference_steps=2)


def test_bad_pipeline_inputs():
    pipe = tiny_score_sde_pipeline()
    with pytest.raises(ValueError, match="`sampler` must be one of"):
        pipe(num_samples=2, num_inference_steps=2, sampler="ddim")
    with pytest.raises(ValueError, match="ode_solver"):
        pipe(num_samples=2, num_inference_steps=2, sampler="probability_flow", ode_solver="leapfrog")
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_samples=2, num_inference_steps=2, output_type="pil")
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        pipe.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        pipe.score(torch.tensor([[0.0, float("nan")]]), 0.5)
    with pytest.raises(ValueError, match="divergence"):
        pipe.log_prob(torch.zeros(2, 2), divergence="trace")
    with pytest.raises(ValueError, match="ode_solver"):
        pipe.log_prob(torch.zeros(2, 2), ode_solver="rk4")
    with pytest.raises(TypeError, match="ScoreSDEScheduler"):
        ScoreSDEPipeline(pipe.score_model, FlowMatchEulerScheduler())


def test_log_prob_is_finite_for_a_random_network_in_float32():
    pipe = tiny_score_sde_pipeline("vp")
    log_p = pipe.log_prob(torch.randn(5, 2), rtol=1e-4, atol=1e-4)
    assert log_p.shape == (5,) and log_p.dtype == torch.float32 and torch.isfinite(log_p).all()
