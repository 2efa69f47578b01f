r"""Training objectives of the latent-variable image models: the VAE's negative ELBO and the autoencoder's
reconstruction loss (optionally with a neighbour-embedding term).

VAE (Kingma & Welling 2014): ``log p(x) ≥ E_q[log p(x | z)] − KL(q(z | x) ‖ p(z))`` with one reparametrised sample
``z = μ(x) + σ(x) ⊙ ε`` per image and the KL in closed form; ``β ≠ 1`` weighs the KL (β-VAE, Higgins et al. 2017).
Autoencoder: ``−log p(x | z = e(x))``, plus ``λ`` times the neighbour-embedding loss of the codes of k-NN-graph
neighbours (:func:`hfgen.methods.neighbor_embedding.neighbor_embedding_loss`; Sainburg et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput
from torch import Tensor

from hfgen.methods.neighbor_embedding import neighbor_embedding_loss
from hfgen.models.vae import VAE, AutoEncoder


@dataclass
class LatentLossOutput(BaseOutput):
    """Batch means, in nats per image: ``loss`` to minimise, its ``reconstruction`` part ``−log p(x | z)``, for
    the VAE the ``kl`` part ``KL(q(z | x) ‖ p(z))``, and for an autoencoder given neighbour images the
    ``neighbor`` part (:func:`~hfgen.methods.neighbor_embedding.neighbor_embedding_loss`, before its weight)."""

    loss: Tensor
    reconstruction: Tensor
    kl: Tensor | None = None
    neighbor: Tensor | None = None


def negative_elbo(
    model: VAE, images: Tensor, generator: torch.Generator | None = None, beta: float = 1.0
) -> LatentLossOutput:
    r"""The batch mean of ``−log p(x | z) + β KL(q(z | x) ‖ p(z))`` with one sample ``z = μ + σ ε`` per image;
    ``β = 1`` is the negative ELBO, whose expectation bounds ``−log p(x)`` from above."""
    images = model.check_images(images)
    mean, log_std = model.encoder(images, return_dict=False)
    z = model.reparameterize(mean, log_std, generator)
    reconstruction = -model.log_likelihood(images, model.decoder(z).sample).mean()
    kl = model.kl_divergence(mean, log_std).mean()
    return LatentLossOutput(loss=reconstruction + beta * kl, reconstruction=reconstruction, kl=kl)


def autoencoder_loss(
    model: AutoEncoder,
    images: Tensor,
    neighbor_images: Tensor | None = None,
    neighbor_weight: float = 1.0,
    num_negatives: int = 5,
) -> LatentLossOutput:
    r"""``L = mean_i −log p(x_i | e(x_i))``; with ``neighbor_images`` (image ``i``'s neighbour in a k-NN graph of
    the data) plus ``λ L_nb(e(x), e(x'))``, the neighbour-embedding loss of the codes (a UMAP-regularised
    autoencoder, Sainburg et al. 2021)."""
    if neighbor_images is None:
        reconstruction = model.reconstruction_loss(images).mean()
        return LatentLossOutput(loss=reconstruction, reconstruction=reconstruction)
    images = model.check_images(images)
    neighbor_images = model.check_images(neighbor_images, "neighbor_images")
    if neighbor_images.shape[0] != images.shape[0]:
        raise ValueError(
            f"`neighbor_images` must have one image per image, got {neighbor_images.shape[0]} for {images.shape[0]}"
        )
    codes, neighbor_codes = model.encoder(torch.cat([images, neighbor_images])).latent_mean.chunk(2)
    reconstruction = -model.log_likelihood(images, model.decoder(codes).sample).mean()
    neighbor = neighbor_embedding_loss(codes, neighbor_codes, num_negatives)
    return LatentLossOutput(
        loss=reconstruction + neighbor_weight * neighbor, reconstruction=reconstruction, neighbor=neighbor
    )
