"""Maximum mean discrepancy between two samples with Gaussian kernels, and the median-heuristic bandwidth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hfgen.metrics.arrays import ArrayLike, as_pair

# Largest kernel block (rows x columns) that `mmd` holds at once: 2^22 float64 entries = 32 MiB.
_MMD_BLOCK_ELEMENTS = 2**22

# Number of pooled points (an evenly strided subset) used by the MMD median heuristic.
_MEDIAN_HEURISTIC_POINTS = 2000


def median_heuristic(x: ArrayLike, y: ArrayLike) -> float:
    """Median pairwise distance of the pooled sample z = (x, y): σ_med = median{||z_i − z_j|| : i < j}.

    Above 2,000 pooled points the median is taken over an evenly strided subset of 2,000 of them
    (indices ``round(linspace(0, N + M − 1, 2000))``), which is deterministic (Gretton et al. 2012, §8).
    """
    from scipy.spatial.distance import pdist

    xa, ya = as_pair(x, y)
    pooled = np.concatenate([xa, ya])
    if len(pooled) > _MEDIAN_HEURISTIC_POINTS:
        pooled = pooled[np.round(np.linspace(0, len(pooled) - 1, _MEDIAN_HEURISTIC_POINTS)).astype(np.int64)]
    return float(np.median(pdist(pooled)))


def _kernel_powers(inv_two_sigma_sq: np.ndarray) -> tuple[float, list[int]]:
    """The smallest coefficient c₀ and, per coefficient c, the integer r = c / c₀ when it is a power of two (so
    exp(−c·d) = exp(−c₀·d)^r by log₂ r squarings, cheaper than an exp), else 0 (an exp of its own)."""
    base = float(np.min(inv_two_sigma_sq))
    powers = []
    for coefficient in inv_two_sigma_sq:
        ratio = round(coefficient / base)
        exact = ratio >= 1 and abs(coefficient / base - ratio) <= 1e-12 * ratio and ratio & (ratio - 1) == 0
        powers.append(ratio if exact else 0)
    return base, powers


def _kernel_sum(u: np.ndarray, v: np.ndarray, inv_two_sigma_sq: np.ndarray) -> float:
    """Σ_ij Σ_σ exp(−||u_i − v_j||² / (2σ²)), in row blocks of at most ``_MMD_BLOCK_ELEMENTS`` entries.

    Coefficients 2^k times the smallest (the default bandwidths ½σ, σ, 2σ: ratios 1, 4, 16) reuse its exponential
    by repeated squaring, exp(−4c·d) = (exp(−c·d)²)², which adds at most 2^k rounding errors of 1e-16 each."""
    rows = max(1, _MMD_BLOCK_ELEMENTS // len(v))
    v_sq = np.einsum("ij,ij->i", v, v)
    base, powers = _kernel_powers(inv_two_sigma_sq)
    total = 0.0
    for start in range(0, len(u), rows):
        block = u[start : start + rows]
        sq = np.einsum("ij,ij->i", block, block)[:, None] + v_sq[None, :] - 2.0 * (block @ v.T)
        np.maximum(sq, 0.0, out=sq)
        for coefficient, power in zip(inv_two_sigma_sq, powers, strict=True):
            if power == 0:
                total += float(np.exp(-coefficient * sq).sum())
        kernel = np.exp(np.multiply(sq, -base, out=sq), out=sq)
        power = 1  # kernel = exp(−c₀·d)^power
        while power <= max(powers):
            if power in powers:
                total += float(kernel.sum()) * powers.count(power)
            np.square(kernel, out=kernel)
            power *= 2
    return total


def mmd(x: ArrayLike, y: ArrayLike, *, bandwidths: Sequence[float] | None = None) -> float:
    """Unbiased squared maximum mean discrepancy MMD²_u (Gretton et al., JMLR 2012, eq. 3, a U-statistic).

    MMD²_u = 1/(n(n−1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i, y_j) − 2/(nm) Σ_ij k(x_i, y_j),
    with the sum of Gaussian kernels k(a, b) = Σ_σ exp(−||a − b||² / (2σ²)). Its expectation is the
    population MMD², zero iff the distributions agree, so two samples of one distribution can score
    slightly below zero.

    Args:
        x: (n, D) points, n ≥ 2.
        y: (m, D) points, m ≥ 2.
        bandwidths: the σ's; by default σ ∈ {0.5, 1, 2} · σ_med with σ_med the median heuristic of the
            pooled sample (``median_heuristic``).

    Computed in float64 in row blocks of at most 2^22 kernel entries (32 MiB each, a few alive at once), so
    n = m = 10,000 needs no more than ~150 MB.
    """
    xa, ya = as_pair(x, y)
    n, m = xa.shape[0], ya.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd needs at least 2 points in each of x and y, got {n} and {m}")
    if bandwidths is None:
        sigma = median_heuristic(xa, ya)
        if sigma <= 0:
            raise ValueError("the median heuristic bandwidth is 0 (most pooled points coincide); pass bandwidths")
        sigmas = np.array([0.5, 1.0, 2.0]) * sigma
    else:
        sigmas = np.asarray(list(bandwidths), dtype=np.float64)
        if sigmas.ndim != 1 or len(sigmas) == 0 or not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 0):
            raise ValueError(f"bandwidths must be a non-empty sequence of positive finite floats, got {bandwidths}")
    coefficients = 1.0 / (2.0 * sigmas**2)
    # Diagonal terms k(z_i, z_i) = len(sigmas) are removed from the within-sample sums.
    kxx = (_kernel_sum(xa, xa, coefficients) - n * len(sigmas)) / (n * (n - 1))
    kyy = (_kernel_sum(ya, ya, coefficients) - m * len(sigmas)) / (m * (m - 1))
    kxy = _kernel_sum(xa, ya, coefficients) / (n * m)
    return kxx + kyy - 2.0 * kxy
