"""Fitting Gaussian mixtures: EM, k-means++ seeding, and gradient ascent on the log-likelihood for comparison."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from hfgen.checks import check_int, check_number
from hfgen.models.mixture import GaussianMixture
from hfgen.utils import check_points

INIT_PARAMETERS = ("weights", "means", "covariances")


@dataclass
class EMResult:
    """``history[t]``: mean log-likelihood ``(1/N) Σ_n log p(x_n)`` after ``t`` EM steps (``t = 0`` is the
    initialisation); ``converged``: whether ``|history[t] − history[t − 1]| < tol`` stopped the loop;
    ``num_iterations``: the number of EM steps taken."""

    history: list[float]
    converged: bool
    num_iterations: int


def _check_data(model: GaussianMixture, data: torch.Tensor) -> torch.Tensor:
    data = check_points(data, model.config.dim, "data")
    return data.to(device=model.device, dtype=model.dtype)


def e_step(model: GaussianMixture, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""E-step (Dempster, Laird & Rubin 1977): log-responsibilities and log-densities.

    ``log r_nk = log π_k + log N(x_n; μ_k, Σ_k) − log p(x_n)``, shape ``(N, K)``, and ``log p(x_n)``, shape ``(N,)``.
    """
    data = _check_data(model, data)
    with torch.no_grad():
        output = model(data)
    return output.component_log_prob - output.log_prob[:, None], output.log_prob


def m_step(model: GaussianMixture, data: torch.Tensor, log_resp: torch.Tensor, reg_covar: float = 1e-6) -> None:
    r"""M-step: set the parameters maximising ``Q(θ) = Σ_n Σ_k r_nk [log π_k + log N(x_n; μ_k, Σ_k)]``.

    With ``N_k = Σ_n r_nk``: ``π_k = N_k / N``, ``μ_k = Σ_n r_nk x_n / N_k`` and
    ``Σ_k = Σ_n r_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N_k + reg_covar · I`` (diag keeps the diagonal, spherical its
    mean), as in scikit-learn (Bishop 2006, §9.2.2). The statistics are computed in float64; ``N_k`` gets ``10 ε``
    added (ε the float64 machine epsilon) so that an empty component stays finite.

    Collapse: a component that shrinks onto a single point has ``Σ_k → 0`` and an unbounded likelihood.
    ``reg_covar ≥ 0`` bounds its covariance below by ``reg_covar · I``; a covariance that is numerically singular,
    with smallest eigenvalue ``≤ ε · tr Ĉov(data)``, raises ValueError and leaves the model unchanged.
    """
    data = _check_data(model, data)
    reg_covar = check_number(reg_covar, "reg_covar", 0)
    num_components = model.config.num_components
    if not isinstance(log_resp, torch.Tensor) or log_resp.shape != (data.shape[0], num_components):
        shape = tuple(log_resp.shape) if isinstance(log_resp, torch.Tensor) else type(log_resp).__name__
        raise ValueError(f"`log_resp` must have shape ({data.shape[0]}, {num_components}), got {shape}")
    x = data.double()
    resp = log_resp.detach().to(dtype=torch.float64, device=x.device).exp()
    eps = torch.finfo(torch.float64).eps
    counts = resp.sum(dim=0) + 10 * eps
    means = resp.T @ x / counts[:, None]
    diff = x[:, None, :] - means[None]  # (N, K, D)
    kind = model.config.covariance_type
    if kind == "full":
        covariances = torch.einsum("nk,nki,nkj->kij", resp, diff, diff) / counts[:, None, None]
        covariances = covariances + reg_covar * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        smallest = torch.linalg.eigvalsh(covariances).min(dim=1).values
    else:
        covariances = (resp[:, :, None] * diff.square()).sum(dim=0) / counts[:, None] + reg_covar
        if kind == "spherical":
            covariances = covariances.mean(dim=1)
        smallest = covariances.reshape(num_components, -1).min(dim=1).values
    singular = smallest <= eps * float(x.var(dim=0, unbiased=False).sum())
    if bool(singular.any()):
        raise ValueError(
            f"EM collapsed: components {torch.nonzero(singular).flatten().tolist()} have a singular covariance "
            f"(a component shrank onto a single point) with `reg_covar`={reg_covar!r}; use `reg_covar` > 0 "
            "(scikit-learn's default is 1e-6) or fewer components"
        )
    model.set_parameters(weights=counts / counts.sum(), means=means, covariances=covariances)


def expected_complete_log_likelihood(
    model: GaussianMixture, data: torch.Tensor, responsibilities: torch.Tensor
) -> torch.Tensor:
    r"""``Q(θ) = Σ_n Σ_k r_nk [log π_k + log N(x_n; μ_k, Σ_k)]`` at fixed responsibilities ``r`` ``(N, K)``,
    differentiable in the model's parameters (Dempster, Laird & Rubin 1977); the M-step is its maximiser."""
    data = _check_data(model, data)
    return (responsibilities * model.component_log_prob(data)).sum()


