r"""Autoencoder and variational autoencoder for small images (Kingma & Welling 2014, "Auto-Encoding Variational
Bayes"; Rezende et al. 2014; Burda et al. 2016, "Importance Weighted Autoencoders").

Both models are built from the same two networks: an :class:`Encoder` ``x ↦ μ(x)`` (with ``variational=True``
also ``log σ(x)``) and a :class:`Decoder` ``z ↦`` the parameter of ``p(x | z)``: Bernoulli logits ``ℓ`` with
``log p(x | z) = Σ_j x_j log σ(ℓ_j) + (1 − x_j) log σ(−ℓ_j)`` (minus the binary cross-entropy), or a Gaussian mean
``m`` with ``log p(x | z) = −½ Σ_j [(x_j − m_j)² / s² + log 2π s²]`` for a fixed ``s = observation_std``.
Images are ``(N, C, H, W)`` tensors; all log-likelihoods are in nats per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import Tensor, nn

from hfgen.checks import check_arguments, check_int
from hfgen.models.mlp import ACTIVATIONS
from hfgen.models.vae_parts import (
    _DECODER_RULES,
    _ENCODER_RULES,
    _LIKELIHOOD_RULES,
    ARCHITECTURES,
    LIKELIHOODS,
    NORMALIZATIONS,
    _check_conv_channels,
    _mlp,
)
from hfgen.utils import check_generator, check_has_values

__all__ = [
    "ARCHITECTURES",
    "LIKELIHOODS",
    "NORMALIZATIONS",
    "VAE",
    "AutoEncoder",
    "AutoEncoderOutput",
    "Decoder",
    "DecoderOutput",
    "Encoder",
    "EncoderOutput",
]

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class EncoderOutput(BaseOutput):
    """``latent_mean`` ``(N, d)``: the code (AE) or the posterior mean μ(x) (VAE); ``latent_log_std`` ``(N, d)``:
    log σ(x) of ``q(z | x) = N(μ(x), diag σ(x)²)``, None for a deterministic encoder."""

    latent_mean: Tensor
    latent_log_std: Tensor | None = None


@dataclass
class DecoderOutput(BaseOutput):
    """``sample`` ``(N, C, H, W)``: the parameter of ``p(x | z)``, Bernoulli logits or the Gaussian mean."""

    sample: Tensor


@dataclass
class AutoEncoderOutput(BaseOutput):
    """``sample``: reconstructions ``E[x | z]`` ``(N, C, H, W)``; ``latents``: the codes ``z`` ``(N, d)``;
    ``latent_mean``/``latent_log_std``: the posterior parameters (VAE only)."""

    sample: Tensor
    latents: Tensor
    latent_mean: Tensor | None = None
    latent_log_std: Tensor | None = None


class Encoder(ModelMixin, ConfigMixin):
    r"""Image encoder ``x ↦ μ(x) ∈ ℝ^d`` and, with ``variational=True``, ``log σ(x) ∈ ℝ^d``.

    ``architecture="mlp"``: flatten, ``hidden_sizes`` layers with the activation, a linear head (with
    ``hidden_sizes=[]`` the encoder is affine). ``"conv"``: first ``len(conv_channels)`` stride-2 4×4
    convolutions (each halves the size), then the same MLP and head. ``normalization="layer"`` puts a
    ``LayerNorm`` before each hidden activation of the MLP (only in the encoder: in the decoder it would discard
    the scale of the 2-D code).
    """

    config_rules = _ENCODER_RULES

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 2,
        hidden_sizes: Sequence[int] = (512, 256),
        activation: str = "relu",
        architecture: str = "mlp",
        conv_channels: Sequence[int] = (32, 64),
        variational: bool = True,
        normalization: str = "none",
    ):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        _check_conv_channels(architecture, conv_channels, image_size)
        layers: list[nn.Module] = []
        if architecture == "conv":
            channels = [in_channels, *conv_channels]
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
                layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), ACTIVATIONS[activation]()]
            features = channels[-1] * (image_size // 2 ** len(conv_channels)) ** 2
        else:
            features = in_channels * image_size**2
        layers.append(nn.Flatten())
        layers += _mlp([features, *hidden_sizes], activation, normalization)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(([features, *hidden_sizes])[-1], latent_dim * (2 if variational else 1))

    def forward(self, sample: Tensor, return_dict: bool = True) -> EncoderOutput | tuple:
        """Encode images ``(N, C, H, W)``."""
        out = self.head(self.body(sample))
        mean, log_std = out.chunk(2, dim=1) if self.config.variational else (out, None)
        if not return_dict:
            return (mean, log_std)
        return EncoderOutput(latent_mean=mean, latent_log_std=log_std)


class Decoder(ModelMixin, ConfigMixin):
    r"""Image decoder ``z ↦`` Bernoulli logits or Gaussian mean, shape ``(N, C, H, W)``.

    ``architecture="mlp"``: ``hidden_sizes`` layers (from the latent side) with the activation, then a linear
    read-out to ``C·H·W`` values (``hidden_sizes=[]``: an affine decoder ``W z + b``). ``"conv"``: the MLP
    reads out a ``conv_channels[-1] × H/2^L × W/2^L`` map, then stride-2 transposed convolutions double it back.
    """

    config_rules = _DECODER_RULES

    @register_to_config
    def __init__(
        self,
        out_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 2,
        hidden_sizes: Sequence[int] = (256, 512),
        activation: str = "relu",
        architecture: str = "mlp",
        conv_channels: Sequence[int] = (64, 32),
    ):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        _check_conv_channels(architecture, conv_channels, image_size)
        sizes = [latent_dim, *hidden_sizes]
        layers = _mlp(sizes, activation)
        if architecture == "conv":
            side = image_size // 2 ** len(conv_channels)
            layers += [
                nn.Linear(sizes[-1], conv_channels[0] * side**2),
                ACTIVATIONS[activation](),
                nn.Unflatten(1, (conv_channels[0], side, side)),
            ]
            channels = [*conv_channels, out_channels]
            for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
                layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
                if i < len(channels) - 2:
                    layers.append(ACTIVATIONS[activation]())
        else:
            layers += [nn.Linear(sizes[-1], out_channels * image_size**2)]
            layers.append(nn.Unflatten(1, (out_channels, image_size, image_size)))
        self.body = nn.Sequential(*layers)

    def forward(self, latents: Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        """Decode latents ``(N, d)``."""
        out = self.body(latents)
        return DecoderOutput(sample=out) if return_dict else (out,)


class _LatentImageModel(ModelMixin, ConfigMixin):
    """What the autoencoder and the VAE share: the constructor and its two networks (the decoder mirrors the encoder's
    widths), input checks and the likelihood ``p(x | z)``. A subclass says whether its encoder is variational."""

    #: whether the encoder also returns ``log σ(x)``, the spread of ``q(z | x)``
    _variational: ClassVar[bool]
    #: the likelihood's arguments; the encoder and the decoder check the others
    config_rules = _LIKELIHOOD_RULES

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 2,
        hidden_sizes: Sequence[int] = (512, 256),
        activation: str = "relu",
        architecture: str = "mlp",
        conv_channels: Sequence[int] = (32, 64),
        likelihood: str = "bernoulli",
        observation_std: float = 1.0,
        normalization: str = "none",
    ):
        super().__init__()
        cfg = self.config
        check_arguments(self.config_rules, cfg)
        shared = {
            "image_size": cfg.image_size,
            "latent_dim": cfg.latent_dim,
            "activation": cfg.activation,
            "architecture": cfg.architecture,
        }
        self.encoder = Encoder(
            in_channels=cfg.in_channels,
            hidden_sizes=list(cfg.hidden_sizes),
            conv_channels=list(cfg.conv_channels),
            variational=self._variational,
            normalization=cfg.normalization,
            **shared,
        )
        self.decoder = Decoder(
            out_channels=cfg.in_channels,
            hidden_sizes=list(cfg.hidden_sizes)[::-1],
            conv_channels=list(cfg.conv_channels)[::-1],
            **shared,
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the model reads and writes."""
        return (self.config.in_channels, self.config.image_size, self.config.image_size)

    def check_images(self, images: object, name: str = "images") -> Tensor:
        """Check that ``images`` is a finite float ``(N, C, H, W)`` tensor of this model's image shape, with values in
        ``[0, 1]`` for the Bernoulli likelihood (the Gaussian likelihood takes any real values)."""
        expected = "(N, {}, {}, {})".format(*self.image_shape)
        if not isinstance(images, Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor of shape {expected}, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[0] < 1 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"`{name}` must have shape {expected} (channels, height, width), got {tuple(images.shape)}"
            )
        if not torch.is_floating_point(images):
            raise TypeError(f"`{name}` must be a floating-point tensor (values in [0, 1]), got dtype {images.dtype}")
        check_has_values(images, name)
        if not torch.isfinite(images).all():
            raise ValueError(f"`{name}` must be finite, got NaN or inf values")
        if self.config.likelihood == "bernoulli" and (images.min() < 0 or images.max() > 1):
            raise ValueError(
                f"`{name}` must hold values in [0, 1] for the Bernoulli likelihood (pixel intensities or binary "
                f"pixels), got values in [{float(images.min()):.4g}, {float(images.max()):.4g}]; divide 0…255 "
                "images by 255"
            )
        return images.to(device=self.device, dtype=self.dtype)

    def check_latents(self, latents: object, name: str = "latents") -> Tensor:
        """Check that ``latents`` is a finite float ``(N, latent_dim)`` tensor."""
        d = self.config.latent_dim
        if not isinstance(latents, Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, {d}), got {type(latents).__name__}")
        if latents.ndim != 2 or latents.shape[0] < 1 or latents.shape[1] != d:
            raise ValueError(f"`{name}` must have shape (N, {d}), got {tuple(latents.shape)}")
        check_has_values(latents, name)
        if not torch.is_floating_point(latents) or not torch.isfinite(latents).all():
            raise ValueError(f"`{name}` must be a finite floating-point tensor, got dtype {latents.dtype}")
        return latents.to(device=self.device, dtype=self.dtype)

    def decode(self, latents: Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        """The parameter of ``p(x | z)`` at latents ``(N, d)``: Bernoulli logits or the Gaussian mean."""
        return self.decoder(self.check_latents(latents), return_dict=return_dict)

    def mean_image(self, decoded: Tensor) -> Tensor:
        """``E[x | z]``: ``sigmoid(logits)`` for the Bernoulli likelihood, the mean itself for the Gaussian."""
        return torch.sigmoid(decoded) if self.config.likelihood == "bernoulli" else decoded

    def log_likelihood(self, images: Tensor, decoded: Tensor) -> Tensor:
        r"""``log p(x | z)`` per image, ``(...,)``, for images ``(..., C, H, W)`` and decoder outputs broadcasting
        with them.

        Bernoulli: ``Σ_j x_j log σ(ℓ_j) + (1 − x_j) log σ(−ℓ_j)`` (= −BCE with logits; for non-binary x in [0, 1]
        this is the cross-entropy, not a normalised density). Gaussian: ``−½ Σ_j [(x_j − m_j)²/s² + log 2πs²]``.
        """
        if self.config.likelihood == "bernoulli":
            images = images.expand_as(decoded) if images.ndim < decoded.ndim else images
            per_pixel = -F.binary_cross_entropy_with_logits(decoded, images, reduction="none")
        else:
            s = self.config.observation_std
            per_pixel = -0.5 * (((images - decoded) / s) ** 2 + _LOG_2PI + 2 * math.log(s))
        return per_pixel.flatten(-3).sum(-1)


class AutoEncoder(_LatentImageModel):
    r"""Deterministic autoencoder ``x ↦ z = e(x) ↦ d(z)`` trained by reconstruction,
    ``L = −log p(x | z = e(x))`` per image (binary cross-entropy, or squared error / 2s² plus a constant).
    The encoder is an :class:`Encoder` with ``variational=False``; the decoder is a :class:`Decoder` with the
    hidden sizes reversed."""

    _variational = False

    def encode(self, images: Tensor, return_dict: bool = True) -> EncoderOutput | tuple:
        """Codes ``z = e(x)`` ``(N, d)`` of images ``(N, C, H, W)`` (``latent_mean``; no ``latent_log_std``)."""
        return self.encoder(self.check_images(images), return_dict=return_dict)

    def forward(self, sample: Tensor, return_dict: bool = True) -> AutoEncoderOutput | tuple:
        """Reconstruct images: ``z = e(x)``, ``sample = E[x | z]``."""
        latents = self.encode(sample).latent_mean
        reconstruction = self.mean_image(self.decoder(latents).sample)
        if not return_dict:
            return (reconstruction, latents)
        return AutoEncoderOutput(sample=reconstruction, latents=latents)

    def reconstruction_loss(self, images: Tensor) -> Tensor:
        """``−log p(x | z = e(x))`` per image ``(N,)``, in nats."""
        images = self.check_images(images)
        return -self.log_likelihood(images, self.decoder(self.encoder(images).latent_mean).sample)


class VAE(_LatentImageModel):
    r"""Variational autoencoder with ``p(z) = N(0, I_d)``, ``q(z | x) = N(μ(x), diag σ(x)²)`` and ``p(x | z)``
    from the decoder (Kingma & Welling 2014).

    Trained by maximising the ELBO ``log p(x) ≥ E_q[log p(x | z)] − KL(q(z | x) ‖ p(z))`` with the
    reparametrisation ``z = μ + σ ⊙ ε``, ``ε ~ N(0, I)``, and the KL in closed form (:meth:`kl_divergence`).
    ``log p(x)`` is estimated by the importance-weighted bound (:meth:`iwae_bound`, Burda et al. 2016).
    """

    _variational = True

    def encode(self, images: Tensor, return_dict: bool = True) -> EncoderOutput | tuple:
        """Posterior parameters ``μ(x)``, ``log σ(x)`` ``(N, d)`` of images ``(N, C, H, W)``."""
        return self.encoder(self.check_images(images), return_dict=return_dict)

    @staticmethod
    def reparameterize(mean: Tensor, log_std: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``z = μ + σ ⊙ ε`` with ``ε ~ N(0, I)`` drawn from ``generator``: a sample of ``q(z | x)``, differentiable
        in μ and σ."""
        noise = torch.randn(mean.shape, generator=check_generator(generator), device=mean.device, dtype=mean.dtype)
        return mean + log_std.exp() * noise

    @staticmethod
    def kl_divergence(mean: Tensor, log_std: Tensor) -> Tensor:
        r"""``KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_i (σ_i² + μ_i² − 1 − 2 log σ_i)`` per row, ``(N,)``, in nats.

        That is ``Σ_i (−log σ_i + ½σ_i² + ½μ_i²) − d/2``. The expression ``Σ_i (−log σ_i + σ_i² + μ_i²)`` is not
        the KL up to a factor and a constant: it weighs the log term twice as much and is minimised at
        ``σ_i² = ½``, where the KL is minimised at ``σ_i² = 1``.
        """
        return 0.5 * (torch.exp(2 * log_std) + mean**2 - 1 - 2 * log_std).sum(-1)

    def sample_prior(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """``num_samples`` latents ``z ~ N(0, I_d)``, ``(num_samples, d)``."""
        shape = (check_int(num_samples, "num_samples"), self.config.latent_dim)
        return torch.randn(shape, generator=check_generator(generator), dtype=self.dtype).to(self.device)

    def forward(
        self,
        sample: Tensor,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> AutoEncoderOutput | tuple:
        """Reconstruct images through ``z = μ(x)`` (or ``z ~ q(z | x)`` with ``sample_posterior=True``)."""
        mean, log_std = self.encode(sample, return_dict=False)
        latents = self.reparameterize(mean, log_std, generator) if sample_posterior else mean
        reconstruction = self.mean_image(self.decoder(latents).sample)
        if not return_dict:
            return (reconstruction, latents, mean, log_std)
        return AutoEncoderOutput(sample=reconstruction, latents=latents, latent_mean=mean, latent_log_std=log_std)

    def elbo(self, images: Tensor, num_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        r"""ELBO per image ``(N,)`` in nats: ``(1/S) Σ_s log p(x | z_s) − KL(q(z | x) ‖ p(z))``, ``z_s ~ q(z | x)``,
        with the KL in closed form; an unbiased estimate of ``E_q[log p(x | z)] − KL ≤ log p(x)``."""
        check_int(num_samples, "num_samples")
        images = self.check_images(images)
        mean, log_std = self.encoder(images, return_dict=False)
        total = torch.zeros(images.shape[0], dtype=images.dtype, device=images.device)
        for _ in range(num_samples):
            z = self.reparameterize(mean, log_std, generator)
            total = total + self.log_likelihood(images, self.decoder(z).sample)
        return total / num_samples - self.kl_divergence(mean, log_std)

    def iwae_bound(
        self,
        images: Tensor,
        num_samples: int = 1000,
        generator: torch.Generator | None = None,
        chunk_size: int = 250,
    ) -> Tensor:
        r"""Importance-weighted bound per image ``(N,)`` in nats (Burda et al. 2016):

        ``L_K(x) = log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x)``, ``z_k ~ q(z | x)`` independent.

        ``E[L_1]`` is the ELBO, ``E[L_K] ≤ E[L_{K+1}] ≤ log p(x)`` and ``L_K → log p(x)`` as ``K → ∞``. The ``K``
        samples are drawn ``chunk_size`` at a time (memory ``chunk_size · N · C·H·W``) and combined by a running
        log-sum-exp.
        """
        check_int(num_samples, "num_samples")
        check_int(chunk_size, "chunk_size")
        check_generator(generator)
        images = self.check_images(images)
        mean, log_std = self.encoder(images, return_dict=False)
        running = torch.full((images.shape[0],), -math.inf, dtype=images.dtype, device=images.device)
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            noise = torch.randn((k, *mean.shape), generator=generator, dtype=mean.dtype).to(mean.device)
            z = mean + log_std.exp() * noise  # (k, N, d)
            decoded = self.decoder(z.reshape(-1, z.shape[-1])).sample.reshape(k, *images.shape)
            log_px_z = self.log_likelihood(images, decoded)
            log_pz = -0.5 * (z**2 + _LOG_2PI).sum(-1)
            log_qz = -0.5 * (noise**2 + _LOG_2PI).sum(-1) - log_std.sum(-1)
            log_w = log_px_z + log_pz - log_qz
            running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))
        return running - math.log(num_samples)
