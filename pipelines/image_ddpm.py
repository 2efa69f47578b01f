"""Constant-α DDPM for images with a diffusers ``UNet2DModel``: ancestral or DDIM sampling, class-conditional
sampling with classifier-free guidance, and SDEdit."""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel

from hfgen.methods.image_diffusion import to_network_space
from hfgen.pipelines.image_common import (
    ImageGenerationPipeline,
    ImageGenerationPipelineOutput,
    check_unet,
)
from hfgen.schedulers.constant_alpha_ddpm import ConstantAlphaDDPMScheduler


class DDPMImagePipeline(ImageGenerationPipeline):
    r"""Generate images with a constant-α DDPM ε-network (Ho et al. 2020) or its DDIM sampler (Song et al. 2021).

    On the network's scale ``y = 2x − 1``: ``y_T ~ N(0, I)``, then the scheduler's reverse steps on its grid
    ``T = t_0 > … > 0`` with ``ε̂ = unet(y_t, t)`` (the integer step ``t ∈ {1 … T}`` is the UNet's timestep, as in
    training: ``y_t = √ᾱ_t y_0 + √(1 − ᾱ_t) z``, ``ᾱ_t = α^t``). DDIM: swap the scheduler,
    ``pipe.scheduler = ConstantAlphaDDPMScheduler.from_config(pipe.scheduler.config, sampler="ddim")``.

    With ``clip_sample`` (the default, as diffusers' ``DDPMScheduler``/``DDIMScheduler`` for images) each step's
    ``ŷ_0 = (y_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t`` is clipped to the images' range ``[−1, 1]`` and the step is given the noise
    consistent with it, ``ε̃ = (y_t − √ᾱ_t clip(ŷ_0)) / √(1 − ᾱ_t)``: near ``t = T``, where ``√ᾱ_t`` is small, an
    error of ``ε̂`` is otherwise amplified by ``1 / √ᾱ_t`` in ``ŷ_0``.

    A class-conditional network (``num_class_embeds = K + 1``, the null class ``K``) samples given ``class_labels``;
    with ``guidance_scale = w`` the noise prediction is ``ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅)`` (Ho & Salimans 2022). SDEdit
    (Meng et al. 2022): ``start_images`` are noised to the first grid level ``t ≤ strength · T``,
    ``y_t = √ᾱ_t (2x − 1) + √(1 − ᾱ_t) z``, and the sampler runs from there. A separate pipeline from
    :class:`DDPMPointsPipeline`, as diffusers' ``DDPMPipeline``: it returns ``images`` (pt/np/pil) and takes labels,
    guidance and start images.
    """

    def __init__(self, unet: UNet2DModel, scheduler: ConstantAlphaDDPMScheduler, clip_sample: bool = True):
        super().__init__()
        check_unet(unet)
        _check_scheduler(scheduler)
        if not isinstance(clip_sample, bool):
            raise TypeError(f"`clip_sample` must be a bool, got {clip_sample!r}")
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(clip_sample=clip_sample)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "scheduler":
            _check_scheduler(value)
        super().__setattr__(name, value)

    def noise_prediction(
        self,
        sample: torch.Tensor,
        timestep: int | torch.Tensor,
        class_labels: torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """``ε̂(y_t, t)`` at ``sample`` ``(N, C, H, W)`` on the network's scale and integer step ``t``: unconditional
        (the null class) without labels, conditional with them, guided with ``guidance_scale``."""
        t = torch.as_tensor(timestep, device=sample.device)
        return self._network(sample, t, class_labels, guidance_scale)

    def clipped_noise(
        self, noise_prediction: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor
    ) -> torch.Tensor:
        """``ε̃ = (y_t − √ᾱ_t clip(ŷ_0, −1, 1)) / √(1 − ᾱ_t)`` with ``ŷ_0 = (y_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``: the noise
        whose ``ŷ_0`` is the clipped one (diffusers' ``clip_sample``), for a step at level ``t >= 1``."""
        alpha_bar = float(self.scheduler.alpha_bar(int(timestep)))
        signal, noise = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
        clipped = ((sample - noise * noise_prediction) / signal).clamp(-1.0, 1.0)
        return (sample - signal * clipped) / noise

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
        class_labels: int | list[int] | torch.Tensor | None = None,
        guidance_scale: float | None = None,
        strength: float | None = None,
        start_images: torch.Tensor | None = None,
    ) -> ImageGenerationPipelineOutput | tuple:
        r"""Draw images, or edit ``start_images`` (SDEdit).

        Args:
            num_samples: images ``N`` (default: one per class label, else 1000; with ``start_images``, theirs).
            num_inference_steps: grid size ``S`` in ``1 … T`` (``None``: all ``T`` steps, what ancestral sampling is
                trained for; fewer suit DDIM).
            generator: draws ``y_T`` and the noise of random steps; the same generator state gives the same images.
            output_type: ``"pt"``, ``"np"`` or ``"pil"``.
            return_trajectory: also return the states ``y_T, …, y_0`` as images (a strip per image for pil).
            class_labels: class of each image (one int for all), ``0 … K − 1``; only for a conditional network,
                which without labels samples its unconditional (null-class) model.
            guidance_scale: ``w`` of classifier-free guidance, with ``class_labels`` (``None``: the conditional
                model, the same as ``w = 1``).
            strength: SDEdit strength ``s ∈ [0, 1]``, with ``start_images``: the grid steps at levels ``t ≤ s T`` run
                from the images noised to the first of them (``s = 0``, or no grid step below ``s T``, returns the
                images).
            start_images: the images ``(N, C, H, W)`` in ``[0, 1]`` to edit.
        """
        T = self.scheduler.config.num_train_timesteps
        self.scheduler.set_timesteps(T if num_inference_steps is None else num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        s, start, labels, scale, noise = self._prepare_call(
            num_samples, generator, output_type, class_labels, guidance_scale, strength, start_images
        )
        y = noise
        if start is not None:
            timesteps = timesteps[timesteps <= s * T + 1e-9]
            if not len(timesteps):
                states = [to_network_space(start)] if return_trajectory else None
                return self._output(y, states, 0, labels, output_type, return_dict, images=start.clone())
            y = self.scheduler.add_noise(to_network_space(start), noise, int(timesteps[0]))
        states = [y] if return_trajectory else None
        for t in self.progress_bar(timesteps):
            eps = self.noise_prediction(y, t, labels, scale)
            if self.config.clip_sample:
                eps = self.clipped_noise(eps, t, y)
            y = self.scheduler.step(eps, t, y, generator=generator, return_dict=False)[0]
            if states is not None:
                states.append(y)
        return self._output(y, states, len(timesteps), labels, output_type, return_dict)


def _check_scheduler(scheduler: object) -> None:
    if not isinstance(scheduler, ConstantAlphaDDPMScheduler):
        raise TypeError(f"`scheduler` must be a ConstantAlphaDDPMScheduler, got {type(scheduler).__name__}")
