"""Block-Gibbs sampling of a Bernoulli–Bernoulli RBM with diffusers alone (Hinton 2002, *Training Products of
Experts by Minimizing Contrastive Divergence*).

From ``v_0 ~ Bernoulli(½)`` per pixel each of ``S`` sweeps draws ``h_s ~ p(h | v_{s−1})`` and ``v_s ~ p(v | h_s)``;
the images are the last sweep's probabilities ``p(v = 1 | h_S) = σ(b + W h_S)`` (``output_type`` ``"pt"``
``(N, C, H, W)``, ``"np"`` ``(N, H, W, C)`` or ``"pil"``) and ``states`` the binary draw ``v_S``: the same numbers as
``hfgen.RBMPipeline`` for the same generator. hfgen's pipeline adds chains started from given images and
trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from hfgen.models.rbm import sample_bernoulli

IMAGE_OUTPUT_TYPES = ("pt", "np", "pil")


@dataclass
class RBMPipelineOutput(BaseOutput):
    """``images``: ``p(v | h_S)`` in the requested ``output_type``; ``states``: ``v_S`` ``(N, C, H, W)``."""

    images: torch.Tensor | np.ndarray | list
    states: torch.Tensor


class RBMPipeline(DiffusionPipeline):
    """Block-Gibbs sampling of binary images from an RBM."""

    model_cpu_offload_seq = "model"

    def __init__(self, model: Any, scheduler: Any):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 100,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> RBMPipelineOutput | tuple:
        """Run ``num_inference_steps`` Gibbs sweeps on ``num_samples`` chains started from uniform binary noise."""
        if output_type not in IMAGE_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {IMAGE_OUTPUT_TYPES}, got {output_type!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        shape = self.model.image_shape
        half = torch.full((num_samples, self.model.config.num_visible), 0.5, dtype=self.model.dtype, device=self.device)
        state = sample_bernoulli(half, generator)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            if self.scheduler.next_block == "hidden":
                probabilities = self.model.p_h_given_v(state)
            else:
                probabilities = self.model.p_v_given_h(state)
            output = self.scheduler.step(probabilities, t, state, generator=generator)
            state = output.prev_sample
        images = output.probabilities.reshape(num_samples, *shape)
        states = state.reshape(num_samples, *shape)
        if output_type != "pt":
            images = images.detach().cpu().float().permute(0, 2, 3, 1).numpy()
            images = images if output_type == "np" else self.numpy_to_pil(images)
        return RBMPipelineOutput(images=images, states=states) if return_dict else (images, states)
