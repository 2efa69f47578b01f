"""FiniteDataVelocity: the exact marginal flow-matching velocity of a finite data set."""

import math

import pytest
import torch

from hfgen.models.finite_data_velocity import FiniteDataVelocity
from hfgen.pipelines.flow_matching import FlowMatchingPipeline
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler

DATA_2D = [[1.0, 0.0], [-1.0, 0.5], [0.25, -1.25], [2.0, 2.0]]  # exact in float32, the buffer dtype
DATA_1D = [[-1.0], [0.5], [2.0]]


def test_at_time_zero_it_is_the_data_mean_minus_x():
    model = FiniteDataVelocity(DATA_2D).double()
    x = torch.randn(9, 2, dtype=torch.float64)
    expected = torch.tensor(DATA_2D, dtype=torch.float64).mean(0) - x
    torch.testing.assert_close(model(x, 0.0).sample, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("t", [0.05, 0.3, 0.6, 0.9, 0.97])
def test_one_dimensional_continuity_equation_holds(t):
    # p_t = (1/n) Σ_i N(t x_i, (1 − t)²) is the law of x_t = (1 − t) x_0 + t x_1; the velocity must transport it:
    # ∂_t p + ∂_x (p v) = 0, here with both derivatives by autograd in float64.
    model = FiniteDataVelocity(DATA_1D).double()
    data = torch.tensor(DATA_1D, dtype=torch.float64)[:, 0]
    x = torch.linspace(-3.0, 4.0, 141, dtype=torch.float64).requires_grad_(True)
    time = torch.full((141,), t, dtype=torch.float64, requires_grad=True)
    std = 1 - time[:, None]
    log_components = -0.5 * ((x[:, None] - time[:, None] * data) / std) ** 2 - torch.log(std * math.sqrt(2 * math.pi))
    density = torch.logsumexp(log_components, dim=1).exp() / len(DATA_1D)
    flux = density * model(x[:, None], time).sample[:, 0]
    (d_density_dt,) = torch.autograd.grad(density.sum(), time, retain_graph=True)
    (d_flux_dx,) = torch.autograd.grad(flux.sum(), x)
    assert density.max() > 0.05
    assert (d_density_dt + d_flux_dx).abs().max() < 1e-4


def test_it_is_the_conditional_expectation_of_the_path_velocity():
    # v_t(x) = E[x_1 − x_0 | x_t = x]: regress x_1 − x_0 on x_t by drawing x_0 given x_t = x and x_1 = x_i,
    # i.e. weights w_i and x_0 = (x − t x_i)/(1 − t), the conditional velocity being (x_i − x)/(1 − t).
    model = FiniteDataVelocity(DATA_2D).double()
    x, t = torch.tensor([[0.4, -0.2]], dtype=torch.float64), 0.5
    data = torch.tensor(DATA_2D, dtype=torch.float64)
    log_likelihood = torch.distributions.Normal(t * data, 1 - t).log_prob(x).sum(1)
    weights = torch.softmax(log_likelihood, dim=0)
    expected = (weights[:, None] * (data - (x - t * data) / (1 - t))).sum(0)
    torch.testing.assert_close(model(x, t).sample[0], expected)
    torch.testing.assert_close(model.weights(x, t)[0], weights)


def test_euler_sampling_lands_on_the_data_points():
    model = FiniteDataVelocity(DATA_2D)
    pipe = FlowMatchingPipeline(model, FlowMatchEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    samples = pipe(num_samples=200, num_inference_steps=400, generator=torch.Generator().manual_seed(0)).samples
    distance = torch.cdist(samples, torch.tensor(DATA_2D)).min(dim=1).values
    assert distance.max() < 1e-3
    hits = torch.cdist(samples, torch.tensor(DATA_2D)).argmin(dim=1).bincount(minlength=len(DATA_2D))
    assert (hits > 0).all(), "every data point is reached"


def test_save_and_load(tmp_path):
    model = FiniteDataVelocity(DATA_2D)
    assert model.config.dim == 2 and model.dtype == torch.float32
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = FiniteDataVelocity.from_pretrained(tmp_path)
    assert torch.equal(loaded.data, model.data) and loaded.config.dim == 2
    x = torch.randn(5, 2)
    torch.testing.assert_close(loaded(x, torch.full((5,), 0.4)).sample, model(x, 0.4).sample)


def test_bad_inputs():
    model = FiniteDataVelocity(DATA_2D)
    with pytest.raises(ValueError, match=r"timestep.*\[0, 1\)"):
        model(torch.zeros(3, 2), 1.0)
    with pytest.raises(ValueError, match=r"timestep.*\[0, 1\)"):
        model(torch.zeros(3, 2), -0.1)
    with pytest.raises(ValueError, match="timestep"):
        model(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"sample.*\(N, 2\)"):
        model(torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="data_points"):
        FiniteDataVelocity([[0.0, float("nan")]])
    with pytest.raises(ValueError, match="data_points"):
        FiniteDataVelocity([])
    with pytest.raises(ValueError, match="dim"):
        FiniteDataVelocity(DATA_2D, dim=3)
