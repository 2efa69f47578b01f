"""Flow-matching sampling with diffusers alone, for ``DiffusionPipeline.from_pretrained(repo,
trust_remote_code=True)``. This file is copied into exported repos: it imports torch and diffusers only.

Samples ``x_0 ~ N(0, I)`` and integrates ``dx/dt = v_θ(x, t)`` from ``t = 0`` to ``t = 1`` with the
scheduler's fixed steps (Lipman et al. 2022). The full library (``pip install hfgen``) adds adaptive solvers,
log-densities, other sources and plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput


@dataclass
class FlowMatchingPipelineOutput(BaseOutput):
    """Samples ``(N, D)``."""

    samples: torch.Tensor | np.ndarray


class FlowMatchingPipeline(DiffusionPipeline):
    """Euler/Heun/midpoint sampling of a flow-matching velocity network from ``N(0, I)``."""

    model_cpu_offload_seq = "velocity"

    def __init__(self, velocity, scheduler, source=None):
        super().__init__()
        if source is not None:
            raise ValueError(f"this exported pipeline samples from N(0, I) only, but its source is {source!r}")
        self.register_modules(velocity=velocity, scheduler=scheduler)
        self.register_to_config(source=source)

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int = 100,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        if output_type not in ("pt", "np"):
            raise ValueError(f"`output_type` must be 'pt' or 'np', got {output_type!r}")
        x = torch.randn(num_samples, self.velocity.config.dim, generator=generator)
        x = x.to(device=self.device, dtype=self.velocity.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=x.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            v = self.velocity(x, t, return_dict=False)[0]
            x = self.scheduler.step(v, t, x, return_dict=False)[0]
        samples = x if output_type == "pt" else x.cpu().numpy()
        return FlowMatchingPipelineOutput(samples=samples) if return_dict else (samples,)
