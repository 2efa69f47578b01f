"""Continuous normalising flows trained by maximum likelihood (FFJORD, Grathwohl et al. 2019)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from hfgen.checks import check_int
from hfgen.methods.continuous_flows import log_prob
from hfgen.utils import VelocityField

#: torchdiffeq's fixed-step solvers (``options={"step_size": 1 / num_steps}``) and adaptive ones (``rtol``, ``atol``)
FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


def cnf_log_prob(
    velocity: VelocityField,
    x: Tensor,
    source_log_prob: Callable[[Tensor], Tensor],
    solver: str = "rk4",
    num_steps: int = 8,
    **settings: Any,
) -> Tensor:
    r"""``log p_1(x) = log p_0(z(0)) − ∫_0^1 Tr ∂v/∂z (z(t), t) dt`` with ``z(1) = x``, integrated backward in
    time (Chen et al. 2018; Grathwohl et al. 2019, FFJORD), differentiable in the field's parameters when gradients
    are enabled (direct back-propagation through the solver's steps).

    ``solver`` is a fixed-step torchdiffeq method (``euler``, ``midpoint``, ``rk4``: ``num_steps`` steps of size
    ``1 / num_steps``) or an adaptive one (``dopri5``…, tolerances ``rtol``/``atol``). The other ``settings`` are
    those of :func:`~hfgen.methods.continuous_flows.log_prob`: ``rtol``, ``atol`` (default ``1e-5``),
    ``divergence_method``, ``"exact"`` (default: ``D`` vector-Jacobian products) or ``"hutchinson"``
    (``εᵀ (∂v/∂z) ε`` with one Rademacher ``ε`` per solve, drawn from ``generator``: an unbiased estimate of the
    trace). Returns ``(N,)`` in nats.
    """
    options = None
    if solver in FIXED_STEP_SOLVERS:
        options = {"step_size": 1.0 / check_int(num_steps, "num_steps")}
    return log_prob(velocity, x, source_log_prob, method=solver, options=options, **settings)


def cnf_nll_loss(
    velocity: VelocityField, x: Tensor, source_log_prob: Callable[[Tensor], Tensor], **settings: Any
) -> Tensor:
    r"""The maximum-likelihood loss of a CNF, ``−(1/N) Σ_n log p_1(x_n)`` (FFJORD, Grathwohl et al. 2019), with
    ``log p_1`` from :func:`cnf_log_prob` and its ``settings`` (``solver``, ``num_steps``, ``rtol``, ``atol``,
    ``divergence_method``, ``generator``)."""
    return -cnf_log_prob(velocity, x, source_log_prob, **settings).mean()
