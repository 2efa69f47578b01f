"""A residual mean network for the γ-step bridge: ``m_k(x) = x + g_θ(x, k)``, starting at the identity."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.models.mlp import TimeMLP

__all__ = ["ResidualMean", "ResidualMeanOutput"]


@dataclass
class ResidualMeanOutput(BaseOutput):
    """Output of :class:`ResidualMean`: the predicted means of the next state, shape ``(n, D)``."""

    sample: torch.Tensor


class ResidualMean(ModelMixin, ConfigMixin):
    r"""Mean network ``m_k(x) = x + g_θ(x, k)`` of one direction of a diffusion Schrödinger bridge.

    ``g_θ`` is a :class:`~hfgen.models.TimeMLP` that reads the integer index ``k`` of the state (sinusoidal
    embedding, ``time_scale = 1``). In DSB's drift notation ``m_k(x) = x + γ_k f_k(x)`` (De Bortoli et al. 2021),
    so ``g_θ`` only learns the small displacement ``γ_k f_k`` of one step instead of a near-identity map. Its
    read-out layer starts at zero, so a new network is the Brownian reference ``m_k(x) = x``, the chain IPF
    starts from.
    """

    @register_to_config
    def __init__(
        self,
        dim: int = 2,
        hidden_size: int = 128,
        num_layers: int = 3,
        activation: str = "silu",
        time_embedding_dim: int = 32,
    ):
        super().__init__()
        self.net = TimeMLP(
            dim=dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            activation=activation,
            time_embedding_dim=time_embedding_dim,
            time_scale=1.0,
        )
        readout = self.net.body[-1]
        nn.init.zeros_(readout.weight)
        nn.init.zeros_(readout.bias)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int | float, return_dict: bool = True
    ) -> ResidualMeanOutput | tuple[torch.Tensor]:
        """``x + g_θ(x, k)`` at points ``sample`` ``(n, D)``; ``timestep`` is the state index ``k``, a scalar or
        ``(n,)``."""
        out = sample + self.net(sample, timestep, return_dict=False)[0]
        if not return_dict:
            return (out,)
        return ResidualMeanOutput(sample=out)
