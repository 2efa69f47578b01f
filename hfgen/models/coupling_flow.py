"""An affine coupling flow on points (RealNVP) with ActNorm and optional invertible linear layers (Glow)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.utils import check_num_samples, check_points


@dataclass
class CouplingFlowOutput(BaseOutput):
    """``sample``: the transformed points ``(N, D)``; ``log_det``: ``log |det ∂(output)/∂(input)|``, ``(N,)``."""

    sample: torch.Tensor
    log_det: torch.Tensor


class ActNorm(nn.Module):
    r"""Activation normalisation (Kingma & Dhariwal 2018): ``y = (x + b) ⊙ exp(s)``, ``log|det| = Σ_d s_d``.

    Starts as the identity; :meth:`initialize` sets ``b = −mean(x)``, ``s = −log std(x)`` so that the given batch
    leaves with zero mean and unit variance per dimension (data-dependent initialisation)."""

    def __init__(self, dim: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from a batch ``x`` ``(N, D)`` with ``N ≥ 2`` and nonzero spread."""
        std = x.std(dim=0, unbiased=False)
        if x.shape[0] < 2 or not bool((std > 0).all()):
            raise ValueError(f"ActNorm initialisation needs `x` with >= 2 points and nonzero spread, got {x.shape[0]}")
        self.bias.copy_(-x.mean(dim=0))
        self.log_scale.copy_(-std.log())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log|det ∂y/∂x|)``."""
        return (x + self.bias) * self.log_scale.exp(), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, log|det ∂x/∂y|)`` with ``x = y ⊙ exp(−s) − b``."""
        return y * (-self.log_scale).exp() - self.bias, -self.log_scale.sum().expand(y.shape[0])


