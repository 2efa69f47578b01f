"""Sample-quality and likelihood metrics: exact W2, its finite-sample floor, MMD, NLL.

Points are ``(N, D)`` float tensors (numpy arrays are accepted too); every metric is computed in float64 on
the CPU and returned as a Python ``float``.

Choice of the exact W2 solver. Timed on one thread, 2-D points x ~ N(0, I), y ~ N((0.5, 0.5), I) drawn by
``numpy.random.default_rng(0)``, uniform weights, C = ``cdist(x, y, "sqeuclidean")`` built beforehand (not
timed); ``ot.emd2(a, a, C, numItermax=10**8)`` against ``C[linear_sum_assignment(C)].mean()``::

    n        POT 0.9.7 ot.emd2 (network simplex)   scipy linear_sum_assignment (Jonker-Volgenant)
    1,000    0.13-0.17 s                           0.37 s
    3,000    1.7 s                                 12.2 s
    10,000   25.7 s                                634 s

Both gave the same W2^2 to 12 digits. The network simplex is the faster exact solver at every size (25x at
n = 10,000); ``solver="lsa"`` stays as an independent exact check.

The dense network simplex holds the (N, M) cost matrix, its dense plan and per-arc arrays: 4.5 GB resident at
N = M = 10,000. ``solver="sparse"`` solves the same linear program by column generation on a sparse set of arcs
(nearest neighbours, then the arcs its duals price negatively) and stops only when the duals are feasible on all
N·M arcs, an optimality certificate (``benchmarks/EVALUATION_RESULTS.md``: the same W2 to the last digit at
n = 10,000 in 0.9 GB); it is the default above ``DENSE_MAX_ARCS`` arcs (``solver="auto"``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hfgen.checks import check_choice, check_int

ArrayLike = Tensor | np.ndarray

# Network-simplex pivots needed for n uniform points against n in 2-D grew like ~n^1.3 in our runs
# (25,510 for n = 1,000; 64,850 for n = 2,000), about 5e5 extrapolated to n = 10,000: POT's default of
# 1e5 is too small there, so the cap is 1e8 and reaching it is an error, never a silent approximation.
DEFAULT_NUM_ITER_MAX = 100_000_000

# Above this many arcs (N·M) solver="auto" uses the dual-certified sparse network simplex instead of the dense one:
# 2,000 x 2,000 arcs is a 32 MB cost matrix, below which the dense solve is cheap in time and memory.
DENSE_MAX_ARCS = 4_000_000

# Column generation: nearest neighbours per point in the first sparse graph, and at most this many of a row's
# negatively priced arcs added per round (more arcs per round: fewer rounds, each a larger network simplex).
_SPARSE_NEIGHBOURS = 20
_SPARSE_ARCS_PER_ROUND = 20
# Rounds after which column generation gives way to POT's lazy network simplex (exact, O(N + M) memory, costs
# computed on the fly). The demo's W2 and floor need 5-7 rounds (6 s each at n = 10,000). A model far from its
# target (a 500-step DDPM on moons, W2 0.46) needed over 40 rounds (110 CPU s); with this cap 92 s, where the dense
# solve took 30 s and the lazy one alone 32 s: an earlier switch for such cases is still to be found.
_SPARSE_MAX_ROUNDS = 10
# Rows of the N x M reduced-cost table priced at once (float32, 2,000 x M: 80 MB at M = 10,000).
_PRICING_ROWS = 2000

# Largest kernel block (rows x columns) that `mmd` holds at once: 2^22 float64 entries = 32 MiB.
_MMD_BLOCK_ELEMENTS = 2**22

# Number of pooled points (an evenly strided subset) used by the MMD median heuristic.
_MEDIAN_HEURISTIC_POINTS = 2000


def _to_float64(value: ArrayLike, name: str, shape: str) -> np.ndarray:
    """Convert a real tensor or numpy array to a float64 numpy array, or raise TypeError naming ``name``."""
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {value.dtype}")
        return value.detach().to(device="cpu", dtype=torch.float64).numpy()
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
            raise TypeError(f"{name} must hold real numbers, got an array of dtype {value.dtype}")
        return value.astype(np.float64, copy=False)
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray of shape {shape}, got {type(value).__name__}")


def _as_points(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a finite, non-empty ``(N, D)`` float64 numpy array, or raise naming ``name``."""
    array = _to_float64(x, name, "(N, D)")
    if array.ndim != 2:
        raise ValueError(
            f"{name} must have shape (N, D), got shape {tuple(array.shape)}; reshape 1-D data with .reshape(-1, 1)"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point of dimension >= 1, got shape {array.shape}")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} NaN/inf entries in shape {array.shape}")
    return array


