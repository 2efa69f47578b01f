"""Image generation with a diffusers ``UNet2DModel`` and diffusers alone: flow matching (Lipman et al. 2022, *Flow
Matching for Generative Modeling*) and constant-α DDPM (Ho et al. 2020), optionally class-conditional with
classifier-free guidance (Ho & Salimans 2022, *Classifier-Free Diffusion Guidance*).

On the network's scale ``y = 2x − 1``: ``FlowMatchingImagePipeline`` integrates ``dy/dt = v_θ(y, t)`` from
``y_0 ~ N(0, I)`` with the scheduler's fixed steps (the UNet reads ``time_scale · t``); ``DDPMImagePipeline`` runs the
scheduler's reverse steps from ``y_T ~ N(0, I)`` with ``ε̂ = unet(y_t, t)``. A conditional network (``num_class_embeds
= K + 1``, the null class ``K``) samples given ``class_labels``, guided by ``o_∅ + w (o_c − o_∅)`` with
``guidance_scale = w``. Images come out as ``output_type="pt"`` ``(N, C, H, W)`` in ``[0, 1]``, ``"np"``
``(N, H, W, C)`` or ``"pil"``: the same numbers as hfgen's image pipelines for the same generator. hfgen's pipelines
add SDEdit, trajectories and (flow matching) log-densities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from hfgen.methods.image_diffusion import classifier_free_guidance, to_image_space

IMAGE_OUTPUT_TYPES = ("pt", "np", "pil")
DEFAULT_NUM_SAMPLES = 1000


@dataclass
class ImageGenerationPipelineOutput(BaseOutput):
    """``images`` in the requested ``output_type``; ``class_labels``, the class of each image (``None`` for
    unconditional draws)."""

    images: torch.Tensor | np.ndarray | list
    class_labels: torch.Tensor | None = None


class _ImageGenerationPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "unet"

    def _prepare(
        self, num_samples: int | None, class_labels: Any, guidance_scale: float | None, output_type: str
    ) -> tuple[int, torch.Tensor | None]:
        """``N`` and the labels as a long tensor ``(N,)`` (or None), after checking the arguments."""
        if output_type not in IMAGE_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {IMAGE_OUTPUT_TYPES}, got {output_type!r}")
        if num_samples is None:
            no_list = class_labels is None or isinstance(class_labels, int)
            num_samples = DEFAULT_NUM_SAMPLES if no_list else len(class_labels)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        embeds = self.unet.config.num_class_embeds
        if class_labels is None:
            if guidance_scale is not None:
                raise ValueError(f"`guidance_scale`={guidance_scale!r} needs `class_labels`")
            return num_samples, None
        if embeds is None:
            raise ValueError("`class_labels` were given but the network is unconditional (num_class_embeds is None)")
        if isinstance(class_labels, int) and not isinstance(class_labels, bool):
            labels = torch.full((num_samples,), class_labels)
        else:
            labels = torch.as_tensor(class_labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or tuple(labels.shape) != (num_samples,):
            raise ValueError(f"`class_labels` must be an int or {num_samples} ints, got {class_labels!r}")
        if int(labels.min()) < 0 or int(labels.max()) >= embeds - 1:
            raise ValueError(f"`class_labels` must lie in 0 … {embeds - 2}, got {class_labels!r}")
        return num_samples, labels.long().to(self.device)

    def _network(
        self, sample: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor | None, guidance_scale: float | None
    ) -> torch.Tensor:
        """The UNet's output: unconditional (the null class ``K`` of a conditional network) without labels,
        conditional with them, ``o_∅ + w (o_c − o_∅)`` from one batched pass with ``guidance_scale``."""
        n = sample.shape[0]
        timestep = timestep.expand(n) if timestep.ndim == 0 else timestep
        embeds = self.unet.config.num_class_embeds
        if embeds is None:
            return self.unet(sample, timestep, return_dict=False)[0]
        null = torch.full((n,), embeds - 1, dtype=torch.long, device=sample.device)
        if labels is None:
            return self.unet(sample, timestep, class_labels=null, return_dict=False)[0]
        if guidance_scale is None:
            return self.unet(sample, timestep, class_labels=labels, return_dict=False)[0]
        both = self.unet(
            torch.cat([sample, sample]),
            torch.cat([timestep, timestep]),
            class_labels=torch.cat([null, labels]),
            return_dict=False,
        )[0]
        unconditional, conditional = both.chunk(2)
        return classifier_free_guidance(unconditional, conditional, float(guidance_scale))

    def _noise(self, num_samples: int, generator: torch.Generator | None) -> torch.Tensor:
        config = self.unet.config
        shape = (num_samples, config.in_channels, config.sample_size, config.sample_size)
        return randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)

    def _output(
        self, y: torch.Tensor, labels: torch.Tensor | None, output_type: str, return_dict: bool
    ) -> ImageGenerationPipelineOutput | tuple:
        images = to_image_space(y)
        if output_type != "pt":
            images = images.detach().cpu().float().permute(0, 2, 3, 1).numpy()
            images = images if output_type == "np" else self.numpy_to_pil(images)
        labels = None if labels is None else labels.cpu()
        return ImageGenerationPipelineOutput(images=images, class_labels=labels) if return_dict else (images, labels)


class FlowMatchingImagePipeline(_ImageGenerationPipeline):
    """Fixed-step sampling of a flow-matching UNet on images."""

    def __init__(self, unet: Any, scheduler: Any, time_scale: float = 1000.0):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(time_scale=float(time_scale))

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int | None = None,
        num_inference_steps: int = 50,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        class_labels: int | list[int] | torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> ImageGenerationPipelineOutput | tuple:
        """Draw ``num_samples`` images (default: one per class label, else 1000) with ``num_inference_steps`` steps
        of the uniform grid on ``[0, 1]``."""
        n, labels = self._prepare(num_samples, class_labels, guidance_scale, output_type)
        y = self._noise(n, generator)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.progress_bar(self.scheduler.timesteps):
            time = torch.as_tensor(t, dtype=y.dtype, device=y.device) * self.config.time_scale
            v = self._network(y, time, labels, guidance_scale)
            y = self.scheduler.step(v, t, y).prev_sample
        return self._output(y, labels, output_type, return_dict)


class DDPMImagePipeline(_ImageGenerationPipeline):
    """Ancestral (or DDIM) sampling of a DDPM ε-UNet on images; with ``clip_sample`` each step's predicted image is
    clipped to ``[−1, 1]`` (as diffusers' image schedulers do)."""

    def __init__(self, unet: Any, scheduler: Any, clip_sample: bool = True):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(clip_sample=clip_sample)

    def _clipped_noise(self, eps: torch.Tensor, t: Any, y: torch.Tensor) -> torch.Tensor:
        """``ε̃ = (y_t − √ᾱ_t clip(ŷ_0, −1, 1)) / √(1 − ᾱ_t)``, ``ŷ_0 = (y_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``."""
        alpha_bar = float(self.scheduler.alpha_bar(int(t)))
        signal, noise = alpha_bar**0.5, (1.0 - alpha_bar) ** 0.5
        clipped = ((y - noise * eps) / signal).clamp(-1.0, 1.0)
        return (y - signal * clipped) / noise

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        class_labels: int | list[int] | torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> ImageGenerationPipelineOutput | tuple:
        """Draw ``num_samples`` images (default: one per class label, else 1000) on a grid of
        ``num_inference_steps`` steps (``None``: all ``T`` training steps)."""
        n, labels = self._prepare(num_samples, class_labels, guidance_scale, output_type)
        steps = self.scheduler.config.num_train_timesteps if num_inference_steps is None else num_inference_steps
        self.scheduler.set_timesteps(steps, device=self.device)
        y = self._noise(n, generator)
        for t in self.progress_bar(self.scheduler.timesteps):
            eps = self._network(y, torch.as_tensor(t, device=y.device), labels, guidance_scale)
            if self.config.clip_sample:
                eps = self._clipped_noise(eps, t, y)
            y = self.scheduler.step(eps, t, y, generator=generator, return_dict=False)[0]
        return self._output(y, labels, output_type, return_dict)
