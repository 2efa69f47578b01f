"""MADE: the autoregressive property by autograd, exact normalisation by enumeration, and exact sampling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from hfgen.models.made import MADE


def made(scale: float = 3.0, torch_seed: int = 0, **kwargs) -> MADE:
    """A float64 MADE with weights scaled up by ``scale`` so that its conditionals are far from uniform."""
    torch.manual_seed(torch_seed)
    model = MADE(**kwargs).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    return model


def all_binary_vectors(dim: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=dim)), dtype=torch.float64)


def ranks(order: torch.Tensor) -> torch.Tensor:
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


@pytest.mark.parametrize(
    "kwargs",
    [
        {"conditional": "bernoulli", "order": "natural"},
        {"conditional": "bernoulli", "order": "random", "num_masks": 3},
        {"conditional": "gaussian_mixture", "num_components": 3, "order": [2, 0, 4, 1, 3]},
        {"conditional": "gaussian_mixture", "num_components": 2, "order": "random", "num_masks": 2},
        {"conditional": "bernoulli", "order": "random", "num_masks": 2, "direct_connections": True},
        {"conditional": "gaussian_mixture", "num_components": 2, "order": [2, 0, 4, 1, 3], "direct_connections": True},
    ],
)
def test_conditional_parameters_depend_only_on_earlier_variables(kwargs):
    model = made(dim=5, hidden_sizes=[24, 24], **kwargs)
    x = torch.randn(1, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for m in range(model.num_masks):
        order = model.orders[m]
        if isinstance(kwargs["order"], list):
            assert order.tolist() == kwargs["order"]

        def parameters(inputs: torch.Tensor, mask_index: int = m) -> torch.Tensor:
            out = model(inputs, mask_index=mask_index)
            fields = [out.logits] if out.means is None else [out.logits, out.means, out.log_scales]
            return torch.cat([field.reshape(1, 5, -1) for field in fields], dim=-1)[0]  # (D, P)

        jacobian = torch.autograd.functional.jacobian(parameters, x)[:, :, 0, :]  # (D, P, D)
        rank = ranks(order)
        for d, j in itertools.product(range(5), range(5)):
            if rank[j] >= rank[d]:
                assert torch.count_nonzero(jacobian[d, :, j]) == 0, (m, d, j)
        # the last variable of the order does read the first one
        assert torch.count_nonzero(jacobian[order[-1], :, order[0]]) > 0


@pytest.mark.parametrize(
    "num_masks, order, direct",
    [(1, "natural", False), (1, "random", False), (3, "random", False), (2, "natural", False), (2, "random", True)],
)
def test_bernoulli_probabilities_sum_to_one_over_all_binary_vectors(num_masks, order, direct):
    model = made(dim=10, hidden_sizes=[32], num_masks=num_masks, order=order, direct_connections=direct)
    x = all_binary_vectors(10)
    with torch.no_grad():
        log_p = model.log_prob(x)
        assert float(torch.logsumexp(log_p, dim=0)) == pytest.approx(0.0, abs=1e-10)
        assert float(log_p.max() - log_p.min()) > 3  # far from uniform, so the sum is a real check
        per_mask = torch.stack([model.log_prob(x, mask_index=m) for m in range(num_masks)])
    assert torch.logsumexp(per_mask, dim=1).abs().max() < 1e-10
    # the ensemble is the average of the probabilities: log p = logmeanexp_m log p_m
    torch.testing.assert_close(log_p, torch.logsumexp(per_mask, dim=0) - math.log(num_masks), rtol=0, atol=1e-12)


@pytest.mark.parametrize("conditional", ["bernoulli", "gaussian_mixture"])
def test_log_prob_is_the_chain_rule_of_the_conditionals(conditional):
    model = made(dim=4, hidden_sizes=[16], conditional=conditional, num_components=3, order=[3, 1, 0, 2])
    g = torch.Generator().manual_seed(2)
    if conditional == "bernoulli":
        x = torch.randint(0, 2, (20, 4), generator=g).double()
    else:
        x = torch.randn(20, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
        if conditional == "bernoulli":
            conditionals = torch.distributions.Bernoulli(logits=out.logits)
        else:
            conditionals = torch.distributions.MixtureSameFamily(
                torch.distributions.Categorical(logits=out.logits),
                torch.distributions.Normal(out.means, out.log_scales.exp()),
            )
        torch.testing.assert_close(model.log_prob(x), conditionals.log_prob(x).sum(dim=1), rtol=0, atol=1e-12)


def test_sampling_frequencies_match_the_model_probabilities():
    model = made(dim=4, hidden_sizes=[16], num_masks=2, order="random", torch_seed=3)
    states = all_binary_vectors(4)
    with torch.no_grad():
        probabilities = model.log_prob(states).exp()
    assert float(probabilities.max()) > 2 / 16
    samples = model.sample(40_000, generator=torch.Generator().manual_seed(0))
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    index = (samples * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).sum(dim=1).long()
    counts = torch.bincount(index, minlength=16).double()
    assert 0.5 * float((counts / counts.sum() - probabilities).abs().sum()) < 0.015  # total variation
    assert chisquare(counts.numpy(), (probabilities * counts.sum()).numpy()).pvalue > 1e-3
    assert torch.equal(samples, model.sample(40_000, generator=torch.Generator().manual_seed(0)))


def _grid(half_width: float, cells: int) -> tuple[torch.Tensor, float]:
    step = 2 * half_width / cells
    axis = -half_width + step * (torch.arange(cells, dtype=torch.float64) + 0.5)
    return torch.cartesian_prod(axis, axis), step * step


def test_gaussian_mixture_density_integrates_to_one_and_sampling_matches_its_moments():
    # weights × 1.5: conditional log σ between about −4 and 3 on the grid (× 3 would give −35 … 25)
    model = made(1.5, 1, dim=2, hidden_sizes=[16, 16], conditional="gaussian_mixture", num_components=3, num_masks=2)
    with torch.no_grad():
        grid, area = _grid(12.0, 400)
        density = model.log_prob(grid).exp()
    assert abs(float(density.sum() * area) - 1) < 1e-3
    mean = (density[:, None] * grid).sum(dim=0) * area
    centred = grid - mean
    covariance = (density[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(dim=0) * area
    samples = model.sample(100_000, generator=torch.Generator().manual_seed(0))
    standard_error = (covariance.diagonal() / samples.shape[0]).sqrt()
    assert ((samples.mean(dim=0) - mean).abs() < 4 * standard_error).all()
    torch.testing.assert_close(torch.cov(samples.T), covariance, rtol=0.05, atol=0.02)


def test_images_are_accepted_flattened_or_as_nchw_and_sampled_in_the_image_shape():
    model = made(dim=6, hidden_sizes=[8], image_shape=[1, 2, 3])
    samples = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (7, 1, 2, 3) and set(samples.unique().tolist()) <= {0.0, 1.0}
    with torch.no_grad():
        assert torch.equal(model.log_prob(samples), model.log_prob(samples.reshape(7, 6)))


def test_direct_connections_are_a_dense_logistic_regression_on_every_earlier_variable():
    # with the hidden path cut (output weights 0), logit d is b_d + Σ_j V[d, j] x_j over exactly the j ranked before d
    model = made(dim=6, hidden_sizes=[8], order="random", num_masks=2, direct_connections=True)
    with torch.no_grad():
        model.output.weight.zero_()
    x = torch.randn(1, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for m in range(2):
        jacobian = torch.autograd.functional.jacobian(lambda v, m=m: model(v, mask_index=m).logits[0], x)[:, 0, :]
        rank = ranks(model.orders[m])
        earlier = rank[:, None] > rank[None, :]
        torch.testing.assert_close(jacobian, model.direct.weight * earlier, rtol=0, atol=1e-12)
        assert torch.equal(jacobian != 0, rank[:, None] > rank[None, :])
    assert MADE(dim=4, hidden_sizes=[8]).direct is None  # off by default, as saved models have it


def test_bad_inputs_are_refused_with_the_argument_named():
    model = MADE(dim=4, hidden_sizes=[8])
    with pytest.raises(ValueError, match="x.*outside"):
        model.log_prob(torch.tensor([[0.0, 1.0, 2.0, 0.0]]))
    with pytest.raises(ValueError, match="x.*outside"):
        model.log_prob(torch.tensor([[0.0, 1.0, -0.5, 0.0]]))
    with pytest.raises(ValueError, match="x.*binar"):
        model.log_prob(torch.tensor([[0.0, 1.0, 0.5, 0.0]]))
    with pytest.raises(ValueError, match="x"):
        model.log_prob(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="x"):
        model.log_prob(torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match="x"):
        model.log_prob(torch.tensor([[0.0, float("nan"), 1.0, 0.0]]))
    with pytest.raises(ValueError, match="mask_index"):
        model.log_prob(torch.zeros(2, 4), mask_index=1)
    points = MADE(dim=2, hidden_sizes=[8], conditional="gaussian_mixture")
    with pytest.raises(ValueError, match="x"):
        points.log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="x"):
        points.log_prob(torch.zeros(3, 1, 1, 2))
    with pytest.raises(ValueError, match="order"):
        MADE(dim=3, order=[0, 1, 1])
    with pytest.raises(ValueError, match="image_shape"):
        MADE(dim=4, image_shape=[1, 3, 3])
    with pytest.raises(ValueError, match="dim"):
        MADE(dim=1)
    with pytest.raises(ValueError, match="conditional"):
        MADE(dim=3, conditional="gaussian")
    with pytest.raises(ValueError, match="hidden_sizes"):
        MADE(dim=3, hidden_sizes=[8, 0])
    with pytest.raises(ValueError, match="direct_connections"):
        MADE(dim=3, direct_connections="yes")
    with pytest.raises(TypeError, match="num_samples"):
        model.sample(2.0)
