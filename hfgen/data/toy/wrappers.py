"""Toy distributions made from others: a shifted copy of a toy law, and any sampler as a sample-only law."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from hfgen.checks import check_int, check_number
from hfgen.data.toy.base import ToyDistribution

__all__ = ["SampleOnly", "Shifted"]


class Shifted(ToyDistribution):
    """The law of X + shift for X ~ base: log p(x) = log p_base(x − shift), same entropy, shifted support.

    It is sample-only when the base is, and has bounded support when the base has. The base is evaluated at
    x − shift computed in float64, so float32 and float64 copies of the same points get the same answer.
    """

    name = "shifted"

    def __init__(self, base: ToyDistribution, shift: Sequence[float] | Tensor) -> None:
        if not isinstance(base, ToyDistribution):
            raise TypeError(f"base must be a ToyDistribution, got {type(base).__name__}")
        if isinstance(shift, Tensor):
            if shift.ndim != 1:
                raise ValueError(f"shift must be a 1-D tensor of length {base.dim}, got shape {tuple(shift.shape)}")
            shift = shift.tolist()
        if isinstance(shift, str | bytes) or not isinstance(shift, Sequence):
            raise TypeError(f"shift must be a sequence of floats or a 1-D tensor, got {type(shift).__name__}")
        if len(shift) != base.dim:
            raise ValueError(f"shift must have length base.dim = {base.dim}, got length {len(shift)}: {shift!r}")
        self.base = base
        self.shift = tuple(check_number(value, f"shift[{i}]") for i, value in enumerate(shift))

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def has_log_prob(self) -> bool:  # type: ignore[override]
        return self.base.has_log_prob

    @property
    def has_bounded_support(self) -> bool:  # type: ignore[override]
        return self.base.has_bounded_support

    def _params(self) -> dict[str, Any]:
        return {"base": self.base, "shift": self.shift}

    def to_config(self) -> dict[str, Any]:
        """Config with the base's config nested: ``{"name": "shifted", "base": {...}, "shift": [...]}``."""
        return {"name": self.name, "base": self.base.to_config(), "shift": list(self.shift)}

    def _unshift(self, x: Tensor) -> Tensor:
        return x.double() - torch.tensor(self.shift, dtype=torch.float64, device=x.device)

    def _sample(self, num_samples: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        x = self.base.sample(num_samples, generator)
        return x + torch.tensor(self.shift, dtype=x.dtype, device=x.device)

    def _log_prob(self, x: Tensor) -> Tensor:
        return self.base.log_prob(self._unshift(x)).to(x.dtype)

    def _entropy(self) -> float:
        return self.base.entropy

    def _in_support(self, x: Tensor) -> Tensor:
        return self.base.in_support(self._unshift(x))


class SampleOnly(ToyDistribution):
    """Wraps any ``sampler(num_samples, generator) -> (num_samples, dim) tensor`` as a sample-only law.

    The sampler's output is checked (a tensor of shape (num_samples, dim) with finite entries) and returned as
    float32. It has no density and cannot be serialised (``to_config`` raises ValueError).
    """

    has_log_prob = False

    def __init__(
        self, sampler: Callable[[int, torch.Generator | None], Tensor], dim: int, name: str = "custom"
    ) -> None:
        if not callable(sampler):
            raise TypeError(f"sampler must be callable as sampler(num_samples, generator), got {sampler!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.sampler = sampler
        self._dim = check_int(dim, "dim")
        self.name = name

    @property
    def dim(self) -> int:
        return self._dim

    def _params(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "dim": self._dim, "name": self.name}

    def to_config(self) -> dict[str, Any]:
        """Always raises ValueError: a Python callable cannot be serialised to a config."""
        raise ValueError(
            f"SampleOnly distribution {self.name!r} cannot be serialised: its sampler {self.sampler!r} is a "
            "Python callable; use a registered distribution to get a config"
        )

    def _sample(self, num_samples: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        x = self.sampler(num_samples, generator)
        if not isinstance(x, Tensor):
            raise TypeError(f"sampler of {self.name!r} must return a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape) != (num_samples, self._dim):
            raise ValueError(
                f"sampler of {self.name!r} must return shape (num_samples, dim) = "
                f"({num_samples}, {self._dim}), got {tuple(x.shape)}"
            )
        x = x.to(torch.float32)
        if not torch.isfinite(x).all():
            raise ValueError(f"sampler of {self.name!r} returned non-finite values (nan or inf)")
        return x
