"""FlowMatchEulerScheduler: solver mathematics on fields with closed-form flows, state (config round trips and
``set_timesteps`` checks: tests/test_conformance.py)."""

import math

import pytest
import torch

from hfgen.schedulers import FlowMatchEulerScheduler


def integrate(scheduler: FlowMatchEulerScheduler, field, x: torch.Tensor, steps: int) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(field(x, t), t, x).prev_sample
    return x


@pytest.mark.parametrize("solver", ["euler", "heun", "midpoint"])
def test_exact_on_constant_field(solver):
    x0 = torch.randn(7, 3, dtype=torch.float64)
    c = torch.tensor([1.5, -2.0, 0.25], dtype=torch.float64)
    x1 = integrate(FlowMatchEulerScheduler(solver=solver), lambda x, t: c.expand_as(x), x0, steps=3)
    torch.testing.assert_close(x1, x0 + c, rtol=0, atol=1e-14)


@pytest.mark.parametrize("solver", ["heun", "midpoint"])
def test_second_order_exact_on_field_linear_in_time(solver):
    # dx/dt = a + b t  ⇒  x(1) = x(0) + a + b/2; both second-order rules integrate a linear-in-t field exactly.
    a, b = torch.tensor([0.3, -1.0], dtype=torch.float64), torch.tensor([2.0, 4.0], dtype=torch.float64)
    x0 = torch.randn(5, 2, dtype=torch.float64)
    x1 = integrate(FlowMatchEulerScheduler(solver=solver), lambda x, t: (a + b * t).expand_as(x), x0, steps=4)
    torch.testing.assert_close(x1, x0 + a + b / 2, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("solver", "amplification"),
    [
        ("euler", lambda h, lam: 1 + h * lam),
        ("heun", lambda h, lam: 1 + h * lam + (h * lam) ** 2 / 2),
        ("midpoint", lambda h, lam: 1 + h * lam + (h * lam) ** 2 / 2),
    ],
)
def test_linear_ode_matches_the_solver_amplification_factor(solver, amplification):
    # dx/dt = λ x: one step multiplies by the solver's stability polynomial R(hλ).
    lam, n = -1.7, 8
    x0 = torch.randn(4, 2, dtype=torch.float64)
    x1 = integrate(FlowMatchEulerScheduler(solver=solver), lambda x, t: lam * x, x0, steps=n)
    torch.testing.assert_close(x1, x0 * amplification(1 / n, lam) ** n, rtol=1e-13, atol=0)
    assert abs(amplification(1 / n, lam) ** n - math.exp(lam)) < (0.05 if solver == "euler" else 0.005)


def test_timesteps_grid():
    scheduler = FlowMatchEulerScheduler()
    scheduler.set_timesteps(4)
    torch.testing.assert_close(scheduler.timesteps, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    heun = FlowMatchEulerScheduler(solver="heun")
    heun.set_timesteps(2)
    torch.testing.assert_close(heun.timesteps, torch.tensor([0.0, 0.5, 0.5, 1.0]))
    midpoint = FlowMatchEulerScheduler(solver="midpoint")
    midpoint.set_timesteps(2)
    torch.testing.assert_close(midpoint.timesteps, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert (scheduler.order, heun.order, midpoint.order) == (1, 2, 2)


def test_step_reports_completed_steps_and_refuses_extra_calls():
    scheduler = FlowMatchEulerScheduler(solver="heun")
    scheduler.set_timesteps(1)
    x = torch.zeros(2, 2)
    first = scheduler.step(torch.ones(2, 2), 0.0, x)
    assert not first.step_complete and not scheduler.state_in_first_order
    second = scheduler.step(torch.ones(2, 2), 1.0, first.prev_sample)
    assert second.step_complete and scheduler.state_in_first_order
    with pytest.raises(RuntimeError, match="only 2 timesteps"):
        scheduler.step(torch.ones(2, 2), 1.0, x)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        FlowMatchEulerScheduler().step(torch.ones(2, 2), 0.0, x)


def test_add_noise_is_the_linear_path():
    data, noise = torch.randn(6, 2), torch.randn(6, 2)
    scheduler = FlowMatchEulerScheduler()
    torch.testing.assert_close(scheduler.add_noise(data, noise, 0.0), noise)
    torch.testing.assert_close(scheduler.add_noise(data, noise, 1.0), data)
    t = torch.rand(6)
    torch.testing.assert_close(scheduler.add_noise(data, noise, t), (1 - t[:, None]) * noise + t[:, None] * data)


def test_unknown_solver():
    with pytest.raises(ValueError, match="solver"):
        FlowMatchEulerScheduler(solver="rk45")