def _as_pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate two point sets of the same dimension."""
    xa, ya = _as_points(x, "x"), _as_points(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x and y must have the same dimension D, got x of shape {xa.shape} and y of shape {ya.shape}")
    return xa, ya


def _as_weights(w: ArrayLike | None, n: int, name: str) -> np.ndarray:
    """Return the weights ``w`` (uniform when None) as a float64 probability vector of length ``n``."""
    if w is None:
        return np.full(n, 1.0 / n)
    weights = _to_float64(w, name, f"({n},)")
    if weights.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the points, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"{name} must be finite, non-negative and have a positive sum, got {weights}")
    return weights / weights.sum()


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cost matrix C_ij = ||x_i - y_j||^2 (differences, not the expanded form, so translations are exact)."""
    from scipy.spatial.distance import cdist

    return cdist(x, y, metric="sqeuclidean")


def _northwest_corner_arcs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arcs (i, j) of the north-west corner plan of marginals a, b: at most N + M − 1 arcs that carry a feasible
    transport plan, so a sparse problem that contains them is never infeasible."""
    ca, cb = np.cumsum(a), np.cumsum(b)
    cuts = np.unique(np.concatenate([[0.0], ca[:-1], cb[:-1]]))
    ends = np.append(cuts[1:], 1.0)
    middle = (cuts + ends) / 2
    rows = np.minimum(np.searchsorted(ca, middle, side="right"), len(a) - 1)
    cols = np.minimum(np.searchsorted(cb, middle, side="right"), len(b) - 1)
    return rows, cols


def _nearest_arcs(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Arcs from each x_i to its k nearest y_j and from each y_j to its k nearest x_i."""
    from scipy.spatial import cKDTree

    kx, ky = min(k, len(y)), min(k, len(x))
    _, near_y = cKDTree(y).query(x, k=kx)
    _, near_x = cKDTree(x).query(y, k=ky)
    rows = np.concatenate([np.repeat(np.arange(len(x)), kx), np.asarray(near_x).ravel()])
    cols = np.concatenate([np.asarray(near_y).ravel(), np.repeat(np.arange(len(y)), ky)])
    return rows, cols


