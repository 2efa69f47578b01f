"""Flow matching: probability paths, training times and the conditional flow-matching loss.

Convention (Lipman et al. 2022): ``t ∈ [0, 1]``, ``x_0`` is a source sample (noise), ``x_1`` a data sample.
An affine conditional path is ``x_t = α_t x_1 + σ_t x_0`` with conditional velocity
``u_t(x_t | x_0, x_1) = α'_t x_1 + σ'_t x_0``; conditional flow matching (CFM) regresses a network on it:
``L(θ) = E_{t, (x_0, x_1) ~ π} ‖v_θ(x_t, t) − u_t‖²``, whose minimiser is the marginal velocity
``v*(x, t) = E[u_t | x_t = x]`` (Lipman et al. 2022, Thm. 2; Tong et al. 2023).
The coupling ``π`` comes from :mod:`hfgen.methods.couplings`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn

from hfgen.checks import check_number


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
        self.sigma_min = check_number(sigma_min, "sigma_min", 0, 1, open_high=True)

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
        self.sigma = check_number(sigma, "sigma", 0, open_low=True)

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
    check_number(data_end_concentration, "data_end_concentration", 0, open_low=True)
    u = torch.rand(num_samples, generator=generator, dtype=dtype)
    if data_end_concentration == 1.0:
        return u
    return 1 - (1 - u) ** (1 / data_end_concentration)


#: laws of the training times of image flow matching (:func:`sample_path_times`)
TIME_LAWS = ("uniform", "logit_normal")


def sample_path_times(
    num_samples: int,
    law: str = "uniform",
    generator: torch.Generator | None = None,
    mean: float = 0.0,
    std: float = 1.0,
) -> torch.Tensor:
    r"""Training times on the path: ``"uniform"``, ``t ~ U[0, 1]``; or ``"logit_normal"``, ``t = σ(m + s z)`` with
    ``z ~ N(0, 1)`` (Esser et al. 2024, *Scaling Rectified Flow Transformers*, §3.1), of density
    ``p(t) = exp(−(logit t − m)² / 2s²) / (s √(2π) t (1 − t))``: more weight on the middle of the path, where the
    velocity is hardest to predict, less on the ends."""
    if law == "uniform":
        return torch.rand(num_samples, generator=generator)
    if law != "logit_normal":
        raise ValueError(f"`time_law` must be one of {TIME_LAWS}, got {law!r}")
    check_number(mean, "logit_normal_mean")
    check_number(std, "logit_normal_std", 0, open_low=True)
    return torch.sigmoid(mean + std * torch.randn(num_samples, generator=generator))


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
