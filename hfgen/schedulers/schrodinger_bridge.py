"""The γ-step Markov chain of a diffusion Schrödinger bridge, run forward or backward, as a diffusers scheduler."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401 (see flow_match_euler)
from diffusers.utils import BaseOutput
from torch import Tensor

from hfgen.checks import check_arguments, check_bool, check_choice, check_int, check_number
from hfgen.schedulers.stepping import StepScheduler

__all__ = ["BridgeScheduler", "BridgeSchedulerOutput"]

SCHEDULES = ("constant", "symmetric")
DIRECTIONS = ("forward", "backward")


@dataclass
class BridgeSchedulerOutput(BaseOutput):
    """Output of :meth:`BridgeScheduler.step`: ``prev_sample`` is the next state of the chain (diffusers' name)
    and ``mean`` its conditional mean, the network's prediction before the noise is added."""

    prev_sample: torch.Tensor
    mean: torch.Tensor


def check_direction(direction: object) -> str:
    """Return ``direction`` if it is ``"forward"`` or ``"backward"``, else raise a clear ``ValueError``."""
    return check_choice(direction, "direction", DIRECTIONS)


class BridgeScheduler(StepScheduler):
    r"""The γ-step chain of De Bortoli et al. 2021, *Diffusion Schrödinger Bridge with Applications to Score-Based
    Generative Modeling* (DSB), with mean-predicting networks.

    Convention: states ``X_0, …, X_N`` (``N = num_steps``), ``X_0 ~ p_data``, ``X_N ~ p'_data``; step ``k``
    joins ``X_k`` and ``X_{k+1}`` and has size ``γ_k`` (``k = 0 … N − 1``). The two directions are

    - forward:  ``X_{k+1} = f_k(X_k) + √(2γ_k) Z``, the network is evaluated at timestep ``k``;
    - backward: ``X_k = b_{k+1}(X_{k+1}) + √(2γ_k) Z``, the network is evaluated at timestep ``k + 1``;

    with ``Z ~ N(0, I)``: a network is always called with the index of the state it reads, and predicts the
    mean of the next state (DSB's mean matching: ``f_k(x) = x + γ_k drift``). The Brownian reference is
    ``f_k(x) = x`` and ``X_N − X_0 ~ N(0, σ² I)`` with ``σ² = 2 Σ_k γ_k`` (:attr:`reference_variance`).

    Step sizes: ``gamma`` is the mean step (``None``: ``2 / N``, so ``Σ_k γ_k = 2``); the ``constant`` schedule
    has ``γ_k = gamma``, the ``symmetric`` one ``γ_k ∝ min(k + 1, N − k)^p`` (``p = schedule_power``), growing
    to the middle of the chain and shrinking back (small steps near both data sets, as in DSB), with the same
    ``Σ_k γ_k = N gamma``. ``p = 1`` is DSB's linear ramp; a larger ``p`` makes the end steps smaller (the noise
    of the last step, ``√(2γ_0)``, blurs what a chain delivers at its end) and the middle steps larger.

    ``final_step_noise=True`` (default) adds the noise at every step, so ``X_N`` (or ``X_0``) has the law that
    IPF matches to the marginal; ``False`` returns the mean at the last step (a denoised end point).
    """

    planning_call = "set_timesteps(direction=...)"
    config_rules = {
        "num_steps": check_int,
        "schedule": partial(check_choice, choices=SCHEDULES),
        "final_step_noise": check_bool,
        "schedule_power": partial(check_number, low=0),
    }

    @register_to_config
    def __init__(
        self,
        num_steps: int = 20,
        gamma: float | None = None,
        schedule: str = "constant",
        final_step_noise: bool = True,
        schedule_power: float = 1.0,
    ):
        check_arguments(self.config_rules, self.config)
        if gamma is not None:
            check_number(gamma, "gamma", 0, open_low=True, note="or None for 2 / num_steps")
        if schedule == "constant" and schedule_power != 1.0:
            raise ValueError(
                f"`schedule_power` shapes the 'symmetric' schedule; the 'constant' schedule takes none, got "
                f"schedule_power={schedule_power!r}"
            )
        mean_gamma = 2.0 / num_steps if gamma is None else float(gamma)
        if schedule == "constant":
            gammas = torch.full((num_steps,), mean_gamma, dtype=torch.float64)
        else:
            ramp = torch.tensor([min(k + 1, num_steps - k) for k in range(num_steps)], dtype=torch.float64)
            weights = ramp ** float(schedule_power)
            gammas = num_steps * mean_gamma * weights / weights.sum()
        self.gammas = gammas
        self.num_inference_steps: int | None = None
        self.direction: str | None = None
        self.timesteps = torch.empty(0, dtype=torch.long)
        self._step_index = 0

    @property
    def num_steps(self) -> int:
        """Number ``N`` of steps of the chain."""
        return self.config.num_steps

    @property
    def total_time(self) -> float:
        """``T = Σ_k γ_k``."""
        return float(self.gammas.sum())

    @property
    def reference_variance(self) -> float:
        """Variance ``σ² = 2 Σ_k γ_k`` of ``X_N − X_0`` under the Brownian reference ``f_k(x) = x``."""
        return 2.0 * self.total_time

    @property
    def times(self) -> torch.Tensor:
        """Diffusion times of the states, ``t_k = Σ_{j<k} γ_j``, shape ``(N + 1,)``."""
        return torch.cat([torch.zeros(1, dtype=torch.float64), self.gammas.cumsum(0)])

    def noise_std(self, step: int) -> float:
        """Standard deviation ``√(2γ_k)`` of the noise of step ``k`` (between ``X_k`` and ``X_{k+1}``)."""
        return math.sqrt(2.0 * float(self.gammas[check_int(step, "step", 0, self.num_steps - 1)]))

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        direction: str = "forward",
    ) -> None:
        """Timesteps of a run: ``0, …, N − 1`` forward, ``N, …, 1`` backward (the index of the state read).

        The networks are trained for the ``N`` steps of this chain, so ``num_inference_steps`` must be ``N``
        (or ``None``).
        """
        direction = check_direction(direction)
        if num_inference_steps is not None and (
            check_int(num_inference_steps, "num_inference_steps", None, note="or None") != self.num_steps
        ):
            raise ValueError(
                f"`num_inference_steps` must equal the chain's num_steps = {self.num_steps} (the mean networks are "
                f"trained per step), got {num_inference_steps!r}"
            )
        n = self.num_steps
        steps = range(n) if direction == "forward" else range(n, 0, -1)
        self.num_inference_steps = n
        self.direction = direction
        self.timesteps = torch.tensor(list(steps), dtype=torch.long, device=device)
        self._step_index = 0

    def _step(
        self, model_output: Tensor, timestep: int | Tensor, sample: Tensor, generator: torch.Generator | None
    ) -> BridgeSchedulerOutput:
        """One step of the chain: ``model_output`` is the predicted mean of the next state (``f_k(X_k)`` forward,
        ``b_{k+1}(X_{k+1})`` backward) and ``√(2γ_k) Z`` is added, ``Z`` drawn from ``generator``.

        Calls follow ``self.timesteps`` in order; ``timestep`` must be the current one. ``sample`` is the state
        the network read; it is not needed for the update but is checked for shape.
        """
        index = self._position()
        expected = int(self.timesteps[index])
        if int(timestep) != expected:
            raise ValueError(
                f"`timestep` must be the next timestep of the {self.direction} chain, {expected}, got {int(timestep)}"
            )
        if model_output.shape != sample.shape:
            raise ValueError(
                f"`model_output` {tuple(model_output.shape)} and `sample` {tuple(sample.shape)} must have the "
                "same shape"
            )
        k = expected if self.direction == "forward" else expected - 1
        self._step_index = index + 1
        last = self._step_index == len(self.timesteps)
        if last and not self.config.final_step_noise:
            prev = model_output
        else:
            noise = torch.randn(
                model_output.shape, generator=generator, dtype=model_output.dtype, device=model_output.device
            )
            prev = model_output + self.noise_std(k) * noise
        return BridgeSchedulerOutput(prev_sample=prev, mean=model_output)

    def __len__(self) -> int:
        return self.num_steps
