r"""Closed-form Schrödinger bridge between two Gaussians with a Brownian reference (the IPF oracle).

The static Schrödinger bridge ``π* = argmin { KL(π ‖ R_{0N}) : π_0 = N(m_0, Σ_0), π_N = N(m_1, Σ_1) }`` for the
Brownian reference ``X_N = X_0 + σ W``, ``W ~ N(0, I)``, is the entropic optimal transport plan for the cost
``‖x − y‖²`` with regularisation ``2σ²`` (``min E‖X_0 − X_N‖² + 2σ² KL(π ‖ π_0 ⊗ π_N)``). It is Gaussian with
the marginals' means and covariances and the cross-covariance

    ``C = Cov(X_0, X_N) = ½ (Σ_0^{1/2} D Σ_0^{-1/2} − σ² I)``,  ``D = (4 Σ_0^{1/2} Σ_1 Σ_0^{1/2} + σ⁴ I)^{1/2}``

(Janati et al. 2020, *Entropic Optimal Transport between Unbalanced Gaussian Measures has a Closed Form*, Thm. 1;
Mallasto et al. 2021; Bunne et al. 2023, *The Schrödinger Bridge between Gaussian Measures has a Closed Form*).
Equivalently the joint precision matrix has off-diagonal block ``−I / σ²``: the plan has the Gibbs form
``π*(x, y) ∝ exp(φ(x) + ψ(y) − ‖x − y‖² / (2σ²))``. For the γ-step chain, ``σ² = 2 Σ_k γ_k``.
"""

from __future__ import annotations

import torch


def _symmetric_sqrt(matrix: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """``M^{1/2}`` (or ``M^{-1/2}``) of a symmetric positive definite matrix, by its eigendecomposition."""
    values, vectors = torch.linalg.eigh(matrix)
    roots = values.sqrt()
    return (vectors * (1 / roots if inverse else roots)) @ vectors.T


def _check_covariance(name: str, cov: torch.Tensor, dim: int) -> torch.Tensor:
    if cov.shape != (dim, dim):
        raise ValueError(f"`{name}` must have shape ({dim}, {dim}), got {tuple(cov.shape)}")
    if not torch.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"`{name}` must be symmetric, got {cov.tolist()}")
    if torch.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError(f"`{name}` must be positive definite, got eigenvalues {torch.linalg.eigvalsh(cov).tolist()}")
    return cov


class GaussianSchrodingerBridge:
    r"""The Schrödinger bridge between ``N(m_0, Σ_0)`` and ``N(m_1, Σ_1)`` for the Brownian reference of total
    variance ``σ²`` (``reference_variance``): the Gaussian law of ``(X_0, X_N)`` (float64 throughout)."""

    def __init__(
        self,
        mean0: torch.Tensor,
        cov0: torch.Tensor,
        mean1: torch.Tensor,
        cov1: torch.Tensor,
        reference_variance: float,
    ):
        self.mean0 = torch.as_tensor(mean0, dtype=torch.float64).reshape(-1)
        self.mean1 = torch.as_tensor(mean1, dtype=torch.float64).reshape(-1)
        dim = self.mean0.numel()
        if self.mean1.numel() != dim:
            raise ValueError(f"`mean0` and `mean1` must have the same length, got {dim} and {self.mean1.numel()}")
        self.cov0 = _check_covariance("cov0", torch.as_tensor(cov0, dtype=torch.float64), dim)
        self.cov1 = _check_covariance("cov1", torch.as_tensor(cov1, dtype=torch.float64), dim)
        if not reference_variance > 0:
            raise ValueError(f"`reference_variance` σ² must be > 0, got {reference_variance!r}")
        self.reference_variance = float(reference_variance)

    @property
    def dim(self) -> int:
        """Dimension ``D`` of each marginal."""
        return self.mean0.numel()

    @property
    def cross_covariance(self) -> torch.Tensor:
        r"""``C = Cov(X_0, X_N) = E[(X_0 − m_0)(X_N − m_1)ᵀ] = ½ (Σ_0^{1/2} D Σ_0^{-1/2} − σ² I)`` with
        ``D = (4 Σ_0^{1/2} Σ_1 Σ_0^{1/2} + σ⁴ I)^{1/2}``."""
        s2, eye = self.reference_variance, torch.eye(self.dim, dtype=torch.float64)
        root0, inv_root0 = _symmetric_sqrt(self.cov0), _symmetric_sqrt(self.cov0, inverse=True)
        inner = 4 * root0 @ self.cov1 @ root0
        d = _symmetric_sqrt(0.5 * (inner + inner.T) + s2**2 * eye)
        return 0.5 * (root0 @ d @ inv_root0 - s2 * eye)

    @property
    def joint_mean(self) -> torch.Tensor:
        """``(m_0, m_1)``, shape ``(2D,)``."""
        return torch.cat([self.mean0, self.mean1])

    @property
    def joint_covariance(self) -> torch.Tensor:
        """``[[Σ_0, C], [Cᵀ, Σ_1]]``, shape ``(2D, 2D)``."""
        c = self.cross_covariance
        return torch.cat([torch.cat([self.cov0, c], 1), torch.cat([c.T, self.cov1], 1)], 0)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs ``(X_0, X_N)`` from the bridge's coupling, each ``(num_samples, D)`` float64."""
        chol = torch.linalg.cholesky(self.joint_covariance)
        z = torch.randn(num_samples, 2 * self.dim, generator=generator, dtype=torch.float64)
        pairs = self.joint_mean + z @ chol.T
        return pairs[:, : self.dim], pairs[:, self.dim :]

    def __repr__(self) -> str:
        return f"GaussianSchrodingerBridge(dim={self.dim}, reference_variance={self.reference_variance})"
