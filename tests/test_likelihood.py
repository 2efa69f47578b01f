"""Instantaneous change of variables (hfgen.methods.continuous_flows) checked against closed forms.

Oracles: the trace of a linear field, the analytic trace of tanh(z³), the affine flow Y = A Z of the course
(density N(0, A Aᵀ)), Euler's exact recursion on a linear field, the matrix exponential, and the
log-likelihood gradient of a scaling flow.
"""

import math

import pytest
import torch

from hfgen.methods.continuous_flows import (
    FlowODEResult,
    deform_gaussian_example,
    divergence,
    integrate_with_log_density,
    log_prob,
    tanh_cubed_divergence,
    tanh_cubed_velocity,
)

F64 = torch.float64
A = torch.tensor([[3 / 5, 2 / 5], [1 / 5, 4 / 5]], dtype=F64)
EYE = torch.eye(2, dtype=F64)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def affine_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Velocity of x(t) = ((1 − t) I + t A) z: v(x, t) = (A − I)((1 − t) I + t A)^{-1} x."""
    gain = (A - EYE) @ torch.linalg.inv((1 - t) * EYE + t * A)
    return x @ gain.T


def linear_field(matrix: torch.Tensor):
    return lambda x, t: x @ matrix.T


def test_exact_divergence_of_linear_field_is_its_trace(generator):
    matrix = torch.randn(3, 3, generator=generator, dtype=F64)
    x = torch.randn(5, 3, generator=generator, dtype=F64)
    f, div = divergence(linear_field(matrix), x, 0.3)
    torch.testing.assert_close(f, x @ matrix.T)
    torch.testing.assert_close(div, torch.full((5,), float(torch.trace(matrix)), dtype=F64))


def test_exact_divergence_of_tanh_cubed_matches_analytic_trace(generator):
    x = torch.randn(50, 3, generator=generator, dtype=F64)
    f, div = divergence(tanh_cubed_velocity, x, torch.tensor(0.0))
    torch.testing.assert_close(f, torch.tanh(x**3))
    torch.testing.assert_close(div, tanh_cubed_divergence(x))


def test_divergence_under_no_grad_returns_detached_values(generator):
    x = torch.randn(4, 2, generator=generator, dtype=F64)
    with torch.no_grad():
        f, div = divergence(tanh_cubed_velocity, x, 0.0)
    assert not f.requires_grad and not div.requires_grad
    torch.testing.assert_close(div, tanh_cubed_divergence(x))


def test_divergence_of_a_field_independent_of_x_is_zero():
    x = torch.zeros(3, 2)
    _, div = divergence(lambda x, t: torch.ones(3, 2), x, 0.0)
    torch.testing.assert_close(div, torch.zeros(3))


@pytest.mark.parametrize("noise_kind", ["rademacher", "gaussian"])
def test_hutchinson_estimator_is_unbiased(generator, noise_kind):
    # A nonlinear field with a full Jacobian J(x) = diag(1 − tanh²(Wx + b)) W, all at one point.
    weight = torch.randn(3, 3, generator=generator, dtype=F64)
    bias = torch.randn(3, generator=generator, dtype=F64)

    def field(x, t):
        return torch.tanh(x @ weight.T + bias)

    point = torch.randn(1, 3, generator=generator, dtype=F64)
    _, exact = divergence(field, point, 0.0)
    num_noises = 20_000
    if noise_kind == "rademacher":
        noise = torch.randint(0, 2, (num_noises, 3), generator=generator).to(F64) * 2 - 1
    else:
        noise = torch.randn(num_noises, 3, generator=generator, dtype=F64)
    _, estimates = divergence(field, point.expand(num_noises, 3), 0.0, method="hutchinson", noise=noise)
    standard_error = estimates.std() / math.sqrt(num_noises)
    assert estimates.std() > 0  # a genuine estimator, not the trace itself
    assert abs(estimates.mean() - exact[0]) < 5 * standard_error


def test_affine_flow_log_prob_matches_closed_form_gaussian(generator):
    # Y = A Z with Z ~ N(0, I) has density N(0, A Aᵀ); the straight-line flow ((1 − t) I + t A) z carries it.
    z = torch.randn(200, 2, generator=generator, dtype=F64)
    y = z @ A.T
    expected = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=F64), A @ A.T).log_prob(y)
    with torch.no_grad():
        log_p = log_prob(affine_velocity, y, standard_normal_log_prob, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(log_p, expected, rtol=0, atol=1e-4)

    forward = integrate_with_log_density(
        affine_velocity, z, standard_normal_log_prob(z), 0.0, 1.0, rtol=1e-9, atol=1e-9
    )
    assert isinstance(forward, FlowODEResult)
    torch.testing.assert_close(forward.x_end, y, rtol=0, atol=1e-6)
    # −∫ Tr dt = −log det A, the same for every point.
    torch.testing.assert_close(
        forward.log_density_change, torch.full((200,), -math.log(0.4), dtype=F64), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(forward.log_p_end, expected, rtol=0, atol=1e-4)


def test_log_prob_gradient_matches_closed_form():
    # v(x) = a x gives x(1) = eᵃ z, log p_1(y) = log N(e^{−a} y) − a D and ∂/∂a = |y|² e^{−2a} − D.
    a = torch.tensor(0.3, dtype=F64, requires_grad=True)
    y = torch.tensor([[0.5, -1.0], [2.0, 0.1]], dtype=F64)
    log_p = log_prob(lambda x, t: a * x, y, standard_normal_log_prob, rtol=1e-9, atol=1e-9)
    expected = standard_normal_log_prob(y * torch.exp(-a.detach())) - 2 * a.detach()
    torch.testing.assert_close(log_p.detach(), expected, rtol=0, atol=1e-7)
    (grad,) = torch.autograd.grad(log_p.sum(), a)
    expected_grad = ((y**2).sum(dim=1) * math.exp(-0.6) - 2).sum()
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-5)


def test_tanh_cubed_log_density_matches_integrated_analytic_trace(generator):
    from torchdiffeq import odeint

    z0 = torch.randn(64, 2, generator=generator, dtype=F64)
    log_p0 = standard_normal_log_prob(z0)
    with torch.no_grad():
        result = integrate_with_log_density(tanh_cubed_velocity, z0, log_p0, 0.0, 0.5, rtol=1e-9, atol=1e-9)

    def analytic(t, state):
        z, _ = state
        return tanh_cubed_velocity(z, t), -tanh_cubed_divergence(z)

    times = torch.tensor([0.0, 0.5], dtype=F64)
    z_path, ell_path = odeint(analytic, (z0, torch.zeros(64, dtype=F64)), times, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(result.x_end, z_path[-1], rtol=0, atol=1e-7)
    torch.testing.assert_close(result.log_p_end, log_p0 + ell_path[-1], rtol=0, atol=1e-7)

    with torch.no_grad():
        back = integrate_with_log_density(
            tanh_cubed_velocity, result.x_end, result.log_p_end, 0.5, 0.0, rtol=1e-9, atol=1e-9
        )
    torch.testing.assert_close(back.x_end, z0, rtol=0, atol=1e-6)
    torch.testing.assert_close(back.log_p_end, log_p0, rtol=0, atol=1e-6)


def test_hutchinson_in_the_solver_is_exact_for_a_diagonal_jacobian_and_repeatable(generator):
    # tanh(z³) has a diagonal Jacobian, so εᵀ J ε = Tr J for Rademacher ε: the estimate is the trace.
    z0 = torch.randn(16, 2, generator=generator, dtype=F64)

    def solve(velocity, divergence_method, seed=1):
        with torch.no_grad():
            return integrate_with_log_density(
                velocity,
                z0,
                None,
                0.0,
                0.5,
                divergence_method=divergence_method,
                generator=torch.Generator().manual_seed(seed),
            ).log_density_change

    torch.testing.assert_close(solve(tanh_cubed_velocity, "hutchinson"), solve(tanh_cubed_velocity, "exact"))
    # Same generator, same noise, same estimate; the noise is drawn once per solve.
    weight = torch.tensor([[0.5, 2.0], [-1.0, 0.3]], dtype=F64)
    torch.testing.assert_close(solve(linear_field(weight), "hutchinson"), solve(linear_field(weight), "hutchinson"))


def test_fixed_step_euler_is_the_exact_euler_recursion_and_counts_evaluations(generator):
    # Euler on dz/dt = B z: z_K = (I + h B)^K z_0 and ℓ_K = −K h Tr B; one velocity evaluation per step.
    matrix = torch.randn(2, 2, generator=generator, dtype=F64)
    z0 = torch.randn(8, 2, generator=generator, dtype=F64)
    with torch.no_grad():
        result = integrate_with_log_density(
            linear_field(matrix), z0, None, 0.0, 1.0, method="euler", options={"step_size": 0.1}
        )
    step = torch.linalg.matrix_power(EYE + 0.1 * matrix, 10)
    torch.testing.assert_close(result.x_end, z0 @ step.T)
    torch.testing.assert_close(result.log_density_change, torch.full((8,), -float(torch.trace(matrix)), dtype=F64))
    assert result.nfe == 10
    assert result.log_p_end is None and result.trajectory is None

    with torch.no_grad():
        rk4 = integrate_with_log_density(
            linear_field(matrix), z0, None, 0.0, 1.0, method="rk4", options={"step_size": 0.25}
        )
        adaptive = integrate_with_log_density(linear_field(matrix), z0, None, 0.0, 1.0)
    assert rk4.nfe == 16
    assert adaptive.nfe > 0


def test_t_eval_returns_the_trajectory_in_both_directions(generator):
    # dz/dt = B z: z(t) = exp(t B) z(0).
    matrix = torch.randn(2, 2, generator=generator, dtype=F64)
    z0 = torch.randn(8, 2, generator=generator, dtype=F64)
    log_p0 = standard_normal_log_prob(z0)
    t_eval = [0.0, 0.25, 0.5, 1.0]
    with torch.no_grad():
        forward = integrate_with_log_density(
            linear_field(matrix), z0, log_p0, 0.0, 1.0, rtol=1e-9, atol=1e-9, t_eval=t_eval
        )
    assert forward.trajectory.shape == (4, 8, 2) and forward.log_p_trajectory.shape == (4, 8)
    for k, s in enumerate(t_eval):
        torch.testing.assert_close(forward.trajectory[k], z0 @ torch.linalg.matrix_exp(s * matrix).T)
        torch.testing.assert_close(forward.log_p_trajectory[k], log_p0 - s * torch.trace(matrix))

    with torch.no_grad():
        backward = integrate_with_log_density(
            linear_field(matrix), forward.x_end, None, 1.0, 0.0, rtol=1e-9, atol=1e-9, t_eval=[0.5]
        )
    torch.testing.assert_close(backward.trajectory[0], forward.trajectory[2])
    torch.testing.assert_close(backward.x_end, z0)


def test_an_empty_interval_is_the_identity(generator):
    z0 = torch.randn(3, 2, generator=generator)
    result = integrate_with_log_density(tanh_cubed_velocity, z0, None, 0.5, 0.5)
    torch.testing.assert_close(result.x_end, z0)
    torch.testing.assert_close(result.log_density_change, torch.zeros(3))
    assert result.nfe == 0


def test_deform_gaussian_example_tracks_samples_and_log_densities(generator):
    times = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    example = deform_gaussian_example(500, times=times, generator=generator)
    assert list(example.samples) == list(times) == list(example.log_density)
    assert all(example.samples[s].shape == (500, 2) for s in times)
    z0 = example.samples[0.0]
    torch.testing.assert_close(z0, torch.randn(500, 2, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(example.log_density[0.0], standard_normal_log_prob(z0))
    # The trace 3 z² sech²(z³) is ≥ 0, so log-densities only decrease along the flow.
    steps = torch.stack([example.log_density[s] for s in times])
    assert (steps.diff(dim=0) <= 1e-6).all()
    assert (steps[-1] < steps[0]).any()


def test_log_prob_without_a_source_density_explains_the_fix():
    with pytest.raises(ValueError, match="sample-only source cannot give log_prob") as info:
        log_prob(tanh_cubed_velocity, torch.zeros(3, 2), None)
    assert "source distribution with a log_prob" in str(info.value)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0], [float("inf"), 0.0]]), ValueError, "2 of 3 rows"),
        (torch.zeros(4), ValueError, r"shape \(N, D\)"),
        (torch.zeros(2, 2, 2), ValueError, r"shape \(N, D\)"),
        (torch.zeros(0, 2), ValueError, "non-empty"),
        (torch.zeros(3, 2, dtype=torch.int64), TypeError, "floating-point"),
        ([[0.0, 1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_log_prob_validates_points(x, error, message):
    with pytest.raises(error, match=message):
        log_prob(tanh_cubed_velocity, x, standard_normal_log_prob)


def test_argument_errors_name_the_argument():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="divergence_method"):
        integrate_with_log_density(tanh_cubed_velocity, x, None, 0.0, 1.0, divergence_method="trace")
    with pytest.raises(ValueError, match="t_eval"):
        integrate_with_log_density(tanh_cubed_velocity, x, None, 0.0, 1.0, t_eval=[1.5])
    with pytest.raises(ValueError, match="log_p_start"):
        integrate_with_log_density(tanh_cubed_velocity, x, torch.zeros(4), 0.0, 1.0)
    with pytest.raises(ValueError, match="velocity"):
        divergence(lambda x, t: x[:, :1], x, 0.0)
    with pytest.raises(ValueError, match="noise"):
        divergence(tanh_cubed_velocity, x, 0.0, method="hutchinson")
    with pytest.raises(ValueError, match="source_log_prob"):
        log_prob(tanh_cubed_velocity, x, lambda z: z)


@pytest.mark.parametrize(("num_steps", "atol"), [(8, 5e-6), (32, 2e-8)])
def test_fixed_step_rk4_log_prob_of_the_affine_flow_matches_the_closed_form(generator, num_steps, atol):
    """The evaluation's fixed-step CNF solve (RK4, ``num_steps`` steps) on the straight-line flow from N(0, I) to
    N(0, A Aᵀ): its error shrinks like h⁴ (8 → 32 steps: 256 times smaller), to the closed-form log-density."""
    from hfgen.methods.cnf import cnf_log_prob

    y = torch.randn(200, 2, generator=generator, dtype=F64) @ A.T
    expected = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=F64), A @ A.T).log_prob(y)
    with torch.no_grad():
        log_p = cnf_log_prob(affine_velocity, y, standard_normal_log_prob, "rk4", num_steps)
    torch.testing.assert_close(log_p, expected, rtol=0, atol=atol)
