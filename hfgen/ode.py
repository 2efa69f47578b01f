"""Adaptive ODE solving of flow fields with torchdiffeq (Chen et al. 2018)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

VelocityField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ODESolution:
    """End state ``x(t_end)``, the states at the requested times (``(len(t_eval), N, D)``) and the number of
    velocity evaluations (NFE) the solver used."""

    x_end: torch.Tensor
    trajectory: torch.Tensor | None
    nfe: int


class CountingField:
    """Wraps a velocity field ``v(x, t)`` as torchdiffeq's ``f(t, x)`` and counts its evaluations."""

    def __init__(self, velocity: VelocityField):
        self.velocity = velocity
        self.nfe = 0

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.velocity(x, t)


def solve_ode(
    velocity: VelocityField,
    x: torch.Tensor,
    t_start: float = 0.0,
    t_end: float = 1.0,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_eval: Sequence[float] | None = None,
    options: dict | None = None,
) -> ODESolution:
    r"""Solve ``dx/dt = v(x, t)`` from ``t_start`` to ``t_end`` with ``torchdiffeq.odeint``.

    ``method`` is any torchdiffeq solver: adaptive (``dopri5``, ``dopri8``, ``bosh3``, ``adaptive_heun``) with
    tolerances ``rtol``/``atol``, or fixed-step (``euler``, ``midpoint``, ``rk4``) with
    ``options={"step_size": h}``. ``t_eval`` (increasing or decreasing, from ``t_start`` to ``t_end``) asks for
    the intermediate states.
    """
    from torchdiffeq import odeint

    if rtol <= 0 or atol <= 0:
        raise ValueError(f"`rtol` and `atol` must be > 0, got rtol={rtol}, atol={atol}")
    times = list(t_eval) if t_eval is not None else [t_start, t_end]
    if times[0] != t_start or times[-1] != t_end:
        raise ValueError(f"`t_eval` must start at t_start={t_start} and end at t_end={t_end}, got {times}")
    field = CountingField(velocity)
    grid = torch.tensor(times, dtype=x.dtype, device=x.device)
    states = odeint(field, x, grid, method=method, rtol=rtol, atol=atol, options=options)
    return ODESolution(x_end=states[-1], trajectory=states if t_eval is not None else None, nfe=field.nfe)