def _negative_arcs(
    x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Arcs whose reduced cost c_ij − u_i − v_j is below −tolerance: at most ``_SPARSE_ARCS_PER_ROUND`` per row
    (the most negative) and the number of all of them.

    Rows are priced in float32 blocks as (|x_i|² − u_i) + (|y_j|² − v_j) − 2 x_i·y_j. Its rounding error is below
    ``margin`` = 16 ε₃₂ S, S the sum of the three terms' largest magnitudes, so arcs priced below −tolerance − margin
    are negative for sure and those within the margin of −tolerance are priced again exactly in float64: no
    negative arc is missed or miscounted."""
    row_terms, column_terms = np.einsum("ij,ij->i", x, x) - u, np.einsum("ij,ij->i", y, y) - v
    scale = (
        np.abs(row_terms).max()
        + np.abs(column_terms).max()
        + 2 * np.linalg.norm(x, axis=1).max() * np.linalg.norm(y, axis=1).max()
    )
    margin = 16 * float(np.finfo(np.float32).eps) * float(scale)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    row, column = torch.from_numpy(row_terms).float(), torch.from_numpy(column_terms).float()
    found_rows, found_cols, count = [], [], 0
    for start in range(0, len(x), _PRICING_ROWS):
        block = xt[start : start + _PRICING_ROWS]
        reduced = torch.addmm(column.expand(len(block), -1), block, yt.T, alpha=-2.0).add_(
            row[start:][: len(block), None]
        )
        candidates = (reduced < margin - tolerance).nonzero().numpy()
        priced = reduced[candidates[:, 0], candidates[:, 1]].double().numpy()
        rows, cols = candidates[:, 0] + start, candidates[:, 1]
        unsure = priced >= -margin - tolerance
        exact = np.einsum("ij,ij->i", x[rows[unsure]] - y[cols[unsure]], x[rows[unsure]] - y[cols[unsure]])
        priced[unsure] = exact - u[rows[unsure]] - v[cols[unsure]]
        negative = priced < -tolerance
        rows, cols, priced = rows[negative], cols[negative], priced[negative]
        count += len(rows)
        order = np.lexsort((priced, rows))
        rows, cols = rows[order], cols[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
        found_rows.append(rows[rank < _SPARSE_ARCS_PER_ROUND])
        found_cols.append(cols[rank < _SPARSE_ARCS_PER_ROUND])
    return np.concatenate(found_rows), np.concatenate(found_cols), count


def _emd_sparse_squared(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, num_iter_max: int) -> float:
    """min_π Σ π_ij ||x_i − y_j||² by column generation with a dual certificate.

    Solves the transport problem restricted to a sparse arc set E (nearest neighbours ∪ a north-west corner plan,
    so it is feasible) with POT's sparse network simplex, which returns the cost and duals u, v. If every arc of
    the full problem has reduced cost c_ij − u_i − v_j ≥ −τ, then (u, v) is dual feasible up to τ and the sparse
    optimum is the full optimum up to τ (weak duality, Σ a_i = 1); otherwise the negative arcs join E and the
    problem is solved again. τ = 1e-10 · (largest possible cost). After ``_SPARSE_MAX_ROUNDS`` rounds the full
    problem is solved by ``ot.emd2_lazy`` instead. Never holds an (N, M) float64 array."""
    import ot
    from scipy.sparse import coo_matrix

    centre = np.concatenate([x, y]).mean(axis=0)
    x, y = x - centre, y - centre
    n, m = len(x), len(y)
    bound = float(((np.concatenate([x, y]).max(axis=0) - np.concatenate([x, y]).min(axis=0)) ** 2).sum())
    tolerance = 1e-10 * max(bound, np.finfo(np.float64).tiny)
    near_rows, near_cols = _nearest_arcs(x, y, _SPARSE_NEIGHBOURS)
    corner_rows, corner_cols = _northwest_corner_arcs(a, b)
    keys = np.concatenate([near_rows * m + near_cols, corner_rows * m + corner_cols]).astype(np.int64)
    for _ in range(_SPARSE_MAX_ROUNDS):
        keys = np.unique(keys)
        rows, cols = keys // m, keys % m
        costs = np.einsum("ij,ij->i", x[rows] - y[cols], x[rows] - y[cols])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _, log = ot.emd(a, b, coo_matrix((costs, (rows, cols)), shape=(n, m)), numItermax=num_iter_max, log=True)
        _check_emd_result(log, num_iter_max)
        new_rows, new_cols, count = _negative_arcs(x, y, np.asarray(log["u"]), np.asarray(log["v"]), tolerance)
        if count == 0:
            return float(log["cost"])
        keys = np.concatenate([keys, new_rows.astype(np.int64) * m + new_cols])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, log = ot.emd2_lazy(x, y, a, b, numItermax=num_iter_max, log=True, return_matrix=False)
    _check_emd_result(log, num_iter_max)
    return float(log["cost"])


def _check_emd_result(log: dict, num_iter_max: int) -> None:
    """Raise if POT's network simplex stopped before optimality (POT itself would only warn)."""
    if log["result_code"] != 1:
        raise RuntimeError(
            f"ot.emd2 did not reach optimality (result_code={log['result_code']}: {log['warning']}) "
            f"with num_iter_max={num_iter_max}; pass a larger num_iter_max"
        )


def wasserstein2(
    x: ArrayLike,
    y: ArrayLike,
    *,
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    solver: str = "auto",
    num_iter_max: int = DEFAULT_NUM_ITER_MAX,
) -> float:
    """Exact 2-Wasserstein distance between the empirical measures Σ a_i δ_{x_i} and Σ b_j δ_{y_j}.

    W2(μ, ν) = ( min_{π ∈ Π(a, b)} Σ_ij π_ij ||x_i − y_j||² )^{1/2}, computed in float64
    (Villani, *Optimal Transport*, 2009; Peyré & Cuturi, *Computational Optimal Transport*, 2019).

    Args:
        x: source points, shape (N, D).
        y: target points, shape (M, D).
        a, b: non-negative weights of shape (N,) and (M,), normalised to sum to one; uniform when None.
        solver: ``"emd"`` solves the linear program exactly by POT's network simplex ``ot.emd2``
            (Bonneel et al. 2011) on the dense cost matrix. ``"sparse"`` solves the same program by column
            generation on sparse arc sets, certified optimal by dual feasibility on every arc (to 1e-10 of the
            largest cost), without an (N, M) float64 array. ``"lsa"`` needs N = M and uniform weights: the
            optimal plan is then n⁻¹ times a permutation (Birkhoff–von Neumann), found exactly by
            ``scipy.optimize.linear_sum_assignment`` (Crouse 2016). ``"auto"`` (default) is ``"emd"`` up to
            ``DENSE_MAX_ARCS`` = N·M arcs and ``"sparse"`` above.
        num_iter_max: cap on network-simplex pivots (per solve); a RuntimeError is raised if it is reached before
            optimality (POT would only warn and return a sub-optimal cost).

    Memory at N = M = 10,000: ``"emd"`` 4.5 GB peak resident (the dense cost, plan and per-arc arrays),
    ``"sparse"`` under 0.5 GB above the interpreter's own.
    """
    check_choice(solver, "solver", ("auto", "emd", "sparse", "lsa"))
    xa, ya = _as_pair(x, y)
    n, m = xa.shape[0], ya.shape[0]
    wa, wb = _as_weights(a, n, "a"), _as_weights(b, m, "b")
    if solver == "auto":
        solver = "emd" if n * m <= DENSE_MAX_ARCS else "sparse"
    if solver == "sparse":
        return math.sqrt(max(_emd_sparse_squared(xa, ya, wa, wb, num_iter_max), 0.0))
    cost = _squared_distances(xa, ya)
    if solver == "emd":
        import ot

        with warnings.catch_warnings():
            # The only warning of interest (numItermax reached) is turned into an error via result_code.
            warnings.simplefilter("ignore", UserWarning)
            value, log = ot.emd2(wa, wb, cost, numItermax=num_iter_max, log=True)
        _check_emd_result(log, num_iter_max)
        squared = float(value)
    else:
        uniform = bool(np.ptp(wa) <= 1e-15 and np.ptp(wb) <= 1e-15)
        if n != m or not uniform:
            raise ValueError(
                f"solver='lsa' needs equal sizes and uniform weights, got N={n}, M={m}, "
                f"uniform weights={uniform}; use solver='emd'"
            )
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        squared = float(cost[rows, cols].mean())
    return math.sqrt(max(squared, 0.0))


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


def median_heuristic(x: ArrayLike, y: ArrayLike) -> float:
    """Median pairwise distance of the pooled sample z = (x, y): σ_med = median{||z_i − z_j|| : i < j}.

    Above 2,000 pooled points the median is taken over an evenly strided subset of 2,000 of them
    (indices ``round(linspace(0, N + M − 1, 2000))``), which is deterministic (Gretton et al. 2012, §8).
    """
    from scipy.spatial.distance import pdist

    xa, ya = _as_pair(x, y)
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
    xa, ya = _as_pair(x, y)
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


def _as_log_prob(log_prob: ArrayLike) -> np.ndarray:
    """Validate per-sample log-densities: a non-empty finite 1-D array, returned as float64."""
    values = _to_float64(log_prob, "log_prob", "(N,)")
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(f"log_prob must have shape (N,) with N >= 1, got shape {values.shape}")
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ValueError(f"log_prob must be finite, got {bad} non-finite values (NaN/inf) of {values.shape[0]}")
    return values


def negative_log_likelihood(log_prob: ArrayLike) -> float:
    """Mean negative log-likelihood in nats: NLL = −(1/N) Σ_i log q(x_i), with x_i drawn from the data p."""
    return float(-_as_log_prob(log_prob).mean())


def nll_report(log_prob: ArrayLike, entropy: float | None = None) -> dict[str, float | None]:
    """NLL with its standard error, beside the data entropy when it is known.

    NLL estimates the cross-entropy E_p[−log q] = H(p) + KL(p‖q) ≥ H(p), so ``nll_minus_entropy`` estimates
    KL(p‖q) ≥ 0 (Cover & Thomas, *Elements of Information Theory*, 2006, §2.3); it can dip below 0 only by
    sampling noise, of size ``nll_stderr`` = std(−log q(x_i)) / √N (sample std, ddof = 1).

    Returns:
        ``{"nll", "nll_stderr", "entropy", "nll_minus_entropy"}``; the last two are None without ``entropy``.
    """
    values = _as_log_prob(log_prob)
    if values.shape[0] < 2:
        raise ValueError(f"log_prob needs at least 2 values for a standard error, got {values.shape[0]}")
    if entropy is not None and not math.isfinite(entropy):
        raise ValueError(f"entropy must be a finite float or None, got {entropy}")
    nll = float(-values.mean())
    return {
        "nll": nll,
        "nll_stderr": float(values.std(ddof=1) / math.sqrt(values.shape[0])),
        "entropy": None if entropy is None else float(entropy),
        "nll_minus_entropy": None if entropy is None else nll - float(entropy),
    }


def fraction_in_support(samples: Tensor, distribution: Any) -> float:
    """Fraction of samples inside the target's support: (1/N) Σ_i 1[x_i ∈ supp p].

    Uses ``distribution.in_support(samples)``, a BoolTensor (N,), defined by toy distributions with bounded
    support (a model's mass outside the support makes its KL(p‖q)-type scores misleading, this shows it).
    """
    _as_points(samples, "samples")
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
    n = _as_points(samples, "samples").shape[0]
    reference = _draw(target, n, generator, "target")
    report = {"w2": wasserstein2(samples, reference), "w2_floor": wasserstein2_floor(target, n, generator)}
    report["w2_ratio"] = report["w2"] / report["w2_floor"] if report["w2_floor"] > 0 else math.inf
    report["mmd"] = mmd(samples, reference)
    if getattr(target, "has_bounded_support", False):
        report["fraction_in_support"] = fraction_in_support(samples, target)
    return report
