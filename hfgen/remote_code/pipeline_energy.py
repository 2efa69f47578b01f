"""Langevin sampling of an energy-based model ``p(x) = exp(−E(x)) / Z`` with diffusers alone (Du & Mordatch 2019,
*Implicit Generation and Modeling with Energy-Based Models*).

Chains start uniformly on ``[start_low, start_high]^D`` and run the scheduler's steps ``x ← x − η∇E(x) + √(2η) z``
(ULA), each proposal followed by a Metropolis test for MALA: the same numbers as ``hfgen.EnergyPipeline`` for the
same generator. hfgen's pipeline adds given start points, trajectories, the score and 2-D log-densities.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from hfgen.methods.energy import energy_and_gradient


@dataclass
class EnergyPipelineOutput(BaseOutput):
    """``samples``: points ``(N, D)``."""

    samples: torch.Tensor | np.ndarray


class EnergyPipeline(DiffusionPipeline):
    """Langevin (ULA) or MALA chains on an energy network ``E(x)``."""

    model_cpu_offload_seq = "model"

    def __init__(self, model: Any, scheduler: Any, start_low: float = -4.0, start_high: float = 4.0):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)
        self.register_to_config(start_low=float(start_low), start_high=float(start_high))

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int = 100,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> EnergyPipelineOutput | tuple:
        """Draw ``num_samples`` points by ``num_inference_steps`` Langevin (or MALA) steps; ``output_type``
        ``"pt"`` or ``"np"``."""
        if output_type not in ("pt", "np"):
            raise ValueError(f"`output_type` must be 'pt' or 'np', got {output_type!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        dim = self.model.config.dim
        device = generator.device if generator is not None else self.device
        u = torch.rand(num_samples, dim, generator=generator, device=device, dtype=self.model.dtype)
        x = self.config.start_low + (self.config.start_high - self.config.start_low) * u
        x = x.to(device=self.device, dtype=self.model.dtype)
        takes_energy = "energy" in inspect.signature(self.scheduler.step).parameters  # MALA's Metropolis test
        self.scheduler.set_timesteps(num_inference_steps, device=x.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            energy, gradient = energy_and_gradient(self.model, x)
            extra = {"energy": energy} if takes_energy else {}
            output = self.scheduler.step(-gradient, t, x, generator=generator, **extra)
            x = output.prev_sample
            if output.step_complete and not torch.isfinite(x).all():
                raise FloatingPointError(
                    f"the Langevin chain diverged (step_size={self.scheduler.config.step_size}); use a smaller step"
                )
        samples = x if output_type == "pt" else x.cpu().numpy()
        return EnergyPipelineOutput(samples=samples) if return_dict else (samples,)
