"""The parts the autoencoder and the VAE of :mod:`hfgen.models.vae` are built from: the choices they offer, the
checks of their constructor arguments and the stack of hidden MLP layers."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from hfgen.models.mlp import ACTIVATIONS
from hfgen.utils import check_positive_int

__all__ = ["ARCHITECTURES", "LIKELIHOODS", "NORMALIZATIONS"]

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHITECTURES = ("mlp", "conv")
#: normalisation of the encoder's hidden MLP layers: none, or LayerNorm (Ba et al. 2016) before each activation
NORMALIZATIONS = ("none", "layer")


def _check_sizes(name: str, sizes: Sequence[int], allow_empty: bool) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or (not allow_empty and not sizes):
        raise ValueError(
            f"`{name}` must be a {'' if allow_empty else 'non-empty '}list of positive ints, got {sizes!r}"
        )
    for size in sizes:
        check_positive_int(size, name)
    return list(sizes)


def _check_common(
    in_channels: int,
    image_size: int,
    latent_dim: int,
    hidden_sizes: Sequence[int],
    activation: str,
    architecture: str,
    conv_channels: Sequence[int],
) -> None:
    for name, value in (("in_channels", in_channels), ("image_size", image_size), ("latent_dim", latent_dim)):
        check_positive_int(value, name)
    _check_sizes("hidden_sizes", hidden_sizes, allow_empty=True)
    if activation not in ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"`architecture` must be one of {ARCHITECTURES}, got {architecture!r}")
    if architecture == "conv":
        _check_sizes("conv_channels", conv_channels, allow_empty=False)
        if image_size % 2 ** len(conv_channels):
            raise ValueError(
                f"`image_size` must be divisible by 2**len(conv_channels) = {2 ** len(conv_channels)} for the conv "
                f"architecture (each layer halves it), got {image_size}"
            )


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {normalization!r}")


def _mlp(sizes: Sequence[int], activation: str, normalization: str = "none") -> list[nn.Module]:
    """Linear layers between consecutive ``sizes``, each followed by the activation (with
    ``normalization="layer"``, ``LayerNorm`` between the two: ``h ↦ act(LN(W h + b))``)."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers.append(nn.Linear(fan_in, fan_out))
        if normalization == "layer":
            layers.append(nn.LayerNorm(fan_out))
        layers.append(ACTIVATIONS[activation]())
    return layers


def _check_likelihood(likelihood: str, observation_std: float) -> None:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"`likelihood` must be one of {LIKELIHOODS}, got {likelihood!r}")
    if not (isinstance(observation_std, (int, float)) and observation_std > 0):
        raise ValueError(f"`observation_std` must be a positive float, got {observation_std!r}")
