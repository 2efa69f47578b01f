"""Sample quality of a model against its target: W2 beside its finite-sample floor, MMD² and the fraction of
samples in the target's support."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hfgen.checks import check_int
from hfgen.metrics.arrays import as_points
from hfgen.metrics.kernel import mmd
from hfgen.metrics.wasserstein import wasserstein2

Sampler = Callable[[int, torch.Generator | None], Tensor]


def _draw(sampler: Sampler | Any, num_samples: int, generator: torch.Generator | None, name: str) -> Tensor:
    """Draw ``num_samples`` points from a callable ``sampler(n, generator)`` or an object with ``.sample``."""
    if hasattr(sampler, "sample"):
        return sampler.sample(num_samples, generator=generator)
    if callable(sampler):
        return sampler(num_samples, generator)
    raise TypeError(
        f"{name} must be a callable sampler(n, generator) or have a .sample(n, generator=...) method, "
        f"got {type(sampler).__name__}"
    )


def wasserstein2_floor(
    sampler: Sampler | Any,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> float:
    """Finite-sample floor of W2: the distance between two independent n-samples of the target itself.

    floor_n = W2(p̂_n, p̂'_n) with p̂_n, p̂'_n empirical measures of independent draws from p. A perfect model
    (q = p) scores this in distribution, so report a model's W2(q̂_n, p̂_n) beside it. It vanishes as
    n → ∞, in D ≥ 3 like n^{-1/D} (Fournier & Guillin 2015), so it is far from zero for D ≥ 2 at practical n.

    Args:
        sampler: ``sampler(n, generator)`` returning an (n, D) tensor, or an object (a toy distribution) with
            ``.sample(n, generator=...)``.
        num_samples: n, the size of each of the two samples (same as the model sample it is compared with).
        generator: drawn from twice in a row, so the two samples use different parts of its stream.
    """
    check_int(num_samples, "num_samples")
    first = _draw(sampler, num_samples, generator, "sampler")
    second = _draw(sampler, num_samples, generator, "sampler")
    return wasserstein2(first, second)


def w2_against_floor(
    sample_model: Callable[[int, torch.Generator], Tensor], target: Any, n: int, repeats: int, seed: int
) -> dict[str, float]:
    """Mean W2 of ``repeats`` model samples of size ``n`` against fresh target samples, beside the mean floor
    W2(p̂_n, p̂'_n) over as many pairs of target samples, with their standard deviations and the ratio of means.

    Single draws are noisy for multimodal targets: the numbers of points per mode differ between two samples by
    O(√n), and moving that surplus between modes dominates W2; averaging draws makes the ratio usable."""
    g = torch.Generator().manual_seed(seed)
    model = [wasserstein2(sample_model(n, g), _draw(target, n, g, "target")) for _ in range(repeats)]
    floor = [wasserstein2_floor(target, n, g) for _ in range(repeats)]
    return {
        "w2": float(np.mean(model)),
        "w2_sd": float(np.std(model, ddof=1)) if repeats > 1 else 0.0,
        "floor": float(np.mean(floor)),
        "floor_sd": float(np.std(floor, ddof=1)) if repeats > 1 else 0.0,
        "ratio": float(np.mean(model) / np.mean(floor)),
    }


def fraction_in_support(samples: Tensor, distribution: Any) -> float:
    """Fraction of samples inside the target's support: (1/N) Σ_i 1[x_i ∈ supp p].

    Uses ``distribution.in_support(samples)``, a BoolTensor (N,), defined by toy distributions with bounded
    support (a model's mass outside the support makes its KL(p‖q)-type scores misleading, this shows it).
    """
    as_points(samples, "samples")
    if not hasattr(distribution, "in_support"):
        raise TypeError(f"distribution must have an in_support(samples) method, got {type(distribution).__name__}")
    mask = distribution.in_support(samples)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (samples.shape[0],):
        raise ValueError(
            f"distribution.in_support must return a BoolTensor of shape ({samples.shape[0]},), got {mask!r}"
        )
    return float(mask.double().mean())


def sample_quality_report(
    samples: Tensor,
    target: Sampler | Any,
    *,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """W2 of a model sample against a fresh target sample, the W2 floor, their ratio, MMD² (and support).

    With n = len(samples) and p̂_n, p̂'_n, p̂''_n three independent n-samples of the target (drawn in this order
    from ``generator``): ``w2`` = W2(q̂_n, p̂_n), ``w2_floor`` = W2(p̂'_n, p̂''_n) (``wasserstein2_floor``),
    ``w2_ratio`` = w2 / w2_floor (≈ 1 for a perfect model), ``mmd`` = MMD²_u(q̂_n, p̂_n) (``mmd``), and
    ``fraction_in_support`` when ``target`` has a bounded support (``has_bounded_support``).

    Args:
        samples: (n, D) model samples.
        target: the target distribution (``.sample(n, generator=...)``) or ``sampler(n, generator)``.
        generator: makes the target draws repeatable.
    """
    n = as_points(samples, "samples").shape[0]
    reference = _draw(target, n, generator, "target")
    report = {"w2": wasserstein2(samples, reference), "w2_floor": wasserstein2_floor(target, n, generator)}
    report["w2_ratio"] = report["w2"] / report["w2_floor"] if report["w2_floor"] > 0 else math.inf
    report["mmd"] = mmd(samples, reference)
    if getattr(target, "has_bounded_support", False):
        report["fraction_in_support"] = fraction_in_support(samples, target)
    return report
