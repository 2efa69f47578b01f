"""Schrödinger-bridge transport with diffusers alone (De Bortoli et al. 2021, *Diffusion Schrödinger Bridge with
Applications to Score-Based Generative Modeling*).

``direction="forward"`` draws ``X_0`` from the source and runs ``X_{k+1} = f_k(X_k) + √(2γ_k) Z``;
``"backward"`` draws ``X_N`` from the target and runs ``X_k = b_{k+1}(X_{k+1}) + √(2γ_k) Z``: the same numbers as
``hfgen.SchrodingerBridgePipeline`` for the same generator. hfgen's pipeline adds ``transport`` of given points and
trajectories.
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
class SchrodingerBridgePipelineOutput(BaseOutput):
    """``samples``: points ``(N, D)``."""

    samples: torch.Tensor | np.ndarray


class SchrodingerBridgePipeline(DiffusionPipeline):
    """Forward or backward chain of a diffusion Schrödinger bridge's two mean networks."""

    model_cpu_offload_seq = "forward_model->backward_model"

    def __init__(
        self,
        forward_model: Any,
        backward_model: Any,
        scheduler: Any,
        source: dict[str, Any] | None = None,
        target: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.register_modules(forward_model=forward_model, backward_model=backward_model, scheduler=scheduler)
        self.register_to_config(source=source, target=target)
        dim = forward_model.config.dim
        self.source_distribution = StandardGaussian(dim) if source is None else toy_from_config(source)
        self.target_distribution = StandardGaussian(dim) if target is None else toy_from_config(target)

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        direction: str = "forward",
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> SchrodingerBridgePipelineOutput | tuple:
        """Transport ``num_samples`` points drawn from the source (``"forward"``) or the target (``"backward"``);
        ``num_inference_steps`` must be the chain's ``N`` or None; ``output_type`` ``"pt"`` or ``"np"``."""
        if output_type not in ("pt", "np"):
            raise ValueError(f"`output_type` must be 'pt' or 'np', got {output_type!r}")
        if direction not in ("forward", "backward"):
            raise ValueError(f"`direction` must be 'forward' or 'backward', got {direction!r}")
        if num_inference_steps is not None and num_inference_steps != self.scheduler.num_steps:
            raise ValueError(
                f"`num_inference_steps` must be the chain's num_steps = {self.scheduler.num_steps} (or None), "
                f"got {num_inference_steps!r}"
            )
        start = self.source_distribution if direction == "forward" else self.target_distribution
        model = self.forward_model if direction == "forward" else self.backward_model
        x = start.sample(num_samples, generator=generator).to(device=self.device, dtype=model.dtype)
        self.scheduler.set_timesteps(device=x.device, direction=direction)
        for timestep in self.progress_bar(self.scheduler.timesteps):
            t = torch.full((x.shape[0],), float(timestep), dtype=x.dtype, device=x.device)
            mean = model(x, t, return_dict=False)[0]
            x = self.scheduler.step(mean, timestep, x, generator=generator, return_dict=False)[0]
        samples = x if output_type == "pt" else x.cpu().numpy()
        return SchrodingerBridgePipelineOutput(samples=samples) if return_dict else (samples,)
