"""Samples of an explicit density model with diffusers alone: a Gaussian mixture, a kernel density estimate, MADE
(Germain et al. 2015) or a coupling flow (Dinh et al. 2017).

These models sample exactly (ancestrally or through an inverse map) with ``model.sample(num_samples, generator)``:
the same numbers as ``hfgen.DensityPipeline`` for the same generator. hfgen's pipeline adds ``log_prob``; the
component's own ``log_prob`` is in its file here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput


@dataclass
class DensityPipelineOutput(BaseOutput):
    """``samples``: points ``(N, D)`` or images ``(N, C, H, W)``."""

    samples: torch.Tensor | np.ndarray


class DensityPipeline(DiffusionPipeline):
    """Exact samples ``x ~ p_θ`` of an explicit likelihood model."""

    model_cpu_offload_seq = "model"

    def __init__(self, model: Any):
        super().__init__()
        self.register_modules(model=model)

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> DensityPipelineOutput | tuple:
        """Draw ``num_samples`` samples from ``generator``; ``output_type`` ``"pt"`` or ``"np"``."""
        if output_type not in ("pt", "np"):
            raise ValueError(f"`output_type` must be 'pt' or 'np', got {output_type!r}")
        samples = self.model.sample(num_samples, generator)
        samples = samples if output_type == "pt" else samples.cpu().numpy()
        return DensityPipelineOutput(samples=samples) if return_dict else (samples,)
