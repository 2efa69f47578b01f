"""Pipelines for the image autoencoder and VAE: prior samples, encoding, decoding and the decoded latent grid.

Images come out as ``output_type="pt"``: a ``(N, C, H, W)`` tensor in ``[0, 1]``; ``"np"``: a ``(N, H, W, C)``
float32 array (diffusers' layout for images); ``"pil"``: a list of ``PIL.Image`` (mode ``"L"`` for one channel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from diffusers.utils import BaseOutput

from hfgen.checks import check_int, check_number
from hfgen.models.vae import VAE, AutoEncoder
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.sampling import ImageBatch
from hfgen.threads import one_thread_for_small_networks
from hfgen.utils import check_batch_size, check_generator, check_memory, check_num_samples, check_sampling_memory

__all__ = ["AutoEncoderPipeline", "ImagesPipelineOutput", "LatentGridOutput", "VAEPipeline"]

LOG_PROB_METHODS = ("quadrature", "iwae")


@dataclass
class ImagesPipelineOutput(BaseOutput):
    """``images`` (in the requested ``output_type``) and the ``latents`` ``(N, d)`` they were decoded from."""

    images: ImageBatch
    latents: torch.Tensor


@dataclass
class LatentGridOutput(BaseOutput):
    """A ``n × n`` grid of decoded latents, row-major from the top-left: row ``r`` holds ``z_2 = y[n − 1 − r]``
    (the top row has the largest ``z_2``, as on a scatter plot) and column ``c`` holds ``z_1 = x[c]``.

    ``images``: ``n²`` decoded images; ``latents``: ``(n², 2)``; ``x``, ``y``: the ``n`` coordinates per axis."""

    images: ImageBatch
    latents: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor


class _LatentImagePipeline(HfgenPipeline):
    """What both pipelines share: input checks, ``encode``, ``decode``, ``latent_grid`` and output types."""

    @property
    def model(self) -> VAE | AutoEncoder:
        raise NotImplementedError

    def _as_image_tensor(self, images: ImageBatch, name: str = "images") -> torch.Tensor:
        """Accept a ``(N, C, H, W)`` tensor or a list of PIL images (pixel ``k`` read as ``k/255``)."""
        if isinstance(images, (list, tuple)) and images and all(hasattr(im, "mode") for im in images):
            arrays = [np.asarray(im, dtype=np.float32) / 255.0 for im in images]
            stacked = np.stack([a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in arrays])
            images = torch.from_numpy(stacked)
        return self.model.check_images(images, name)

    @one_thread_for_small_networks
    @torch.no_grad()
    def encode(self, images: ImageBatch, batch_size: int = 1000) -> torch.Tensor:
        """Codes of images ``(N, C, H, W)`` (or a list of PIL images): ``z = e(x)`` for the autoencoder, the
        posterior mean ``μ(x)`` for the VAE; shape ``(N, d)``."""
        images = self._as_image_tensor(images)
        batch_size = check_batch_size(batch_size, images.shape[0])
        return torch.cat([self.model.encode(chunk).latent_mean for chunk in images.split(batch_size)])

    @one_thread_for_small_networks
    @torch.no_grad()
    def decode(self, latents: torch.Tensor, output_type: str = "pt", batch_size: int = 1000) -> ImageBatch:
        """Images ``E[x | z]`` of latents ``(N, d)``: Bernoulli means ``sigmoid(ℓ)`` or Gaussian means clipped
        to ``[0, 1]``."""
        self._check_image_output_type(output_type)
        latents = self.model.check_latents(latents)
        batch_size = check_batch_size(batch_size, latents.shape[0])
        # the images are the output; decoding runs in batches, so one copy of them is what must fit
        check_sampling_memory(len(latents), self._values_per_image, self.device, self.model.dtype, 1, "latents")
        chunks = [
            self.model.mean_image(self.model.decode(chunk).sample).clamp(0, 1)
            for chunk in self.progress_bar(latents.split(batch_size))
        ]
        return self._format_images(torch.cat(chunks), output_type)

    @property
    def _values_per_image(self) -> int:
        return math.prod(self.model.image_shape)

    def _grid_axes(
        self,
        n: int,
        bounds: Sequence[Sequence[float]] | None,
        codes: torch.Tensor | None,
        quantile_range: tuple[float, float],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = quantile_range
        if not 0 <= low < high <= 1:
            raise ValueError(f"`quantile_range` must satisfy 0 <= low < high <= 1, got {quantile_range!r}")
        if bounds is None and codes is not None:
            codes = self.model.check_latents(codes, "codes").detach().cpu().double()
            levels = torch.tensor([low, high], dtype=torch.float64)
            bounds = torch.quantile(codes, levels, dim=0).T.tolist()  # per dimension: (low, high) quantile
        if bounds is not None:
            if len(bounds) != 2 or any(len(b) != 2 or not float(b[0]) < float(b[1]) for b in bounds):
                raise ValueError(f"`bounds` must be ((x_low, x_high), (y_low, y_high)) with low < high, got {bounds!r}")
            return tuple(torch.linspace(float(low), float(high), n, dtype=torch.float64) for low, high in bounds)
        if not isinstance(self.model, VAE):
            raise ValueError(
                "an AutoEncoder has no prior to take quantiles of: pass `codes` (e.g. pipe.encode(images)) or "
                "`images` to span their quantiles, or `bounds`"
            )
        if not 0 < low < high < 1:
            raise ValueError(
                f"`quantile_range` must satisfy 0 < low < high < 1 for prior quantiles, got {quantile_range!r}"
            )
        levels = np.linspace(low, high, n) if n > 1 else np.array([0.5])
        axis = torch.tensor([NormalDist().inv_cdf(float(q)) for q in levels], dtype=torch.float64)
        return axis, axis.clone()

    @one_thread_for_small_networks
    @torch.no_grad()
    def latent_grid(
        self,
        n: int = 10,
        bounds: Sequence[Sequence[float]] | None = None,
        codes: torch.Tensor | None = None,
        images: ImageBatch | None = None,
        quantile_range: tuple[float, float] = (0.05, 0.95),
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> LatentGridOutput | tuple:
        r"""Decode an ``n × n`` grid of a 2-D latent space (Kingma & Welling 2014, Fig. 4).

        The axes are, by priority: ``bounds`` ``((x_low, x_high), (y_low, y_high))``; the empirical
        ``quantile_range`` quantiles of ``codes`` (or of ``encode(images)``) per dimension, which an autoencoder
        needs (the default (0.05, 0.95) spans the populated region, not a few far-out codes; (0, 1) is min to
        max); else, for the VAE, the Gaussian quantiles ``Φ⁻¹(q)`` of ``n`` levels ``q`` evenly spaced over
        ``quantile_range``, so that each cell holds about the same prior mass. With ``bounds`` or ``codes`` each
        axis has ``n`` evenly spaced points.
        """
        check_int(n, "n", note="the grid is n x n")
        self._check_image_output_type(output_type)
        if self.model.config.latent_dim != 2:
            raise ValueError(f"latent_grid needs a 2-D latent space, but latent_dim = {self.model.config.latent_dim}")
        per_image = (self._values_per_image + 2) * self.model.dtype.itemsize + 2 * 8  # image, latent, float64 axes
        check_memory(
            n * n * per_image,
            self.device,
            f"`n`={n:,} ({n * n:,} decoded images)",
            "use a smaller `n`",
            f" ({per_image:,} bytes per image and its latent)",
        )
        if codes is None and images is not None:
            codes = self.encode(images)
        x, y = self._grid_axes(n, bounds, codes, quantile_range)
        gx, gy = torch.meshgrid(x, y.flip(0), indexing="xy")
        latents = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(self.model.dtype)
        decoded = self.decode(latents, output_type=output_type)
        if not return_dict:
            return (decoded, latents, x, y)
        return LatentGridOutput(images=decoded, latents=latents, x=x, y=y)


class VAEPipeline(_LatentImagePipeline):
    r"""Generate images with a variational autoencoder (Kingma & Welling 2014): ``z ~ N(0, I_d)``, then the
    decoder's mean ``E[x | z]`` (for a Bernoulli decoder, the pixel probabilities ``sigmoid(ℓ(z))``: the usual
    grey-level picture of a binary model, smoother than a Bernoulli draw). Component: ``vae`` (:class:`VAE`).
    """

    model_cpu_offload_seq = "vae"

    def __init__(self, vae: VAE):
        super().__init__()
        if not isinstance(vae, VAE):
            raise TypeError(f"`vae` must be an hfgen VAE, got {type(vae).__name__}; use AutoEncoderPipeline for it")
        self.register_modules(vae=vae)

    @property
    def model(self) -> VAE:
        return self.vae

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 16,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        latents: torch.Tensor | None = None,
        batch_size: int = 1000,
    ) -> ImagesPipelineOutput | tuple:
        """Draw ``num_samples`` images from the model: ``z ~ N(0, I)`` from ``generator`` (or the given
        ``latents`` ``(N, d)``), decoded to ``E[x | z]`` in ``[0, 1]``."""
        self._check_image_output_type(output_type)
        if latents is None:
            n = check_num_samples(num_samples)
            # the images are the output; decoding runs in batches, so one copy of them is what must fit
            check_sampling_memory(n, self._values_per_image, self.device, self.vae.dtype, copies=1)
            latents = self.vae.sample_prior(n, generator=generator)
        latents = self.vae.check_latents(latents)
        images = self.decode(latents, output_type=output_type, batch_size=batch_size)
        if not return_dict:
            return (images, latents)
        return ImagesPipelineOutput(images=images, latents=latents)

    @one_thread_for_small_networks
    @torch.no_grad()
    def log_prob(
        self,
        images: ImageBatch,
        method: str = "quadrature",
        grid_size: int = 200,
        grid_limit: float = 6.0,
        num_importance_samples: int = 1000,
        generator: torch.Generator | None = None,
        batch_size: int = 100,
    ) -> torch.Tensor:
        r"""``log p(x)`` per image ``(N,)`` in nats, ``p(x) = ∫ p(x | z) N(z; 0, I) dz``.

        ``"quadrature"`` (2-D latent space only): the midpoint rule on the ``G × G`` grid of cell centres
        ``z_ij = −L + (i + ½, j + ½) Δ``, ``Δ = 2L / G`` over ``[−L, L]²`` (``G = grid_size``, ``L = grid_limit``),
        ``log p(x) ≈ logsumexp_ij [log p(x | z_ij) + log N(z_ij; 0, I)] + 2 log Δ``: exact as ``G → ∞`` up to the
        prior mass outside the square (``< 4 Φ(−L)``, about 4e-9 for ``L = 6``), and smooth decoders converge
        fast in ``G`` (compare two grid sizes to see it). ``"iwae"``: the importance-weighted lower bound with
        ``K = num_importance_samples`` posterior samples from ``generator`` (Burda et al. 2016), which tends to
        ``log p(x)`` from below as ``K → ∞``.
        """
        if method not in LOG_PROB_METHODS:
            raise ValueError(f"`method` must be one of {LOG_PROB_METHODS}, got {method!r}")
        images = self._as_image_tensor(images)
        batch_size = check_batch_size(batch_size, images.shape[0])
        check_generator(generator)
        if method == "iwae":
            check_num_samples(num_importance_samples, "num_importance_samples")
            chunks = images.split(batch_size)
            return torch.cat([self.vae.iwae_bound(c, num_importance_samples, generator) for c in chunks])
        if self.vae.config.latent_dim != 2:
            raise ValueError(
                f"method='quadrature' needs a 2-D latent space, but latent_dim = {self.vae.config.latent_dim}; "
                "use method='iwae'"
            )
        check_num_samples(grid_size, "grid_size")
        grid_limit = check_number(grid_limit, "grid_limit", 0, open_low=True)
        per_cell = 2 * (8 + 8)  # the float64 cell centres (G², 2) and their two columns while stacked: measured 32
        check_memory(
            grid_size**2 * per_cell,
            "cpu",
            f"quadrature on `grid_size`={grid_size:,} ({grid_size**2:,} cells)",
            "use a smaller `grid_size` (compare two sizes to see the convergence) or method='iwae'",
            f" ({per_cell} bytes a cell)",
        )
        step = 2.0 * grid_limit / grid_size
        axis = -grid_limit + (torch.arange(grid_size, dtype=torch.float64) + 0.5) * step
        gx, gy = torch.meshgrid(axis, axis, indexing="xy")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(device=self.device, dtype=self.vae.dtype)
        flat = images.flatten(1)
        total = torch.full((flat.shape[0],), -math.inf, dtype=flat.dtype, device=flat.device)
        for latents in grid.split(max(1, 2_000_000 // flat.shape[1])):
            decoded = self.vae.decode(latents).sample.flatten(1)  # (G_c, D)
            log_prior = -0.5 * latents.square().sum(dim=1) - math.log(2 * math.pi)
            total = torch.logaddexp(
                total, torch.logsumexp(_log_likelihood_matrix(self.vae, flat, decoded) + log_prior, 1)
            )
        return total + 2 * math.log(step)


def _log_likelihood_matrix(vae: VAE, flat: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
    r"""``log p(x_n | z_g)`` ``(N, G)`` for flattened images ``(N, D)`` and decoder outputs ``(G, D)`` by matrix
    products: Bernoulli ``x · ℓ − Σ_j softplus(ℓ_j)``; Gaussian ``−(‖x‖² − 2 x · m + ‖m‖²) / 2s² − (D/2) log 2πs²``."""
    if vae.config.likelihood == "bernoulli":
        return flat @ decoded.T - torch.nn.functional.softplus(decoded).sum(dim=1)[None]
    s = vae.config.observation_std
    squares = flat.square().sum(dim=1)[:, None] - 2 * flat @ decoded.T + decoded.square().sum(dim=1)[None]
    return -0.5 * squares / s**2 - 0.5 * flat.shape[1] * math.log(2 * math.pi * s**2)


class AutoEncoderPipeline(_LatentImagePipeline):
    """Reconstruct, encode and decode images with a deterministic autoencoder; an autoencoder has no prior, so
    calling the pipeline reconstructs images. Component: ``autoencoder`` (:class:`AutoEncoder`)."""

    model_cpu_offload_seq = "autoencoder"

    def __init__(self, autoencoder: AutoEncoder):
        super().__init__()
        if not isinstance(autoencoder, AutoEncoder):
            raise TypeError(f"`autoencoder` must be an hfgen AutoEncoder, got {type(autoencoder).__name__}")
        self.register_modules(autoencoder=autoencoder)

    @property
    def model(self) -> AutoEncoder:
        return self.autoencoder

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self, images: ImageBatch, output_type: str = "pt", return_dict: bool = True, batch_size: int = 1000
    ) -> ImagesPipelineOutput | tuple:
        """Reconstructions ``d(e(x))`` of ``images`` and their codes ``e(x)``."""
        self._check_image_output_type(output_type)
        latents = self.encode(images, batch_size=batch_size)
        reconstructions = self.decode(latents, output_type=output_type, batch_size=batch_size)
        if not return_dict:
            return (reconstructions, latents)
        return ImagesPipelineOutput(images=reconstructions, latents=latents)
