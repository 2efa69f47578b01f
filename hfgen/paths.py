"""Flow-matching probability paths, couplings and the conditional flow-matching loss.

Convention (Lipman et al. 2022): ``t ∈ [0, 1]``, ``x_0`` is a source sample (noise), ``x_1`` a data sample.
An affine conditional path is ``x_t = α_t x_1 + σ_t x_0`` with conditional velocity
``u_t(x_t | x_0, x_1) = α'_t x_1 + σ'_t x_0``; conditional flow matching (CFM) regresses a network on it:
``L(θ) = E_{t, (x_0, x_1) ~ π} ‖v_θ(x_t, t) − u_t‖²``, whose minimiser is the marginal velocity
``v*(x, t) = E[u_t | x_t = x]`` (Lipman et al. 2022, Thm. 2; Tong et al. 2023).
The coupling ``π`` is the independent one ``q(x_0) q(x_1)``, the minibatch optimal-transport one
(Pooladian et al. 2023; Tong et al. 2023, OT-CFM) or the minibatch entropic-OT one (``sinkhorn``), which with the
Brownian-bridge path gives the Schrödinger-bridge CFM of Tong et al. 2023 (SB-CFM).
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import nn

COUPLINGS = ("independent", "ot", "sinkhorn")


def _time_column(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor broadcastable against ``like`` ``(N, …)``: a scalar or ``(N,)`` → ``(N, 1, …)``."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 1:
        t = t.reshape(-1, *([1] * (like.ndim - 1)))
    return t


class AffinePath(ABC):
    """Affine conditional path ``x_t = α_t x_1 + σ_t x_0`` with ``u_t = α'_t x_1 + σ'_t x_0``."""

    #: Deterministic given ``(x_0, x_1, t)``: no extra noise ``ε`` is drawn.
    has_noise = False

    @abstractmethod
    def describe(self) -> str:
        """The path's equations in one line of Markdown, for model cards."""

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Data coefficient ``α_t``."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Source coefficient ``σ_t``."""

    @abstractmethod
    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Time derivative ``α'_t``."""

    @abstractmethod
    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Time derivative ``σ'_t``."""

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Point on the path: ``x_t = α_t x_1 + σ_t x_0``."""
        t = _time_column(t, x1)
        return self.alpha(t) * x1 + self.sigma(t) * x0

    def target_velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Conditional velocity ``u_t = α'_t x_1 + σ'_t x_0``."""
        t = _time_column(t, x1)
        return self.d_alpha(t) * x1 + self.d_sigma(t) * x0


class LinearPath(AffinePath):
    r"""Linear (rectified / OT-conditional) path, Lipman et al. 2022 Eq. (20), Liu et al. 2022.

    ``x_t = t x_1 + (1 − (1 − σ_min) t) x_0`` and ``u_t = x_1 − (1 − σ_min) x_0``; with ``σ_min = 0`` this is
    ``x_t = (1 − t) x_0 + t x_1``, ``u_t = x_1 − x_0``.
    """

    def __init__(self, sigma_min: float = 0.0):
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"`sigma_min` must be in [0, 1), got {sigma_min}")
        self.sigma_min = float(sigma_min)

    def describe(self) -> str:
        if self.sigma_min == 0.0:
            return "linear, `x_t = (1 − t) x_0 + t x_1`, `u_t = x_1 − x_0`"
        return (
            f"linear with σ_min = {self.sigma_min}, `x_t = t x_1 + (1 − (1 − σ_min) t) x_0`, "
            "`u_t = x_1 − (1 − σ_min) x_0`"
        )

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - (1 - self.sigma_min) * t

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, -(1 - self.sigma_min))

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = _time_column(t, x1)
        return t * x1 + (1 - (1 - self.sigma_min) * t) * x0

    def target_velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        if self.sigma_min == 0.0:
            return x1 - x0
        return x1 - (1 - self.sigma_min) * x0

    def __repr__(self) -> str:
        return f"LinearPath(sigma_min={self.sigma_min})"


