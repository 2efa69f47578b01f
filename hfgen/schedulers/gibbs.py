"""Block-Gibbs sampling of a restricted Boltzmann machine, as a diffusers scheduler."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401 (see flow_match_euler)
from diffusers.utils import BaseOutput
from torch import Tensor

from hfgen.checks import check_int
from hfgen.schedulers.stepping import StepScheduler

__all__ = ["GibbsScheduler", "GibbsSchedulerOutput"]

BLOCKS = ("hidden", "visible")


@dataclass
class GibbsSchedulerOutput(BaseOutput):
    """Output of :meth:`GibbsScheduler.step`.

    ``prev_sample``: the binary draw of the block just updated (``h`` after the hidden half, ``v`` after the visible
    half); ``probabilities``: the conditional it was drawn from (the ``model_output``); ``block``: ``"hidden"`` or
    ``"visible"``; ``step_complete``: True after the visible half, when ``prev_sample`` ends a sweep ``v → h → v``.
    """

    prev_sample: torch.Tensor
    probabilities: torch.Tensor
    block: str
    step_complete: bool


class GibbsScheduler(StepScheduler):
    r"""Block-Gibbs sweeps ``v → h → v`` of a Bernoulli–Bernoulli RBM (Hinton 2002; Geman & Geman 1984).

    The hidden units are independent given ``v`` and the visible units given ``h``, so a sweep draws a whole block
    at once: ``h ~ p(h | v) = Π_j Bernoulli(σ(c_j + (vᵀW)_j))``, then ``v ~ p(v | h) = Π_i Bernoulli(σ(b_i + (Wh)_i))``.
    Each sweep leaves ``p(v, h)`` invariant.

    Design: the model computes the conditionals, the scheduler draws and keeps the order. A sweep is two calls of
    :meth:`step`, as a two-stage solver in diffusers' Heun scheduler: :attr:`timesteps` lists each sweep index
    twice, :attr:`next_block` says which conditional the next call needs, and the loop is

    .. code-block:: python

        for t in scheduler.timesteps:
            if scheduler.next_block == "hidden":
                probs = model.p_h_given_v(state)  # state is v
            else:
                probs = model.p_v_given_h(state)  # state is h
            state = scheduler.step(probs, t, state, generator=generator).prev_sample

    A draw is ``1[u < p]`` with ``u ~ U(0, 1)`` from ``generator``, the same rule as ``RBMModel.sample_h`` and
    ``sample_v``, so a chain run here equals one run with those methods for the same generator.
    """

    @register_to_config
    def __init__(self):
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0, dtype=torch.long)
        self._step_index = 0

    @property
    def next_block(self) -> str:
        """The block the next :meth:`step` draws: ``"hidden"`` (pass ``p(h | v)``) or ``"visible"`` (``p(v | h)``)."""
        return BLOCKS[self._step_index % 2]

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Plan ``num_inference_steps`` sweeps: ``timesteps = [0, 0, 1, 1, …, S − 1, S − 1]`` (two calls per sweep)."""
        self.num_inference_steps = check_int(num_inference_steps, "num_inference_steps")
        self.timesteps = torch.arange(num_inference_steps, device=device).repeat_interleave(2)
        self._step_index = 0

    def _step(
        self, model_output: Tensor, timestep: Tensor | int, sample: Tensor, generator: torch.Generator | None
    ) -> GibbsSchedulerOutput:
        """Draw the block :attr:`next_block` from ``model_output``, its conditional probabilities given ``sample``.

        ``sample`` is the current state of the other block (``v`` before the hidden half, ``h`` before the visible
        half); only its batch size is used, to check that ``model_output`` has one row per chain. Calls must follow
        :attr:`timesteps` in order.
        """
        if not isinstance(model_output, torch.Tensor) or model_output.ndim != 2:
            raise ValueError("`model_output` must be a (N, units) tensor of conditional probabilities")
        if model_output.shape[0] != sample.shape[0]:
            raise ValueError(
                f"`model_output` must have one row per chain ({sample.shape[0]}), got {model_output.shape[0]}"
            )
        if not torch.isfinite(model_output).all() or bool((model_output < 0).any()) or bool((model_output > 1).any()):
            raise ValueError("`model_output` must hold probabilities in [0, 1]")
        block = self.next_block
        self._advance()
        device = generator.device if generator is not None else model_output.device
        uniform = torch.rand(model_output.shape, generator=generator, device=device, dtype=model_output.dtype)
        prev = (uniform.to(model_output.device) < model_output).to(model_output.dtype)
        complete = block == "visible"
        return GibbsSchedulerOutput(prev_sample=prev, probabilities=model_output, block=block, step_complete=complete)

    def __len__(self) -> int:
        return len(self.timesteps)
