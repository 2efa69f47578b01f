"""A Gaussian mixture in R^D with spherical, diagonal or full covariances, as a diffusers model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.checks import check_arguments, check_choice, check_int
from hfgen.utils import check_points

__all__ = ["GaussianMixture", "GaussianMixtureOutput"]

COVARIANCE_TYPES = ("spherical", "diag", "full")


@dataclass
class GaussianMixtureOutput(BaseOutput):
    """Output of :class:`GaussianMixture`: ``log_prob`` ``log p(x)`` ``(N,)`` and ``component_log_prob``
    ``log π_k + log N(x; μ_k, Σ_k)`` ``(N, K)``, both in nats."""

    log_prob: torch.Tensor
    component_log_prob: torch.Tensor


class GaussianMixture(ModelMixin, ConfigMixin):
    r"""Gaussian mixture ``p(x) = Σ_k π_k N(x; μ_k, Σ_k)`` with ``K = num_components`` components in ``R^D``.

    ``covariance_type`` is ``"spherical"`` (``Σ_k = σ_k² I``), ``"diag"`` (``Σ_k = diag(σ_k²)``) or ``"full"``
    (``Σ_k = L_k L_kᵀ``, ``L_k`` lower triangular with a positive diagonal), as in scikit-learn's
    ``GaussianMixture`` (Bishop 2006, §9.2). The parameters are unconstrained tensors, so the mixture can be fitted
    by EM (:func:`hfgen.methods.mixtures.fit_em`) or by gradient descent on ``−mean log p``:

    * ``logits`` ``(K,)``: ``π = softmax(logits)``;
    * ``means`` ``(K, D)``;
    * ``log_scales``: ``log σ_k`` ``(K,)`` (spherical), ``log σ_kd`` ``(K, D)`` (diag) or ``log diag L_k`` ``(K, D)``
      (full);
    * ``scale_tril_offdiag`` ``(K, D(D−1)/2)`` (full only): the strictly lower entries of ``L_k`` in
      ``torch.tril_indices(D, D, -1)`` order.

    A new mixture has equal weights, means at 0 and identity covariances; set the parameters with
    :meth:`set_parameters` or a fit. ``log_prob`` is ``logsumexp_k [log π_k + log N(x; μ_k, Σ_k)]``.
    """

    config_rules = {
        "num_components": check_int,
        "dim": check_int,
        "covariance_type": partial(check_choice, choices=COVARIANCE_TYPES),
    }

    @register_to_config
    def __init__(self, num_components: int = 8, dim: int = 2, covariance_type: str = "full"):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.means = nn.Parameter(torch.zeros(num_components, dim))
        scale_shape = (num_components,) if covariance_type == "spherical" else (num_components, dim)
        self.log_scales = nn.Parameter(torch.zeros(scale_shape))
        if covariance_type == "full":
            self.scale_tril_offdiag = nn.Parameter(torch.zeros(num_components, dim * (dim - 1) // 2))

    @property
    def weights(self) -> torch.Tensor:
        """Mixture weights ``π = softmax(logits)``, shape ``(K,)``."""
        return torch.softmax(self.logits, dim=0)

    @property
    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors ``L_k`` with ``Σ_k = L_k L_kᵀ``, shape ``(K, D, D)``, for every covariance type."""
        num_components, dim = self.means.shape
        scales = self.log_scales.exp()
        if self.config.covariance_type == "spherical":
            scales = scales[:, None].expand(num_components, dim)
        tril = torch.diag_embed(scales)
        if self.config.covariance_type == "full":
            rows, cols = torch.tril_indices(dim, dim, -1, device=tril.device)
            tril[:, rows, cols] = self.scale_tril_offdiag
        return tril

    @property
    def covariances(self) -> torch.Tensor:
        """Covariances in scikit-learn's shapes: ``σ_k²`` ``(K,)``, ``σ_kd²`` ``(K, D)`` or ``Σ_k`` ``(K, D, D)``."""
        if self.config.covariance_type == "full":
            tril = self.scale_tril
            return tril @ tril.transpose(-1, -2)
        return (2 * self.log_scales).exp()

    @torch.no_grad()
    def set_parameters(
        self,
        weights: torch.Tensor | None = None,
        means: torch.Tensor | None = None,
        covariances: torch.Tensor | None = None,
    ) -> None:
        """Set ``π``, ``μ`` and/or the covariances (scikit-learn's shapes, see :attr:`covariances`) in place.

        ``logits = log π`` and the covariances are stored through their Cholesky factor, ``log_scales = log σ``.
        """
        num_components, dim = self.means.shape
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=self.dtype, device=self.device)
            if weights.shape != (num_components,) or not bool((weights > 0).all()):
                raise ValueError(
                    f"`weights` must be a positive tensor of shape ({num_components},), got {weights.tolist()}"
                )
            if abs(float(weights.sum()) - 1.0) > 1e-6:
                raise ValueError(f"`weights` must sum to 1, got sum {float(weights.sum())!r}")
            self.logits.copy_(weights.log())
        if means is not None:
            means = torch.as_tensor(means, dtype=self.dtype, device=self.device)
            check_points(means, dim, "means")
            if means.shape[0] != num_components:
                raise ValueError(f"`means` must have shape ({num_components}, {dim}), got {tuple(means.shape)}")
            self.means.copy_(means)
        if covariances is not None:
            self._set_covariances(torch.as_tensor(covariances, dtype=self.dtype, device=self.device))

    def _set_covariances(self, covariances: torch.Tensor) -> None:
        num_components, dim = self.means.shape
        kind = self.config.covariance_type
        shape = {"spherical": (num_components,), "diag": (num_components, dim), "full": (num_components, dim, dim)}
        if covariances.shape != shape[kind]:
            raise ValueError(
                f"`covariances` for covariance_type={kind!r} must have shape {shape[kind]}, got "
                f"{tuple(covariances.shape)}"
            )
        if kind != "full":
            if not bool((covariances > 0).all()) or not bool(torch.isfinite(covariances).all()):
                raise ValueError(f"`covariances` must be finite and > 0, got {covariances.tolist()}")
            self.log_scales.copy_(0.5 * covariances.log())
            return
        tril, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()) or not bool(torch.isfinite(tril).all()):
            bad = torch.nonzero(info).flatten().tolist()
            raise ValueError(f"`covariances` must be symmetric positive definite; components {bad} are not")
        rows, cols = torch.tril_indices(dim, dim, -1, device=tril.device)
        self.log_scales.copy_(torch.diagonal(tril, dim1=-2, dim2=-1).log())
        self.scale_tril_offdiag.copy_(tril[:, rows, cols])

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""``log π_k + log N(x_n; μ_k, Σ_k)``, shape ``(N, K)``, where
        ``log N = −(D/2) log 2π − log |det L_k| − ½ ‖L_k^{-1}(x − μ_k)‖²``."""
        dim = self.means.shape[1]
        x = check_points(x, dim, "x").to(device=self.device, dtype=self.dtype)
        diff = x[:, None, :] - self.means[None]  # (N, K, D)
        kind = self.config.covariance_type
        if kind == "full":
            tril = self.scale_tril
            whitened = torch.linalg.solve_triangular(tril, diff.permute(1, 2, 0), upper=False)  # (K, D, N)
            mahalanobis = whitened.square().sum(dim=1).T
            log_det = self.log_scales.sum(dim=1)
        elif kind == "diag":
            mahalanobis = (diff * (-self.log_scales).exp()[None]).square().sum(dim=-1)
            log_det = self.log_scales.sum(dim=1)
        else:
            mahalanobis = diff.square().sum(dim=-1) * (-2 * self.log_scales).exp()[None]
            log_det = dim * self.log_scales
        log_normal = -0.5 * dim * math.log(2 * math.pi) - log_det[None] - 0.5 * mahalanobis
        return torch.log_softmax(self.logits, dim=0)[None] + log_normal

    def forward(self, x: torch.Tensor, return_dict: bool = True) -> GaussianMixtureOutput | tuple:
        """``log p(x) = logsumexp_k [log π_k + log N(x; μ_k, Σ_k)]`` and the per-component terms."""
        joint = self.component_log_prob(x)
        log_prob = torch.logsumexp(joint, dim=1)
        if not return_dict:
            return (log_prob, joint)
        return GaussianMixtureOutput(log_prob=log_prob, component_log_prob=joint)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density ``log p(x)`` in nats at points ``x`` ``(N, D)``, shape ``(N,)``."""
        return self.forward(x).log_prob

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling: ``k ~ Categorical(π)``, then ``x = μ_k + L_k ε``, ``ε ~ N(0, I)``; ``(N, D)``."""
        check_int(num_samples, "num_samples")
        with torch.no_grad():
            component = torch.multinomial(self.weights, num_samples, replacement=True, generator=generator)
            noise = torch.randn(
                num_samples, self.means.shape[1], generator=generator, device=self.device, dtype=self.dtype
            )
            return self.means[component] + (self.scale_tril[component] @ noise[:, :, None])[:, :, 0]
