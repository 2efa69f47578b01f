"""The exact 2-Wasserstein distance between two empirical measures.

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
(those of lowest reduced cost under the dual of a coarse problem between clusters of the points, then the arcs its
duals price negatively) and stops only when the duals are feasible on all N·M arcs, an optimality certificate
(``benchmarks/EVALUATION_RESULTS.md``: the same W2 to the last digit at n = 10,000 in 0.9 GB); it is the default
above ``DENSE_MAX_ARCS`` arcs (``solver="auto"``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from hfgen.checks import check_choice
from hfgen.metrics.arrays import ArrayLike, as_pair, as_weights

# Network-simplex pivots needed for n uniform points against n in 2-D grew like ~n^1.3 in our runs
# (25,510 for n = 1,000; 64,850 for n = 2,000), about 5e5 extrapolated to n = 10,000: POT's default of
# 1e5 is too small there, so the cap is 1e8 and reaching it is an error, never a silent approximation.
DEFAULT_NUM_ITER_MAX = 100_000_000

# Above this many arcs (N·M) solver="auto" uses the dual-certified sparse network simplex instead of the dense one:
# 2,000 x 2,000 arcs is a 32 MB cost matrix, below which the dense solve is cheap in time and memory.
DENSE_MAX_ARCS = 4_000_000

# Column generation's first graph: both point sets are grouped into clusters of about _CLUSTER_SIZE points (at most
# _MAX_CLUSTERS a side, a dense coarse problem of at most DENSE_MAX_ARCS arcs), the clusters' transport problem is
# solved exactly, its dual is extended to the points, and each point gets arcs to the _SPARSE_NEIGHBOURS points of
# lowest reduced cost under it. At most _SPARSE_ARCS_PER_ROUND of a row's negatively priced arcs join per round.
_CLUSTER_SIZE = 10
_MAX_CLUSTERS = math.isqrt(DENSE_MAX_ARCS)
_SPARSE_NEIGHBOURS = 30
_SPARSE_ARCS_PER_ROUND = 20
# Rounds after which column generation gives way to POT's lazy network simplex (exact, O(N + M) memory, costs
# computed on the fly): a safety net, not reached in the runs below. wasserstein2(x, y) at N = M = 10,000, CPU s on
# one thread, one script run, the same points for both seeds, every value equal to the dense ot.emd2 optimum to 4e-16
# relative. Model samples: the final evaluation's (seed 1) of a short training run at default settings, against
# 10,000 target points; floors: two target samples; the dense solve took 14-16 s and ot.emd2_lazy alone 25-32 s.
#
#   case (W2^2)                                        seed: nearest neighbours          cluster dual (kept)
#   checkerboard floor (0.0036)                        10.1 s (7 rounds)                 1.7 s (1 round)
#   checkerboard + N(0, 0.05^2) noise (0.012)          17.8 s (10 rounds)                1.9 s (1 round)
#   train_ddpm.py --max_train_steps 300 (0.156)        74.6 s (10 rounds, then lazy)     4.9 s (2 rounds)
#   train_score.py --max_train_steps 300 (0.123)       69.2 s (10 rounds, the cap)       7.0 s (3 rounds)
#   train_ebm.py --max_train_steps 100 (0.529)         135.2 s (10 rounds, the cap)      5.9 s (2 rounds)
#   train_ddpm.py 300 steps on moons (0.328)           121.0 s (10 rounds, the cap)      6.6 s (3 rounds)
#   moons floor, 8gaussians floor                      10.0 s, 7.8 s                     1.5 s, 1.7 s (1 round)
#
# With nearest-neighbour arcs a poor fit leaves ~2,900 negative arcs per row after the first round (a floor ~180).
# On the 300-step DDPM (another run) switching to the lazy solver there took 40 s, 100 arcs per row per round 52 s,
# 60 neighbours 49 s: the seed, not the switch, decides the cost.
_SPARSE_MAX_ROUNDS = 10
# Rows of the N x M reduced-cost table priced at once (float32, 2,000 x M: 80 MB at M = 10,000).
_PRICING_ROWS = 2000


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


def _lowest_shifted_costs(x: np.ndarray, y: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each x_i the k values min_j ||x_i − y_j||² − g_j in increasing order, and their j, shape (N, k).

    ||x_i − y_j||² − g_j + max g is the squared distance between (x_i, 0) and the lifted point
    (y_j, (max g − g_j)^{1/2}), so these are nearest neighbours in D + 1 dimensions (a k-d tree)."""
    from scipy.spatial import cKDTree

    k = min(k, len(y))
    lifted = np.column_stack([y, np.sqrt(g.max() - g)])
    distances, neighbours = cKDTree(lifted).query(np.column_stack([x, np.zeros(len(x))]), k=k)
    return distances.reshape(len(x), k) ** 2 - g.max(), neighbours.reshape(len(x), k)