class InvertibleLinear(nn.Module):
    r"""``y = W x`` with a learned invertible ``D × D`` matrix, the points' analogue of Glow's invertible 1×1
    convolution (Kingma & Dhariwal 2018); ``log|det| = log|det W|`` (by LU, ``torch.linalg.slogdet``). Starts as a
    random rotation."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(nn.init.orthogonal_(torch.empty(dim, dim)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W x, log|det W|)``."""
        return x @ self.weight.T, torch.linalg.slogdet(self.weight).logabsdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W^{-1} y, −log|det W|)``."""
        x = torch.linalg.solve(self.weight, y.T).T
        return x, -torch.linalg.slogdet(self.weight).logabsdet.expand(y.shape[0])


class AffineCoupling(nn.Module):
    r"""Affine coupling layer (Dinh et al. 2017): with a binary mask ``b``,

    ``y = b ⊙ x + (1 − b) ⊙ (x ⊙ exp(s(b ⊙ x)) + t(b ⊙ x))``, ``log|det ∂y/∂x| = Σ_d (1 − b_d) s_d``,

    where ``s = γ ⊙ tanh(·)`` and ``t`` are read from an MLP of ``b ⊙ x``. The MLP's last layer starts at zero, so
    a new layer is the identity."""

    def __init__(self, mask: torch.Tensor, hidden_size: int, num_hidden_layers: int):
        super().__init__()
        dim = mask.numel()
        self.register_buffer("mask", mask.float())
        layers: list[nn.Module] = []
        width = dim
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(width, hidden_size), nn.SiLU()]
            width = hidden_size
        last = nn.Linear(width, 2 * dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.scale = nn.Parameter(torch.ones(dim))

    def _shift_and_log_scale(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_scale, shift = self.net(kept).chunk(2, dim=1)
        free = 1 - self.mask
        return free * shift, free * self.scale * torch.tanh(raw_scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log|det ∂y/∂x|)``."""
        shift, log_scale = self._shift_and_log_scale(self.mask * x)
        return x * log_scale.exp() + shift, log_scale.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, log|det ∂x/∂y|)`` with ``x = (y − t) ⊙ exp(−s)`` on the free coordinates (``b ⊙ x = b ⊙ y``)."""
        shift, log_scale = self._shift_and_log_scale(self.mask * y)
        return (y - shift) * (-log_scale).exp(), -log_scale.sum(dim=1)


class CouplingFlow(ModelMixin, ConfigMixin):
    r"""RealNVP normalising flow on points (Dinh et al. 2017) with a standard Gaussian base.

    ``forward`` maps data to latent, ``z = f(x) = f_L ∘ … ∘ f_1(x)``, where each of the ``num_couplings`` blocks is
    ``[ActNorm] → [InvertibleLinear] → AffineCoupling`` (Kingma & Dhariwal 2018 for the first two; the coupling
    masks alternate between even and odd coordinates). By the change of variables

    ``log p(x) = log N(f(x); 0, I) + Σ_l log|det ∂f_l/∂h_{l−1}|``;

    ``sample`` draws ``z ~ N(0, I)`` and returns ``x = f^{-1}(z)`` through the exact inverses. The blocks are
    ``self.layers`` in the order applied by ``forward``. A new flow is the identity (plus random rotations if
    ``invertible_linear``); :meth:`initialize_actnorm` makes a data batch standardised at every ActNorm.
    """

    @register_to_config
    def __init__(
        self,
        dim: int = 2,
        num_couplings: int = 4,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        actnorm: bool = True,
        invertible_linear: bool = False,
    ):
        super().__init__()
        for name, value, minimum in (
            ("dim", dim, 2),
            ("num_couplings", num_couplings, 1),
            ("hidden_size", hidden_size, 1),
            ("num_hidden_layers", num_hidden_layers, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")
        for name, value in (("actnorm", actnorm), ("invertible_linear", invertible_linear)):
            if not isinstance(value, bool):
                raise TypeError(f"`{name}` must be a bool, got {value!r}")
        layers: list[nn.Module] = []
        for block in range(num_couplings):
            if actnorm:
                layers.append(ActNorm(dim))
            if invertible_linear:
                layers.append(InvertibleLinear(dim))
            mask = (torch.arange(dim) + block) % 2 == 0
            layers.append(AffineCoupling(mask, hidden_size, num_hidden_layers))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, return_dict: bool = True) -> CouplingFlowOutput | tuple:
        """``z = f(x)`` and ``log|det ∂f/∂x|`` for data points ``x`` ``(N, D)``."""
        z = check_points(x, self.config.dim, "x").to(device=self.device, dtype=self.dtype)
        log_det = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        for layer in self.layers:
            z, layer_log_det = layer(z)
            log_det = log_det + layer_log_det
        return CouplingFlowOutput(sample=z, log_det=log_det) if return_dict else (z, log_det)

    def inverse(self, z: torch.Tensor, return_dict: bool = True) -> CouplingFlowOutput | tuple:
        """``x = f^{-1}(z)`` and ``log|det ∂f^{-1}/∂z|`` for latent points ``z`` ``(N, D)``."""
        x = check_points(z, self.config.dim, "z").to(device=self.device, dtype=self.dtype)
        log_det = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for layer in reversed(self.layers):
            x, layer_log_det = layer.inverse(x)
            log_det = log_det + layer_log_det
        return CouplingFlowOutput(sample=x, log_det=log_det) if return_dict else (x, log_det)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = −½‖f(x)‖² − (D/2) log 2π + log|det ∂f/∂x|`` in nats, shape ``(N,)``."""
        z, log_det = self.forward(x, return_dict=False)
        return -0.5 * z.square().sum(dim=1) - 0.5 * self.config.dim * math.log(2 * math.pi) + log_det

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x = f^{-1}(z)`` with ``z ~ N(0, I)`` drawn from ``generator``; shape ``(N, D)``."""
        check_num_samples(num_samples)
        z = torch.randn(num_samples, self.config.dim, generator=generator, device=self.device, dtype=self.dtype)
        return self.inverse(z).sample

    @torch.no_grad()
    def initialize_actnorm(self, x: torch.Tensor) -> None:
        """Data-dependent ActNorm initialisation: pass ``x`` ``(N, D)`` forward and standardise it at each ActNorm."""
        h = check_points(x, self.config.dim, "x").to(device=self.device, dtype=self.dtype)
        for layer in self.layers:
            if isinstance(layer, ActNorm):
                layer.initialize(h)
            h = layer(h)[0]
