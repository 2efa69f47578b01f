"""The fixed-step flow-matching schedulers by solver name (``--solver``): one scheduler class per solver."""

from __future__ import annotations

from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler
from hfgen.schedulers.flow_match_heun import FlowMatchHeunScheduler
from hfgen.schedulers.flow_match_midpoint import FlowMatchMidpointScheduler

__all__ = ["flow_match_scheduler", "FLOW_MATCH_SCHEDULERS", "flow_match_solver"]

FlowMatchScheduler = FlowMatchEulerScheduler | FlowMatchHeunScheduler | FlowMatchMidpointScheduler
#: solver name → the scheduler that integrates ``dx/dt = v(x, t)`` on ``t_i = i / n`` with it
FLOW_MATCH_SCHEDULERS: dict[str, type[FlowMatchScheduler]] = {
    "euler": FlowMatchEulerScheduler,
    "heun": FlowMatchHeunScheduler,
    "midpoint": FlowMatchMidpointScheduler,
}
SOLVERS = tuple(FLOW_MATCH_SCHEDULERS)


def flow_match_scheduler(solver: str) -> FlowMatchScheduler:
    """A new scheduler for ``solver``: ``"euler"`` (first order), ``"heun"`` or ``"midpoint"`` (second order)."""
    if not isinstance(solver, str) or solver not in FLOW_MATCH_SCHEDULERS:
        raise ValueError(f"`solver` must be one of {SOLVERS}, got {solver!r}")
    return FLOW_MATCH_SCHEDULERS[solver]()


def flow_match_solver(scheduler: object) -> str:
    """The solver name of a flow-matching scheduler (the inverse of :func:`flow_match_scheduler`)."""
    for solver, scheduler_class in FLOW_MATCH_SCHEDULERS.items():
        if isinstance(scheduler, scheduler_class):
            return solver
    names = ", ".join(cls.__name__ for cls in FLOW_MATCH_SCHEDULERS.values())
    raise TypeError(f"`scheduler` must be one of {names}, got {type(scheduler).__name__}")
