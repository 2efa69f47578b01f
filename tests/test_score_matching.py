"""Score matching: the smoothed mixture score against autograd and torch.distributions, the denoising and explicit
objectives, and Vincent's constant gap J_DSM − J_ESM on a 2-D Gaussian mixture."""

import itertools
import math

import pytest
import torch
from factories import ExactMixtureScore, gaussian_mixture, tiny_score_network

from hfgen.methods.score_matching import (
    denoising_score_matching_loss,
    diffused_mixture_log_prob,
    diffused_mixture_score,
    dsm_esm_gap,
    explicit_score_matching_loss,
)
from hfgen.models.mixture import GaussianMixture
from hfgen.schedulers.score_sde import VESDEScheduler, VPSDEScheduler

MEANS = [[-1.5, 0.0], [1.0, 1.0], [0.5, -1.5]]
COVS = [[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.2]], [[0.4, -0.15], [-0.15, 0.3]]]
WEIGHTS = [0.3, 0.5, 0.2]


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def mixture(means=MEANS, covs=COVS, weights=WEIGHTS):
    return gaussian_mixture(means, covs, weights)


def true_score(mix, scheduler):
    return lambda x, t: diffused_mixture_score(x, mix, *scheduler.marginal_coefficients(t))


def test_diffused_log_prob_is_the_mixture_of_the_pushed_forward_gaussians():
    mix, m, s = mixture(), 0.7, 0.4
    x = torch.randn(10, 2, dtype=torch.float64)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(mix.weights),
        torch.distributions.MultivariateNormal(m * mix.means, m**2 * mix.covariances + s**2 * torch.eye(2)),
    )
    torch.testing.assert_close(diffused_mixture_log_prob(x, mix, m, s), reference.log_prob(x))
    undiffused = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(mix.weights), torch.distributions.MultivariateNormal(mix.means, mix.covariances)
    )
    torch.testing.assert_close(diffused_mixture_log_prob(x, mix, 1.0, 0.0), undiffused.log_prob(x))


def test_diffused_score_is_the_gradient_of_the_log_density_with_one_time_per_point():
    mix = mixture()
    x = torch.randn(12, 2, dtype=torch.float64, requires_grad=True)
    m, s = VPSDEScheduler().marginal_coefficients(torch.linspace(0.01, 1.0, 12, dtype=torch.float64))
    (gradient,) = torch.autograd.grad(diffused_mixture_log_prob(x, mix, m, s).sum(), x)
    torch.testing.assert_close(diffused_mixture_score(x.detach(), mix, m, s), gradient)


@pytest.mark.parametrize(
    "scheduler",
    [VPSDEScheduler(), VPSDEScheduler(prediction_type="score"), VESDEScheduler(sigma_max=5.0)],
    ids=["vp-epsilon", "vp-score", "ve-epsilon"],
)
def test_dsm_minus_esm_is_the_same_for_every_network(scheduler):
    # Vincent 2011: J_DSM(θ) − J_ESM(θ) = E λ (‖∇ log p(x_t | x_0)‖² − ‖∇ log p_t(x_t)‖²) for every θ. With common
    # random numbers (same x_0, t, z) the estimates differ only by the mean-zero cross term; the objectives
    # themselves differ between networks by far more than their errors. (For VP, a true score that leaves out
    # the factor m_t on the means fails the paired comparison by 8–10 standard errors.)
    mix = mixture()
    x0 = mix.sample(4000, generator=seeded())
    networks = [tiny_score_network(seed).double() for seed in range(4)]
    sde = "ve" if isinstance(scheduler, VESDEScheduler) else "vp"
    config = {key: value for key, value in scheduler.config.items() if not key.startswith("_")}
    networks.append(ExactMixtureScore(MEANS, COVS, WEIGHTS, sde=sde, sde_kwargs=config))
    results = [dsm_esm_gap(net, x0, scheduler, true_score(mix, scheduler), generator=seeded(1)) for net in networks]
    for a, b in itertools.combinations(results, 2):
        paired = a.differences - b.differences  # the common ‖z‖² term cancels: a sharp paired comparison
        assert abs(a.gap - b.gap) < 4 * float(paired.std()) / math.sqrt(len(paired))
    assert results[-1].esm < 1e-20, "the exact score has no explicit score-matching error"
    esm = [r.esm for r in results[:-1]]
    assert max(esm) - min(esm) > 3 * max(r.standard_error for r in results)
    assert min(esm) > 10 * max(r.standard_error for r in results)
    for r in results:
        assert r.gap == pytest.approx(r.dsm - r.esm) and 0 < r.standard_error < 0.05


