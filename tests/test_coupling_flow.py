"""RealNVP coupling flow: exact inverse, log-determinants by autograd, and the density of a linear flow."""

from __future__ import annotations

import pytest
import torch

from hfgen.models.coupling_flow import ActNorm, AffineCoupling, CouplingFlow, InvertibleLinear

A = torch.tensor([[3 / 5, 2 / 5], [1 / 5, 4 / 5]], dtype=torch.float64)


def random_flow(dim: int = 3, dtype: torch.dtype = torch.float64, **kwargs) -> CouplingFlow:
    """A flow whose every parameter is perturbed, so that no layer is the identity."""
    torch.manual_seed(0)
    flow = CouplingFlow(dim=dim, hidden_size=16, **kwargs).to(dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=g, dtype=dtype))
    return flow


FLOW_VARIANTS = [
    {"num_couplings": 4},
    {"num_couplings": 3, "invertible_linear": True},
    {"num_couplings": 2, "actnorm": False, "num_hidden_layers": 1},
]


@pytest.mark.parametrize("kwargs", FLOW_VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_undoes_forward(kwargs, dtype):
    flow = random_flow(dtype=dtype, **kwargs)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(2), dtype=dtype)
    with torch.no_grad():
        z, log_det = flow(x, return_dict=False)
        back, inverse_log_det = flow.inverse(z, return_dict=False)
        torch.testing.assert_close(back, x, rtol=0, atol=1e-5)
        torch.testing.assert_close(inverse_log_det, -log_det, rtol=0, atol=1e-5)
        torch.testing.assert_close(flow(flow.inverse(x).sample).sample, x, rtol=0, atol=1e-5)
        assert (z - x).abs().max() > 0.1  # not the identity


@pytest.mark.parametrize("kwargs", FLOW_VARIANTS)
def test_log_determinants_are_those_of_the_autograd_jacobians(kwargs):
    flow = random_flow(**kwargs)
    points = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for point in points:
        for transform in (flow, flow.inverse):
            jacobian = torch.autograd.functional.jacobian(lambda p, t=transform: t(p[None]).sample[0], point)
            log_det = transform(point[None]).log_det[0].detach()
            assert float(log_det) == pytest.approx(float(torch.linalg.slogdet(jacobian).logabsdet), abs=1e-5)
            assert abs(float(log_det)) > 1e-3


def linear_flow() -> CouplingFlow:
    """The flow x = A z: forward (data → latent) is A⁻¹ in the first invertible linear layer, every other layer
    the identity (couplings start with a zero last layer, ActNorm with b = 0, s = 0)."""
    flow = CouplingFlow(dim=2, num_couplings=2, hidden_size=8, invertible_linear=True).double()
    linears = [layer for layer in flow.layers if isinstance(layer, InvertibleLinear)]
    with torch.no_grad():
        linears[0].weight.copy_(torch.linalg.inv(A))
        for layer in linears[1:]:
            layer.weight.copy_(torch.eye(2))
    return flow


def test_a_linear_flow_has_the_gaussian_density_of_a_a_transpose():
    flow = linear_flow()
    target = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), A @ A.T)
    y = 2 * torch.randn(100, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(y), target.log_prob(y), rtol=0, atol=1e-6)
    samples = flow.sample(10, generator=torch.Generator().manual_seed(5))
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(samples, z @ A.T, rtol=0, atol=1e-12)


def test_new_couplings_and_actnorms_are_identities():
    flow = CouplingFlow(dim=2, num_couplings=3, hidden_size=8).double()
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    with torch.no_grad():
        z, log_det = flow(x, return_dict=False)
    assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(10, dtype=torch.float64))
    assert sum(isinstance(layer, AffineCoupling) for layer in flow.layers) == 3
    masks = [layer.mask.tolist() for layer in flow.layers if isinstance(layer, AffineCoupling)]
    assert masks == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]  # alternating


def test_data_dependent_actnorm_standardises_its_input_batch():
    flow = random_flow(invertible_linear=True)
    data = 3 * torch.randn(200, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64) + 1
    flow.initialize_actnorm(data)
    h = data
    with torch.no_grad():
        for layer in flow.layers:
            h = layer(h)[0]
            if isinstance(layer, ActNorm):
                torch.testing.assert_close(h.mean(dim=0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
                torch.testing.assert_close(h.std(dim=0, unbiased=False), torch.ones(3, dtype=torch.float64))


def test_sampling_is_repeatable_and_lands_where_the_density_is():
    flow = random_flow(dim=2)
    first = flow.sample(500, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, flow.sample(500, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        z = flow(first).sample
    # the samples are f⁻¹ of standard normal draws
    torch.testing.assert_close(z, torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=z.dtype))


def test_bad_inputs_are_refused_with_the_argument_named():
    flow = CouplingFlow(dim=2, hidden_size=8)
    with pytest.raises(ValueError, match="dim"):
        CouplingFlow(dim=1)
    with pytest.raises(ValueError, match="num_couplings"):
        CouplingFlow(num_couplings=0)
    with pytest.raises(TypeError, match="actnorm"):
        CouplingFlow(actnorm=1)
    with pytest.raises(ValueError, match="x"):
        flow.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x"):
        flow.log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="z"):
        flow.inverse(torch.zeros(4))
    with pytest.raises(ValueError, match="x"):
        flow.initialize_actnorm(torch.ones(5, 2))
    with pytest.raises(ValueError, match="num_samples"):
        flow.sample(-1)
