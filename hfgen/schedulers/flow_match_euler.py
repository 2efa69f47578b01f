"""Fixed-step ODE solver for flow matching, as a diffusers scheduler."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

SOLVERS = ("euler", "heun", "midpoint")


@dataclass
class FlowMatchEulerSchedulerOutput(BaseOutput):
    """Output of :meth:`FlowMatchEulerScheduler.step`.

    ``prev_sample`` is the state after this call (diffusers' name for "the next sample"); for two-stage
    solvers the first call of a step returns the intermediate stage point. ``step_complete`` says whether
    ``prev_sample`` is the end of a full step ``x_{i+1}``.
    """

    prev_sample: torch.Tensor
    step_complete: bool = True


class FlowMatchEulerScheduler(SchedulerMixin, ConfigMixin):
    r"""Integrates the flow-matching ODE ``dx/dt = v(x, t)`` from ``t = 0`` (source) to ``t = 1`` (data).

    Convention (Lipman et al. 2022, *Flow Matching for Generative Modeling*): ``t ∈ [0, 1]``, ``t = 0`` is the
    source (noise), ``t = 1`` the data, and the linear path is ``x_t = (1 − t) x_0 + t x_1``.
    On the uniform grid ``t_i = i / n``, ``h = 1 / n``:

    - ``euler``:    ``x_{i+1} = x_i + h v(x_i, t_i)`` (one evaluation per step);
    - ``heun``:     ``x̃ = x_i + h v(x_i, t_i)``, ``x_{i+1} = x_i + h/2 [v(x_i, t_i) + v(x̃, t_{i+1})]``;
    - ``midpoint``: ``x̃ = x_i + h/2 v(x_i, t_i)``, ``x_{i+1} = x_i + h v(x̃, t_i + h/2)``.

    Two-stage solvers list every evaluation time in ``timesteps`` (``2n`` entries), so the usual loop
    ``for t in scheduler.timesteps: x = scheduler.step(model(x, t), t, x).prev_sample`` runs all of them.
    """

    config_name = "scheduler_config.json"

    @register_to_config
    def __init__(self, solver: str = "euler"):
        if solver not in SOLVERS:
            raise ValueError(f"`solver` must be one of {SOLVERS}, got {solver!r}")
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0)
        self._times: list[float] = []
        self._step_sizes: list[float] = []
        self._step_index = 0
        self._stage_sample: torch.Tensor | None = None
        self._stage_derivative: torch.Tensor | None = None

    @property
    def order(self) -> int:
        """Evaluations of the velocity per step."""
        return 1 if self.config.solver == "euler" else 2

    @property
    def state_in_first_order(self) -> bool:
        """True when the next :meth:`step` call starts a new step (as in diffusers' Heun scheduler)."""
        return self._stage_sample is None

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Uniform grid ``t_i = i / n``, ``i = 0 … n``, and the evaluation times of the chosen solver."""
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise TypeError(f"`num_inference_steps` must be an int, got {num_inference_steps!r}")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        n = num_inference_steps
        grid = [i / n for i in range(n + 1)]
        if self.config.solver == "euler":
            times = grid[:-1]
            sizes = [1.0 / n] * n
        elif self.config.solver == "heun":
            times = [t for i in range(n) for t in (grid[i], grid[i + 1])]
            sizes = [1.0 / n] * (2 * n)
        else:
            times = [t for i in range(n) for t in (grid[i], grid[i] + 0.5 / n)]
            sizes = [1.0 / n] * (2 * n)
        self.num_inference_steps = n
        self._times = times
        self._step_sizes = sizes
        self.timesteps = torch.tensor(times, dtype=torch.float32, device=device)
        self._step_index = 0
        self._stage_sample = None
        self._stage_derivative = None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> FlowMatchEulerSchedulerOutput | tuple[torch.Tensor, bool]:
        """Advance the ODE by one evaluation: ``model_output`` is ``v(sample, timestep)``.

        Calls must follow ``self.timesteps`` in order (the scheduler keeps its position, as diffusers'
        schedulers do); ``generator`` is unused because the ODE is deterministic.
        """
        if self.num_inference_steps is None:
            raise RuntimeError("Call `set_timesteps(num_inference_steps)` before `step`.")
        index = self._step_index
        if index >= len(self._times):
            raise RuntimeError(
                f"`step` was called {index + 1} times but there are only {len(self._times)} timesteps; "
                "call `set_timesteps` again to start a new trajectory."
            )
        h = self._step_sizes[index]
        self._step_index = index + 1
        solver = self.config.solver
        if solver == "euler":
            prev, complete = sample + h * model_output, True
        elif self._stage_sample is None:
            self._stage_sample, self._stage_derivative = sample, model_output
            fraction = 1.0 if solver == "heun" else 0.5
            prev, complete = sample + (fraction * h) * model_output, False
        else:
            start, first = self._stage_sample, self._stage_derivative
            if solver == "heun":
                prev = start + (0.5 * h) * (first + model_output)
            else:
                prev = start + h * model_output
            self._stage_sample, self._stage_derivative, complete = None, None, True
        if not return_dict:
            return (prev, complete)
        return FlowMatchEulerSchedulerOutput(prev_sample=prev, step_complete=complete)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | float
    ) -> torch.Tensor:
        """Point of the linear path at time ``t``: ``x_t = (1 − t) x_0 + t x_1``, ``x_0 = noise``, ``x_1 = data``."""
        t = torch.as_tensor(timesteps, dtype=original_samples.dtype, device=original_samples.device)
        if t.ndim == 1:
            t = t.reshape(-1, *([1] * (original_samples.ndim - 1)))
        return (1 - t) * noise + t * original_samples

    def __len__(self) -> int:
        return len(self._times)
