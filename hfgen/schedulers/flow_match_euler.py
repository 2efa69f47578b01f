"""Euler's method for the flow-matching ODE, as a diffusers scheduler.

Heun's and the midpoint method are :mod:`hfgen.schedulers.flow_match_heun` and
:mod:`hfgen.schedulers.flow_match_midpoint`; the grid, the step bookkeeping and the linear path are their shared base
(:mod:`hfgen.schedulers.flow_match_base`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# diffusers loads a component saved as ["hfgen.schedulers.<module>", class] by looking its base class up in <module>
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401
from diffusers.utils import logging

from hfgen.schedulers.flow_match_base import FlowMatchFixedStepScheduler, FlowMatchSchedulerOutput

__all__ = ["FlowMatchEulerScheduler", "FlowMatchEulerSchedulerOutput"]

logger = logging.get_logger(__name__)


@dataclass
class FlowMatchEulerSchedulerOutput(FlowMatchSchedulerOutput):
    """Output of :meth:`FlowMatchEulerScheduler.step`: ``prev_sample`` is ``x_{i+1}`` (diffusers' name for "the
    next sample"); ``step_complete`` is always true (one evaluation per step), as for the two-stage schedulers'
    second call."""


class FlowMatchEulerScheduler(FlowMatchFixedStepScheduler):
    r"""Integrates the flow-matching ODE ``dx/dt = v(x, t)`` from ``t = 0`` (source) to ``t = 1`` (data) with
    Euler's method: on the uniform grid ``t_i = i / n``, ``h = 1 / n``,

    ``x_{i+1} = x_i + h v(x_i, t_i)`` (first order, one evaluation per step).

    Convention (Lipman et al. 2022, *Flow Matching for Generative Modeling*): ``t ∈ [0, 1]``, ``t = 0`` is the
    source (noise), ``t = 1`` the data, and the linear path is ``x_t = (1 − t) x_0 + t x_1``.
    """

    order = 1
    output_class = FlowMatchEulerSchedulerOutput

    @classmethod
    def extract_init_dict(cls, config_dict: dict, **kwargs) -> tuple[dict, dict, dict]:
        """diffusers' split of a config into ``__init__`` arguments, unused and hidden entries, with the ``solver``
        entry of configs saved when this class held every solver kept as a hidden entry (not reported as ignored):
        ``FlowMatchingPipeline`` reads it and swaps in that solver's scheduler."""
        solver = config_dict.get("solver")
        if solver is None:
            return super().extract_init_dict(config_dict, **kwargs)
        if solver != "euler":
            logger.warning(
                f"this scheduler config was saved for the {solver!r} solver by an older hfgen: FlowMatchingPipeline "
                f"loads it with that solver's scheduler, but loaded alone it is {cls.__name__}; load it with "
                f"FlowMatch{str(solver).capitalize()}Scheduler instead"
            )
        current = {key: value for key, value in config_dict.items() if key != "solver"}
        init_dict, unused, hidden = super().extract_init_dict(current, **kwargs)
        return init_dict, unused, {**hidden, "solver": solver}

    def _evaluation_times(self, n: int) -> list[float]:
        """``t_i = i / n``, ``i = 0 … n − 1``."""
        return [i / n for i in range(n)]

    def _update(self, model_output: torch.Tensor, sample: torch.Tensor, h: float) -> tuple[torch.Tensor, bool]:
        """``x_{i+1} = x_i + h v(x_i, t_i)``."""
        return sample + h * model_output, True
