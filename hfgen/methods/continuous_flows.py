"""Continuous flows: solving ``dz/dt = f(z, t)`` with torchdiffeq, and log-densities by the instantaneous change
of variables.

A flow ``dz/dt = f(z, t)`` transports a density ``p_t`` along its trajectories, and the log-density of a point
changes by minus the divergence of the field (Chen et al. 2018, *Neural Ordinary Differential Equations*,
Theorem 1; Grathwohl et al. 2019, *FFJORD*)::

    d log p_t(z(t)) / dt = -Tr(∂f/∂z (z(t), t)).

Integrating the augmented state ``[z, ℓ]`` with ``dℓ/dt = -Tr(∂f/∂z)`` gives both the transported point
and the change of its log-density. Time follows the flow-matching convention of Lipman et al. 2022:
``t ∈ [0, 1]``, ``t = 0`` is the source (for example ``N(0, I)``) and ``t = 1`` the data.

Velocity fields are callables ``velocity(x, t)`` taking points ``x`` of shape ``(N, D)`` and a 0-dim float
tensor ``t``, and returning a tensor of shape ``(N, D)``; rows must be independent of one another (as for any
per-sample network), because the divergence is read off batched vector-Jacobian products.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hfgen.checks import check_choice, check_int
from hfgen.utils import (
    VelocityField,
    check_generator,
    check_ode_solver,
    check_points,
    check_tolerances,
)

__all__ = [
    "FIXED_GRID_EVALUATIONS",
    "DeformedGaussian",
    "FlowODEResult",
    "ODESolution",
    "deform_gaussian_example",
    "divergence",
    "integrate_with_log_density",
    "log_prob",
    "solve_ode",
    "tanh_cubed_divergence",
    "tanh_cubed_velocity",
]

_DIVERGENCE_METHODS = ("exact", "hutchinson")
#: evaluations of the field per step of torchdiffeq's fixed-grid methods
FIXED_GRID_EVALUATIONS = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}


class CountingField:
    """A torchdiffeq right-hand side ``f(t, y)`` that counts its evaluations (the solver's NFE)."""

    def __init__(self, field: Callable[[Tensor, Any], Any]):
        self.field = field
        self.nfe = 0

    def __call__(self, t: Tensor, state: Any) -> Any:
        self.nfe += 1
        return self.field(t, state)


def _odeint(field: CountingField, state: Any, grid: Tensor, **solver: Any) -> Any:
    """``torchdiffeq.odeint(field, state, grid, **solver)`` (Chen et al. 2018): the one call of the solver that
    sampling and log-densities share."""
    from torchdiffeq import odeint

    return odeint(field, state, grid, **solver)


@dataclass
class ODESolution:
    """End state ``x(t_end)``, the states at the requested times (``(len(t_eval), N, D)``) and the number of
    velocity evaluations (NFE) the solver used."""

    x_end: Tensor
    trajectory: Tensor | None
    nfe: int


def solve_ode(
    velocity: VelocityField,
    x: Tensor,
    t_start: float = 0.0,
    t_end: float = 1.0,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_eval: Sequence[float] | None = None,
    options: dict | None = None,
) -> ODESolution:
    r"""Solve ``dx/dt = v(x, t)`` from ``t_start`` to ``t_end`` with ``torchdiffeq.odeint``.

    ``method`` is any torchdiffeq solver: adaptive (``dopri5``, ``dopri8``, ``bosh3``, ``adaptive_heun``) with
    tolerances ``rtol``/``atol``, or fixed-step (``euler``, ``midpoint``, ``rk4``) with
    ``options={"step_size": h}``. ``t_eval`` (increasing or decreasing, from ``t_start`` to ``t_end``) asks for
    the intermediate states.
    """
    check_ode_solver(method, name="method")
    check_tolerances(rtol, atol)
    times = list(t_eval) if t_eval is not None else [t_start, t_end]
    if times[0] != t_start or times[-1] != t_end:
        raise ValueError(f"`t_eval` must start at t_start={t_start} and end at t_end={t_end}, got {times}")
    field = CountingField(lambda t, state: velocity(state, t))
    grid = torch.tensor(times, dtype=x.dtype, device=x.device)
    states = _odeint(field, x, grid, method=method, rtol=rtol, atol=atol, options=options)
    return ODESolution(x_end=states[-1], trajectory=states if t_eval is not None else None, nfe=field.nfe)


@dataclass
class FlowODEResult:
    """Solution of the augmented ODE ``[z, ℓ]`` from ``t_start`` to ``t_end``.

    Attributes:
        x_end: ``z(t_end)``, shape ``(N, D)``.
        log_density_change: ``ℓ(t_end) − ℓ(t_start) = −∫_{t_start}^{t_end} Tr(∂f/∂z) dt``, shape ``(N,)``.
        log_p_end: ``log p_{t_end}(z(t_end)) = log p_{t_start}(z(t_start)) + log_density_change``,
            shape ``(N,)``; ``None`` when no starting log-density was given.
        trajectory: ``z`` at the requested ``t_eval`` times, shape ``(len(t_eval), N, D)``, else ``None``.
        log_p_trajectory: ``log p_t(z(t))`` at the ``t_eval`` times, shape ``(len(t_eval), N)``; ``None``
            unless both ``t_eval`` and a starting log-density were given.
        nfe: number of velocity evaluations the solver made.
    """

    x_end: Tensor
    log_density_change: Tensor
    log_p_end: Tensor | None
    trajectory: Tensor | None
    log_p_trajectory: Tensor | None
    nfe: int


@dataclass
class DeformedGaussian:
    """Samples of ``N(0, I)`` pushed through ``dz/dt = tanh(z³)`` and their log-densities, keyed by time."""

    samples: dict[float, Tensor]
    log_density: dict[float, Tensor]


def _call_velocity(velocity: VelocityField, x: Tensor, t: Tensor) -> Tensor:
    """Evaluate ``velocity(x, t)`` and check that it returns a tensor of the shape of ``x``."""
    f = velocity(x, t)
    if not isinstance(f, Tensor) or f.shape != x.shape:
        shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
        raise ValueError(f"velocity(x, t) must return a tensor of x's shape {tuple(x.shape)}, got {shape}.")
    return f


def divergence(
    velocity: VelocityField,
    x: Tensor,
    t: Tensor | float,
    method: str = "exact",
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Velocity ``f(x, t)`` and its divergence ``div f = Tr(∂f/∂x) = Σ_i ∂f_i/∂x_i`` at each point.

    ``"exact"`` sums the diagonal of the Jacobian with ``D`` vector-Jacobian products ``e_iᵀ ∂f/∂x``.
    ``"hutchinson"`` uses Hutchinson's unbiased estimator ``Tr(J) = E[εᵀ J ε]`` with ``E[εεᵀ] = I``
    (Rademacher or standard Gaussian ``noise`` of shape ``(N, D)``) and one vector-Jacobian product, as in
    FFJORD (Grathwohl et al. 2019).

    Gradients are enabled locally, so this works under ``torch.no_grad()``; in that case both outputs are
    detached. When the caller has gradients enabled the graph of the divergence is kept (``create_graph``), so
    a log-likelihood built from it can be trained.

    Returns:
        ``(f, div)`` with shapes ``(N, D)`` and ``(N,)``.
    """
    check_choice(method, "method", _DIVERGENCE_METHODS)
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a 2-D tensor of points with shape (N, D), got {shape}.")
    if method == "hutchinson":
        if noise is None or noise.shape != x.shape:
            got = None if noise is None else tuple(noise.shape)
            raise ValueError(
                f"noise must be a Rademacher or Gaussian tensor of the shape of x {tuple(x.shape)} "
                f"for method='hutchinson', got {got}."
            )
    elif noise is not None:
        raise ValueError(f"noise is only used by method='hutchinson', got noise with method={method!r}.")
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)

    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        x_in = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        f = _call_velocity(velocity, x_in, t)
        if not f.requires_grad:  # the field does not depend on x (nor on anything that requires grad)
            div = torch.zeros(x.shape[0], dtype=f.dtype, device=f.device)
        elif method == "exact":
            div = torch.zeros(x.shape[0], dtype=f.dtype, device=f.device)
            for i in range(x.shape[1]):
                basis = torch.zeros_like(f)
                basis[:, i] = 1.0
                (vjp,) = torch.autograd.grad(
                    f,
                    x_in,
                    basis,
                    retain_graph=True,
                    create_graph=create_graph,
                    allow_unused=True,
                    materialize_grads=True,
                )
                div = div + vjp[:, i]
        else:
            (vjp,) = torch.autograd.grad(
                f, x_in, noise, create_graph=create_graph, allow_unused=True, materialize_grads=True
            )
            div = (vjp * noise).sum(dim=1)
    if not create_graph:
        f, div = f.detach(), div.detach()
    return f, div


def _solver_grid(t_start: float, t_end: float, t_eval: Sequence[float] | None) -> tuple[list[float], list[int]]:
    """Monotone time grid from ``t_start`` to ``t_end`` through ``t_eval``, and the indices of ``t_eval``."""
    lo, hi = min(t_start, t_end), max(t_start, t_end)
    requested = [float(s) for s in t_eval] if t_eval is not None else []
    outside = [s for s in requested if not lo <= s <= hi]
    if outside:
        raise ValueError(f"t_eval must lie between t_start={t_start} and t_end={t_end}, got times {outside}.")
    grid = sorted({t_start, t_end, *requested}, reverse=t_end < t_start)
    return grid, [grid.index(s) for s in requested]


def integrate_with_log_density(
    velocity: VelocityField,
    x: Tensor,
    log_p_start: Tensor | None,
    t_start: float,
    t_end: float,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    divergence_method: str = "exact",
    generator: torch.Generator | None = None,
    options: dict | None = None,
    t_eval: Sequence[float] | None = None,
) -> FlowODEResult:
    """Integrate the augmented ODE of the instantaneous change of variables from ``t_start`` to ``t_end``.

    Solves (Chen et al. 2018; Grathwohl et al. 2019, FFJORD), forward or backward in time::

        dz/dt = f(z, t),    dℓ/dt = −Tr(∂f/∂z (z, t)),    z(t_start) = x,  ℓ(t_start) = 0,

    so that ``log p_{t_end}(z(t_end)) = log p_{t_start}(x) + ℓ(t_end)``. The solver is ``torchdiffeq.odeint``
    (``method``, ``rtol``, ``atol``, ``options``; fixed-step methods such as ``"euler"``, ``"midpoint"`` or
    ``"rk4"`` take ``options={"step_size": h}``). With ``divergence_method="hutchinson"`` one Rademacher
    noise ``ε`` is drawn from ``generator`` per solve and kept fixed during it, as FFJORD does, so the
    adaptive solver integrates a smooth field.

    Args:
        velocity: the field ``f(x, t)`` (see :data:`VelocityField`).
        x: starting points ``z(t_start)``, shape ``(N, D)``.
        log_p_start: ``log p_{t_start}(x)``, shape ``(N,)``, or ``None`` to return only the change.
        t_start, t_end: integration interval, in either order.
        t_eval: times in the interval at which to also return the trajectory.

    Returns:
        A :class:`FlowODEResult`.
    """
    x = check_points(x, name="x")
    if log_p_start is not None and (not isinstance(log_p_start, Tensor) or log_p_start.shape != x.shape[:1]):
        got = tuple(log_p_start.shape) if isinstance(log_p_start, Tensor) else type(log_p_start).__name__
        raise ValueError(f"log_p_start must be a tensor of shape ({x.shape[0]},), one per point, got {got}.")
    check_choice(divergence_method, "divergence_method", _DIVERGENCE_METHODS)
    check_ode_solver(method, name="method")
    check_tolerances(rtol, atol)
    check_generator(generator)
    t_start, t_end = float(t_start), float(t_end)
    grid, eval_index = _solver_grid(t_start, t_end, t_eval)

    noise = None
    if divergence_method == "hutchinson":
        bits = torch.randint(0, 2, x.shape, generator=generator, device=x.device)
        noise = bits.to(x.dtype) * 2 - 1

    def augmented(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        f, div = divergence(velocity, state[0], t, method=divergence_method, noise=noise)
        return f, -div

    field = CountingField(augmented)
    zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    if len(grid) == 1:  # t_start == t_end: the flow is the identity
        z_path, ell_path = x.unsqueeze(0), zeros.unsqueeze(0)
    else:
        times = torch.tensor(grid, dtype=x.dtype, device=x.device)
        z_path, ell_path = _odeint(field, (x, zeros), times, rtol=rtol, atol=atol, method=method, options=options)

    trajectory = z_path[eval_index] if t_eval is not None else None
    log_p_trajectory = None
    if t_eval is not None and log_p_start is not None:
        log_p_trajectory = log_p_start + ell_path[eval_index]
    change = ell_path[-1]
    return FlowODEResult(
        x_end=z_path[-1],
        log_density_change=change,
        log_p_end=None if log_p_start is None else log_p_start + change,
        trajectory=trajectory,
        log_p_trajectory=log_p_trajectory,
        nfe=field.nfe,
    )


def log_prob(
    velocity: VelocityField, x: Tensor, source_log_prob: Callable[[Tensor], Tensor] | None, **solver: Any
) -> Tensor:
    """Log-density at ``t = 1`` of the flow that pushes the source ``p_0`` forward along ``velocity``.

    Integrates backward from ``t = 1`` (the points ``x``) to ``t = 0`` and applies the instantaneous change of
    variables (Chen et al. 2018, Neural ODEs; Grathwohl et al. 2019, FFJORD)::

        log p_1(x) = log p_0(z(0)) − ∫_0^1 Tr(∂f/∂z (z(t), t)) dt,    z(1) = x.

    Args:
        velocity: the field ``f(x, t)`` (see :data:`VelocityField`).
        x: points, shape ``(N, D)``, finite floats.
        source_log_prob: ``log p_0``, mapping ``(N, D)`` points to ``(N,)`` log-densities.
        solver: the settings of :func:`integrate_with_log_density` (``method``, ``rtol``, ``atol``: the
            ``torchdiffeq.odeint`` ones; ``divergence_method``: ``"exact"`` (autograd trace) or ``"hutchinson"``
            (unbiased estimate, noise drawn from ``generator``); ``options``).

    Returns:
        ``log p_1(x)``, shape ``(N,)``.
    """
    if source_log_prob is None:
        raise ValueError(
            "source_log_prob is None, but the log-density of a flow needs a source with a density: "
            "log p_1(x) = log p_0(z(0)) − ∫ Tr(∂f/∂z) dt, and a sample-only source cannot give log_prob. "
            "Use a source distribution with a log_prob (for example the standard normal N(0, I))."
        )
    result = integrate_with_log_density(velocity, x, None, 1.0, 0.0, **solver)
    log_p_source = source_log_prob(result.x_end)
    if not isinstance(log_p_source, Tensor) or log_p_source.shape != x.shape[:1]:
        got = tuple(log_p_source.shape) if isinstance(log_p_source, Tensor) else type(log_p_source).__name__
        raise ValueError(f"source_log_prob must return a tensor of shape ({x.shape[0]},), got {got}.")
    # Backward, ℓ(0) − ℓ(1) = ∫_0^1 Tr dt = log p_0(z(0)) − log p_1(x).
    return log_p_source - result.log_density_change


def tanh_cubed_velocity(x: Tensor, t: Tensor | float) -> Tensor:
    """The course's analytic flow ``dz/dt = tanh(z³)``, element-wise and time-independent (``t`` unused)."""
    return torch.tanh(x**3)


def tanh_cubed_divergence(x: Tensor) -> Tensor:
    """Trace of the Jacobian of ``tanh(z³)``: ``Σ_i 3 z_i² sech²(z_i³)``, shape ``(N,)``."""
    return (3 * x**2 * (1 - torch.tanh(x**3) ** 2)).sum(dim=-1)


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I) = −|z|²/2 − (D/2) log 2π`` per row."""
    return -0.5 * (z**2).sum(dim=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def deform_gaussian_example(
    num_samples: int,
    times: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    generator: torch.Generator | None = None,
    dim: int = 2,
) -> DeformedGaussian:
    """Push ``N(0, I)`` samples through ``dz/dt = tanh(z³)`` and track their log-densities.

    The course's illustration of the instantaneous change of variables (Chen et al. 2018)::

        log p_t(z(t)) = log N(z(0); 0, I) − ∫_0^t Σ_i 3 z_i(s)² sech²(z_i(s)³) ds.

    Returns:
        A :class:`DeformedGaussian` with, for each time in ``times``, the samples ``(num_samples, dim)`` and
        their log-densities ``(num_samples,)``.
    """
    check_int(num_samples, "num_samples")
    check_int(dim, "dim")
    times = [float(s) for s in times]
    if not times or min(times) < 0.0:
        raise ValueError(f"times must be a non-empty sequence of times t ≥ 0, got {times}.")
    z0 = torch.randn(num_samples, dim, generator=generator)
    with torch.no_grad():
        result = integrate_with_log_density(
            tanh_cubed_velocity, z0, _standard_normal_log_prob(z0), 0.0, max(times), t_eval=times
        )
    return DeformedGaussian(
        samples={s: result.trajectory[k] for k, s in enumerate(times)},
        log_density={s: result.log_p_trajectory[k] for k, s in enumerate(times)},
    )
