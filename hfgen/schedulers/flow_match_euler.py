"""Euler's method for the flow-matching ODE, as a diffusers scheduler.

Self-contained (torch and diffusers only): the module is copied verbatim into exported remote-code repos. Heun's
and the midpoint method are :mod:`hfgen.schedulers.flow_match_heun` and :mod:`hfgen.schedulers.flow_match_midpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput, logging

logger = logging.get_logger(__name__)


@dataclass
class FlowMatchEulerSchedulerOutput(BaseOutput):
    """Output of :meth:`FlowMatchEulerScheduler.step`: ``prev_sample`` is ``x_{i+1}`` (diffusers' name for "the
    next sample"); ``step_complete`` is always true (one evaluation per step), as for the two-stage schedulers'
    second call."""

    prev_sample: torch.Tensor
    step_complete: bool = True


class FlowMatchEulerScheduler(SchedulerMixin, ConfigMixin):
    r"""Integrates the flow-matching ODE ``dx/dt = v(x, t)`` from ``t = 0`` (source) to ``t = 1`` (data) with
    Euler's method: on the uniform grid ``t_i = i / n``, ``h = 1 / n``,

    ``x_{i+1} = x_i + h v(x_i, t_i)`` (first order, one evaluation per step).

    Convention (Lipman et al. 2022, *Flow Matching for Generative Modeling*): ``t ∈ [0, 1]``, ``t = 0`` is the
    source (noise), ``t = 1`` the data, and the linear path is ``x_t = (1 − t) x_0 + t x_1``.
    """

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self):
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0)
        self._step_index = 0

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

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """The evaluation times ``t_i = i / n``, ``i = 0 … n − 1``."""
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise TypeError(f"`num_inference_steps` must be an int, got {num_inference_steps!r}")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        n = num_inference_steps
        self.num_inference_steps = n
        self.timesteps = torch.tensor([i / n for i in range(n)], dtype=torch.float32, device=device)
        self._step_index = 0

    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> FlowMatchEulerSchedulerOutput | tuple[torch.Tensor, bool]:
        """One Euler step ``x_{i+1} = x_i + h v(x_i, t_i)``: ``model_output`` is ``v(sample, timestep)``.

        Calls must follow ``self.timesteps`` in order (the scheduler keeps its position, as diffusers'
        schedulers do); ``generator`` is unused because the ODE is deterministic.
        """
        if self.num_inference_steps is None:
            raise RuntimeError("Call `set_timesteps(num_inference_steps)` before `step`.")
        if self._step_index >= self.num_inference_steps:
            raise RuntimeError(
                f"`step` was called {self._step_index + 1} times but there are only {self.num_inference_steps} "
                "timesteps; call `set_timesteps` again to start a new trajectory."
            )
        self._step_index += 1
        prev = sample + (1.0 / self.num_inference_steps) * model_output
        if not return_dict:
            return (prev, True)
        return FlowMatchEulerSchedulerOutput(prev_sample=prev, step_complete=True)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | float
    ) -> torch.Tensor:
        """Point of the linear path at time ``t``: ``x_t = (1 − t) x_0 + t x_1``, ``x_0 = noise``, ``x_1 = data``."""
        t = torch.as_tensor(timesteps, dtype=original_samples.dtype, device=original_samples.device)
        if t.ndim == 1:
            t = t.reshape(-1, *([1] * (original_samples.ndim - 1)))
        return (1 - t) * noise + t * original_samples

    def __len__(self) -> int:
        return 0 if self.num_inference_steps is None else self.num_inference_steps