class VPPath(AffinePath):
    r"""Variance-preserving path (Song et al. 2021), in flow-matching time, Lipman et al. 2022 Eq. (19).

    ``α_t = exp(−½ T(1 − t))``, ``σ_t = √(1 − α_t²)``, ``T(s) = β_min s + ½ (β_max − β_min) s²``.
    At ``t = 1`` the path is at the data; at ``t = 0`` only ``α_0 = exp(−½ T(1))`` of it remains.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 < beta_min <= beta_max:
            raise ValueError(f"need 0 < beta_min <= beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def describe(self) -> str:
        return (
            f"variance preserving, `x_t = α_t x_1 + σ_t x_0`, `α_t = exp(−½ T(1 − t))`, `σ_t = √(1 − α_t²)`, "
            f"`T(s) = β_min s + ½ (β_max − β_min) s²` with β_min = {self.beta_min}, β_max = {self.beta_max}"
        )

    def _T(self, s: torch.Tensor) -> torch.Tensor:
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2

    def _beta(self, s: torch.Tensor) -> torch.Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * s

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * self._T(1 - t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1 - self.alpha(t) ** 2)

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * self._beta(1 - t) * self.alpha(t)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha(t)
        return -alpha * self.d_alpha(t) / torch.sqrt(1 - alpha**2)

    def __repr__(self) -> str:
        return f"VPPath(beta_min={self.beta_min}, beta_max={self.beta_max})"


class CosinePath(AffinePath):
    r"""Cosine path (Nichol & Dhariwal 2021 in FM form): ``α_t = sin(πt/2)``, ``σ_t = cos(πt/2)``."""

    def describe(self) -> str:
        return "cosine, `x_t = sin(πt/2) x_1 + cos(πt/2) x_0`"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(0.5 * math.pi * t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(0.5 * math.pi * t)

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def __repr__(self) -> str:
        return "CosinePath()"


class BrownianBridgePath:
    r"""Brownian-bridge path of SB-CFM (Tong et al. 2023, *Improving and generalizing flow-based generative models
    with minibatch optimal transport*, Sec. 3.3): the law at time ``t`` of a Brownian motion of variance ``σ²``
    per unit time pinned at ``x_0`` and ``x_1``,

    ``x_t = (1 − t) x_0 + t x_1 + σ √(t(1 − t)) ε``, ``ε ~ N(0, I)``, with conditional velocity
    ``u_t = x_1 − x_0 + σ (1 − 2t) / (2 √(t(1 − t))) ε`` (``= dx_t/dt`` at fixed ``ε``).

    The velocity diverges like ``t^{-1/2}`` at both ends; it is evaluated with ``t(1 − t)`` floored at
    ``1e-8`` so that a drawn ``t = 0`` stays finite. With the entropic-OT coupling of regularisation ``2σ²``
    (``couple(..., "sinkhorn", sigma=σ)``) the pairs follow the Schrödinger bridge for this reference.
    """

    has_noise = True
    _MIN_T_ONE_MINUS_T = 1e-8

    def __init__(self, sigma: float = 1.0):
        if not (isinstance(sigma, int | float) and not isinstance(sigma, bool) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"`sigma` must be a finite number > 0, got {sigma!r}")
        self.sigma = float(sigma)

    def describe(self) -> str:
        return (
            f"Brownian bridge with σ = {self.sigma}, `x_t = (1 − t) x_0 + t x_1 + σ √(t(1 − t)) ε`, "
            "`u_t = x_1 − x_0 + σ (1 − 2t) / (2 √(t(1 − t))) ε`"
        )

    def _check_noise(self, noise: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        if noise is None:
            raise ValueError("the Brownian-bridge path is random: pass `noise` ε ~ N(0, I) (cfm_loss draws it)")
        if noise.shape != like.shape:
            raise ValueError(f"`noise` must have the shape of x1, {tuple(like.shape)}, got {tuple(noise.shape)}")
        return noise

    def std(self, t: torch.Tensor | float) -> torch.Tensor:
        """Standard deviation ``σ √(t(1 − t))`` of ``x_t`` given ``(x_0, x_1)``."""
        t = torch.as_tensor(t)
        return self.sigma * torch.sqrt(t * (1 - t))

    def sample(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Point on the path: ``x_t = (1 − t) x_0 + t x_1 + σ √(t(1 − t)) ε`` with ``ε = noise``."""
        noise = self._check_noise(noise, x1)
        t = _time_column(t, x1)
        return (1 - t) * x0 + t * x1 + self.sigma * torch.sqrt(t * (1 - t)) * noise

    def target_velocity(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor | float, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Conditional velocity ``u_t = x_1 − x_0 + σ (1 − 2t) / (2 √(t(1 − t))) ε`` with ``ε = noise``."""
        noise = self._check_noise(noise, x1)
        t = _time_column(t, x1)
        root = torch.sqrt((t * (1 - t)).clamp_min(self._MIN_T_ONE_MINUS_T))
        return x1 - x0 + self.sigma * (1 - 2 * t) / (2 * root) * noise

    def __repr__(self) -> str:
        return f"BrownianBridgePath(sigma={self.sigma})"


ProbabilityPath = AffinePath | BrownianBridgePath
PATHS: dict[str, type[ProbabilityPath]] = {
    "linear": LinearPath,
    "vp": VPPath,
    "cosine": CosinePath,
    "brownian": BrownianBridgePath,
}


def get_path(name: str, **kwargs: float) -> ProbabilityPath:
    """Build a path by name: ``linear`` (kwarg ``sigma_min``), ``vp`` (``beta_min``, ``beta_max``), ``cosine``,
    ``brownian`` (``sigma``)."""
    if name not in PATHS:
        raise ValueError(f"unknown path {name!r}; expected one of {sorted(PATHS)}")
    return PATHS[name](**kwargs)


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
    if not (isinstance(reg, int | float) and not isinstance(reg, bool) and math.isfinite(reg) and reg > 0):
        raise ValueError(f"`reg` must be a finite number > 0, got {reg!r}")
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


def sample_times(
    num_samples: int,
    generator: torch.Generator | None = None,
    data_end_concentration: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Training times ``t ~ Beta(1, b)`` by inversion, ``t = 1 − (1 − u)^{1/b}``, ``u ~ U[0, 1]``.

    Density ``p(t) = b (1 − t)^{b − 1}``: ``b = 1`` is uniform; ``b < 1`` puts more weight near the data end
    ``t = 1``, where the marginal velocity develops the finest spatial detail (sharp edges of the data).
    """
    if data_end_concentration <= 0:
        raise ValueError(f"`data_end_concentration` must be > 0, got {data_end_concentration}")
    u = torch.rand(num_samples, generator=generator, dtype=dtype)
    if data_end_concentration == 1.0:
        return u
    return 1 - (1 - u) ** (1 / data_end_concentration)


def cfm_loss(
    model: nn.Module,
    x0: torch.Tensor,
    x1: torch.Tensor,
    path: ProbabilityPath | None = None,
    t: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Conditional flow-matching loss ``E_t ‖v_θ(x_t, t) − u_t(x_t | x_0, x_1)‖²`` on paired batches.

    ``t ~ U[0, 1]`` per pair unless given; the squared norm sums over the point's coordinates and the mean is
    over the batch. For the linear path this is ``‖v_θ(x_t, t) − (x_1 − x_0)‖²`` (Lipman et al. 2022 Eq. 23).
    A path with noise (the Brownian bridge) gets one ``ε ~ N(0, I)`` per pair, drawn with ``generator`` after ``t``.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"`x0` and `x1` must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    path = path or LinearPath()
    if t is None:
        t = torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype, device=x1.device)
    if path.has_noise:
        noise = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        x_t, target = path.sample(x0, x1, t, noise), path.target_velocity(x0, x1, t, noise)
    else:
        x_t, target = path.sample(x0, x1, t), path.target_velocity(x0, x1, t)
    prediction = model(x_t, t, return_dict=False)[0]
    return (prediction - target).square().flatten(1).sum(1).mean()
