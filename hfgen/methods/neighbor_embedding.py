r"""A k-nearest-neighbour graph of a data set and the neighbour-embedding loss that makes codes keep it.

The loss is UMAP's cross-entropy (McInnes et al. 2018) in its parametric form (Sainburg et al. 2021,
"Parametric UMAP"), with the low-dimensional similarity ``q(a, b) = 1 / (1 + ‖a − b‖²)`` (UMAP's curve with
``a = b = 1``, the Cauchy kernel of t-SNE), unweighted k-NN edges and negative sampling:

``L = E_(i, j) [−log q(z_i, z_j)] + Σ_{r=1}^{R} E_(i, m) [−log(1 − q(z_i, z_m) + ε)]``

where ``(i, j)`` is a graph edge (``j`` one of the ``k`` nearest neighbours of ``i`` in the data) and ``m`` a
random point of the batch. The first term pulls neighbours together, the second pushes random pairs apart.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hfgen.checks import check_int

#: ε of the repulsion ``−log(1 − q + ε)``: keeps it finite when two codes coincide (−log ε ≈ 9.2 nats)
REPULSION_EPS = 1e-4


def principal_components(features: Tensor, num_components: int) -> Tensor:
    r"""Coordinates of the centred rows of ``features`` ``(N, D)`` on their top ``num_components`` principal
    axes: ``(X − x̄) V_k``, ``V_k`` the eigenvectors of ``(X − x̄)ᵀ(X − x̄)`` with the largest eigenvalues
    (exact and deterministic: an eigendecomposition of the ``D × D`` scatter matrix in float64)."""
    if features.ndim != 2:
        raise ValueError(f"`features` must be a 2-D (N, D) tensor, got shape {tuple(features.shape)}")
    check_int(num_components, "num_components", 1, features.shape[1])
    centred = features - features.mean(0)
    scatter = (centred.T @ centred).double()
    _, vectors = torch.linalg.eigh(scatter)  # ascending eigenvalues
    axes = vectors[:, -num_components:].flip(1).to(features.dtype)
    return centred @ axes


def nearest_neighbor_graph(
    features: Tensor, k: int = 15, num_components: int | None = 50, chunk_size: int = 2048
) -> Tensor:
    r"""Indices ``(N, k)`` of the ``k`` nearest other rows of each row of ``features`` ``(N, D)`` (Euclidean,
    exact), nearest first, computed on the top ``num_components`` principal components (``None``, or at least
    ``D``: on the features themselves). Distances ``‖a − b‖² = ‖a‖² − 2 a·b + ‖b‖²`` are formed ``chunk_size``
    rows at a time."""
    if features.ndim != 2:
        raise ValueError(f"`features` must be a 2-D (N, D) tensor, got shape {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError("`features` contain NaN or infinite values")
    n = features.shape[0]
    check_int(k, "k", 1, n - 1, note="the number of other rows")
    points = features.float()
    if num_components is not None and num_components < points.shape[1]:
        points = principal_components(points, num_components)
    squared_norms = (points**2).sum(1)
    neighbors = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, chunk_size):
        rows = points[start : start + chunk_size]
        distances = squared_norms[start : start + chunk_size, None] - 2 * rows @ points.T + squared_norms[None]
        distances[torch.arange(rows.shape[0]), torch.arange(start, start + rows.shape[0])] = float("inf")
        neighbors[start : start + chunk_size] = distances.topk(k, dim=1, largest=False).indices
    return neighbors


def cauchy_similarity(a: Tensor, b: Tensor) -> Tensor:
    """``q(a, b) = 1 / (1 + ‖a − b‖²)`` row by row, for codes ``(N, d)``."""
    return 1 / (1 + (a - b).pow(2).sum(-1))


def neighbor_embedding_loss(codes: Tensor, neighbor_codes: Tensor, num_negatives: int = 5) -> Tensor:
    r"""The neighbour-embedding loss of the module docstring for a batch: ``codes[i]`` and ``neighbor_codes[i]``
    are the codes of a graph edge ``(i, j)``; the negatives of ``codes[i]`` are ``neighbor_codes[(i − r) mod B]``,
    ``r = 1 … num_negatives`` (other edges of a shuffled batch: random points).

    ``L = mean_i log(1 + ‖z_i − z'_i‖²) − Σ_r mean_i log(1 − q(z_i, z'_{i−r}) + ε)``.
    """
    if codes.shape != neighbor_codes.shape or codes.ndim != 2:
        raise ValueError(
            f"`codes` and `neighbor_codes` must both be (B, d), got {tuple(codes.shape)} and "
            f"{tuple(neighbor_codes.shape)}"
        )
    check_int(num_negatives, "num_negatives", 0, len(codes) - 1, note="batch size − 1")
    attraction = torch.log1p((codes - neighbor_codes).pow(2).sum(1)).mean()
    repulsion = codes.new_zeros(())
    for shift in range(1, num_negatives + 1):
        q = cauchy_similarity(codes, neighbor_codes.roll(shift, 0))
        repulsion = repulsion - torch.log(1 - q + REPULSION_EPS).mean()
    return attraction + repulsion
