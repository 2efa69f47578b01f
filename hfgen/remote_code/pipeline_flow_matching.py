"""Flow-matching sampling with diffusers alone (Lipman et al. 2022, *Flow Matching for Generative Modeling*).

Samples ``x_0`` from the source (``N(0, I)``, or the toy distribution saved in ``model_index.json``) and integrates
``dx/dt = v_θ(x, t)`` from ``t = 0`` to ``t = 1`` with the scheduler's fixed steps: the same numbers as
``hfgen.FlowMatchingPipeline`` for the same generator. hfgen's pipeline adds adaptive ODE solvers, SDEdit, exact
log-densities (``log_prob``) and trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from hfgen.data.toy import StandardGaussian, toy_from_config


@dataclass
class FlowMatchingPipelineOutput(BaseOutput):
    """``samples``: points ``(N, D)``."""

    samples: torch.Tensor | np.ndarray


class FlowMatchingPipeline(DiffusionPipeline):
    """Fixed-step (Euler, Heun or midpoint) sampling of a flow-matching velocity network."""

    model_cpu_offload_seq = "velocity"

    def __init__(self, velocity: Any, scheduler: Any, source: dict[str, Any] | None = None):
        super().__init__()
        self.register_modules(velocity=velocity, scheduler=scheduler)
        self.register_to_config(source=source)
        dim = velocity.config.dim
        self.source_distribution = StandardGaussian(dim) if source is None else toy_from_config(source)
        if self.source_distribution.dim != dim:
            raise ValueError(f"the source has dimension {self.source_distribution.dim} but the velocity expects {dim}")

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int = 100,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> FlowMatchingPipelineOutput | tuple:
        """Draw ``num_samples`` points with ``num_inference_steps`` steps of the uniform grid ``t_i = i / n``;
        ``output_type`` ``"pt"`` or ``"np"``."""
        if output_type not in ("pt", "np"):
            raise ValueError(f"`output_type` must be 'pt' or 'np', got {output_type!r}")
        x = self.source_distribution.sample(num_samples, generator=generator)
        x = x.to(device=self.device, dtype=self.velocity.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=x.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            v = self.velocity(x, t, return_dict=False)[0]
            x = self.scheduler.step(v, t, x, return_dict=False)[0]
        samples = x if output_type == "pt" else x.cpu().numpy()
        return FlowMatchingPipelineOutput(samples=samples) if return_dict else (samples,)
