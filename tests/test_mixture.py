"""Gaussian mixtures: the model against closed forms, EM against scikit-learn and against its own theory."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from hfgen.data import EightGaussians, get_toy_distribution
from hfgen.methods.mixtures import (
    e_step,
    expected_complete_log_likelihood,
    fit_em,
    fit_gradient,
    initialize_kmeans_plus_plus,
    kmeans_plus_plus,
    m_step,
)
from hfgen.models.mixture import GaussianMixture

COVARIANCE_TYPES = ("spherical", "diag", "full")
INITIAL_COVARIANCES = {
    "spherical": [1.0, 2.0, 0.5],
    "diag": [[1.0, 2.0], [0.5, 0.7], [1.5, 1.0]],
    "full": [[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.3], [0.3, 1.0]], [[0.5, -0.1], [-0.1, 0.8]]],
}


def two_clusters(n: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    skew = torch.tensor([[1.0, 0.5], [0.0, 0.7]], dtype=torch.float64)
    first = 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64) + 2
    second = torch.randn(n, 2, generator=g, dtype=torch.float64) @ skew - 1
    return torch.cat([first, second])


def mixture(covariance_type: str, weights, means, covariances) -> GaussianMixture:
    model = GaussianMixture(len(weights), len(means[0]), covariance_type).double()
    model.set_parameters(
        torch.tensor(weights, dtype=torch.float64),
        torch.tensor(means, dtype=torch.float64),
        torch.tensor(covariances, dtype=torch.float64),
    )
    return model


def parameters(model: GaussianMixture) -> list[np.ndarray]:
    return [t.detach().numpy() for t in (model.weights, model.means, model.covariances)]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_every_em_step_matches_scikit_learn_from_the_same_start(covariance_type):
    data = two_clusters()
    weights, means, covariances = [0.2, 0.3, 0.5], data[:3].tolist(), INITIAL_COVARIANCES[covariance_type]
    cov = np.array(covariances)
    precisions = np.linalg.inv(cov) if covariance_type == "full" else 1 / cov
    model = mixture(covariance_type, weights, means, covariances)
    for k in range(1, 5):
        log_resp, _ = e_step(model, data)
        m_step(model, data, log_resp, reg_covar=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter=k stops it on purpose
            reference = SklearnGaussianMixture(
                3,
                covariance_type=covariance_type,
                weights_init=weights,
                means_init=means,
                precisions_init=precisions,
                max_iter=k,
                tol=0.0,
                reg_covar=1e-6,
                init_params="random",
            ).fit(data.numpy())
        for ours, theirs in zip(
            parameters(model), (reference.weights_, reference.means_, reference.covariances_), strict=True
        ):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
        np.testing.assert_allclose(
            model.log_prob(data).detach().numpy(), reference.score_samples(data.numpy()), rtol=0, atol=1e-8
        )
    # fit_em from the same start takes the same steps; its history ends at scikit-learn's mean score
    model = GaussianMixture(3, 2, covariance_type).double()
    init = {
        "weights": torch.tensor(weights, dtype=torch.float64),
        "means": torch.tensor(means, dtype=torch.float64),
        "covariances": torch.tensor(covariances, dtype=torch.float64),
    }
    result = fit_em(model, data, max_iter=4, tol=0.0, init=init, reg_covar=1e-6)
    assert result.num_iterations == 4 and not result.converged and len(result.history) == 5
    assert result.history[-1] == pytest.approx(reference.score_samples(data.numpy()).mean(), abs=1e-10)


def test_log_prob_is_the_torch_mixture_density():
    model = mixture("full", [0.3, 0.7], [[0.0, 1.0], [2.0, -1.0]], [[[1.0, 0.4], [0.4, 0.5]], [[0.3, 0.0], [0.0, 2.0]]])
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=model.weights.detach()),
        torch.distributions.MultivariateNormal(model.means.detach(), scale_tril=model.scale_tril.detach()),
    )
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    torch.testing.assert_close(model.log_prob(x), reference.log_prob(x), rtol=0, atol=1e-12)
    spherical = mixture("spherical", [0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [0.25, 4.0])
    torch.testing.assert_close(spherical.scale_tril[1], 2.0 * torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-15)


def test_samples_have_the_mixture_mean_and_covariance():
    model = mixture("full", [0.3, 0.7], [[0.0, 1.0], [2.0, -1.0]], [[[1.0, 0.4], [0.4, 0.5]], [[0.3, 0.0], [0.0, 2.0]]])
    samples = model.sample(200_000, generator=torch.Generator().manual_seed(0))
    weights, means, covariances = (t.detach() for t in (model.weights, model.means, model.covariances))
    mean = weights @ means
    second = (weights[:, None, None] * (covariances + means[:, :, None] * means[:, None, :])).sum(dim=0)
    covariance = second - mean[:, None] * mean[None, :]
    standard_error = (covariance.diagonal() / samples.shape[0]).sqrt()
    assert ((samples.mean(dim=0) - mean).abs() < 4 * standard_error).all()
    torch.testing.assert_close(samples.T.cov(), covariance, rtol=0, atol=0.03)
    again = model.sample(200_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_likelihood_never_decreases_and_tol_stops_the_loop(covariance_type):
    data = get_toy_distribution("8gaussians").sample(400, generator=torch.Generator().manual_seed(0)).double()
    model = GaussianMixture(5, 2, covariance_type).double()
    result = fit_em(model, data, max_iter=40, tol=0.0, generator=torch.Generator().manual_seed(0))
    assert len(result.history) == 41
    assert (np.diff(result.history) >= -1e-12).all()
    assert result.history[-1] > result.history[0] + 0.1
    model = GaussianMixture(5, 2, covariance_type).double()
    stopped = fit_em(model, data, max_iter=500, tol=1e-4, generator=torch.Generator().manual_seed(0))
    assert stopped.history == result.history[: len(stopped.history)]
    assert stopped.converged and abs(stopped.history[-1] - stopped.history[-2]) < 1e-4
    assert all(abs(b - a) >= 1e-4 for a, b in zip(stopped.history[:-2], stopped.history[1:-1], strict=True))


def test_identical_components_stay_identical_forever():
    data = two_clusters()
    cov = [[1.0, 0.2], [0.2, 0.5]]
    model = mixture("full", [0.3, 0.3, 0.4], [[0.5, 0.5], [0.5, 0.5], [-1.0, 0.0]], [cov, cov, [[2.0, 0], [0, 2.0]]])
    for _ in range(20):
        m_step(model, data, e_step(model, data)[0], reg_covar=0.0)
        for tensor in parameters(model):
            np.testing.assert_allclose(tensor[0], tensor[1], rtol=0, atol=1e-12)
    assert np.abs(model.means[0].detach().numpy() - model.means[2].detach().numpy()).max() > 0.5


def _one_step_by_hand(x: torch.Tensor, variances: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Responsibilities of two equal-weight, zero-mean components N(0, v_k), and the new means Σ r x / Σ r."""
    log_normal = torch.stack([-0.5 * x.square() / v - 0.5 * math.log(2 * math.pi * v) for v in variances], dim=1)
    resp = torch.softmax(log_normal, dim=1)
    return resp, (resp * x[:, None]).sum(dim=0) / resp.sum(dim=0)


