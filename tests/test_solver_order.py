"""Solver-order study: fitted convergence orders of torchdiffeq's fixed-grid solvers on the course's tanh(x³) flow."""

import pytest
import torch

from hfgen.methods.continuous_flows import tanh_cubed_velocity
from hfgen.methods.solver_order import fit_order, solver_order_study

STAGES = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}


def start_points():
    x = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)[:, None]
    return torch.cat([x, 0.7 * x.flip(0)], dim=1)


def test_fitted_orders_on_the_tanh_cubed_flow():
    results = solver_order_study(tanh_cubed_velocity, start_points(), methods=tuple(STAGES))
    expected = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
    for method, order in expected.items():
        result = results[method]
        assert result.order == pytest.approx(order, abs=0.3), (method, result.errors)
        assert result.nfe == [STAGES[method] * n for n in result.num_steps]
        assert result.num_steps == [4, 8, 16, 32]
        # errors fall with the step count and stay above the reference's accuracy (~1e-10)
        assert all(a > b > 1e-9 for a, b in zip(result.errors, result.errors[1:], strict=False))


def test_euler_error_on_dx_dt_equal_t_is_half_the_step():
    # x(1) = x(0) + 1/2, Euler gives x(0) + h Σ_{i<n} i h = x(0) + (1 − h)/2: the error is exactly h/2, order 1.
    def field(x, t):
        return torch.ones_like(x) * t

    result = solver_order_study(field, torch.zeros(3, 1), methods=("euler",), num_steps=(2, 5, 10))["euler"]
    assert result.errors == pytest.approx([1 / 4, 1 / 10, 1 / 20], rel=1e-9)
    assert result.order == pytest.approx(1.0, abs=1e-9)


def test_fit_order_recovers_the_exponent():
    steps = [3, 7, 20, 50]
    assert fit_order(steps, [2.5 * n**-3.0 for n in steps]) == pytest.approx(3.0, abs=1e-12)


def test_bad_inputs():
    x = start_points()
    with pytest.raises(ValueError, match="methods"):
        solver_order_study(tanh_cubed_velocity, x, methods=("dopri5",))
    with pytest.raises(ValueError, match="methods"):
        solver_order_study(tanh_cubed_velocity, x, methods=())
    with pytest.raises(ValueError, match="num_steps"):
        solver_order_study(tanh_cubed_velocity, x, num_steps=(8, 8))
    with pytest.raises((ValueError, TypeError), match="num_steps"):
        solver_order_study(tanh_cubed_velocity, x, num_steps=(0, 8))
    with pytest.raises(ValueError, match="t_start"):
        solver_order_study(tanh_cubed_velocity, x, t_start=0.5, t_end=0.5)
    with pytest.raises(ValueError, match="shape"):
        solver_order_study(tanh_cubed_velocity, torch.zeros(3))
    with pytest.raises(ValueError, match="errors"):
        fit_order([1, 2], [0.1, 0.0])
    with pytest.raises(ValueError, match="same length"):
        fit_order([1, 2, 3], [0.1, 0.2])
