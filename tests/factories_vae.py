"""Tiny VAE/AE components, a linear-Gaussian VAE with a closed-form likelihood, and tiny image data sets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from hfgen import VAE, AutoEncoder, AutoEncoderPipeline, VAEPipeline

# Linear-Gaussian model on D = 4 pixels (2 x 2 images) with a 2-D latent: p(z) = N(0, I), p(x | z) = N(W z + b, s² I).
# The columns of W are orthogonal, so WᵀW and the exact posterior covariance are diagonal.
LINEAR_W = torch.tensor([[0.8, 0.5], [0.8, -0.5], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
LINEAR_B = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=torch.float64)
LINEAR_S = 0.5


def tiny_vae(likelihood: str = "bernoulli", architecture: str = "mlp", image_size: int = 8, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(
        image_size=image_size,
        hidden_sizes=[16, 8],
        conv_channels=[4, 8],
        architecture=architecture,
        likelihood=likelihood,
    )


def tiny_autoencoder(seed: int = 0) -> AutoEncoder:
    torch.manual_seed(seed)
    return AutoEncoder(image_size=8, hidden_sizes=[16, 8])


def tiny_vae_pipeline(seed: int = 0, **kwargs) -> VAEPipeline:
    pipe = VAEPipeline(tiny_vae(seed=seed, **kwargs))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_autoencoder_pipeline(seed: int = 0) -> AutoEncoderPipeline:
    pipe = AutoEncoderPipeline(tiny_autoencoder(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def linear_gaussian_posterior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior of the linear-Gaussian model: N(Σ Wᵀ(x − b)/s², Σ), Σ = (I + WᵀW/s²)⁻¹ (diagonal here)."""
    cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + LINEAR_W.T @ LINEAR_W / LINEAR_S**2)
    mean = (x.reshape(x.shape[0], -1) - LINEAR_B) @ LINEAR_W @ cov.T / LINEAR_S**2
    return mean, 0.5 * torch.log(torch.diagonal(cov)).expand_as(mean)


def linear_gaussian_log_px(x: torch.Tensor) -> torch.Tensor:
    """Exact ``log p(x)`` of the linear-Gaussian model: x ~ N(b, W Wᵀ + s² I)."""
    cov = LINEAR_W @ LINEAR_W.T + LINEAR_S**2 * torch.eye(4, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(LINEAR_B, cov).log_prob(x.reshape(x.shape[0], -1))


def linear_gaussian_elbo(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Exact ELBO for q = N(mean, diag σ²): E_q log p(x|z) − KL, with
    E_q ‖x − b − W z‖² = ‖x − b − W μ‖² + Σ_i ‖W_i‖² σ_i²."""
    flat = x.reshape(x.shape[0], -1)
    var = torch.exp(2 * log_std)
    residual = ((flat - LINEAR_B - mean @ LINEAR_W.T) ** 2).sum(1) + (var * (LINEAR_W**2).sum(0)).sum(1)
    expected_log_lik = -0.5 * residual / LINEAR_S**2 - 2 * math.log(2 * math.pi * LINEAR_S**2)
    kl = 0.5 * (var + mean**2 - 1 - 2 * log_std).sum(1)
    return expected_log_lik - kl


def linear_gaussian_vae(mean_shift: float = 0.0, log_std_shift: float = 0.0) -> VAE:
    """A float64 VAE whose decoder is the linear-Gaussian model and whose encoder is its exact posterior,
    optionally with the posterior mean shifted and its log std offset (a deliberately imperfect q)."""
    vae = VAE(image_size=2, hidden_sizes=[], likelihood="gaussian", observation_std=LINEAR_S).double()
    cov_diag = torch.diagonal(torch.linalg.inv(torch.eye(2, dtype=torch.float64) + LINEAR_W.T @ LINEAR_W / LINEAR_S**2))
    gain = cov_diag[:, None] * LINEAR_W.T / LINEAR_S**2  # (2, 4): μ = gain (x − b)
    with torch.no_grad():
        vae.decoder.body[0].weight.copy_(LINEAR_W)
        vae.decoder.body[0].bias.copy_(LINEAR_B)
        head = vae.encoder.head
        head.weight.zero_()
        head.weight[:2] = gain
        head.bias[:2] = -gain @ LINEAR_B + mean_shift
        head.bias[2:] = 0.5 * torch.log(cov_diag) + log_std_shift
    return vae


def write_image_parquet(path: Path, pixels: np.ndarray, labels: list[int] | None = None, column: str = "image"):
    """Write uint8 images ``(N, H, W)`` (mode L) or ``(N, H, W, 3)`` (RGB) as PNG rows of a parquet file."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    data = {column: [PILImage.fromarray(p) for p in pixels]}
    features = {column: Image()}
    if labels is not None:
        data["label"] = labels
        features["label"] = ClassLabel(names=[str(i) for i in range(10)])
    Dataset.from_dict(data, features=Features(features)).to_parquet(str(path))
    return path
