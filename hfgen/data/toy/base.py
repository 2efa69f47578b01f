"""The base class of hfgen's toy distributions and the checks of their arguments."""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import Tensor

from hfgen.checks import check_int
from hfgen.utils import check_generator

__all__ = ["ToyDistribution"]

_DENSITY_NAMES = "'gaussian', 'checkerboard', '8gaussians' or 'two_balls'"


def _check_generator(generator: Any) -> torch.device:
    """Validate ``generator`` and return the device samples are drawn on (the generator's, else CPU)."""
    return torch.device("cpu") if check_generator(generator) is None else generator.device


class ToyDistribution(abc.ABC):
    """A distribution on R^dim that samples ``(N, dim)`` float32 tensors, repeatably from a generator.

    Capabilities are declared by ``has_log_prob`` (exact ``log_prob`` and ``entropy``) and
    ``has_bounded_support`` (``in_support``); otherwise those methods raise ``NotImplementedError``.
    """

    name: str
    has_log_prob: bool = True
    has_bounded_support: bool = False

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Dimension d of the ambient space R^d."""

    @abc.abstractmethod
    def _params(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this distribution."""

    @abc.abstractmethod
    def _sample(self, num_samples: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """Draw the points, given an already validated ``num_samples`` and generator."""

    def _log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} declares has_log_prob but does not define _log_prob")

    def _entropy(self) -> float:
        raise NotImplementedError(f"{type(self).__name__} declares has_log_prob but does not define _entropy")

    def _in_support(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} declares has_bounded_support but does not define _in_support")

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num_samples`` i.i.d. points, a float32 tensor of shape ``(num_samples, dim)``.

        With bounded support every sample passes ``in_support``: the rare point that rounding to float32 puts
        just outside the support (within an ulp of its boundary) is redrawn from the same generator.
        """
        num_samples = check_int(num_samples, "num_samples")
        device = _check_generator(generator)
        x = self._sample(num_samples, generator, device)
        if self.has_bounded_support:
            outside = torch.nonzero(~self._in_support(x)).flatten()
            while outside.numel() > 0:
                x[outside] = self._sample(outside.numel(), generator, device)
                outside = outside[~self._in_support(x[outside])]
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density log p(x) in nats, shape ``(N,)``; −inf outside a bounded support."""
        self._require_density("log_prob")
        return self._log_prob(self._check_points(x))

    @property
    def entropy(self) -> float:
        """Differential entropy H(p) = −∫ p(x) log p(x) dx in nats."""
        self._require_density("entropy")
        return self._entropy()

    def in_support(self, x: Tensor) -> Tensor:
        """Boolean tensor ``(N,)``: whether each point lies in the (bounded) support."""
        if not self.has_bounded_support:
            raise NotImplementedError(
                f"{self!r} has unbounded support, so in_support is not defined; it exists for distributions "
                "with bounded support ('checkerboard', 'two_balls' and shifts of them)"
            )
        return self._in_support(self._check_points(x))

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable config; ``toy_from_config(d.to_config())`` rebuilds ``d`` exactly."""
        return {"name": self.name, **self._params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return f"{type(self).__name__}({args})"

    def _require_density(self, method: str) -> None:
        if not self.has_log_prob:
            raise NotImplementedError(
                f"{self!r} is sample-only: it has no closed-form density, so {method} is not available. "
                f"Use a distribution with a density ({_DENSITY_NAMES}) when exact likelihoods are needed."
            )

    def _check_points(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (N, {self.dim}), got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        return x
