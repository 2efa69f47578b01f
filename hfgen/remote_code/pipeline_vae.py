"""VAE samples and autoencoder reconstructions with diffusers alone (Kingma & Welling 2014, *Auto-Encoding
Variational Bayes*).

``VAEPipeline`` draws ``z ~ N(0, I)`` and decodes the mean image ``E[x | z]``; ``AutoEncoderPipeline``
reconstructs images ``d(e(x))``. Images come out as ``output_type="pt"`` ``(N, C, H, W)`` in ``[0, 1]``, ``"np"``
``(N, H, W, C)`` or ``"pil"``: the same numbers as hfgen's pipelines for the same generator. hfgen's pipelines add
``encode``/``decode``, the latent grid and ``log_prob``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

IMAGE_OUTPUT_TYPES = ("pt", "np", "pil")


@dataclass
class ImagesPipelineOutput(BaseOutput):
    """``images`` in the requested ``output_type`` and the ``latents`` ``(N, d)`` they were decoded from."""

    images: torch.Tensor | np.ndarray | list
    latents: torch.Tensor


class _LatentImagePipeline(DiffusionPipeline):
    model_name: str

    def _decode(self, latents: torch.Tensor, output_type: str, batch_size: int) -> torch.Tensor | np.ndarray | list:
        if output_type not in IMAGE_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {IMAGE_OUTPUT_TYPES}, got {output_type!r}")
        model = getattr(self, self.model_name)
        chunks = [
            model.mean_image(model.decode(chunk).sample).clamp(0, 1)
            for chunk in self.progress_bar(latents.split(batch_size))
        ]
        images = torch.cat(chunks)
        if output_type == "pt":
            return images
        array = images.detach().cpu().float().permute(0, 2, 3, 1).numpy()
        return array if output_type == "np" else self.numpy_to_pil(array)


class VAEPipeline(_LatentImagePipeline):
    """Images ``E[x | z]`` of prior draws ``z ~ N(0, I)`` of a variational autoencoder."""

    model_cpu_offload_seq = "vae"
    model_name = "vae"

    def __init__(self, vae: Any):
        super().__init__()
        self.register_modules(vae=vae)

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 16,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        batch_size: int = 1000,
    ) -> ImagesPipelineOutput | tuple:
        """Draw ``num_samples`` images: ``z ~ N(0, I)`` from ``generator``, decoded to ``E[x | z]``."""
        latents = self.vae.check_latents(self.vae.sample_prior(num_samples, generator=generator))
        images = self._decode(latents, output_type, batch_size)
        return ImagesPipelineOutput(images=images, latents=latents) if return_dict else (images, latents)


class AutoEncoderPipeline(_LatentImagePipeline):
    """Reconstructions ``d(e(x))`` of images by a deterministic autoencoder (it has no prior to sample)."""

    model_cpu_offload_seq = "autoencoder"
    model_name = "autoencoder"

    def __init__(self, autoencoder: Any):
        super().__init__()
        self.register_modules(autoencoder=autoencoder)

    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, output_type: str = "pt", return_dict: bool = True, batch_size: int = 1000
    ) -> ImagesPipelineOutput | tuple:
        """Reconstruct ``images`` ``(N, C, H, W)`` in ``[0, 1]``; also returns their codes ``e(x)``."""
        images = self.autoencoder.check_images(images, "images")
        latents = torch.cat([self.autoencoder.encode(chunk).latent_mean for chunk in images.split(batch_size)])
        reconstructions = self._decode(latents, output_type, batch_size)
        if not return_dict:
            return (reconstructions, latents)
        return ImagesPipelineOutput(images=reconstructions, latents=latents)
