r"""What the fixed-step flow-matching schedulers share (Euler, Heun, midpoint: one module each).

Each integrates the flow-matching ODE ``dx/dt = v(x, t)`` from ``t = 0`` (source) to ``t = 1`` (data) on the uniform
grid ``t_i = i / n``, ``h = 1 / n``, with ``order`` evaluations of ``v`` per step. Convention (Lipman et al. 2022,
*Flow Matching for Generative Modeling*): ``t = 0`` is the source (noise), ``t = 1`` the data, and the linear path
is ``x_t = (1 − t) x_0 + t x_1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import Tensor

from hfgen.checks import check_int
from hfgen.schedulers.stepping import StepScheduler
from hfgen.utils import per_sample


@dataclass
class FlowMatchSchedulerOutput(BaseOutput):
    """Output of a flow-matching scheduler's ``step``: ``prev_sample`` is the state after the call (diffusers' name
    for "the next sample"); ``step_complete`` says whether it ends a step (always, for a one-stage solver)."""

    prev_sample: torch.Tensor
    step_complete: bool = True


class FlowMatchFixedStepScheduler(StepScheduler):
    """The grid, the position in ``timesteps``, the two-call step state and the linear path of the fixed-step solvers.

    A solver gives ``order`` (evaluations per step), ``output_class``, :meth:`_evaluation_times` (the ``order · n``
    times at which ``step`` receives ``v``) and :meth:`_update` (the state after one evaluation).
    """

    output_class = FlowMatchSchedulerOutput

    @register_to_config
    def __init__(self):
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0)
        self._step_index = 0
        self._stage: object = None  # what the first call of a two-stage step keeps for the second

    @property
    def state_in_first_order(self) -> bool:
        """True when the next :meth:`step` call starts a new step (as in diffusers' Heun scheduler)."""
        return self._stage is None

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Plan ``n = num_inference_steps`` steps: ``timesteps`` holds the evaluation times of each step in turn."""
        self.num_inference_steps = check_int(num_inference_steps, "num_inference_steps")
        times = self._evaluation_times(num_inference_steps)
        self.timesteps = torch.tensor(times, dtype=torch.float32, device=device)
        self._step_index = 0
        self._stage = None

    def _evaluation_times(self, n: int) -> list[float]:
        raise NotImplementedError

    def _update(self, model_output: torch.Tensor, sample: torch.Tensor, h: float) -> tuple[torch.Tensor, bool]:
        raise NotImplementedError

    def _step(
        self, model_output: Tensor, timestep: Tensor | float, sample: Tensor, generator: torch.Generator | None
    ) -> FlowMatchSchedulerOutput:
        """Advance by one evaluation: ``model_output`` is ``v(sample, timestep)``; returns the next state and whether
        it completes a step.

        Calls must follow ``self.timesteps`` in order (the scheduler keeps its position, as diffusers'
        schedulers do); ``generator`` is unused because the ODE is deterministic.
        """
        self._advance()
        prev, complete = self._update(model_output, sample, 1.0 / self.num_inference_steps)
        return self.output_class(prev_sample=prev, step_complete=complete)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | float
    ) -> torch.Tensor:
        """Point of the linear path at time ``t``: ``x_t = (1 − t) x_0 + t x_1``, ``x_0 = noise``, ``x_1 = data``."""
        t = per_sample(torch.as_tensor(timesteps, dtype=original_samples.dtype), original_samples)
        return (1 - t) * noise + t * original_samples

    def __len__(self) -> int:
        return len(self.timesteps)
