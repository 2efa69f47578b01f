r"""Restricted Boltzmann machines: likelihood gradients, contrastive divergence, exact enumeration, AIS.

For the Bernoulli–Bernoulli RBM of :class:`~hfgen.models.rbm.RBMModel`, ``p(v) = exp(−F(v)) / Z`` and the gradient
of the mean log-likelihood of data ``{v^(n)}`` is "data term − model term" (Hinton 2002; Hinton 2010):

    ``∂ℓ/∂W = E_data[v p(h | v)ᵀ] − E_p[v p(h | v)ᵀ]``, ``∂ℓ/∂b = E_data[v] − E_p[v]``,
    ``∂ℓ/∂c = E_data[p(h | v)] − E_p[p(h | v)]``,

equivalently ``∇ℓ = −E_data[∇F(v)] + E_p[∇F(v)]``. Contrastive divergence replaces ``E_p`` by samples of Gibbs
chains; for RBMs small enough to sum over, the functions named ``exact_*`` enumerate every state. All
log-likelihoods and log-partition functions are in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hfgen.checks import check_int, check_number
from hfgen.models.rbm import RBMModel, sample_bernoulli

#: the largest number of units summed over by exact enumeration (``2^20`` states)
MAX_ENUMERATED_UNITS = 20


@dataclass
class RBMTerms:
    """One tensor per RBM parameter, ``weight`` ``(V, H)``, ``visible_bias`` ``(V,)``, ``hidden_bias`` ``(H,)``: an
    expectation of the sufficient statistics ``(v hᵀ, v, h)`` or a gradient (a difference of two expectations)."""

    weight: Tensor
    visible_bias: Tensor
    hidden_bias: Tensor

    def __sub__(self, other: RBMTerms) -> RBMTerms:
        return RBMTerms(
            self.weight - other.weight, self.visible_bias - other.visible_bias, self.hidden_bias - other.hidden_bias
        )


@dataclass
class GibbsChainOutput:
    """End of ``k`` block-Gibbs sweeps: the binary visible state ``sample`` ``(N, V)`` and ``probabilities``, the
    ``p(v | h)`` of the last sweep that it was drawn from."""

    sample: Tensor
    probabilities: Tensor


@dataclass
class ContrastiveDivergenceOutput:
    """``loss``: the surrogate ``mean F(v_data) − mean F(v_neg)`` whose autograd gradient is minus the estimate of
    ``∇ℓ``; ``negative_samples``: the chain ends ``v_neg`` ``(M, V)`` (the next persistent chains for PCD)."""

    loss: Tensor
    negative_samples: Tensor


@dataclass
class AISOutput:
    """Annealed importance sampling of ``log Z``: the estimate ``log_partition``, its ``standard_error`` (delta
    method), the per-chain ``log_weights`` ``(M,)`` and the base model's exact ``log_base_partition``."""

    log_partition: float
    standard_error: float
    log_weights: Tensor
    log_base_partition: float


def sufficient_statistics(model: RBMModel, v: Tensor, weights: Tensor | None = None) -> RBMTerms:
    """Expectations ``(E[v p(h | v)ᵀ], E[v], E[p(h | v)])`` over the rows of ``v`` ``(N, V)`` (in ``[0, 1]``), with
    the hidden units summed out exactly; ``weights`` ``(N,)`` (summing to one) default to ``1/N``."""
    v = model.check_visible(v)
    p_h = model.p_h_given_v(v)
    if weights is None:
        weights = torch.full((v.shape[0],), 1.0 / v.shape[0], dtype=v.dtype, device=v.device)
    return RBMTerms((v * weights[:, None]).T @ p_h, weights @ v, weights @ p_h)


def likelihood_gradient(model: RBMModel, v_data: Tensor, v_model: Tensor) -> RBMTerms:
    """Estimate of ``∇_θ mean log p(v_data)``: the data term on ``v_data`` minus the model term on samples ``v_model``
    of ``p(v)`` (Hinton 2002, eq. 5): ``∂/∂W = ⟨v p(h|v)ᵀ⟩_data − ⟨v p(h|v)ᵀ⟩_model`` and likewise for ``b``, ``c``."""
    with torch.no_grad():
        return sufficient_statistics(model, v_data) - sufficient_statistics(model, v_model)


