"""What every hfgen scheduler's ``step`` shares: diffusers' signature, the output as a dataclass or a tuple, and the
position in ``timesteps`` of the schedulers whose calls follow it in order."""

from __future__ import annotations

from dataclasses import fields

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from torch import Tensor


class StepScheduler(SchedulerMixin, ConfigMixin):
    """A scheduler whose solver is :meth:`_step`: one call of ``step``, returned as the solver's output dataclass.

    A scheduler that keeps its position in ``timesteps`` (``num_inference_steps`` is None before ``set_timesteps``,
    ``_step_index`` counts the calls) counts each call with :meth:`_advance`, or reads its place with
    :meth:`_position` and counts it once it is accepted.
    """

    config_name = "scheduler_config.json"
    order = 1
    #: the call that plans a run, named when ``step`` comes before it
    planning_call = "set_timesteps(num_inference_steps)"

    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        **inputs: torch.Tensor,
    ) -> BaseOutput | tuple:
        """One call of the solver at ``(sample, timestep)``: ``model_output`` is the network's output there,
        ``inputs`` what else the solver reads at ``sample`` (MALA: ``energy``); random draws come from ``generator``.

        Returns the solver's output dataclass, or its fields in order as a tuple when ``return_dict`` is False.
        """
        return self._output(self._step(model_output, timestep, sample, generator, **inputs), return_dict)

    def _step(
        self, model_output: Tensor, timestep: Tensor | float, sample: Tensor, generator: torch.Generator | None
    ) -> BaseOutput:
        raise NotImplementedError

    @staticmethod
    def _output(output: BaseOutput, return_dict: bool) -> BaseOutput | tuple:
        """``output`` itself, or all its fields (None ones included) as a tuple when ``return_dict`` is False."""
        return output if return_dict else tuple(getattr(output, field.name) for field in fields(output))

    def _position(self) -> int:
        """The index in ``timesteps`` of this call of ``step``; refused before ``set_timesteps`` and past the last
        timestep."""
        if self.num_inference_steps is None:
            raise RuntimeError(f"Call `{self.planning_call}` before `step`.")
        if self._step_index >= len(self.timesteps):
            raise RuntimeError(
                f"`step` was called {self._step_index + 1} times but there are only {len(self.timesteps)} timesteps; "
                "call `set_timesteps` again to start a new trajectory."
            )
        return self._step_index

    def _advance(self) -> int:
        """Count this call of ``step`` and return its index in ``timesteps`` (:meth:`_position`)."""
        index = self._position()
        self._step_index = index + 1
        return index
