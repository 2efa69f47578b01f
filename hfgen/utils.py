"""What every layer shares: input checks, the counter-based randomness contract and small type aliases."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

VelocityField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``velocity(x, t) -> (N, D)``: a field at points ``x`` ``(N, D)`` and time ``t`` (a scalar or ``(N,)`` tensor)."""
Sampler = Callable[[int, torch.Generator | None], torch.Tensor]
"""``sampler(num_samples, generator) -> (num_samples, D)``, e.g. ``ToyDistribution.sample``."""


def batch_generator(seed: int, stream: int, index: int) -> torch.Generator:
    """The generator of batch ``index`` of stream ``stream`` (one per process) of a run seeded ``seed``.

    Counter-based randomness: every batch has its own seed, a hash of ``(seed, stream, index)``, so batch ``k``
    is the same whether the run reaches it directly, after a resume, or with any prefetch depth.
    """
    digest = hashlib.blake2b(f"{seed}:{stream}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def check_num_samples(num_samples: object, name: str = "num_samples") -> int:
    """Return ``num_samples`` if it is an ``int >= 1`` (bools rejected), else raise a clear error."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise TypeError(f"`{name}` must be an int >= 1, got {num_samples!r} ({type(num_samples).__name__})")
    if num_samples < 1:
        raise ValueError(f"`{name}` must be >= 1, got {num_samples}")
    return num_samples


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """Return ``generator`` if it is a ``torch.Generator`` or None, else raise a ``TypeError`` naming ``name``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`{name}` must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an ``int >= 1`` (bools rejected), else raise a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
    return value


def check_points(x: object, dim: int | None = None, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a finite floating ``(N, D)`` tensor with ``N >= 1`` (and ``D == dim`` if given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    expected = f"(N, {dim})" if dim is not None else "(N, D)"
    if x.ndim != 2 or x.shape[0] < 1 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"`{name}` must be a non-empty tensor of shape {expected}, got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {x.dtype}")
    bad = ~torch.isfinite(x).all(dim=1)
    if bad.any():
        raise ValueError(
            f"`{name}` has {int(bad.sum())} of {x.shape[0]} rows with NaN or inf values; all values must be finite"
        )
    return x