def _clusters(x: np.ndarray, a: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids and masses of the non-empty clusters of x (weights a) around ``count`` of its points drawn at
    random (seed 0), each point in the cluster of its nearest drawn point."""
    from scipy.spatial import cKDTree

    drawn = np.random.default_rng(0).choice(len(x), size=count, replace=False)
    labels = cKDTree(x[drawn]).query(x)[1]
    mass = np.bincount(labels, weights=a, minlength=count)
    moment = np.stack([np.bincount(labels, weights=a * x[:, d], minlength=count) for d in range(x.shape[1])], 1)
    kept = mass > 0
    return moment[kept] / mass[kept, None], mass[kept]


def _seed_arcs(
    x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, num_iter_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """First arc set of column generation, from the dual of a coarse problem.

    The transport problem between the clusters of x and of y (``_clusters``: centroids, masses) is solved exactly
    (dense network simplex, dual u on the x clusters) and its dual is extended to the points by c-transforms:
    g_j = min_I ||c_I − y_j||² − u_I, f_i = min_j ||x_i − y_j||² − g_j. Each x_i gets the ``_SPARSE_NEIGHBOURS``
    arcs of lowest c_ij − g_j and each y_j those of lowest c_ij − f_i: near the optimal plan's support when (f, g)
    is near the optimal dual, however far the mass travels."""
    import ot

    centres_x, mass_x = _clusters(x, a, min(_MAX_CLUSTERS, -(-len(x) // _CLUSTER_SIZE)))
    centres_y, mass_y = _clusters(y, b, min(_MAX_CLUSTERS, -(-len(y) // _CLUSTER_SIZE)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, log = ot.emd(mass_x, mass_y, _squared_distances(centres_x, centres_y), numItermax=num_iter_max, log=True)
    _check_emd_result(log, num_iter_max)
    g = _lowest_shifted_costs(y, centres_x, np.asarray(log["u"]), 1)[0][:, 0]
    f = _lowest_shifted_costs(x, y, g, 1)[0][:, 0]
    _, near_y = _lowest_shifted_costs(x, y, g, _SPARSE_NEIGHBOURS)
    _, near_x = _lowest_shifted_costs(y, x, f, _SPARSE_NEIGHBOURS)
    rows = np.concatenate([np.repeat(np.arange(len(x)), near_y.shape[1]), near_x.ravel()])
    cols = np.concatenate([near_y.ravel(), np.repeat(np.arange(len(y)), near_x.shape[1])])
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

    Solves the transport problem restricted to a sparse arc set E (``_seed_arcs`` ∪ a north-west corner plan, so it
    is feasible) with POT's sparse network simplex, which returns the cost and duals u, v. If every arc of
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
    seed_rows, seed_cols = _seed_arcs(x, y, a, b, num_iter_max)
    corner_rows, corner_cols = _northwest_corner_arcs(a, b)
    keys = np.concatenate([seed_rows * m + seed_cols, corner_rows * m + corner_cols]).astype(np.int64)
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
    xa, ya = as_pair(x, y)
    n, m = xa.shape[0], ya.shape[0]
    wa, wb = as_weights(a, n, "a"), as_weights(b, m, "b")
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