def test_components_with_the_same_mean_but_different_variances_separate_unless_the_data_are_symmetric():
    # μ_1 = μ_2 = 0, σ_2² = 2σ_1². r_nk depends on x_n only through |x_n − μ|, so after one EM step
    # μ_k' = Σ_n r_nk x_n / N_k: the narrow component averages the central points, the wide one the outer points.
    # The means stay equal (at μ) when the data are symmetric about μ, and separate otherwise; in every case
    # N_1 μ_1' + N_2 μ_2' = Σ_n x_n, so the weighted mean of the means is the data mean.
    uniform = torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    skewed = -uniform.log() - 1.0  # centred exponential
    symmetric = torch.cat([skewed, -skewed])
    for data, separate in ((skewed, True), (symmetric, False)):
        model = mixture("spherical", [0.5, 0.5], [[0.0], [0.0]], [1.0, 2.0])
        m_step(model, data[:, None], e_step(model, data[:, None])[0], reg_covar=0.0)
        resp, means = _one_step_by_hand(data, (1.0, 2.0))
        new_means = model.means.detach()[:, 0]
        torch.testing.assert_close(new_means, means, rtol=0, atol=1e-12)
        torch.testing.assert_close(model.weights.detach() @ new_means, data.mean(), rtol=0, atol=1e-12)
        assert (abs(new_means[0] - new_means[1]) > 0.1) == separate
        if not separate:
            torch.testing.assert_close(new_means, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
        variances = model.covariances.detach()
        assert variances[1] > 1.5 * variances[0]  # the variances stay different


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_is_the_zero_of_the_gradient_of_q(covariance_type):
    data = two_clusters(20)
    g = torch.Generator().manual_seed(3)
    resp = torch.softmax(torch.randn(data.shape[0], 3, generator=g, dtype=torch.float64), dim=1)
    model = GaussianMixture(3, 2, covariance_type).double()
    m_step(model, data, resp.log(), reg_covar=0.0)
    q = expected_complete_log_likelihood(model, data, resp)
    gradients = torch.autograd.grad(q, list(model.parameters()))
    assert max(float(grad.abs().max()) for grad in gradients) < 1e-9
    # and a maximum, not another stationary point: random perturbations of θ lower Q
    best = float(q.detach())
    for _ in range(5):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=g, dtype=parameter.dtype))
        assert float(expected_complete_log_likelihood(model, data, resp).detach()) < best
        m_step(model, data, resp.log(), reg_covar=0.0)


