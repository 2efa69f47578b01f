"""Denoising diffusion (DDPM): the noise-prediction objective.

Forward process (Ho et al. 2020): ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z``, ``z ~ N(0, I)``; the network ``ε_θ(x_t, t)``
predicts ``z``. The constant-α schedule ``ᾱ_t = α^t`` and the samplers are
:class:`~hfgen.schedulers.ConstantAlphaDDPMScheduler`'s.
"""

from __future__ import annotations

import torch


def epsilon_loss(
    model: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    r"""``L(θ) = mean_i ‖ε_θ(x_t^(i), t_i) − z^(i)‖²`` (Ho et al. 2020, Algorithm 1, the "simple" loss)."""
    prediction = model(noisy, timesteps, return_dict=False)[0]
    return (prediction - noise).square().sum(dim=1).mean()
