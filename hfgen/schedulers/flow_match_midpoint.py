"""The midpoint method for the flow-matching ODE, as a diffusers scheduler.

Self-contained (torch and diffusers only): the module is copied verbatim into exported remote-code repos, so the
grid check, the two-call step state and ``add_noise`` repeat those of the Euler and Heun modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput


@dataclass
class FlowMatchMidpointSchedulerOutput(BaseOutput):
    """Output of :meth:`FlowMatchMidpointScheduler.step`: ``prev_sample`` is the state after the call (diffusers'
    name for "the next sample"): the midpoint ``x̃`` after a step's first call, ``x_{i+1}`` after its second, which
    ``step_complete`` says."""

    prev_sample: torch.Tensor
    step_complete: bool = True


class FlowMatchMidpointScheduler(SchedulerMixin, ConfigMixin):
    r"""Integrates the flow-matching ODE ``dx/dt = v(x, t)`` from ``t = 0`` (source) to ``t = 1`` (data) with
    the explicit midpoint method (second order): on the uniform grid ``t_i = i / n``, ``h = 1 / n``,

    ``x̃ = x_i + h/2 v(x_i, t_i)``, ``x_{i+1} = x_i + h v(x̃, t_i + h/2)``.

    Convention (Lipman et al. 2022, *Flow Matching for Generative Modeling*): ``t ∈ [0, 1]``, ``t = 0`` is the
    source (noise), ``t = 1`` the data, and the linear path is ``x_t = (1 − t) x_0 + t x_1``.
    ``timesteps`` lists both evaluation times of every step (``t_0, t_0 + h/2, t_1, t_1 + h/2, …``: ``2n``
    entries), so the usual loop ``for t in scheduler.timesteps: x = scheduler.step(model(x, t), t, x).prev_sample``
    runs them all.
    """

    config_name = "scheduler_config.json"
    order = 2

    @register_to_config
    def __init__(self):
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0)
        self._step_index = 0
        self._stage: torch.Tensor | None = None

    @property
    def state_in_first_order(self) -> bool:
        """True when the next :meth:`step` call starts a new step (as in diffusers' Heun scheduler)."""
        return self._stage is None

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """The evaluation times ``t_i, t_i + h/2`` of each step ``i = 0 … n − 1`` on the grid ``t_i = i / n``."""
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise TypeError(f"`num_inference_steps` must be an int, got {num_inference_steps!r}")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        n = num_inference_steps
        self.num_inference_steps = n
        self.timesteps = torch.tensor(
            [t for i in range(n) for t in (i / n, i / n + 0.5 / n)], dtype=torch.float32, device=device
        )
        self._step_index = 0
        self._stage = None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> FlowMatchMidpointSchedulerOutput | tuple[torch.Tensor, bool]:
        """Advance by one evaluation: ``model_output`` is ``v(sample, timestep)``; the first call of a step returns
        the midpoint ``x̃``, the second ``x_{i+1}``.

        Calls must follow ``self.timesteps`` in order (the scheduler keeps its position, as diffusers'
        schedulers do); ``generator`` is unused because the ODE is deterministic.
        """
        if self.num_inference_steps is None:
            raise RuntimeError("Call `set_timesteps(num_inference_steps)` before `step`.")
        if self._step_index >= 2 * self.num_inference_steps:
            raise RuntimeError(
                f"`step` was called {self._step_index + 1} times but there are only {2 * self.num_inference_steps} "
                "timesteps; call `set_timesteps` again to start a new trajectory."
            )
        self._step_index += 1
        h = 1.0 / self.num_inference_steps
        if self._stage is None:
            self._stage = sample
            prev, complete = sample + (0.5 * h) * model_output, False
        else:
            prev, complete = self._stage + h * model_output, True
            self._stage = None
        if not return_dict:
            return (prev, complete)
        return FlowMatchMidpointSchedulerOutput(prev_sample=prev, step_complete=complete)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | float
    ) -> torch.Tensor:
        """Point of the linear path at time ``t``: ``x_t = (1 − t) x_0 + t x_1``, ``x_0 = noise``, ``x_1 = data``."""
        t = torch.as_tensor(timesteps, dtype=original_samples.dtype, device=original_samples.device)
        if t.ndim == 1:
            t = t.reshape(-1, *([1] * (original_samples.ndim - 1)))
        return (1 - t) * noise + t * original_samples

    def __len__(self) -> int:
        return 0 if self.num_inference_steps is None else 2 * self.num_inference_steps