def kmeans_plus_plus(data: torch.Tensor, num_clusters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""k-means++ seeding (Arthur & Vassilvitskii 2007): indices ``(num_clusters,)`` of the chosen points.

    The first centre is uniform over the points; each next one is drawn with probability
    ``D(x)² / Σ_x D(x)²``, ``D(x)`` the distance from ``x`` to the nearest centre chosen so far.
    """
    data = check_points(data, name="data")
    check_int(num_clusters, "num_clusters")
    if num_clusters > data.shape[0]:
        raise ValueError(f"`data` has {data.shape[0]} points, fewer than `num_clusters`={num_clusters}")
    chosen = [int(torch.randint(data.shape[0], (1,), generator=generator, device=data.device))]
    squared = (data - data[chosen[0]]).square().sum(dim=1)
    for _ in range(num_clusters - 1):
        if not bool((squared > 0).any()):
            raise ValueError(f"`data` has fewer distinct points than `num_clusters`={num_clusters}")
        index = int(torch.multinomial(squared, 1, generator=generator))
        chosen.append(index)
        squared = torch.minimum(squared, (data - data[index]).square().sum(dim=1))
    return torch.tensor(chosen, dtype=torch.long, device=data.device)


def initialize_kmeans_plus_plus(
    model: GaussianMixture, data: torch.Tensor, reg_covar: float = 1e-6, generator: torch.Generator | None = None
) -> None:
    """Seed ``K`` centres by :func:`kmeans_plus_plus` (Arthur & Vassilvitskii 2007), assign every point to its
    nearest centre and run one M-step on these hard responsibilities (cluster weights, means and covariances)."""
    data = _check_data(model, data)
    centres = data[kmeans_plus_plus(data, model.config.num_components, generator)]
    labels = torch.cdist(data, centres).argmin(dim=1)
    resp = torch.nn.functional.one_hot(labels, model.config.num_components).to(data.dtype)
    m_step(model, data, resp.log(), reg_covar)


def fit_em(
    model: GaussianMixture,
    data: torch.Tensor,
    max_iter: int = 100,
    tol: float = 1e-6,
    init: str | Mapping[str, torch.Tensor] = "kmeans++",
    reg_covar: float = 1e-6,
    generator: torch.Generator | None = None,
) -> EMResult:
    r"""Fit ``model`` in place by expectation-maximisation (Dempster, Laird & Rubin 1977; Bishop 2006, §9.2).

    Each step is :func:`e_step` then :func:`m_step`; the mean log-likelihood ``(1/N) Σ_n log p(x_n)`` never
    decreases. Stops after ``max_iter`` steps or when it changes by less than ``tol`` (as scikit-learn).
    ``init`` is ``"kmeans++"`` (:func:`initialize_kmeans_plus_plus`, drawn from ``generator``), ``"current"``
    (the model's present parameters) or a mapping with any of ``weights``, ``means``, ``covariances`` (see
    :meth:`GaussianMixture.set_parameters`). ``reg_covar`` is added to the covariance diagonals (see
    :func:`m_step`).
    """
    data = _check_data(model, data)
    check_int(max_iter, "max_iter")
    tol = check_number(tol, "tol", 0)
    num_components = model.config.num_components
    if data.shape[0] < num_components:
        raise ValueError(
            f"`data` has {data.shape[0]} points, fewer than the model's `num_components`={num_components}: EM needs "
            "at least one point per component"
        )
    if isinstance(init, Mapping):
        unknown = sorted(set(init) - set(INIT_PARAMETERS))
        if unknown:
            raise ValueError(f"`init` may only hold {INIT_PARAMETERS}, got unknown keys {unknown}")
        model.set_parameters(**init)
    elif init == "kmeans++":
        initialize_kmeans_plus_plus(model, data, reg_covar, generator)
    elif init != "current":
        raise ValueError(f"`init` must be 'kmeans++', 'current' or a mapping of {INIT_PARAMETERS}, got {init!r}")
    history: list[float] = []
    for step in range(max_iter + 1):
        log_resp, log_prob = e_step(model, data)
        history.append(float(log_prob.mean()))
        if step > 0 and abs(history[-1] - history[-2]) < tol:
            return EMResult(history=history, converged=True, num_iterations=step)
        if step < max_iter:
            m_step(model, data, log_resp, reg_covar)
    return EMResult(history=history, converged=False, num_iterations=max_iter)


def fit_gradient(
    model: GaussianMixture, data: torch.Tensor, num_steps: int = 500, learning_rate: float = 0.05
) -> list[float]:
    r"""Fit ``model`` in place by full-batch Adam (Kingma & Ba 2015) on ``−(1/N) Σ_n log p(x_n)``, over the
    unconstrained parameters (logits, means, log-scales, Cholesky off-diagonals), to compare with EM.

    Returns the mean log-likelihood before each step.
    """
    data = _check_data(model, data)
    check_int(num_steps, "num_steps")
    check_number(learning_rate, "learning_rate", 0, open_low=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    history = []
    for _ in range(num_steps):
        loss = -model.log_prob(data).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(-float(loss.detach()))
    return history
