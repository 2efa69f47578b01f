"""Gaussian kernel density estimate in R^D, as a diffusers model whose data points are a saved buffer."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from hfgen.checks import check_arguments, check_choice, check_int, check_number
from hfgen.utils import check_points

__all__ = ["KernelDensity", "KernelDensityOutput"]

BANDWIDTH_RULES = ("scott", "silverman")
_CHUNK_ELEMENTS = 2**22  # query points × data points × D evaluated at once by log_prob


def check_bandwidth(bandwidth: object, name: str = "bandwidth") -> float | str:
    """Return ``bandwidth`` if it is ``"scott"``, ``"silverman"`` or a finite number ``> 0``, else raise."""
    if isinstance(bandwidth, str):
        return check_choice(bandwidth, name, BANDWIDTH_RULES, note="or a number > 0")
    return check_number(bandwidth, name, 0, open_low=True, note=f"or one of {BANDWIDTH_RULES}")


def bandwidth_factor(rule: str, num_points: int, dim: int) -> float:
    r"""Scott's factor ``n^{−1/(D+4)}`` (Scott 1992) or Silverman's ``(n (D + 2) / 4)^{−1/(D+4)}`` (Silverman 1986),
    as ``scipy.stats.gaussian_kde``'s ``factor``."""
    if rule == "scott":
        return num_points ** (-1.0 / (dim + 4))
    if rule == "silverman":
        return (num_points * (dim + 2) / 4.0) ** (-1.0 / (dim + 4))
    raise ValueError(f"`rule` must be one of {BANDWIDTH_RULES}, got {rule!r}")


def rule_bandwidth(data: torch.Tensor, rule: str) -> float:
    r"""``h = factor · σ̂`` with ``σ̂² = (1/D) Σ_d Var̂(x_d)`` (unbiased) and the factor of :func:`bandwidth_factor`
    (Scott 1992; Silverman 1986)."""
    num_points, dim = data.shape
    if num_points < 2:
        raise ValueError(f"bandwidth rule {rule!r} needs `data` with at least 2 points, got {num_points}")
    spread = math.sqrt(float(data.double().var(dim=0, unbiased=True).mean()))
    if spread == 0:
        raise ValueError(f"bandwidth rule {rule!r} needs `data` with nonzero spread; all points are equal")
    return bandwidth_factor(rule, num_points, dim) * spread


@dataclass
class KernelDensityOutput(BaseOutput):
    """Output of :class:`KernelDensity`: ``log_prob`` ``log p(x)`` in nats, shape ``(N,)``."""

    log_prob: torch.Tensor


class KernelDensity(ModelMixin, ConfigMixin):
    r"""Gaussian kernel density estimate ``p(x) = (1/n) Σ_i N(x; x_i, h² I)`` (Rosenblatt 1956; Parzen 1962):

    ``log p(x) = logsumexp_i(−‖x − x_i‖² / (2h²)) − log n − D log h − (D/2) log 2π``,

    i.e. the normaliser ``1 / (n h^D (2π)^{D/2})``. ``bandwidth`` is a number ``h > 0`` or a rule
    ``h = factor · σ̂`` with ``σ̂² = (1/D) tr Ĉov(x)`` (unbiased sample covariance) and the factor of
    :func:`bandwidth_factor` (``"scott"`` or ``"silverman"``); in 1-D this is exactly
    ``scipy.stats.gaussian_kde``. A bandwidth picked by held-out likelihood comes from
    :func:`hfgen.methods.kde.select_bandwidth`.

    The ``num_points × dim`` data points are the buffer ``data`` (saved in safetensors); build the model with
    :meth:`from_data`. The model keeps the data's dtype (pass ``torch_dtype`` to ``from_pretrained`` for float64).
    """

    config_rules = {"num_points": check_int, "dim": check_int, "bandwidth": check_bandwidth}

    @register_to_config
    def __init__(self, num_points: int = 1, dim: int = 2, bandwidth: float | str = "scott"):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        self.register_buffer("data", torch.zeros(num_points, dim))

    @classmethod
    def from_data(cls, data: torch.Tensor, bandwidth: float | str = "scott") -> KernelDensity:
        """A KDE on the points ``data`` ``(n, D)`` (copied, dtype and device kept)."""
        data = check_points(data, name="data")
        model = cls(num_points=data.shape[0], dim=data.shape[1], bandwidth=bandwidth)
        if isinstance(model.config.bandwidth, str):
            rule_bandwidth(data, model.config.bandwidth)  # degenerate data fail here rather than at first use
        model.data = data.detach().clone()
        return model

    @property
    def bandwidth(self) -> float:
        """The kernel standard deviation ``h`` (the number given, or the rule applied to the data)."""
        bandwidth = self.config.bandwidth
        return rule_bandwidth(self.data, bandwidth) if isinstance(bandwidth, str) else float(bandwidth)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density ``log p(x)`` in nats at points ``x`` ``(N, D)``, shape ``(N,)``."""
        num_points, dim = self.data.shape
        x = check_points(x, dim, "x").to(device=self.data.device, dtype=self.data.dtype)
        h = self.bandwidth
        log_norm = math.log(num_points) + dim * math.log(h) + 0.5 * dim * math.log(2 * math.pi)
        chunk = max(1, _CHUNK_ELEMENTS // (num_points * dim))
        parts = [
            torch.logsumexp(-(part[:, None, :] - self.data[None]).square().sum(dim=-1) / (2 * h * h), dim=1)
            for part in x.split(chunk)
        ]
        return torch.cat(parts) - log_norm

    def forward(self, x: torch.Tensor, return_dict: bool = True) -> KernelDensityOutput | tuple[torch.Tensor]:
        """``log p(x)`` at points ``x`` ``(N, D)`` (see :meth:`log_prob`)."""
        log_prob = self.log_prob(x)
        return KernelDensityOutput(log_prob=log_prob) if return_dict else (log_prob,)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x = x_I + h ε`` with ``I`` uniform over the data points and ``ε ~ N(0, I)``; shape ``(N, D)``."""
        check_int(num_samples, "num_samples")
        num_points, dim = self.data.shape
        index = torch.randint(num_points, (num_samples,), generator=generator, device=self.data.device)
        noise = torch.randn(num_samples, dim, generator=generator, device=self.data.device, dtype=self.data.dtype)
        return self.data[index] + self.bandwidth * noise
