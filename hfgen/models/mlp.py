"""A time-conditioned MLP for points: a velocity, noise or score network in any dimension.

Its remote-code copy (:mod:`hfgen.remote_code`) is this module with the argument checks it uses from
:mod:`hfgen.checks` and :mod:`hfgen.utils`, so a diffusers-only user can load a saved velocity network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import GaussianFourierProjection
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.checks import check_arguments, check_choice, check_int
from hfgen.utils import check_point_shape

__all__ = ["TimeMLP", "TimeMLPOutput"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}
TIME_EMBEDDINGS = ("sinusoidal", "fourier")
#: the rule of an activation named in :data:`ACTIVATIONS` (for a ``config_rules`` table, :mod:`hfgen.checks`)
check_activation = partial(check_choice, choices=tuple(ACTIVATIONS))
#: the rules of the sizes of an MLP on points: the dimension ``D``, the width and the number of hidden layers
MLP_SIZE_RULES = {"dim": check_int, "hidden_size": check_int, "num_layers": check_int}


@dataclass
class TimeMLPOutput(BaseOutput):
    """Output of :class:`TimeMLP`: the predicted field at the input points, shape ``(N, D)``."""

    sample: torch.Tensor


class TimeMLP(ModelMixin, ConfigMixin):
    r"""MLP ``f_θ(x, t): ℝ^D × ℝ → ℝ^D`` conditioned on time by an embedding of ``t``.

    The time ``t`` is scaled by ``time_scale`` and embedded either with sinusoids
    ``e(t) = [sin(ω_k s t), cos(ω_k s t)]``, ``ω_k = 10000^{-k/(E/2)}`` (Vaswani et al. 2017; Ho et al. 2020)
    or with random Fourier features ``[sin(2π w_k s t), cos(2π w_k s t)]``, ``w_k ~ N(0, σ²)``
    (Tancik et al. 2020). With ``num_position_frequencies = L > 0`` the point is also encoded at octave
    frequencies, ``γ(x) = [x, sin(2^k π x), cos(2^k π x)]_{k<L}`` (Mildenhall et al. 2020), which lets a small
    MLP represent sharp features such as the edges of a checkerboard. The first layer reads ``[γ(x), e(t)]``;
    it is computed as ``W_x γ(x) + W_e e(t)`` so that a single timestep shared by the batch is embedded once.
    Then ``num_layers`` hidden layers of width ``hidden_size`` with the chosen activation, and a linear read-out.

    The same class serves as velocity network (flow matching, ``t ∈ [0, 1]``, ``time_scale=1000``), noise
    network (DDPM, integer ``t``, ``time_scale=1``) or score network.
    """

    config_rules = {
        **MLP_SIZE_RULES,
        "activation": check_activation,
        "time_embedding": partial(check_choice, choices=TIME_EMBEDDINGS),
        "time_embedding_dim": check_int,
        "num_position_frequencies": partial(check_int, low=0),
    }

    @register_to_config
    def __init__(
        self,
        dim: int = 2,
        hidden_size: int = 256,
        num_layers: int = 4,
        activation: str = "silu",
        time_embedding: str = "sinusoidal",
        time_embedding_dim: int = 64,
        time_scale: float = 1000.0,
        fourier_scale: float = 16.0,
        num_position_frequencies: int = 0,
    ):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        if time_embedding_dim % 2:
            raise ValueError(f"`time_embedding_dim` must be even, got {time_embedding_dim}")

        if time_embedding == "fourier":
            self.fourier = GaussianFourierProjection(
                time_embedding_dim // 2, scale=fourier_scale, set_W_to_weight=False, log=False
            )
        else:
            half = time_embedding_dim // 2
            frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
            # ω_k s: the time scale is folded into the frequencies.
            self.register_buffer("frequencies", frequencies * time_scale, persistent=False)
        octaves = math.pi * 2.0 ** torch.arange(num_position_frequencies, dtype=torch.float32)
        self.register_buffer("octaves", octaves, persistent=False)
        self.input_proj = nn.Linear(dim * (1 + 2 * num_position_frequencies), hidden_size)
        self.time_proj = nn.Linear(time_embedding_dim, hidden_size, bias=False)
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = [act()]
        for _ in range(num_layers - 1):
            layers += [nn.Linear(hidden_size, hidden_size), act()]
        layers.append(nn.Linear(hidden_size, dim))
        self.body = nn.Sequential(*layers)

    def embed_time(self, timestep: torch.Tensor) -> torch.Tensor:
        """Embedding ``e(s·t)`` of a 1-D tensor of times, shape ``(len(t), time_embedding_dim)``."""
        if self.config.time_embedding == "fourier":
            return self.fourier(timestep * self.config.time_scale)
        angles = timestep[:, None] * self.frequencies[None, :]
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)

    def encode_position(self, sample: torch.Tensor) -> torch.Tensor:
        """``γ(x) = [x, sin(2^k π x), cos(2^k π x)]`` for ``k < L`` (just ``x`` when ``L = 0``)."""
        if not self.config.num_position_frequencies:
            return sample
        angles = (sample[:, :, None] * self.octaves.to(sample.dtype)).flatten(1)
        return torch.cat([sample, torch.sin(angles), torch.cos(angles)], dim=1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, return_dict: bool = True
    ) -> TimeMLPOutput | tuple[torch.Tensor]:
        """Evaluate ``f_θ(x, t)`` at points ``sample`` ``(N, D)``; ``timestep`` is a scalar or ``(N,)``."""
        check_point_shape(sample, self.config.dim)
        if not isinstance(timestep, torch.Tensor) or timestep.dtype != sample.dtype:
            timestep = torch.as_tensor(timestep, dtype=sample.dtype, device=sample.device)
        if timestep.ndim > 1 or (timestep.ndim == 1 and timestep.shape[0] not in (1, sample.shape[0])):
            raise ValueError(
                f"`timestep` must be a scalar or have shape ({sample.shape[0]},), got {tuple(timestep.shape)}"
            )
        time_features = self.time_proj(self.embed_time(timestep.reshape(-1)))
        hidden = self.input_proj(self.encode_position(sample)) + time_features
        out = self.body(hidden)
        if not return_dict:
            return (out,)
        return TimeMLPOutput(sample=out)