def free_energy_loss(model: RBMModel, v_data: Tensor, v_model: Tensor) -> Tensor:
    """Surrogate loss ``mean F(v_data) − mean F(v_model)`` (``v_model`` held fixed): its gradient is
    ``−likelihood_gradient(model, v_data, v_model)``, so minimising it ascends the estimated log-likelihood."""
    return model.free_energy(v_data).mean() - model.free_energy(v_model.detach()).mean()


def gibbs_chain(
    model: RBMModel, v: Tensor, num_steps: int, generator: torch.Generator | None = None
) -> GibbsChainOutput:
    """``num_steps`` block-Gibbs sweeps ``h ~ p(h | v)``, ``v ~ p(v | h)`` from ``v`` ``(N, V)`` in ``[0, 1]``.

    Draws follow ``RBMModel.sample_h``/``sample_v`` (and :class:`~hfgen.schedulers.gibbs.GibbsScheduler`), so the
    chain is the same for the same generator state.
    """
    check_int(num_steps, "num_steps")
    with torch.no_grad():
        v = model.check_visible(v)
        for _ in range(num_steps):
            probabilities = model.p_v_given_h(model.sample_h(v, generator))
            v = sample_bernoulli(probabilities, generator)
    return GibbsChainOutput(sample=v, probabilities=probabilities)


def contrastive_divergence(
    model: RBMModel,
    v_data: Tensor,
    k: int = 1,
    generator: torch.Generator | None = None,
    chains: Tensor | None = None,
) -> ContrastiveDivergenceOutput:
    """CD-k (Hinton 2002) or, with ``chains``, persistent CD (Tieleman 2008, "Training Restricted Boltzmann Machines
    using Approximations to the Likelihood Gradient").

    The negative samples ``v_neg`` are ``k`` Gibbs sweeps from ``v_data`` (CD-k) or from the persistent ``chains``
    ``(M, V)`` (PCD; pass ``negative_samples`` back as the next ``chains``). The loss is
    :func:`free_energy_loss`, ``mean F(v_data) − mean F(v_neg)``, whose gradient is ``−(data term − model term)``.
    """
    v_data = model.check_visible(v_data, "v_data")
    start = v_data if chains is None else model.check_visible(chains, "chains")
    negatives = gibbs_chain(model, start, k, generator).sample
    return ContrastiveDivergenceOutput(loss=free_energy_loss(model, v_data, negatives), negative_samples=negatives)


def binary_states(
    num_units: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> Tensor:
    """All ``2^n`` binary vectors of length ``n``, shape ``(2^n, n)``; row ``k`` is ``k`` in binary (first unit most
    significant)."""
    check_int(num_units, "num_units", 1, MAX_ENUMERATED_UNITS, note="for enumeration")
    codes = torch.arange(2**num_units, device=device)
    shifts = torch.arange(num_units - 1, -1, -1, device=device)
    return ((codes[:, None] >> shifts) & 1).to(dtype)


def _enumeration(model: RBMModel) -> tuple[Tensor, RBMTerms]:
    """``log Z`` and the model expectations of ``(v hᵀ, v, h)``, summing over the smaller layer."""
    num_visible, num_hidden = model.config.num_visible, model.config.num_hidden
    if min(num_visible, num_hidden) > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"exact enumeration sums over 2^min(V, H) states; this RBM has V = {num_visible}, H = {num_hidden} > "
            f"{MAX_ENUMERATED_UNITS}: use annealed_importance_sampling for log Z"
        )
    weight, b, c = model.weight, model.visible_bias, model.hidden_bias
    if num_visible <= num_hidden:
        v = binary_states(num_visible, model.dtype, model.device)
        log_unnormalized = -model.free_energy(v)  # log Σ_h exp(−E(v, h))
        log_partition = torch.logsumexp(log_unnormalized, 0)
        return log_partition, sufficient_statistics(model, v, torch.exp(log_unnormalized - log_partition))
    h = binary_states(num_hidden, model.dtype, model.device)
    log_unnormalized = h @ c + F.softplus(b + h @ weight.T).sum(-1)  # log Σ_v exp(−E(v, h))
    p_v = torch.sigmoid(b + h @ weight.T)
    log_partition = torch.logsumexp(log_unnormalized, 0)
    p = torch.exp(log_unnormalized - log_partition)
    return log_partition, RBMTerms((p_v * p[:, None]).T @ h, p @ p_v, p @ h)


