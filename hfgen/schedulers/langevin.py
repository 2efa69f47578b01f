r"""Langevin samplers of ``p(x) ∝ exp(−E(x))`` as diffusers schedulers: unadjusted Langevin and MALA.

Both discretise the Langevin diffusion ``dX = ∇log p(X) dt + √2 dW`` with a step ``η``, and both take as
``model_output`` the score ``s(x) = ∇log p(x) = −∇E(x)`` at ``sample``. The chain is time-homogeneous: timesteps
are step indices ``0 … S − 1``. One solver per class; they share the proposal and the step bookkeeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401 (see flow_match_euler)
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from hfgen.checks import check_arguments, check_int, check_number
from hfgen.schedulers.stepping import StepScheduler
from hfgen.utils import check_same_shape

__all__ = ["LangevinScheduler", "LangevinSchedulerOutput", "MALAScheduler", "MALASchedulerOutput"]


@dataclass
class LangevinSchedulerOutput(BaseOutput):
    """Output of :meth:`LangevinScheduler.step`: the next state ``prev_sample``; every call completes a step."""

    prev_sample: torch.Tensor
    step_complete: bool = True


@dataclass
class MALASchedulerOutput(BaseOutput):
    """Output of :meth:`MALAScheduler.step`.

    The first call of a step returns the proposal ``x'`` as ``prev_sample`` (``step_complete=False``); the second
    returns the next state, ``x'`` where accepted and ``x`` elsewhere, and ``accepted`` ``(N,)`` (bool).
    """

    prev_sample: torch.Tensor
    step_complete: bool
    accepted: torch.Tensor | None = None


class _LangevinDynamics(StepScheduler):
    """What both samplers share: the step size check, the timesteps and the Langevin proposal."""

    config_rules = {"step_size": partial(check_number, low=0, open_low=True)}

    def _initialize(self) -> None:
        check_arguments(self.config_rules, self.config)
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0, dtype=torch.long)
        self._step_index = 0

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Plan ``num_inference_steps`` steps: ``timesteps`` lists each step index ``order`` times (one per call)."""
        self.num_inference_steps = check_int(num_inference_steps, "num_inference_steps")
        self.timesteps = torch.arange(num_inference_steps, device=device).repeat_interleave(self.order)
        self._step_index = 0

    def _propose(
        self, model_output: torch.Tensor, sample: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``x' = x + η s(x) + √(2η) z``, ``z ~ N(0, I)`` from ``generator``."""
        check_same_shape(model_output, sample, "model_output", note="the score")
        eta = float(self.config.step_size)
        noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        return sample + eta * model_output + math.sqrt(2 * eta) * noise

    def __len__(self) -> int:
        return len(self.timesteps)


class LangevinScheduler(_LangevinDynamics):
    r"""Unadjusted Langevin algorithm (ULA; Roberts & Tweedie 1996; Welling & Teh 2011):

    ``x_{k+1} = x_k − η ∇E(x_k) + √(2η) z_k``, ``z_k ~ N(0, I)``.

    It samples ``exp(−E)`` only as ``η → 0``: for ``E(x) = ½ xᵀAx`` its stationary law is
    ``N(0, 2η (I − (I − ηA)²)⁻¹)`` rather than ``N(0, A⁻¹)``. ``model_output`` is the score ``−∇E(x_k)``.
    """

    @register_to_config
    def __init__(self, step_size: float = 0.01):
        self._initialize()

    def _step(
        self, model_output: Tensor, timestep: Tensor | int, sample: Tensor, generator: torch.Generator | None
    ) -> LangevinSchedulerOutput:
        """One ULA step from ``sample`` with the score ``model_output = −∇E(sample)``; calls follow ``timesteps``."""
        self._advance()
        return LangevinSchedulerOutput(prev_sample=self._propose(model_output, sample, generator))


class MALAScheduler(_LangevinDynamics):
    r"""Metropolis-adjusted Langevin algorithm (Roberts & Tweedie 1996; Besag 1994): the ULA proposal
    ``x' = x + η s(x) + √(2η) z`` is accepted with probability ``min(1, α)``,

    ``log α = E(x) − E(x') + log q(x | x') − log q(x' | x)``, ``log q(y | x) = −‖y − x − η s(x)‖² / (4η)``,

    so the chain leaves ``exp(−E)`` exactly invariant for every ``η``. A step needs the score and the energy at
    ``x`` and at ``x'``: it is two calls of :meth:`step` (``order = 2``, each step index listed twice in
    ``timesteps``, as in diffusers' Heun scheduler), each given the score ``model_output`` and ``energy`` at
    ``sample``. The first call returns the proposal, the second the accepted state.
    """

    order = 2

    @register_to_config
    def __init__(self, step_size: float = 0.01):
        self._initialize()
        self._current: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def state_in_first_order(self) -> bool:
        """True when the next :meth:`step` call starts a new step (evaluate at the chain's state, not a proposal)."""
        return self._current is None

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Plan ``num_inference_steps`` MALA steps: ``timesteps = [0, 0, 1, 1, …]`` (proposal, then accept/reject)."""
        super().set_timesteps(num_inference_steps, device)
        self._current = None

    def _step(
        self,
        model_output: Tensor,
        timestep: Tensor | int,
        sample: Tensor,
        generator: torch.Generator | None,
        energy: Tensor | None = None,
    ) -> MALASchedulerOutput:
        """Propose from ``sample`` (first call) or accept/reject the proposal ``sample`` (second call).

        ``model_output`` is the score ``−∇E(sample)`` and ``energy`` ``(N,)`` is ``E(sample)``; the noise and the
        acceptance uniforms come from ``generator``. A proposal with a non-finite energy is rejected.
        """
        if not isinstance(energy, torch.Tensor) or energy.shape != sample.shape[:1]:
            raise ValueError(
                f"`energy` must be the tensor E(sample) of shape ({sample.shape[0]},), got "
                f"{tuple(energy.shape) if isinstance(energy, torch.Tensor) else energy!r}"
            )
        self._advance()
        if self._current is None:
            self._current = (sample, energy, model_output)
            return MALASchedulerOutput(prev_sample=self._propose(model_output, sample, generator), step_complete=False)
        x, energy_x, score_x = self._current
        self._current = None
        if sample.shape != x.shape or model_output.shape != x.shape:
            raise ValueError(
                f"the second call of a MALA step needs the proposal and its score, of shape {tuple(x.shape)}; got "
                f"`sample` {tuple(sample.shape)} and `model_output` {tuple(model_output.shape)}"
            )
        eta = float(self.config.step_size)
        log_q_forward = -(sample - x - eta * score_x).square().flatten(1).sum(-1) / (4 * eta)
        log_q_backward = -(x - sample - eta * model_output).square().flatten(1).sum(-1) / (4 * eta)
        log_alpha = energy_x - energy + log_q_backward - log_q_forward
        device = generator.device if generator is not None else sample.device
        uniform = torch.rand(sample.shape[0], generator=generator, device=device, dtype=sample.dtype).to(sample.device)
        accepted = torch.log(uniform) < log_alpha  # False for NaN: a non-finite proposal is rejected
        shape = (-1,) + (1,) * (sample.ndim - 1)
        prev = torch.where(accepted.reshape(shape), sample, x)
        return MALASchedulerOutput(prev_sample=prev, step_complete=True, accepted=accepted)


#: the Langevin samplers by name (an energy model's ``training_sampler`` and ``sample_sampler``)
LANGEVIN_SCHEDULERS: dict[str, type[_LangevinDynamics]] = {"langevin": LangevinScheduler, "mala": MALAScheduler}
