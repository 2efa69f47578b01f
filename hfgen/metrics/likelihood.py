"""Likelihood reports: the mean negative log-likelihood, its standard error and its gap to the data entropy."""

from __future__ import annotations

import math

from hfgen.metrics.arrays import ArrayLike, as_log_prob


def negative_log_likelihood(log_prob: ArrayLike) -> float:
    """Mean negative log-likelihood in nats: NLL = −(1/N) Σ_i log q(x_i), with x_i drawn from the data p."""
    return float(-as_log_prob(log_prob).mean())


def nll_report(log_prob: ArrayLike, entropy: float | None = None) -> dict[str, float | None]:
    """NLL with its standard error, beside the data entropy when it is known.

    NLL estimates the cross-entropy E_p[−log q] = H(p) + KL(p‖q) ≥ H(p), so ``nll_minus_entropy`` estimates
    KL(p‖q) ≥ 0 (Cover & Thomas, *Elements of Information Theory*, 2006, §2.3); it can dip below 0 only by
    sampling noise, of size ``nll_stderr`` = std(−log q(x_i)) / √N (sample std, ddof = 1).

    Returns:
        ``{"nll", "nll_stderr", "entropy", "nll_minus_entropy"}``; the last two are None without ``entropy``.
    """
    values = as_log_prob(log_prob)
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
