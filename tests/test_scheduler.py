"""The flow-matching schedulers (one per solver: Euler, Heun, midpoint, on one base): solver mathematics on fields
with closed-form flows, every step bit-identical to its formula, the numbers of the former multi-solver class, the
saved configs and remote-code files; state (config round trips and ``set_timesteps`` checks:
tests/test_conformance.py)."""

import inspect
import json
import math
from pathlib import Path

import diffusers
import pytest
import torch
from safetensors.torch import load_file

from hfgen.remote_code.bundling import bundle_module, check_self_contained
from hfgen.schedulers.flow_match_base import FlowMatchFixedStepScheduler
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler
from hfgen.schedulers.flow_match_heun import FlowMatchHeunScheduler
from hfgen.schedulers.flow_match_midpoint import FlowMatchMidpointScheduler
from hfgen.schedulers.flow_match_solvers import SOLVERS, flow_match_scheduler, flow_match_solver

#: x0 and the states x_0 … x_n of every solver for n = 1, 3, 7 on the field below, written by the multi-solver
#: FlowMatchEulerScheduler(solver=…) before the split into one class per solver
REFERENCE = Path(__file__).parent / "fixtures" / "flow_match_solvers" / "reference.safetensors"


def integrate(scheduler, field, x: torch.Tensor, steps: int) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(field(x, t), t, x).prev_sample
    return x


@pytest.mark.parametrize("solver", SOLVERS)
def test_exact_on_constant_field(solver):
    x0 = torch.randn(7, 3, dtype=torch.float64)
    c = torch.tensor([1.5, -2.0, 0.25], dtype=torch.float64)
    x1 = integrate(flow_match_scheduler(solver), lambda x, t: c.expand_as(x), x0, steps=3)
    torch.testing.assert_close(x1, x0 + c, rtol=0, atol=1e-14)


@pytest.mark.parametrize("solver", ["heun", "midpoint"])
def test_second_order_exact_on_field_linear_in_time(solver):
    # dx/dt = a + b t  ⇒  x(1) = x(0) + a + b/2; both second-order rules integrate a linear-in-t field exactly.
    a, b = torch.tensor([0.3, -1.0], dtype=torch.float64), torch.tensor([2.0, 4.0], dtype=torch.float64)
    x0 = torch.randn(5, 2, dtype=torch.float64)
    x1 = integrate(flow_match_scheduler(solver), lambda x, t: (a + b * t).expand_as(x), x0, steps=4)
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
    x1 = integrate(flow_match_scheduler(solver), lambda x, t: lam * x, x0, steps=n)
    torch.testing.assert_close(x1, x0 * amplification(1 / n, lam) ** n, rtol=1e-13, atol=0)
    assert abs(amplification(1 / n, lam) ** n - math.exp(lam)) < (0.05 if solver == "euler" else 0.005)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("steps", [1, 3, 7])
def test_states_match_the_former_multi_solver_class(solver, steps):
    """The stored states were computed by the former class on another machine: float32 ``sin`` and arithmetic may
    round differently on another CPU, by a few units in the last place per step (at most 14 field evaluations of
    values of order 1), so they are compared to 1e-5 relative + 1e-6 absolute; a wrong stage weight or time differs
    by order 1e-2."""
    reference = load_file(REFERENCE)
    scheduler = flow_match_scheduler(solver)
    scheduler.set_timesteps(steps)
    x = reference["x0"]
    states = [x]
    for t in scheduler.timesteps:
        x, complete = scheduler.step(torch.sin(3 * x) * (1 + t) - x, t, x, return_dict=False)
        if complete:
            states.append(x)
    torch.testing.assert_close(scheduler.timesteps, reference[f"{solver}_{steps}_timesteps"], rtol=0, atol=1e-7)
    torch.testing.assert_close(torch.stack(states), reference[f"{solver}_{steps}"], rtol=1e-5, atol=1e-6)


