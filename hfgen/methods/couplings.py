"""Couplings of a source and a target batch for conditional flow matching.

The coupling ``π`` of ``(x_0, x_1)`` is the independent one ``q(x_0) q(x_1)``, the exact minibatch
optimal-transport one (Pooladian et al. 2023; Tong et al. 2023, OT-CFM) or the minibatch entropic-OT one
(``sinkhorn``, Cuturi 2013), which with the Brownian-bridge path gives the Schrödinger-bridge CFM of Tong et al.
2023 (SB-CFM). Exact OT and Sinkhorn are POT's (Flamary et al. 2021).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from hfgen.checks import check_number

COUPLINGS = ("independent", "ot", "sinkhorn")


def optimal_permutation(cost: np.ndarray) -> np.ndarray:
    r"""Exact solution ``σ`` of the assignment problem ``min_σ Σ_i C[i, σ(i)]`` for a square cost matrix.

    Solved by POT's network simplex ``ot.emd`` with unit masses: its basic optimal solution is a 0/1
    permutation matrix (Birkhoff–von Neumann). At batch 256, from N(0, I), it took 5.1–5.8 ms against scipy's
    ``linear_sum_assignment`` 5.5–9.8 ms across the toy targets (``benchmarks/RESULTS.md``), and it releases the
    GIL, so :class:`~hfgen.data.CoupledPairs` can run it beside the training step.
    """
    import ot

    mass = np.ones(len(cost))
    plan, log = ot.emd(mass, mass, cost, numItermax=10**8, log=True)
    sigma = plan.argmax(axis=1)
    if log["warning"] is not None or np.bincount(sigma, minlength=len(cost)).max() != 1:
        raise RuntimeError(f"the network simplex did not return an optimal permutation: {log['warning']}")
    return sigma


def ot_assignment(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    r"""Exact optimal assignment ``σ`` between equal-size batches for the squared Euclidean cost.

    Solves ``min_σ Σ_i ‖x_0^{σ(i)} − x_1^i‖²`` (:func:`optimal_permutation` on the ``float64`` cost matrix);
    with uniform weights and equal sizes the optimal transport plan is a permutation, so this is the exact
    minibatch OT plan. Returns the index tensor ``σ`` with ``x0[σ]`` matched to ``x1`` row by row.
    """
    if x0.shape != x1.shape or x0.ndim < 2:
        raise ValueError(
            f"minibatch OT needs batches of equal shape (N, ...), got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    a = x0.detach().reshape(len(x0), -1).double().cpu()
    b = x1.detach().reshape(len(x1), -1).double().cpu()
    cost = torch.cdist(b, a).square_().numpy()
    return torch.from_numpy(optimal_permutation(cost)).to(x0.device)


def sinkhorn_plan(x0: torch.Tensor, x1: torch.Tensor, reg: float) -> torch.Tensor:
    r"""Entropic OT plan between the uniform empirical measures of two batches (Cuturi 2013), ``float64``:

    ``π = argmin_{π ∈ Π(1/n, 1/m)} Σ_ij π_ij ‖x_0^i − x_1^j‖² + reg Σ_ij π_ij log π_ij``, by POT's
    ``ot.sinkhorn``: plain Sinkhorn iterations while ``max C / reg ≤ 100`` (no underflow of ``exp(−C/reg)``,
    4 ms at batch 256), ε-scaling beyond (stable for small ``reg``; POT's log-domain solver is 10–100× slower).
    ``π[i, j]`` pairs ``x0[i]`` with ``x1[j]``; as ``reg → 0`` it tends to the exact OT plan.
    """
    import ot

    if x0.ndim < 2 or x1.ndim < 2 or x0.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"the Sinkhorn coupling needs batches (n, ...) and (m, ...) of the same point shape, got "
            f"{tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    check_number(reg, "reg", 0, open_low=True)
    a = x0.detach().reshape(len(x0), -1).double().cpu()
    b = x1.detach().reshape(len(x1), -1).double().cpu()
    cost = torch.cdist(a, b).square_().numpy()
    uniform0, uniform1 = np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b))
    method = "sinkhorn" if cost.max() <= 100 * reg else "sinkhorn_epsilon_scaling"
    with warnings.catch_warnings():  # ε-scaling warns about its inner loops; the final marginals are checked below
        warnings.simplefilter("ignore", UserWarning)
        plan = ot.sinkhorn(uniform0, uniform1, cost, reg, method=method, numItermax=10_000, stopThr=1e-9)
    error = max(np.abs(plan.sum(1) * len(a) - 1).max(), np.abs(plan.sum(0) * len(b) - 1).max())
    if not np.isfinite(plan).all() or error > 1e-4:
        raise RuntimeError(
            f"Sinkhorn ({method}, reg={reg}) did not reach uniform marginals (relative error {error:.2e}); "
            "increase `reg` (σ of the bridge) or rescale the points"
        )
    return torch.from_numpy(plan)


def sinkhorn_assignment(
    x0: torch.Tensor, x1: torch.Tensor, reg: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""For each ``x1[j]`` an index ``i_j ~ π(· | j) = π[:, j] / Σ_i π[i, j]`` of the entropic plan
    (:func:`sinkhorn_plan`), drawn with ``generator``; ``(x0[i_j], x1[j])`` is then a draw from ``π`` that keeps
    the ``x_1`` batch as it is."""
    plan = sinkhorn_plan(x0, x1, reg)
    columns = plan.T.clamp_min(0)
    return torch.multinomial(columns, 1, generator=generator).reshape(-1).to(x0.device)


def couple(
    x0: torch.Tensor,
    x1: torch.Tensor,
    coupling: str = "independent",
    generator: torch.Generator | None = None,
    sigma: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(x_0, x_1)`` drawn from the coupling: ``independent`` keeps the order, ``ot`` reorders ``x_0``
    by the exact minibatch OT plan (:func:`ot_assignment`), ``sinkhorn`` draws ``x_0`` for each ``x_1`` from the
    entropic plan with regularisation ``2σ²`` (:func:`sinkhorn_assignment`, with ``generator``): the static
    Schrödinger bridge for a Brownian reference of variance ``σ²`` (SB-CFM, Tong et al. 2023)."""
    if coupling == "independent":
        return x0, x1
    if coupling == "ot":
        return x0[ot_assignment(x0, x1)], x1
    if coupling == "sinkhorn":
        return x0[sinkhorn_assignment(x0, x1, 2 * sigma**2, generator)], x1
    raise ValueError(f"unknown coupling {coupling!r}; expected one of {COUPLINGS}")