def _isolated_point_data() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    cluster = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    data = torch.cat([cluster, torch.tensor([[10.0, 10.0]], dtype=torch.float64)])
    init = {
        "weights": torch.tensor([0.9, 0.1]),
        "means": torch.tensor([[0.0, 0.0], [10.0, 10.0]]),
        "covariances": torch.tensor([[1.0, 1.0], [1e-4, 1e-4]]),
    }
    return data, init


def test_a_component_collapsing_onto_one_point_is_refused_or_bounded_by_reg_covar():
    data, init = _isolated_point_data()
    model = GaussianMixture(2, 2, "diag").double()
    with pytest.raises(ValueError, match="reg_covar"):
        fit_em(model, data, max_iter=5, init=init, reg_covar=0.0)
    model.set_parameters(**init)
    before = [t.detach().clone() for t in model.parameters()]
    with pytest.raises(ValueError, match="reg_covar"):
        m_step(model, data, e_step(model, data)[0], reg_covar=0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # left unchanged
    result = fit_em(model, data, max_iter=5, tol=0.0, init=init, reg_covar=1e-6)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert np.isfinite(result.history).all() and (np.diff(result.history) >= -1e-9).all()
    torch.testing.assert_close(model.covariances.detach()[1], torch.full((2,), 1e-6, dtype=torch.float64))
    torch.testing.assert_close(model.means.detach()[1], data[-1])


def test_an_empty_component_stays_finite_with_reg_covar():
    data, _ = _isolated_point_data()
    model = GaussianMixture(2, 2, "full").double()
    model.set_parameters(means=torch.tensor([[0.0, 0.0], [1e3, 1e3]]))
    fit_em(model, data, max_iter=3, tol=0.0, init="current", reg_covar=1e-6)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert float(model.weights.detach()[1]) < 1e-12


def test_kmeans_plus_plus_draws_the_next_centre_with_probability_proportional_to_squared_distance():
    data = torch.tensor([[0.0], [1.0], [3.0]])
    # first centre uniform; then P(j | i) = d_ij² / Σ_j d_ij²
    squared = (data - data.T).square()
    expected = (squared / squared.sum(dim=1, keepdim=True)) / 3
    counts = torch.zeros(3, 3)
    g = torch.Generator().manual_seed(0)
    runs = 3000
    for _ in range(runs):
        first, second = kmeans_plus_plus(data, 2, g).tolist()
        counts[first, second] += 1
    frequencies = counts / runs
    assert ((frequencies - expected).abs() <= 4 * (expected * (1 - expected) / runs).sqrt() + 1e-12).all()


def test_kmeans_plus_plus_initialisation_finds_well_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]], dtype=torch.float64)
    sizes = [10, 20, 30, 40]
    data = torch.cat(
        [c + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64) for c, n in zip(centres, sizes, strict=True)]
    )
    for seed in range(10):
        seeds = kmeans_plus_plus(data, 4, torch.Generator().manual_seed(seed))
        assert sorted(torch.cdist(data[seeds], centres).argmin(dim=1).tolist()) == [0, 1, 2, 3]  # one per cluster
        model = GaussianMixture(4, 2, "diag").double()
        initialize_kmeans_plus_plus(model, data, generator=torch.Generator().manual_seed(seed))
        cluster = torch.cdist(model.means.detach(), centres).argmin(dim=1)
        assert sorted(cluster.tolist()) == [0, 1, 2, 3]
        torch.testing.assert_close(model.means.detach(), centres[cluster], rtol=0, atol=0.1)
        expected_weights = torch.tensor(sizes, dtype=torch.float64)[cluster] / 100.0
        torch.testing.assert_close(model.weights.detach(), expected_weights, rtol=0, atol=1e-9)


