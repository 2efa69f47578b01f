"""A smooth MLP energy ``E_θ: ℝ^D → ℝ`` for energy-based models of points."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.checks import check_arguments, check_choice, check_number
from hfgen.models.mlp import MLP_SIZE_RULES
from hfgen.utils import check_point_shape

__all__ = ["EnergyMLP", "EnergyMLPOutput"]

#: smooth activations only: Langevin dynamics and MALA use ∇_x E, which must be continuous
SMOOTH_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


@dataclass
class EnergyMLPOutput(BaseOutput):
    """Output of :class:`EnergyMLP`: the energy ``E_θ(x)`` of each point, shape ``(N,)``."""

    energy: torch.Tensor


class EnergyMLP(ModelMixin, ConfigMixin):
    r"""Energy ``E_θ(x) = f_θ(x) + ½ κ ‖x‖²`` of points ``x ∈ ℝ^D``, defining ``p_θ(x) = exp(−E_θ(x)) / Z_θ``
    (LeCun et al. 2006, "A Tutorial on Energy-Based Learning"; Du & Mordatch 2019, "Implicit Generation and
    Generalization in Energy-Based Models").

    ``f_θ`` is an MLP with ``num_layers`` hidden layers of width ``hidden_size``, a smooth activation and a scalar
    read-out. It grows at most linearly, so ``exp(−f_θ)`` need not be integrable; ``confinement = κ > 0`` adds a
    quadratic well that makes ``Z_θ`` finite for every ``θ`` (``κ = 0`` leaves ``E_θ = f_θ``).
    """

    config_rules = {
        **MLP_SIZE_RULES,
        "activation": partial(check_choice, choices=tuple(SMOOTH_ACTIVATIONS), note="smooth"),
        "confinement": partial(check_number, low=0),
    }

    @register_to_config
    def __init__(
        self,
        dim: int = 2,
        hidden_size: int = 128,
        num_layers: int = 3,
        activation: str = "silu",
        confinement: float = 0.0,
    ):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        act = SMOOTH_ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Linear(dim, hidden_size), act()]
        for _ in range(num_layers - 1):
            layers += [nn.Linear(hidden_size, hidden_size), act()]
        layers.append(nn.Linear(hidden_size, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, sample: torch.Tensor, return_dict: bool = True) -> EnergyMLPOutput | tuple[torch.Tensor]:
        """Energies ``E_θ(x)`` ``(N,)`` of points ``sample`` ``(N, D)``."""
        check_point_shape(sample, self.config.dim)
        energy = self.body(sample).squeeze(-1)
        if self.config.confinement:
            energy = energy + 0.5 * self.config.confinement * sample.square().sum(-1)
        if not return_dict:
            return (energy,)
        return EnergyMLPOutput(energy=energy)
