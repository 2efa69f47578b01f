"""Constant-α DDPM for images with a diffusers ``UNet2DModel``: ancestral or DDIM sampling, class-conditional
sampling with classifier-free guidance, and SDEdit."""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel

from hfgen.checks import check_bool
from hfgen.methods.image_diffusion import to_network_space
from hfgen.pipelines.image_common import (
    ImageGenerationPipeline,
    ImageGenerationPipelineOutput,
    check_unet,
)
from hfgen.schedulers.constant_alpha_ddpm import ConstantAlphaDDPMScheduler
from hfgen.utils import check_images, check_integer_steps

__all__ = ["DDPMImagePipeline"]


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
        check_bool(clip_sample, "clip_sample")
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
        """``ε̂(y_t, t)`` at ``sample`` ``(N, C, H, W)`` on the network's scale and integer step ``t ∈ {1 … T}``
        (an int or ``(N,)``, the steps the network is trained on): unconditional (the null class) without labels,
        conditional with them, guided with ``guidance_scale``; in the dtype of ``sample``."""
        y, labels, scale = self._check_network_inputs(sample, class_labels, guidance_scale)
        t = self._check_step(timestep, y.shape[0])
        return self._noise_prediction(y, t, labels, scale).to(sample.dtype)

    def _noise_prediction(
        self, sample: torch.Tensor, timestep: int | torch.Tensor, labels: torch.Tensor | None, scale: float | None
    ) -> torch.Tensor:
        return self._network(sample, torch.as_tensor(timestep, device=sample.device), labels, scale)

    def clipped_noise(
        self, noise_prediction: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor
    ) -> torch.Tensor:
        """``ε̃ = (y_t − √ᾱ_t clip(ŷ_0, −1, 1)) / √(1 − ᾱ_t)`` with ``ŷ_0 = (y_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``: the noise
        whose ``ŷ_0`` is the clipped one (diffusers' ``clip_sample``), for a step at level ``t ∈ {1 … T}`` (at
        ``t = 0``, ``√(1 − ᾱ_0) = 0``)."""
        sample = check_images(sample, self.image_shape, "sample")
        noise_prediction = check_images(noise_prediction, self.image_shape, "noise_prediction")
        if noise_prediction.shape != sample.shape:
            raise ValueError(
                f"`noise_prediction` must have the shape of `sample` {tuple(sample.shape)}, got "
                f"{tuple(noise_prediction.shape)}"
            )
        t = self._check_step(timestep, sample.shape[0])
        return self._clipped_noise(noise_prediction, t if t.ndim else int(t), sample)

    def _clipped_noise(
        self, noise_prediction: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor
    ) -> torch.Tensor:
        alpha_bar = self.scheduler.alpha_bar(timestep)
        if alpha_bar.ndim:  # one level per image
            signal, noise = (level.sqrt().to(sample).reshape(-1, 1, 1, 1) for level in (alpha_bar, 1.0 - alpha_bar))
        else:
            signal, noise = math.sqrt(float(alpha_bar)), math.sqrt(1.0 - float(alpha_bar))
        clipped = ((sample - noise * noise_prediction) / signal).clamp(-1.0, 1.0)
        return (sample - signal * clipped) / noise

    def _check_step(self, timestep: object, num_images: int) -> torch.Tensor:
        """An integer step in ``1 … T``, the levels the network is trained on (a scalar or one per image)."""
        T = self.scheduler.config.num_train_timesteps
        return check_integer_steps(timestep, num_images, 1, T, "timestep")

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
            num_samples, generator, output_type, class_labels, guidance_scale, strength, start_images,
            len(timesteps), return_trajectory,
        )  # fmt: skip
        y = noise
        if start is not None:
            timesteps = timesteps[timesteps <= s * T + 1e-9]
            if not len(timesteps):
                states = [to_network_space(start)] if return_trajectory else None
                return self._output(y, states, 0, labels, output_type, return_dict, images=start.clone())
            y = self.scheduler.add_noise(to_network_space(start), noise, int(timesteps[0]))
        states = [y] if return_trajectory else None
        for t in self.progress_bar(timesteps):
            eps = self._noise_prediction(y, t, labels, scale)
            if self.config.clip_sample:
                eps = self._clipped_noise(eps, int(t), y)
            y = self.scheduler.step(eps, t, y, generator=generator, return_dict=False)[0]
            if states is not None:
                states.append(y)
        return self._output(y, states, len(timesteps), labels, output_type, return_dict)


def _check_scheduler(scheduler: object) -> None:
    if not isinstance(scheduler, ConstantAlphaDDPMScheduler):
        raise TypeError(f"`scheduler` must be a ConstantAlphaDDPMScheduler, got {type(scheduler).__name__}")