def test_timesteps_grid():
    euler, heun, midpoint = FlowMatchEulerScheduler(), FlowMatchHeunScheduler(), FlowMatchMidpointScheduler()
    euler.set_timesteps(4)
    torch.testing.assert_close(euler.timesteps, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    heun.set_timesteps(2)
    torch.testing.assert_close(heun.timesteps, torch.tensor([0.0, 0.5, 0.5, 1.0]))
    midpoint.set_timesteps(2)
    torch.testing.assert_close(midpoint.timesteps, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert (euler.order, heun.order, midpoint.order) == (1, 2, 2)
    assert (len(euler), len(heun), len(midpoint)) == (4, 4, 4)


@pytest.mark.parametrize("scheduler_class", [FlowMatchHeunScheduler, FlowMatchMidpointScheduler])
def test_two_stage_step_reports_completed_steps_and_refuses_extra_calls(scheduler_class):
    scheduler = scheduler_class()
    scheduler.set_timesteps(1)
    x = torch.zeros(2, 2)
    first = scheduler.step(torch.ones(2, 2), 0.0, x)
    assert not first.step_complete and not scheduler.state_in_first_order
    second = scheduler.step(torch.ones(2, 2), 1.0, first.prev_sample)
    assert second.step_complete and scheduler.state_in_first_order
    with pytest.raises(RuntimeError, match="only 2 timesteps"):
        scheduler.step(torch.ones(2, 2), 1.0, x)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler_class().step(torch.ones(2, 2), 0.0, x)


def test_euler_step_is_complete_and_refuses_extra_calls():
    scheduler = FlowMatchEulerScheduler()
    scheduler.set_timesteps(2)
    x = torch.zeros(2, 2)
    assert scheduler.step(torch.ones(2, 2), 0.0, x).step_complete
    scheduler.step(torch.ones(2, 2), 0.5, x)
    with pytest.raises(RuntimeError, match="only 2 timesteps"):
        scheduler.step(torch.ones(2, 2), 0.5, x)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        FlowMatchEulerScheduler().step(torch.ones(2, 2), 0.0, x)


@pytest.mark.parametrize("solver", SOLVERS)
def test_add_noise_is_the_linear_path(solver):
    data, noise = torch.randn(6, 2), torch.randn(6, 2)
    scheduler = flow_match_scheduler(solver)
    torch.testing.assert_close(scheduler.add_noise(data, noise, 0.0), noise)
    torch.testing.assert_close(scheduler.add_noise(data, noise, 1.0), data)
    t = torch.rand(6)
    torch.testing.assert_close(scheduler.add_noise(data, noise, t), (1 - t[:, None]) * noise + t[:, None] * data)


def test_the_factory_and_its_inverse_name_the_same_solvers():
    for solver in SOLVERS:
        assert flow_match_solver(flow_match_scheduler(solver)) == solver
    for bad in ("rk45", None, 3):
        with pytest.raises(ValueError, match="`solver` must be one of"):
            flow_match_scheduler(bad)
    with pytest.raises(TypeError, match="`scheduler` must be one of"):
        flow_match_solver(object())


SOLVER_FORMULAS = {
    # one step from x with h = 1/n and the step's evaluation times (t_i; Heun t_{i+1}, midpoint t_i + h/2), written
    # out in the order of operations of its scheduler
    "euler": lambda v, x, times, h: x + h * v(x, times[0]),
    "heun": lambda v, x, times, h: x + (0.5 * h) * (v(x, times[0]) + v(x + h * v(x, times[0]), times[1])),
    "midpoint": lambda v, x, times, h: x + h * v(x + (0.5 * h) * v(x, times[0]), times[1]),
}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("steps", [1, 3, 7])
def test_each_step_is_bit_identical_to_its_formula(solver, steps):
    # computed here in one run: the scheduler's state after every step equals the solver's formula to the bit
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(steps))
    field = lambda y, t: torch.sin(3 * y) * (1 + t) - y  # noqa: E731
    scheduler = flow_match_scheduler(solver)
    scheduler.set_timesteps(steps)
    expected, calls = x, 0
    for t in scheduler.timesteps:
        x, complete = scheduler.step(field(x, t), t, x, return_dict=False)
        calls += 1
        if complete:
            times = scheduler.timesteps[calls - scheduler.order : calls]
            expected = SOLVER_FORMULAS[solver](field, expected, times, 1.0 / steps)
            assert torch.equal(x, expected), (solver, steps, calls)
    assert calls == scheduler.order * steps


SCHEDULER_CLASSES = [FlowMatchEulerScheduler, FlowMatchHeunScheduler, FlowMatchMidpointScheduler]


@pytest.mark.parametrize("scheduler_class", SCHEDULER_CLASSES)
def test_a_saved_config_names_the_class_and_nothing_else(tmp_path, scheduler_class):
    scheduler_class().save_config(tmp_path)
    config = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert config == {"_class_name": scheduler_class.__name__, "_diffusers_version": diffusers.__version__}


@pytest.mark.parametrize("scheduler_class", SCHEDULER_CLASSES)
def test_each_remote_code_file_holds_its_scheduler_and_the_shared_base(scheduler_class):
    text = bundle_module(scheduler_class.__module__, f"{scheduler_class.__name__}.")
    check_self_contained(text, scheduler_class.__name__)
    assert inspect.getsource(scheduler_class) in text and inspect.getsource(FlowMatchFixedStepScheduler) in text


def test_a_legacy_config_loaded_alone_keeps_its_solver_and_says_which_class_to_use(caplog):
    from diffusers.utils import logging

    logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            legacy = FlowMatchEulerScheduler.from_config({"_class_name": "FlowMatchEulerScheduler", "solver": "heun"})
    finally:
        logging.disable_propagation()
    assert type(legacy) is FlowMatchEulerScheduler and legacy.config["solver"] == "heun"
    assert "load it with FlowMatchHeunScheduler" in caplog.text and "will be ignored" not in caplog.text