def exact_log_partition(model: RBMModel) -> Tensor:
    """``log Z = log Σ_v exp(−F(v)) = log Σ_h exp(cᵀh + Σ_i softplus(b_i + (Wh)_i))`` by enumerating the smaller
    layer (at most ``2^20`` states); differentiable in the parameters."""
    return _enumeration(model)[0]


def log_likelihood(model: RBMModel, v: Tensor, log_partition: Tensor | float | None = None) -> Tensor:
    """``log p(v) = −F(v) − log Z`` of binary ``v`` ``(N, V)``, in nats; ``log_partition`` defaults to
    :func:`exact_log_partition` (pass an :func:`annealed_importance_sampling` estimate for large RBMs)."""
    v = model.check_visible(v, binary=True)
    log_z = exact_log_partition(model) if log_partition is None else log_partition
    return -model.free_energy(v) - log_z


def exact_likelihood_gradient(model: RBMModel, v_data: Tensor) -> RBMTerms:
    """``∇_θ mean log p(v_data)`` exactly: the data term minus the model term ``E_p[(v hᵀ, v, h)]`` by enumeration."""
    v_data = model.check_visible(v_data, "v_data", binary=True)
    with torch.no_grad():
        return sufficient_statistics(model, v_data) - _enumeration(model)[1]


