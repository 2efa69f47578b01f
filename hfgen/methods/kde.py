"""Choosing a kernel density bandwidth by held-out likelihood (k-fold cross-validation)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hfgen.checks import check_int
from hfgen.models.kde import KernelDensity
from hfgen.utils import check_points


@dataclass
class BandwidthSelection:
    """``bandwidth``: the grid value with the highest ``score``; ``bandwidths`` ``(B,)``: the grid; ``scores``
    ``(B,)``: the mean held-out log-likelihood ``(1/n) Σ_i log p_{−f(i)}(x_i)`` of each bandwidth."""

    bandwidth: float
    bandwidths: torch.Tensor
    scores: torch.Tensor


def select_bandwidth(
    data: torch.Tensor,
    bandwidths: Sequence[float] | torch.Tensor,
    num_folds: int = 5,
    generator: torch.Generator | None = None,
    progress: Callable[[int], Any] | None = None,
) -> BandwidthSelection:
    r"""Pick the Gaussian-KDE bandwidth on a grid by k-fold cross-validated likelihood (Silverman 1986, §3.4.4).

    The points are split at random (from ``generator``) into ``num_folds`` folds of near-equal size; each point
    ``x_i`` is scored by the KDE of the other folds, ``p_{−f(i)}``, and a bandwidth's score is
    ``(1/n) Σ_i log p_{−f(i)}(x_i)``. ``num_folds = n`` is leave-one-out. Returns the maximiser and all scores.
    ``progress(1)`` is called after each of the ``num_folds × len(bandwidths)`` fits (a progress bar's ``update``).
    """
    data = check_points(data, name="data")
    num_points = data.shape[0]
    check_int(num_folds, "num_folds", 2, num_points, note="the number of points")
    grid = torch.as_tensor(bandwidths, dtype=torch.float64).reshape(-1).tolist()
    if not grid or not all(0 < h < math.inf for h in grid):
        raise ValueError(f"`bandwidths` must be a non-empty grid of finite numbers > 0, got {grid}")
    folds = torch.randperm(num_points, generator=generator).to(data.device).tensor_split(num_folds)
    totals = torch.zeros(len(grid), dtype=torch.float64)
    for held_out in folds:
        kept = torch.ones(num_points, dtype=torch.bool, device=data.device)
        kept[held_out] = False
        for b, h in enumerate(grid):
            model = KernelDensity.from_data(data[kept], bandwidth=h)
            totals[b] += model.log_prob(data[held_out]).double().sum().cpu()
            if progress is not None:
                progress(1)
    scores = totals / num_points
    return BandwidthSelection(
        bandwidth=grid[int(scores.argmax())], bandwidths=torch.tensor(grid, dtype=torch.float64), scores=scores
    )
