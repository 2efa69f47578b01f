"""Convergence order of fixed-step ODE solvers: error against a tight adaptive reference versus step count."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hfgen.checks import check_int
from hfgen.methods.continuous_flows import solve_ode
from hfgen.utils import VelocityField, check_points

__all__ = ["SolverOrderResult", "fit_order", "solver_order_study"]

FIXED_STEP_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4")


@dataclass
class SolverOrderResult:
    """One solver's convergence study: for each step count ``n`` the error at ``t_end`` (root mean square over
    the points of ``‖x_n − x_ref‖``) and the function evaluations of one solve, and the fitted order ``p``."""

    method: str
    num_steps: list[int]
    errors: list[float]
    nfe: list[int]
    order: float


def fit_order(num_steps: Sequence[int], errors: Sequence[float]) -> float:
    r"""Least-squares slope ``p`` of ``log error = log C − p log n`` (an order-``p`` method has global error
    ``O(h^p)``, ``h = (t_end − t_start)/n``; Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.3)."""
    if len(num_steps) != len(errors) or len(num_steps) < 2:
        raise ValueError(
            f"`num_steps` and `errors` must have the same length >= 2, got {len(num_steps)} and {len(errors)}"
        )
    if any(e <= 0 or not math.isfinite(e) for e in errors):
        raise ValueError(f"`errors` must be finite and > 0 for a log-log fit, got {list(errors)}")
    log_n = torch.tensor([math.log(n) for n in num_steps], dtype=torch.float64)
    log_e = torch.tensor([math.log(e) for e in errors], dtype=torch.float64)
    centred = log_n - log_n.mean()
    return float(-(centred * (log_e - log_e.mean())).sum() / centred.square().sum())


def solver_order_study(
    velocity: VelocityField,
    x: Tensor,
    t_start: float = 0.0,
    t_end: float = 1.0,
    methods: Sequence[str] = ("euler", "midpoint", "heun2", "rk4"),
    num_steps: Sequence[int] = (4, 8, 16, 32),
    reference_rtol: float = 1e-10,
    reference_atol: float = 1e-10,
) -> dict[str, SolverOrderResult]:
    r"""Error versus step count of torchdiffeq's fixed-grid solvers on ``dx/dt = v(x, t)``.

    Each method takes ``n`` uniform steps from ``t_start`` to ``t_end`` (Euler order 1; midpoint and Heun
    ``heun2`` order 2; ``heun3`` order 3; ``rk4``, the 3/8 rule, order 4), compared with a ``dopri5`` reference
    (Dormand & Prince 1980) solved in float64 at ``reference_rtol``/``reference_atol``; the order is the fitted
    log-log slope (:func:`fit_order`). ``x`` ``(N, D)`` are the start points; every solve runs in float64. The
    fit is meaningful while the smallest error stays well above the reference's own error (about
    ``reference_rtol``) and the step counts are in the asymptotic range; the defaults suit smooth fields on
    ``[0, 1]``.
    For the course's field ``v(x, t) = tanh(x³)`` use
    :func:`~hfgen.methods.continuous_flows.tanh_cubed_velocity`.
    """
    x = check_points(x, name="x").to(torch.float64)
    unknown = [m for m in methods if m not in FIXED_STEP_METHODS]
    if not methods or unknown:
        raise ValueError(f"`methods` must be a non-empty subset of {FIXED_STEP_METHODS}, got {list(methods)}")
    steps = [check_int(n, "num_steps") for n in num_steps]
    if len(set(steps)) < 2:
        raise ValueError(f"`num_steps` needs at least two different step counts, got {steps}")
    t_start, t_end = float(t_start), float(t_end)
    if t_start == t_end:
        raise ValueError(f"`t_start` and `t_end` must differ, got {t_start}")
    # step_t keeps the adaptive reference from evaluating the field beyond t_end.
    reference = solve_ode(
        velocity,
        x,
        t_start,
        t_end,
        method="dopri5",
        rtol=reference_rtol,
        atol=reference_atol,
        options={"step_t": torch.tensor([t_end], dtype=torch.float64)},
    )
    results = {}
    for method in methods:
        errors, nfe = [], []
        for n in steps:
            grid = torch.linspace(t_start, t_end, n + 1, dtype=torch.float64).tolist()
            grid[0], grid[-1] = t_start, t_end
            # A fixed-grid torchdiffeq solver steps exactly on the output times when no step size is given.
            solution = solve_ode(velocity, x, t_start, t_end, method=method, t_eval=grid)
            errors.append(float((solution.x_end - reference.x_end).norm(dim=1).square().mean().sqrt()))
            nfe.append(solution.nfe)
        results[method] = SolverOrderResult(method, steps, errors, nfe, fit_order(steps, errors))
    return results