def pseudo_log_likelihood(
    model: RBMModel,
    v: Tensor,
    flip_index: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Stochastic pseudo-log-likelihood ``V log σ(F(ṽ) − F(v))`` of binary ``v`` ``(N, V)`` (Besag 1975), where ``ṽ``
    is ``v`` with bit ``i_n`` flipped in row ``n``: an unbiased estimate of ``Σ_i log p(v_i | v_{−i})``.

    ``flip_index`` ``(N,)`` fixes the flipped bits (default: uniform draws from ``generator``). This is
    scikit-learn's ``BernoulliRBM.score_samples``, which draws ``i_n`` with its ``random_state``.
    """
    v = model.check_visible(v, binary=True)
    n, num_visible = v.shape
    if flip_index is None:
        flip_index = torch.randint(num_visible, (n,), generator=generator, device=_device(generator))
    flip_index = torch.as_tensor(flip_index).to(v.device)
    if (
        flip_index.shape != (n,)
        or flip_index.dtype.is_floating_point
        or not bool(((flip_index >= 0) & (flip_index < num_visible)).all())
    ):
        raise ValueError(f"`flip_index` must be {n} integers in 0 … {num_visible - 1}, got {flip_index!r}")
    rows = torch.arange(n, device=v.device)
    flipped = v.clone()
    flipped[rows, flip_index] = 1 - flipped[rows, flip_index]
    return num_visible * F.logsigmoid(model.free_energy(flipped) - model.free_energy(v))


def reconstruction_error(model: RBMModel, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Squared reconstruction error ``Σ_i (v_i − p(v_i = 1 | h))²`` with ``h ~ p(h | v)``, per row ``(N,)``; ``v`` in
    ``[0, 1]`` (Hinton 2010, §5: a cheap training monitor, not a likelihood)."""
    with torch.no_grad():
        v = model.check_visible(v)
        return (v - model.p_v_given_h(model.sample_h(v, generator))).square().sum(-1)


def base_rate_visible_bias(v_data: Tensor, smoothing: float = 1.0) -> Tensor:
    """Visible biases of the base-rate model (Salakhutdinov & Murray 2008): ``b_A = log p̄ − log(1 − p̄)`` with the
    smoothed pixel means ``p̄ = (Σ_n v^(n) + α) / (N + 2α)`` (``α = smoothing > 0`` keeps ``b_A`` finite)."""
    if isinstance(v_data, Tensor) and v_data.ndim > 2:
        v_data = v_data.reshape(v_data.shape[0], -1)
    if not isinstance(v_data, Tensor) or v_data.ndim != 2 or not torch.is_floating_point(v_data):
        raise ValueError("`v_data` must be a float tensor (N, V) (or images (N, C, H, W)) with values in [0, 1]")
    check_number(smoothing, "smoothing", 0, open_low=True)
    mean = (v_data.sum(0) + smoothing) / (v_data.shape[0] + 2 * smoothing)
    return torch.log(mean) - torch.log1p(-mean)


def annealed_importance_sampling(
    model: RBMModel,
    num_chains: int = 100,
    num_betas: int = 10_000,
    betas: Tensor | None = None,
    base_visible_bias: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int], Any] | None = None,
) -> AISOutput:
    r"""Estimate ``log Z`` of an RBM by annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008,
    "On the Quantitative Analysis of Deep Belief Networks").

    The base model has ``W = 0`` and visible biases ``b_A`` (``base_visible_bias``, e.g. from
    :func:`base_rate_visible_bias`; default zero), so ``log Z_A = Σ_i softplus(b_{A,i}) + H log 2``. The
    intermediate distributions ``p_k(v) ∝ p*_k(v) = exp((1 − β_k) b_Aᵀv + β_k bᵀv) Π_j (1 + exp(β_k (c_j + (vᵀW)_j)))``
    go from ``β_0 = 0`` to ``β_K = 1`` (``betas``; default ``num_betas`` equal steps). Each of ``num_chains`` chains
    starts at ``v_1 ~ p_0`` and moves by one Gibbs sweep leaving ``p_k`` invariant, with the log-weight
    ``log w = Σ_{k=1}^{K} [log p*_k(v_k) − log p*_{k−1}(v_k)]``. Then ``Ẑ = Z_A · mean(w)`` and the standard error of
    ``log Ẑ`` is ``std(w) / (√M mean(w))``. Runs in float64. ``progress(1)`` is called after each ``β`` step (a
    progress bar's ``update``).
    """
    num_chains = check_int(num_chains, "num_chains")
    if betas is None:
        betas = torch.linspace(0.0, 1.0, check_int(num_betas, "num_betas") + 1, dtype=torch.float64)
    betas = _check_betas(betas)
    device = model.device
    weight, b, c = (p.detach().to(dtype=torch.float64) for p in (model.weight, model.visible_bias, model.hidden_bias))
    if base_visible_bias is None:
        b_base = torch.zeros_like(b)
    else:
        b_base = torch.as_tensor(base_visible_bias).detach().to(device=device, dtype=torch.float64)
        if b_base.shape != b.shape or not torch.isfinite(b_base).all():
            raise ValueError(f"`base_visible_bias` must be a finite tensor of shape {tuple(b.shape)}")

    def log_unnormalized(v: Tensor, beta: float) -> Tensor:
        return v @ ((1 - beta) * b_base + beta * b) + F.softplus(beta * (c + v @ weight)).sum(-1)

    with torch.no_grad():
        v = sample_bernoulli(torch.sigmoid(b_base).expand(num_chains, -1), generator)
        log_weights = torch.zeros(num_chains, dtype=torch.float64, device=device)
        beta_values = betas.tolist()
        for k in range(1, len(beta_values)):
            beta_prev, beta = beta_values[k - 1], beta_values[k]
            log_weights += log_unnormalized(v, beta) - log_unnormalized(v, beta_prev)
            if k < len(beta_values) - 1:
                h = sample_bernoulli(torch.sigmoid(beta * (c + v @ weight)), generator)
                v = sample_bernoulli(torch.sigmoid((1 - beta) * b_base + beta * (b + h @ weight.T)), generator)
            if progress is not None:
                progress(1)
    log_base = float(F.softplus(b_base).sum()) + model.config.num_hidden * math.log(2.0)
    shift = log_weights.max()
    scaled = torch.exp(log_weights - shift)
    mean = scaled.mean()
    standard_error = float(scaled.std() / (math.sqrt(num_chains) * mean)) if num_chains > 1 else math.inf
    return AISOutput(
        log_partition=log_base + float(shift + torch.log(mean)),
        standard_error=standard_error,
        log_weights=log_weights,
        log_base_partition=log_base,
    )


