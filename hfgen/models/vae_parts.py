"""The parts the autoencoder and the VAE of :mod:`hfgen.models.vae` are built from: the choices they offer, the
checks of their constructor arguments and the stack of hidden MLP layers."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import nn

from hfgen.checks import check_choice, check_int, check_number, check_sizes
from hfgen.models.mlp import ACTIVATIONS, check_activation

__all__ = ["ARCHITECTURES", "LIKELIHOODS", "NORMALIZATIONS"]

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHITECTURES = ("mlp", "conv")
#: normalisation of the encoder's hidden MLP layers: none, or LayerNorm (Ba et al. 2016) before each activation
NORMALIZATIONS = ("none", "layer")


#: the rules of the config arguments the encoder and the decoder share (:func:`hfgen.checks.check_arguments`)
_NETWORK_RULES = {
    "image_size": check_int,
    "latent_dim": check_int,
    "hidden_sizes": check_sizes,
    "activation": check_activation,
    "architecture": partial(check_choice, choices=ARCHITECTURES),
}
#: the config rules of the encoder, the decoder, and the likelihood of the models built from them
_ENCODER_RULES = {
    "in_channels": check_int,
    **_NETWORK_RULES,
    "normalization": partial(check_choice, choices=NORMALIZATIONS),
}
_DECODER_RULES = {"out_channels": check_int, **_NETWORK_RULES}
_LIKELIHOOD_RULES = {
    "likelihood": partial(check_choice, choices=LIKELIHOODS),
    "observation_std": partial(check_number, low=0, open_low=True),
}


def _check_conv_channels(architecture: str, conv_channels: Sequence[int], image_size: int) -> None:
    """The conv architecture's ``conv_channels``: a non-empty list of layers that each halve ``image_size``."""
    if architecture == "conv":
        check_sizes(conv_channels, "conv_channels", allow_empty=False)
        if image_size % 2 ** len(conv_channels):
            raise ValueError(
                f"`image_size` must be divisible by 2**len(conv_channels) = {2 ** len(conv_channels)} for the conv "
                f"architecture (each layer halves it), got {image_size}"
            )


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
