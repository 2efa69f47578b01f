"""Gaussian kernel density estimates against scikit-learn, scipy and closed forms; bandwidth selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import gaussian_kde
from sklearn.neighbors import KernelDensity as SklearnKernelDensity

from hfgen.methods.kde import select_bandwidth
from hfgen.models.kde import KernelDensity, bandwidth_factor


def points(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2.0, dim, dtype=torch.float64)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("bandwidth", [0.3, "scott", "silverman"])
def test_log_prob_matches_scikit_learn(dim, bandwidth):
    data = points(40, dim)
    model = KernelDensity.from_data(data, bandwidth=bandwidth)
    reference = SklearnKernelDensity(kernel="gaussian", bandwidth=model.bandwidth).fit(data.numpy())
    x = points(25, dim, seed=1) * 1.5
    np.testing.assert_allclose(model.log_prob(x).numpy(), reference.score_samples(x.numpy()), rtol=0, atol=1e-8)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_rule_bandwidths_follow_their_formulas_and_scipys_factors(dim):
    data = points(60, dim)
    n = data.shape[0]
    spread = math.sqrt(float(data.var(dim=0, unbiased=True).mean()))
    scott = n ** (-1 / (dim + 4))
    silverman = (n * (dim + 2) / 4) ** (-1 / (dim + 4))
    assert KernelDensity.from_data(data, "scott").bandwidth == pytest.approx(scott * spread, rel=1e-14)
    assert KernelDensity.from_data(data, "silverman").bandwidth == pytest.approx(silverman * spread, rel=1e-14)
    for rule, factor in (("scott", scott), ("silverman", silverman)):
        assert bandwidth_factor(rule, n, dim) == pytest.approx(factor, rel=1e-15)
        assert gaussian_kde(data.T.numpy(), bw_method=rule).factor == pytest.approx(factor, rel=1e-14)


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_one_dimensional_rules_give_scipys_gaussian_kde(rule):
    data = points(50, 1)
    x = torch.linspace(-5, 5, 41, dtype=torch.float64)[:, None]
    reference = gaussian_kde(data[:, 0].numpy(), bw_method=rule).logpdf(x[:, 0].numpy())
    np.testing.assert_allclose(KernelDensity.from_data(data, rule).log_prob(x).numpy(), reference, rtol=0, atol=1e-8)


def test_samples_have_the_data_mean_and_the_data_covariance_plus_h_squared():
    data = points(50, 2)
    h = 0.5
    model = KernelDensity.from_data(data, bandwidth=h)
    samples = model.sample(200_000, generator=torch.Generator().manual_seed(0))
    mean = data.mean(dim=0)
    covariance = torch.cov(data.T, correction=0) + h**2 * torch.eye(2, dtype=torch.float64)
    standard_error = (covariance.diagonal() / samples.shape[0]).sqrt()
    assert ((samples.mean(dim=0) - mean).abs() < 4 * standard_error).all()
    torch.testing.assert_close(torch.cov(samples.T), covariance, rtol=0, atol=0.03)
    assert torch.equal(samples, model.sample(200_000, generator=torch.Generator().manual_seed(0)))


def test_leave_one_out_scores_are_the_held_out_likelihoods_and_the_best_is_their_maximiser():
    data = points(30, 2)
    n, dim = data.shape
    grid = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2]
    selection = select_bandwidth(data, grid, num_folds=n)
    squared = torch.cdist(data, data).square()
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    expected = []
    for h in grid:
        kernel = (-squared / (2 * h * h)).masked_fill(~off_diagonal, -math.inf)
        log_p = torch.logsumexp(kernel, dim=1) - math.log(n - 1) - dim * math.log(h) - dim / 2 * math.log(2 * math.pi)
        expected.append(float(log_p.mean()))
    torch.testing.assert_close(selection.scores, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-10)
    assert selection.bandwidth == grid[int(np.argmax(expected))]
    assert selection.bandwidths.tolist() == grid


def test_k_fold_selection_is_repeatable_and_finds_an_interior_maximum():
    data = points(120, 2)
    grid = np.geomspace(0.01, 10.0, 13).tolist()
    first = select_bandwidth(data, grid, num_folds=4, generator=torch.Generator().manual_seed(0))
    again = select_bandwidth(data, grid, num_folds=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first.scores, again.scores) and first.bandwidth == again.bandwidth
    best = int(first.scores.argmax())
    assert first.bandwidth == grid[best] and 0 < best < len(grid) - 1
    # too narrow or too wide a kernel scores much worse than the chosen one
    assert first.scores[0] < first.scores[best] - 1 and first.scores[-1] < first.scores[best] - 1


def test_save_and_load_keep_the_data_buffer(tmp_path):
    data = points(20, 3)
    model = KernelDensity.from_data(data, bandwidth="silverman")
    model.save_pretrained(tmp_path)
    loaded = KernelDensity.from_pretrained(tmp_path, torch_dtype=torch.float64)
    assert torch.equal(loaded.data, data) and loaded.config.bandwidth == "silverman"
    x = points(5, 3, seed=2)
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("bandwidth", [0.0, -1.0, float("nan"), math.inf])
def test_nonpositive_bandwidths_are_refused(bandwidth):
    with pytest.raises(ValueError, match="bandwidth"):
        KernelDensity.from_data(points(5, 2), bandwidth=bandwidth)


def test_bad_inputs_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="bandwidth"):
        KernelDensity(bandwidth="normal")
    with pytest.raises(TypeError, match="bandwidth"):
        KernelDensity(bandwidth=True)
    with pytest.raises(ValueError, match="data"):
        KernelDensity.from_data(torch.tensor([[0.0, 1.0], [float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="data"):
        KernelDensity.from_data(torch.ones(5, 2), bandwidth="scott")  # no spread for the rule
    with pytest.raises(ValueError, match="data"):
        KernelDensity.from_data(torch.ones(1, 2), bandwidth="silverman")
    model = KernelDensity.from_data(points(10, 2))
    with pytest.raises(ValueError, match="x"):
        model.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x"):
        model.log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="num_folds"):
        select_bandwidth(points(10, 2), [0.1, 1.0], num_folds=11)
    with pytest.raises(ValueError, match="bandwidths"):
        select_bandwidth(points(10, 2), [0.1, -1.0])
    with pytest.raises(ValueError, match="bandwidths"):
        select_bandwidth(points(10, 2), [])
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(0)