def test_em_recovers_the_eight_gaussians():
    truth = get_toy_distribution("8gaussians")
    data = truth.sample(2000, generator=torch.Generator().manual_seed(0)).double()
    model = GaussianMixture(8, 2, "full").double()
    fit_em(model, data, max_iter=200, tol=1e-8, generator=torch.Generator().manual_seed(0))
    centres = EightGaussians.centres(truth.radius, dtype=torch.float64)
    distances = torch.cdist(centres, model.means.detach())
    rows, cols = linear_sum_assignment(distances.numpy())
    assert float(distances[rows, cols].max()) < 0.06
    torch.testing.assert_close(model.weights.detach(), torch.full((8,), 1 / 8, dtype=torch.float64), rtol=0, atol=0.03)
    expected_covariance = torch.eye(2, dtype=torch.float64).expand(8, 2, 2) * truth.std**2
    torch.testing.assert_close(model.covariances.detach(), expected_covariance, rtol=0, atol=0.015)


def test_gradient_ascent_reaches_the_em_fixed_point():
    data = two_clusters(40)
    em = GaussianMixture(2, 2, "diag").double()
    em_result = fit_em(em, data, max_iter=500, tol=1e-13, reg_covar=0.0, generator=torch.Generator().manual_seed(0))
    # an EM fixed point is a stationary point of the log-likelihood
    loss = -em.log_prob(data).mean()
    assert max(float(g.abs().max()) for g in torch.autograd.grad(loss, list(em.parameters()))) < 1e-6
    model = GaussianMixture(2, 2, "diag").double()
    model.load_state_dict(em.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=g, dtype=parameter.dtype))
    history = fit_gradient(model, data, num_steps=400, learning_rate=0.03)
    assert history[0] < em_result.history[-1] - 0.05
    assert float(model.log_prob(data).mean().detach()) == pytest.approx(em_result.history[-1], abs=1e-5)


def test_save_and_load_keep_float64_parameters_exactly(tmp_path):
    model = mixture("full", [0.3, 0.7], [[0.0, 1.0], [2.0, -1.0]], [[[1.0, 0.4], [0.4, 0.5]], [[0.3, 0.0], [0.0, 2.0]]])
    model.save_pretrained(tmp_path)
    loaded = GaussianMixture.from_pretrained(tmp_path, torch_dtype=torch.float64)
    assert loaded.config.covariance_type == "full"
    for ours, theirs in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs)


def test_bad_inputs_are_refused_with_the_argument_named():
    model = GaussianMixture(3, 2, "full")
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixture(3, 2, "tied")
    with pytest.raises(ValueError, match="num_components"):
        GaussianMixture(0, 2)
    with pytest.raises(ValueError, match="x"):
        model.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="data"):
        fit_em(model, torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="data"):
        fit_em(model, torch.zeros(10, 3))
    with pytest.raises(ValueError, match="num_components"):
        fit_em(model, torch.randn(2, 2))
    with pytest.raises(ValueError, match="reg_covar"):
        fit_em(model, torch.randn(10, 2), reg_covar=-1.0)
    with pytest.raises(ValueError, match="init"):
        fit_em(model, torch.randn(10, 2), init="random")
    with pytest.raises(ValueError, match="covariances"):
        model.set_parameters(covariances=torch.tensor([[[1.0, 2.0], [2.0, 1.0]]] * 3))
    with pytest.raises(ValueError, match="weights"):
        model.set_parameters(weights=torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="num_clusters"):
        kmeans_plus_plus(torch.zeros(5, 2), 2)
    with pytest.raises(TypeError, match="num_samples"):
        model.sample(1.5)
