"""DDPM sampling of points with diffusers alone (Ho et al. 2020, *Denoising Diffusion Probabilistic Models*; DDIM:
Song et al. 2021).

Draws ``x_T ~ N(0, I)`` and applies the scheduler's reverse steps ``x_t → x_s``, each with ``ε̂ = model(x_t, t)``:
the same numbers as ``hfgen.DDPMPointsPipeline`` for the same generator, with hfgen's constant-α scheduler or
diffusers' ``DDPMScheduler``/``DDIMScheduler``. hfgen's pipeline adds SDEdit, the forward process, trajectories
and log-densities by the probability-flow ODE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor


@dataclass
class DDPMPointsPipelineOutput(BaseOutput):
    """``samples``: points ``(N, D)``."""

    samples: torch.Tensor | np.ndarray


class DDPMPointsPipeline(DiffusionPipeline):
    """Ancestral (or DDIM) sampling of an ε-network on points."""

    model_cpu_offload_seq = "model"

    def __init__(self, model: Any, scheduler: Any):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> DDPMPointsPipelineOutput | tuple:
        """Draw ``num_samples`` points on a grid of ``num_inference_steps`` steps (``None``: all ``T`` training
        steps); ``output_type`` ``"pt"`` or ``"np"``."""
        if output_type not in ("pt", "np"):
            raise ValueError(f"`output_type` must be 'pt' or 'np', got {output_type!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        steps = self.scheduler.config.num_train_timesteps if num_inference_steps is None else num_inference_steps
        self.scheduler.set_timesteps(steps, device=self.device)
        dim = self.model.config.dim if "dim" in self.model.config else self.model.dim
        x = randn_tensor((num_samples, dim), generator=generator, device=self.device, dtype=self.model.dtype)
        for t in self.progress_bar(self.scheduler.timesteps):
            eps = self.model(x, t, return_dict=False)[0]
            x = self.scheduler.step(eps, t, x, generator=generator, return_dict=False)[0]
        samples = x if output_type == "pt" else x.cpu().numpy()
        return DDPMPointsPipelineOutput(samples=samples) if return_dict else (samples,)
