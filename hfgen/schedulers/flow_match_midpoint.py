"""The midpoint method for the flow-matching ODE, as a diffusers scheduler (the shared base:
:mod:`hfgen.schedulers.flow_match_base`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401 (see flow_match_euler)

from hfgen.schedulers.flow_match_base import FlowMatchFixedStepScheduler, FlowMatchSchedulerOutput

__all__ = ["FlowMatchMidpointScheduler", "FlowMatchMidpointSchedulerOutput"]


@dataclass
class FlowMatchMidpointSchedulerOutput(FlowMatchSchedulerOutput):
    """Output of :meth:`FlowMatchMidpointScheduler.step`: ``prev_sample`` is the state after the call (diffusers'
    name for "the next sample"): the midpoint ``x̃`` after a step's first call, ``x_{i+1}`` after its second, which
    ``step_complete`` says."""


class FlowMatchMidpointScheduler(FlowMatchFixedStepScheduler):
    r"""Integrates the flow-matching ODE ``dx/dt = v(x, t)`` from ``t = 0`` (source) to ``t = 1`` (data) with
    the explicit midpoint method (second order): on the uniform grid ``t_i = i / n``, ``h = 1 / n``,

    ``x̃ = x_i + h/2 v(x_i, t_i)``, ``x_{i+1} = x_i + h v(x̃, t_i + h/2)``.

    Convention (Lipman et al. 2022, *Flow Matching for Generative Modeling*): ``t ∈ [0, 1]``, ``t = 0`` is the
    source (noise), ``t = 1`` the data, and the linear path is ``x_t = (1 − t) x_0 + t x_1``.
    ``timesteps`` lists both evaluation times of every step (``t_0, t_0 + h/2, t_1, t_1 + h/2, …``: ``2n``
    entries), so the usual loop ``for t in scheduler.timesteps: x = scheduler.step(model(x, t), t, x).prev_sample``
    runs them all.
    """

    order = 2
    output_class = FlowMatchMidpointSchedulerOutput

    def _evaluation_times(self, n: int) -> list[float]:
        """``t_i, t_i + h/2`` for each step ``i = 0 … n − 1`` of the grid ``t_i = i / n``."""
        return [t for i in range(n) for t in (i / n, i / n + 0.5 / n)]

    def _update(self, model_output: torch.Tensor, sample: torch.Tensor, h: float) -> tuple[torch.Tensor, bool]:
        """The midpoint ``x̃`` after a step's first call (``sample`` is ``x_i``), ``x_{i+1}`` after its second
        (``sample`` is ``x̃``)."""
        if self._stage is None:
            self._stage = sample
            return sample + (0.5 * h) * model_output, False
        start = self._stage
        self._stage = None
        return start + h * model_output, True