def effective_sample_size(log_weights: Tensor) -> float:
    r"""Kish's effective sample size of importance weights given by their logarithms ``(M,)``:
    ``ESS = (Σ_m w_m)² / Σ_m w_m²``, from ``M`` (equal weights) down to 1 (one weight dominates); an AIS estimate
    whose ESS is a small fraction of its runs rests on a few of them, and its standard error is unreliable."""
    log_weights = torch.as_tensor(log_weights, dtype=torch.float64)
    if log_weights.ndim != 1 or log_weights.numel() < 1 or not bool(torch.isfinite(log_weights).all()):
        raise ValueError(f"`log_weights` must be a finite 1-D tensor of at least one weight, got {log_weights!r}")
    return float(torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0)))


def _check_betas(betas: object) -> Tensor:
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or betas.shape[0] < 2 or float(betas[0]) != 0.0 or float(betas[-1]) != 1.0:
        raise ValueError("`betas` must be a 1-D schedule from 0.0 to 1.0 with at least two entries")
    if not bool((betas[1:] > betas[:-1]).all()):
        raise ValueError("`betas` must be strictly increasing")
    return betas


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def ais_log_likelihood(
    model: RBMModel,
    images: Tensor,
    base_visible_bias: Tensor,
    num_chains: int,
    num_betas: int,
    seed: int = 0,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, float]:
    r"""Mean test log-likelihood ``(1/N) Σ_n [−F(v_n)] − log Ẑ`` in nats, ``log Ẑ`` by AIS from the base-rate model
    (Salakhutdinov & Murray 2008) with ``num_chains`` runs over ``num_betas`` equally spaced ``β``.

    ``log_likelihood_stderr`` combines the spread over images and the AIS error of ``log Ẑ`` (delta method):
    ``√(var(−F) / N + se(log Ẑ)²)``. AIS is unbiased for ``Z``, so ``log Ẑ`` is biased low on average and the
    log-likelihood high (by about the variance of the log-weights over 2M). ``ais_effective_sample_size`` is the
    runs' :func:`effective_sample_size` (``M`` at best): far below ``M``, the standard error is unreliable. ``seed``
    seeds the AIS runs (another seed gives an independent estimate); ``progress`` is passed to
    :func:`annealed_importance_sampling`."""
    images = model.check_visible(images.flatten(1), "images", binary=True)
    generator = torch.Generator(model.device).manual_seed(seed)
    ais = annealed_importance_sampling(
        model, num_chains, num_betas, base_visible_bias=base_visible_bias, generator=generator, progress=progress
    )
    with torch.no_grad():
        unnormalized = torch.cat([-model.free_energy(chunk).double() for chunk in images.split(1000)])
    n = unnormalized.numel()
    spread = float(unnormalized.var()) / n if n > 1 else 0.0
    mean = float(unnormalized.mean()) - ais.log_partition
    return {
        "log_likelihood": mean,
        "log_likelihood_stderr": math.sqrt(spread + ais.standard_error**2),
        "nll": -mean,
        "log_partition": ais.log_partition,
        "log_partition_stderr": ais.standard_error,
        "ais_num_chains": num_chains,
        "ais_num_betas": num_betas,
        "ais_effective_sample_size": effective_sample_size(ais.log_weights),
        "ais_seed": seed,
        "num_nll_images": n,
    }


def filter_images(model: RBMModel, num_filters: int) -> Tensor:
    """The first ``num_filters`` columns of ``W`` as images ``(K, C, H, W)``, each scaled to [0, 1] by its own
    min and max (the receptive field of a hidden unit, Hinton 2010 §15)."""
    weights = model.weight.detach().T[:num_filters].cpu().float()
    low, high = weights.min(1, keepdim=True).values, weights.max(1, keepdim=True).values
    scaled = (weights - low) / (high - low).clamp_min(1e-12)
    return scaled.reshape(-1, *model.image_shape)
