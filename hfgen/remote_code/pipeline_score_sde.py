"""Score-SDE sampling of points with diffusers alone (Song et al. 2021, *Score-Based Generative Modeling through
Stochastic Differential Equations*).

From a prior draw at ``t = 1`` the reverse SDE ``dx = [f − g² s_θ] dt + g dW̄`` is integrated down to
``ε = sampling_eps`` by the scheduler's Euler–Maruyama steps, each preceded by ``num_corrector_steps`` Langevin
corrector steps with ``sampler="predictor_corrector"`` (Alg. 1): the same numbers as ``hfgen.ScoreSDEPipeline``
for the same generator. hfgen's pipeline adds the probability-flow ODE sampler (which needs torchdiffeq), SDEdit,
trajectories and log-densities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

SAMPLERS = ("euler_maruyama", "predictor_corrector")


@dataclass
class ScoreSDEPipelineOutput(BaseOutput):
    """``samples``: points ``(N, D)``."""

    samples: torch.Tensor | np.ndarray


class ScoreSDEPipeline(DiffusionPipeline):
    """Reverse-SDE (and predictor–corrector) sampling of a score or noise network."""

    model_cpu_offload_seq = "score_model"

    def __init__(self, score_model: Any, scheduler: Any):
        super().__init__()
        self.register_modules(score_model=score_model, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int = 1000,
        sampler: str = "euler_maruyama",
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ScoreSDEPipelineOutput | tuple:
        """Draw ``num_samples`` points with ``num_inference_steps`` steps from ``t = 1`` to ``ε``; ``sampler``
        ``"euler_maruyama"`` or ``"predictor_corrector"``; ``output_type`` ``"pt"`` or ``"np"``."""
        if output_type not in ("pt", "np"):
            raise ValueError(f"`output_type` must be 'pt' or 'np', got {output_type!r}")
        if sampler not in SAMPLERS:
            raise ValueError(
                f"`sampler` must be one of {SAMPLERS} here (hfgen adds 'probability_flow'), got {sampler!r}"
            )
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        dtype, dim = self.score_model.dtype, self.score_model.config.dim
        x = self.scheduler.sample_prior(num_samples, dim, generator=generator, device=self.device, dtype=dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device, start_time=1.0)
        corrector_steps = self.scheduler.config.num_corrector_steps if sampler == "predictor_corrector" else 0
        for t in self.progress_bar(self.scheduler.timesteps):
            for _ in range(corrector_steps):
                output = self.score_model(x, t, return_dict=False)[0]
                x = self.scheduler.step_correct(output, t, x, generator=generator, return_dict=False)[0]
            output = self.score_model(x, t, return_dict=False)[0]
            x = self.scheduler.step(output, t, x, generator=generator, return_dict=False)[0]
        samples = x if output_type == "pt" else x.cpu().numpy()
        return ScoreSDEPipelineOutput(samples=samples) if return_dict else (samples,)