def test_the_gap_is_the_closed_form_constant_for_gaussian_data():
    # One Gaussian N(μ, Σ): ∇ log p_t = −C_t^{-1}(x − m_t μ), E‖σ_t ∇ log p_t‖² = σ_t² tr C_t^{-1}, so
    # J_DSM − J_ESM = E_t[D − σ_t² tr C_t^{-1}] = E_t tr(m_t² Σ C_t^{-1}), t ~ U[ε, 1] (midpoint quadrature).
    scheduler = VPSDEScheduler()
    mix = mixture(MEANS[:1], COVS[:1], [1.0])
    eps = scheduler.config.sampling_eps
    t = eps + (1 - eps) * (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000
    m, s = scheduler.marginal_coefficients(t)
    sigma = mix.covariances[0]
    c = m[:, None, None] ** 2 * sigma + s[:, None, None] ** 2 * torch.eye(2, dtype=torch.float64)
    constant = float(torch.diagonal(m[:, None, None] ** 2 * sigma @ torch.linalg.inv(c), dim1=1, dim2=2).sum(1).mean())
    x0 = mix.sample(20000, generator=seeded())
    result = dsm_esm_gap(tiny_score_network(0).double(), x0, scheduler, true_score(mix, scheduler), seeded(1))
    assert abs(result.gap - constant) < 4.5 * result.standard_error
    assert constant > 10 * result.standard_error


def test_dsm_loss_is_the_same_number_in_both_parametrisations_and_trains_the_network():
    # ε̂ = −σ_t s: the ε-network read as a score by a "score" scheduler must be wrapped to give the same number.
    mix = mixture()
    x0 = mix.sample(500, generator=seeded())
    net = tiny_score_network(0).double()
    by_epsilon = VPSDEScheduler(prediction_type="epsilon")
    loss = denoising_score_matching_loss(net, x0, by_epsilon, generator=seeded(1))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    x_t, t, z = by_epsilon.sample_training_inputs(x0, generator=seeded(1))
    with torch.no_grad():
        manual = (net(x_t, t).sample - z).square().sum(1).mean()
    torch.testing.assert_close(loss.detach(), manual)

    class AsScore(torch.nn.Module):
        def forward(self, sample, timestep, return_dict=True):
            sigma = by_epsilon.marginal_coefficients(timestep)[1].to(sample)[:, None]
            return (-net(sample, timestep).sample / sigma,)

    by_score = VPSDEScheduler(prediction_type="score")
    torch.testing.assert_close(denoising_score_matching_loss(AsScore(), x0, by_score, generator=seeded(1)), loss)


def test_the_exact_score_minimises_denoising_score_matching():
    scheduler = VESDEScheduler(sigma_max=5.0)
    mix = mixture()
    x0 = mix.sample(4000, generator=seeded())
    exact = ExactMixtureScore(MEANS, COVS, WEIGHTS, sde="ve", sde_kwargs={"sigma_max": 5.0})
    with torch.no_grad():
        best = denoising_score_matching_loss(exact, x0, scheduler, generator=seeded(1))
        others = [
            denoising_score_matching_loss(tiny_score_network(s).double(), x0, scheduler, generator=seeded(1))
            for s in range(3)
        ]
    assert all(best < other - 0.1 for other in others)


def test_explicit_loss_agrees_with_the_gap_estimate():
    scheduler = VPSDEScheduler()
    mix = mixture()
    x0 = mix.sample(300, generator=seeded())
    net = tiny_score_network(2).double()
    x_t, t, _ = scheduler.sample_training_inputs(x0, generator=seeded(1))
    with torch.no_grad():
        esm = explicit_score_matching_loss(net, x_t, t, true_score(mix, scheduler), scheduler)
    assert float(esm) == pytest.approx(dsm_esm_gap(net, x0, scheduler, true_score(mix, scheduler), seeded(1)).esm)


def test_diffused_score_works_for_every_covariance_type():
    # A diagonal mixture and the same mixture stored with full covariances have the same smoothed score.
    diagonal = GaussianMixture(num_components=2, dim=2, covariance_type="diag").double()
    variances = torch.tensor([[0.3, 0.2], [0.5, 0.1]], dtype=torch.float64)
    diagonal.set_parameters(torch.tensor([0.4, 0.6], dtype=torch.float64), torch.tensor(MEANS[:2]), variances)
    full = gaussian_mixture(MEANS[:2], torch.diag_embed(variances).tolist(), [0.4, 0.6])
    x = torch.randn(6, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            diffused_mixture_score(x, diagonal, 0.8, 0.3), diffused_mixture_score(x, full, 0.8, 0.3)
        )


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"x.*shape \(N, 2\)"):
        diffused_mixture_score(torch.zeros(3, 3), mixture(), 1.0, 0.5)
    scheduler = VPSDEScheduler()
    with pytest.raises(ValueError, match="at least 2 points"):
        dsm_esm_gap(tiny_score_network(), torch.zeros(1, 2), scheduler, lambda x, t: x)
    with pytest.raises(ValueError, match="original_samples"):
        denoising_score_matching_loss(tiny_score_network(), torch.zeros(4), scheduler)
    with pytest.raises(ValueError, match="sample"):
        explicit_score_matching_loss(tiny_score_network(), torch.zeros(4), torch.ones(4), lambda x, t: x, scheduler)
