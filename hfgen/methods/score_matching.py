"""Score matching for score SDEs: the denoising and explicit objectives, their constant gap, and the exact
smoothed score of a Gaussian mixture.

Weighting: both objectives use ``λ(t) = σ_t²`` (Song et al. 2021, eq. 7), which makes every time count about
equally, and ``t ~ U[ε, 1]``. With that weight the denoising target is the noise: ``σ_t² ‖s_θ + z/σ_t‖² =
‖σ_t s_θ + z‖² = ‖ε̂_θ − z‖²`` for ``ε̂_θ = −σ_t s_θ``, so a network trained in the ε-parametrisation
(``prediction_type="epsilon"``) and one in the score parametrisation minimise the same number. Networks are
read through the scheduler (:meth:`~hfgen.schedulers.score_sde.ScoreSDEScheduler.convert_model_output`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor

from hfgen.models.mixture import GaussianMixture
from hfgen.schedulers.score_sde import ScoreSDEScheduler
from hfgen.utils import check_points, check_same_shape

ScoreField = Callable[[Tensor, Tensor], Tensor]
"""``score(x, t) -> (N, D)``: a score ``∇ log p_t(x)`` at points ``x`` ``(N, D)`` and times ``t`` ``(N,)``."""

__all__ = [
    "ScoreField",
    "ScoreMatchingGap",
    "denoising_score_matching_loss",
    "denoising_score_matching_loss_at",
    "diffused_mixture_log_prob",
    "diffused_mixture_score",
    "dsm_esm_gap",
    "explicit_score_matching_loss",
    "model_score",
]


def _diffused_components(
    x: Tensor, mixture: GaussianMixture, mean_coefficient: Tensor | float, std: Tensor | float
) -> tuple[Tensor, Tensor]:
    """Per component ``k``: ``log w_k + log N(x; m μ_k, C_k)`` ``(N, K)`` and ``C_k^{-1}(x − m μ_k)`` ``(N, K, D)``,
    with ``C_k = m² Σ_k + σ² I``; ``m`` and ``σ`` are scalars or one per point ``(N,)``."""
    dim = mixture.config.dim
    x = check_points(x, dim, "x")
    m = torch.as_tensor(mean_coefficient, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    means = mixture.means.to(x)
    tril = mixture.scale_tril.to(x)
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky(m**2 * (tril @ tril.transpose(-1, -2)) + s**2 * eye)  # (N or 1, K, D, D)
    diff = x[:, None, :] - m[..., 0] * means  # (N, K, D)
    white = torch.linalg.solve_triangular(chol, diff[..., None], upper=False)  # L⁻¹(x − mμ)
    precision_diff = torch.linalg.solve_triangular(chol.transpose(-1, -2), white, upper=True)[..., 0]
    log_det = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    log_normal = -0.5 * white[..., 0].square().sum(-1) - 0.5 * log_det - 0.5 * dim * math.log(2 * math.pi)
    return torch.log_softmax(mixture.logits.to(x), dim=0) + log_normal, precision_diff


def diffused_mixture_log_prob(
    x: Tensor, mixture: GaussianMixture, mean_coefficient: Tensor | float, std: Tensor | float
) -> Tensor:
    r"""Log-density of the mixture (:class:`~hfgen.models.mixture.GaussianMixture`, any covariance type) pushed
    through ``x_t = m x_0 + σ z``:
    ``log p_t(x) = log Σ_k w_k N(x; m μ_k, m² Σ_k + σ² I)``, shape ``(N,)`` (``m = 1, σ = 0`` is the mixture)."""
    log_joint, _ = _diffused_components(x, mixture, mean_coefficient, std)
    return torch.logsumexp(log_joint, dim=1)


def diffused_mixture_score(
    x: Tensor, mixture: GaussianMixture, mean_coefficient: Tensor | float, std: Tensor | float
) -> Tensor:
    r"""Exact smoothed score ``∇ log p_t(x) = −Σ_k r_k(x) (m² Σ_k + σ² I)^{-1} (x − m μ_k)`` with the
    responsibilities ``r_k ∝ w_k N(x; m μ_k, m² Σ_k + σ² I)``; ``m, σ`` are the VP/VE marginal coefficients at
    ``t`` (Song et al. 2021), scalars or one per point. Shape ``(N, D)``."""
    log_joint, precision_diff = _diffused_components(x, mixture, mean_coefficient, std)
    return -(torch.softmax(log_joint, dim=1)[..., None] * precision_diff).sum(dim=1)


def model_score(model: ModelMixin, sample: Tensor, timestep: Tensor, scheduler: ScoreSDEScheduler) -> Tensor:
    """The network's score ``s_θ(x, t)``: its output read through ``scheduler.config.prediction_type``."""
    output = model(sample, timestep, return_dict=False)[0]
    return scheduler.convert_model_output(output, timestep)


