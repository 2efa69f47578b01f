"""Pieces of image flow matching and diffusion that are plain mathematics: the network's pixel scale, classifier-free
guidance, uniform dequantisation and bits per dimension."""

from __future__ import annotations

import math

import torch

#: the number of grey levels of 8-bit images
NUM_LEVELS = 256


def to_network_space(images: torch.Tensor) -> torch.Tensor:
    """Images in ``[0, 1]`` to the network's scale ``y = 2x − 1 ∈ [−1, 1]``."""
    return 2.0 * images - 1.0


def to_image_space(sample: torch.Tensor) -> torch.Tensor:
    """The network's ``y`` back to images ``x = (y + 1) / 2``, clamped to ``[0, 1]``."""
    return ((sample + 1.0) / 2.0).clamp(0.0, 1.0)


def classifier_free_guidance(unconditional: torch.Tensor, conditional: torch.Tensor, scale: float) -> torch.Tensor:
    r"""``v = v_∅ + w (v_c − v_∅)`` (Ho & Salimans 2022, *Classifier-Free Diffusion Guidance*, eq. 6): ``w = 1`` is
    the conditional output, ``w = 0`` the unconditional one, ``w > 1`` extrapolates towards the class."""
    return unconditional + scale * (conditional - unconditional)


def uniform_dequantize(
    images: torch.Tensor, generator: torch.Generator | None = None, num_levels: int = NUM_LEVELS
) -> torch.Tensor:
    r"""Uniform dequantisation (Theis et al. 2016; Ho et al. 2019): pixels ``x = k / (L − 1)``, ``k ∈ {0 … L − 1}``,
    become ``v = (k + u) / L`` with ``u ~ U[0, 1)`` drawn from ``generator``, a continuous variable in ``[0, 1)``
    whose density bounds the discrete one: ``log P(k) ≥ E_u[log p(v)] − D log L``."""
    levels = torch.round(images.double() * (num_levels - 1))
    noise = torch.rand(images.shape, generator=generator, dtype=torch.float64, device=images.device)
    return ((levels + noise) / num_levels).to(images.dtype)


def bits_per_dim(log_density: torch.Tensor, num_dims: int, num_levels: int = NUM_LEVELS) -> torch.Tensor:
    r"""``bits/dim = −(log p(v) − D log L) / (D log 2)`` per image: the negative discrete log-likelihood bound
    ``log p(v) − D log L`` of the dequantised images ``v ∈ [0, 1)^D`` (:func:`uniform_dequantize`) in bits per pixel;
    ``log_density`` is ``log p(v)`` in nats, shape ``(N,)``."""
    return -(log_density.double() - num_dims * math.log(num_levels)) / (num_dims * math.log(2.0))