def _dsm_terms(
    model: ModelMixin, sample: Tensor, timestep: Tensor, noise: Tensor, scheduler: ScoreSDEScheduler
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample ``σ_t² ‖s_θ(x_t, t) + z/σ_t‖² = ‖σ_t s_θ + z‖²``, the network's score and ``σ_t`` ``(N, 1)``."""
    _, std = scheduler.marginal_coefficients(timestep)
    std = std.to(sample)[:, None]
    score = model_score(model, sample, timestep, scheduler)
    return (std * score + noise).square().sum(dim=1), score, std


def denoising_score_matching_loss(
    model: ModelMixin,
    original_samples: Tensor,
    scheduler: ScoreSDEScheduler,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Denoising score matching (Vincent 2011; Song et al. 2021, eq. 7) with ``λ(t) = σ_t²``:

    ``J_DSM(θ) = E_{t ~ U[ε,1]} E_{x_0} E_{z} σ_t² ‖s_θ(m_t x_0 + σ_t z, t) + z/σ_t‖²``,

    a Monte-Carlo estimate on ``original_samples`` (one ``(t, z)`` each, drawn from ``generator``),
    differentiable in the network's parameters. Equal to ``‖ε̂_θ − z‖²`` in the ε-parametrisation.
    """
    x0 = check_points(original_samples, name="original_samples")
    sample, timestep, noise = scheduler.sample_training_inputs(x0, generator=generator)
    return _dsm_terms(model, sample, timestep, noise, scheduler)[0].mean()


def denoising_score_matching_loss_at(
    model: ModelMixin, sample: Tensor, timestep: Tensor, noise: Tensor, scheduler: ScoreSDEScheduler
) -> Tensor:
    r"""The denoising score matching objective on given draws ``x_t = m_t x_0 + σ_t z`` (``sample``), their times
    ``timestep`` ``(N,)`` and noises ``noise``: the mean of ``σ_t² ‖s_θ(x_t, t) + z/σ_t‖²`` (Vincent 2011;
    Song et al. 2021, eq. 7), for training loops that draw ``(x_t, t, z)`` themselves (another law of ``t``)."""
    sample = check_points(sample, name="sample")
    check_same_shape(noise, sample, "noise")
    return _dsm_terms(model, sample, timestep, noise, scheduler)[0].mean()


def explicit_score_matching_loss(
    model: ModelMixin, sample: Tensor, timestep: Tensor, true_score: ScoreField, scheduler: ScoreSDEScheduler
) -> Tensor:
    r"""Explicit score matching (Hyvärinen 2005; Song & Ermon 2019) with ``λ(t) = σ_t²``, given the true
    score: the mean over the points of ``σ_t² ‖s_θ(x_t, t) − ∇ log p_t(x_t)‖²`` at points ``x_t ~ p_t``
    ``sample`` ``(N, D)`` and their times ``timestep`` ``(N,)``."""
    sample = check_points(sample, name="sample")
    _, std = scheduler.marginal_coefficients(timestep)
    residual = model_score(model, sample, timestep, scheduler) - true_score(sample, timestep)
    return (std.to(sample)[:, None] * residual).square().sum(dim=1).mean()


@dataclass
class ScoreMatchingGap:
    """``gap = J_DSM − J_ESM`` estimated on common samples, its Monte-Carlo ``standard_error``, the two
    objectives ``dsm`` and ``esm`` on those samples, and the per-point ``differences`` ``d_i`` ``(N,)`` (for
    paired comparisons of networks evaluated with common random numbers)."""

    gap: float
    standard_error: float
    dsm: float
    esm: float
    differences: Tensor


@torch.no_grad()
def dsm_esm_gap(
    score_net: ModelMixin,
    original_samples: Tensor,
    scheduler: ScoreSDEScheduler,
    true_score: ScoreField,
    generator: torch.Generator | None = None,
) -> ScoreMatchingGap:
    r"""``J_DSM(θ) − J_ESM(θ)``, which does not depend on ``θ`` (Vincent 2011, *A Connection Between Score
    Matching and Denoising Autoencoders*): both are evaluated on the same draws ``(x_0, t, z)``, per point

    ``d_i = σ_t² (‖s_θ(x_t, t) + z/σ_t‖² − ‖s_θ(x_t, t) − ∇ log p_t(x_t)‖²)``,

    and the estimate is ``mean(d)`` with standard error ``std(d)/√N``. ``true_score(x, t)`` is the exact
    ``∇ log p_t`` (e.g. :func:`diffused_mixture_score` for a Gaussian mixture). Passing generators in the same
    state for several networks uses common random numbers, so their gaps differ only by the θ-dependent,
    mean-zero cross term ``−2 σ_t² s_θ · (−z/σ_t − ∇ log p_t)``; the standard error of such a paired difference
    is that of ``differences_θ − differences_θ'``.
    """
    x0 = check_points(original_samples, name="original_samples")
    if x0.shape[0] < 2:
        raise ValueError(f"`original_samples` must hold at least 2 points for a standard error, got {x0.shape[0]}")
    sample, timestep, noise = scheduler.sample_training_inputs(x0, generator=generator)
    dsm, score, std = _dsm_terms(score_net, sample, timestep, noise, scheduler)
    esm = (std * (score - true_score(sample, timestep))).square().sum(dim=1)
    difference = dsm - esm
    return ScoreMatchingGap(
        gap=float(difference.mean()),
        standard_error=float(difference.std() / math.sqrt(difference.shape[0])),
        dsm=float(dsm.mean()),
        esm=float(esm.mean()),
        differences=difference,
    )
