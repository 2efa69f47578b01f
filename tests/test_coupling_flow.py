"""Coupling flows (RealNVP and rational-quadratic splines): exact inverse, log-determinants by autograd, the
spline's knots and derivatives, normalisation on a grid, the density of a linear flow, save and load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfgen.models.coupling_flow import (
    ActNorm,
    AffineCoupling,
    CouplingFlow,
    InvertibleLinear,
    LULinear,
    OctaveEncoding,
    SplineCoupling,
    rational_quadratic_spline,
)

A = torch.tensor([[3 / 5, 2 / 5], [1 / 5, 4 / 5]], dtype=torch.float64)


def random_flow(dim: int = 3, dtype: torch.dtype = torch.float64, noise: float = 0.3, **kwargs) -> CouplingFlow:
    """A flow whose every parameter is perturbed by ``noise`` standard normals, so that no layer is the identity."""
    torch.manual_seed(0)
    flow = CouplingFlow(dim=dim, hidden_size=16, **kwargs).to(dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(noise * torch.randn(parameter.shape, generator=g, dtype=dtype))
    return flow


FLOW_VARIANTS = [
    {"num_couplings": 4},
    {"num_couplings": 3, "invertible_linear": True},
    {"num_couplings": 2, "actnorm": False, "num_hidden_layers": 1},
    {"num_couplings": 4, "coupling_type": "spline"},
    {"num_couplings": 3, "coupling_type": "spline", "invertible_linear": True, "num_bins": 5, "tail_bound": 2.0},
    {"num_couplings": 3, "coupling_type": "spline", "activation": "relu", "num_bins": 16},
    {"num_couplings": 2, "activation": "relu"},
    {"num_couplings": 3, "coupling_type": "spline", "invertible_linear": True, "linear_parametrization": "lu"},
    {"num_couplings": 2, "invertible_linear": True, "linear_parametrization": "lu", "activation": "relu"},
    {"num_couplings": 3, "coupling_type": "spline", "unconditional_splines": True, "num_bins": 6},
    {
        "num_couplings": 2,
        "coupling_type": "spline",
        "unconditional_splines": True,
        "invertible_linear": True,
        "linear_parametrization": "lu",
        "activation": "relu",
    },
    {"num_couplings": 3, "coupling_type": "spline", "num_position_frequencies": 3, "activation": "relu"},
    {"num_couplings": 2, "num_position_frequencies": 2},
]
LEGACY = Path(__file__).parent / "fixtures" / "legacy_coupling_flow"
#: the stored numbers were computed on another machine (float32 rounding differs by a few ulps per operation)
STORED_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _noise(kwargs: dict, dtype: torch.dtype) -> float:
    """Splines of strongly perturbed parameters have slopes from 1e-3 to 1e3, whose float32 inverse loses ~1e-4:
    single precision gets milder (still far from identity) splines."""
    return 0.1 if kwargs.get("coupling_type") == "spline" and dtype == torch.float32 else 0.3


@pytest.mark.parametrize("kwargs", FLOW_VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_undoes_forward(kwargs, dtype):
    flow = random_flow(dtype=dtype, noise=_noise(kwargs, dtype), **kwargs)
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
    with pytest.raises(ValueError, match="coupling_type"):
        CouplingFlow(coupling_type="additive")
    with pytest.raises(ValueError, match="`activation` must be one of .*got 'swish'"):
        CouplingFlow(activation="swish")
    with pytest.raises(ValueError, match="`linear_parametrization` must be one of .*got 'qr'"):
        CouplingFlow(linear_parametrization="qr")
    with pytest.raises(ValueError, match="`unconditional_splines` needs `coupling_type`='spline', got 'affine'"):
        CouplingFlow(unconditional_splines=True)
    with pytest.raises(TypeError, match="unconditional_splines"):
        CouplingFlow(coupling_type="spline", unconditional_splines=1)
    with pytest.raises(ValueError, match="`num_position_frequencies` must be an int >= 0, got -1"):
        CouplingFlow(num_position_frequencies=-1)
    with pytest.raises(ValueError, match="num_bins"):
        CouplingFlow(coupling_type="spline", num_bins=1)
    for bound in (0.0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="tail_bound"):
            CouplingFlow(coupling_type="spline", tail_bound=bound)
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


def spline_parameters(shape: tuple[int, ...], num_bins: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    widths, heights = (torch.randn(*shape, num_bins, generator=g, dtype=torch.float64) for _ in range(2))
    return widths, heights, torch.randn(*shape, num_bins - 1, generator=g, dtype=torch.float64)


def test_the_spline_passes_through_its_knots_with_their_derivatives_and_is_the_identity_outside():
    bound, num_bins = 2.5, 6
    widths, heights, derivatives = spline_parameters((), num_bins, 0)
    # knots from the definition (softmax with a floor, cumulated on [−B, B]); δ = 1e-3 + softplus(u + c), δ(0) = 1
    floor = 1e-3

    def knots(u: torch.Tensor) -> torch.Tensor:
        sizes = floor + (1 - floor * num_bins) * torch.softmax(u, dim=-1)
        return torch.cat([torch.zeros(1, dtype=u.dtype), torch.cumsum(sizes, dim=-1)]) * 2 * bound - bound

    shift = torch.log(torch.expm1(torch.tensor(1 - floor, dtype=torch.float64)))
    slopes = torch.cat([torch.ones(1), floor + torch.nn.functional.softplus(derivatives + shift), torch.ones(1)])
    x_knots, y_knots = knots(widths), knots(heights)
    x = x_knots.clone().requires_grad_(True)
    y, log_derivative = rational_quadratic_spline(
        x, *(p.expand(num_bins + 1, -1) for p in (widths, heights)), derivatives.expand(num_bins + 1, -1), bound
    )
    torch.testing.assert_close(y.detach(), y_knots, rtol=0, atol=1e-12)
    (autograd_slope,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(autograd_slope, slopes, rtol=1e-9, atol=0)
    torch.testing.assert_close(log_derivative.detach(), slopes.log(), rtol=0, atol=1e-9)
    outside = torch.tensor([-7.0, -2.5001, 2.5001, 30.0], dtype=torch.float64)
    params = (p.expand(4, -1) for p in (widths, heights, derivatives))
    y_out, log_out = rational_quadratic_spline(outside, *params, bound)
    assert torch.equal(y_out, outside) and torch.equal(log_out, torch.zeros(4, dtype=torch.float64))


def test_the_spline_is_increasing_and_its_inverse_undoes_it():
    widths, heights, derivatives = spline_parameters((2000,), 8, 1)
    x = torch.linspace(-4, 4, 2000, dtype=torch.float64)
    shared = [p[:1].expand(2000, -1) for p in (widths, heights, derivatives)]
    y, log_derivative = rational_quadratic_spline(x, *shared, 3.0)
    assert bool((y.diff() > 0).all())
    back, inverse_log_derivative = rational_quadratic_spline(y, *shared, 3.0, inverse=True)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(inverse_log_derivative, -log_derivative, rtol=0, atol=1e-12)
    for inverse in (False, True):  # one spline's parameters broadcast over the points: the same numbers
        broadcast = rational_quadratic_spline(x, *(p[0] for p in (widths, heights, derivatives)), 3.0, inverse)
        expanded = rational_quadratic_spline(x, *shared, 3.0, inverse)
        assert all(torch.equal(a, b) for a, b in zip(broadcast, expanded, strict=True))
    y, _ = rational_quadratic_spline(x, widths, heights, derivatives, 3.0)  # a different spline per point
    torch.testing.assert_close(
        rational_quadratic_spline(y, widths, heights, derivatives, 3.0, True)[0], x, rtol=0, atol=1e-12
    )


def test_new_spline_couplings_are_identities_and_alternate():
    flow = CouplingFlow(dim=2, num_couplings=3, hidden_size=8, coupling_type="spline").double()
    x = 2 * torch.randn(50, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    with torch.no_grad():
        z, log_det = flow(x, return_dict=False)
    torch.testing.assert_close(z, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_det, torch.zeros(50, dtype=torch.float64), rtol=0, atol=1e-12)
    masks = [layer.mask.tolist() for layer in flow.layers if isinstance(layer, SplineCoupling)]
    assert masks == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("coupling_type", ["affine", "spline"])
def test_a_two_dimensional_flow_density_integrates_to_one(coupling_type):
    flow = random_flow(dim=2, noise=0.15, num_couplings=4, invertible_linear=True, coupling_type=coupling_type)
    half_width, cells = 8.0, 200
    step = 2 * half_width / cells
    axis = -half_width + step * (torch.arange(cells, dtype=torch.float64) + 0.5)  # midpoint rule
    with torch.no_grad():
        density = flow.log_prob(torch.cartesian_prod(axis, axis)).exp().reshape(cells, cells)
    assert abs(float(density.sum()) * step * step - 1) <= 1e-3
    assert max(float(density[[0, -1]].max()), float(density[:, [0, -1]].max())) < 1e-6


@pytest.mark.parametrize("coupling_type", ["affine", "spline"])
def test_save_and_load_give_the_same_flow(tmp_path, coupling_type):
    flow = random_flow(2, torch.float32, 0.15, invertible_linear=True, coupling_type=coupling_type, num_bins=4)
    flow.save_pretrained(tmp_path)
    loaded = CouplingFlow.from_pretrained(tmp_path)
    assert loaded.config.coupling_type == coupling_type and loaded.config.num_bins == 4
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), flow.log_prob(x))
    generator = torch.Generator().manual_seed(10)
    assert torch.equal(loaded.sample(7, generator), flow.sample(7, torch.Generator().manual_seed(10)))


def test_a_saved_flow_from_before_the_spline_option_loads_as_the_same_affine_flow(tmp_path):
    flow = random_flow(2, torch.float32, invertible_linear=True)
    flow.save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("coupling_type", "num_bins", "tail_bound"):
        del config[key]
    config_path.write_text(json.dumps(config))
    loaded = CouplingFlow.from_pretrained(tmp_path)
    assert loaded.config.coupling_type == "affine"
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), flow.log_prob(x))


@pytest.mark.parametrize(("activation", "module"), [("silu", torch.nn.SiLU), ("relu", torch.nn.ReLU)])
@pytest.mark.parametrize("coupling_type", ["affine", "spline"])
def test_the_coupling_networks_use_the_configured_activation(activation, module, coupling_type):
    flow = CouplingFlow(dim=2, num_couplings=2, hidden_size=8, coupling_type=coupling_type, activation=activation)
    nets = [layer.net for layer in flow.layers if isinstance(layer, AffineCoupling | SplineCoupling)]
    activations = [m for net in nets for m in net if not isinstance(m, torch.nn.Linear)]
    assert len(activations) == 2 * 2 and all(type(m) is module for m in activations)


def test_a_flow_saved_before_the_activation_option_loads_as_the_same_silu_flow():
    """``legacy_coupling_flow/model`` was saved by the code of commit 15177ba (3 spline couplings with invertible
    linear layers, 5 bins on [−2.5, 2.5], every parameter perturbed), whose config has no ``activation``;
    ``expected.safetensors`` holds that code's log-densities of 64 points and its 64 samples from a generator
    seeded 0."""
    flow = CouplingFlow.from_pretrained(LEGACY / "model")
    expected = load_file(LEGACY / "expected.safetensors")
    assert flow.config.activation == "silu"
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(expected["points"]), expected["log_prob"], **STORED_TOLERANCE)
    samples = flow.sample(64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, expected["samples"], **STORED_TOLERANCE)


def random_lu_linear(dim: int, seed: int) -> LULinear:
    layer = LULinear(dim).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=g, dtype=torch.float64))
    return layer


def test_the_lu_linear_map_is_l_times_u_with_the_log_determinant_of_slogdet_and_an_exact_inverse():
    layer = random_lu_linear(4, 12)
    lower, upper = layer.factors()
    # the factors: unit lower- and upper-triangular with the diagonal exp(s), whatever the unused entries hold
    assert torch.equal(lower.triu(), torch.eye(4, dtype=torch.float64))
    assert torch.equal(upper.tril(-1), torch.zeros(4, 4, dtype=torch.float64))
    torch.testing.assert_close(upper.diagonal(), layer.log_diagonal.exp(), rtol=0, atol=0)
    weight = lower @ upper
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    with torch.no_grad():
        y, log_det = layer(x)
        back, inverse_log_det = layer.inverse(y)
    torch.testing.assert_close(y, x @ weight.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_det, torch.linalg.slogdet(weight).logabsdet.expand(30), rtol=0, atol=1e-12)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(inverse_log_det, -log_det, rtol=0, atol=0)
    assert abs(float(log_det[0])) > 0.1 and (y - x).abs().max() > 0.1  # not the identity


def test_a_new_lu_linear_map_is_the_identity_and_the_flow_uses_it():
    flow = CouplingFlow(dim=3, num_couplings=2, hidden_size=8, invertible_linear=True, linear_parametrization="lu")
    linears = [layer for layer in flow.layers if isinstance(layer, LULinear)]
    assert len(linears) == 2 and not any(isinstance(layer, InvertibleLinear) for layer in flow.layers)
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        y, log_det = linears[0](x)
    assert torch.equal(y, x) and torch.equal(log_det, torch.zeros(10))


def test_unconditional_splines_map_each_kept_coordinate_by_itself_and_start_as_the_identity():
    flow = CouplingFlow(dim=3, num_couplings=2, hidden_size=8, coupling_type="spline", unconditional_splines=True)
    flow = flow.double()
    x = 2 * torch.randn(20, 3, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    with torch.no_grad():
        z, log_det = flow(x, return_dict=False)
    torch.testing.assert_close(z, x, rtol=0, atol=1e-12)  # new: the identity
    torch.testing.assert_close(log_det, torch.zeros(20, dtype=torch.float64), rtol=0, atol=1e-12)
    flow = random_flow(dim=3, num_couplings=1, coupling_type="spline", unconditional_splines=True, actnorm=False)
    coupling = flow.layers[0]
    kept, free = coupling.kept.tolist(), coupling.free.tolist()
    assert (kept, free) == ([0, 2], [1])
    for point in x[:4]:
        jacobian = torch.autograd.functional.jacobian(lambda p: coupling(p[None])[0][0], point)
        # a kept output reads only its own input, through a nontrivial spline: a diagonal block
        assert torch.equal(jacobian[kept][:, free], torch.zeros(2, 1, dtype=torch.float64))
        assert float(jacobian[0, 2]) == 0 and float(jacobian[2, 0]) == 0
        assert abs(float(jacobian[0, 0]) - 1) > 1e-3 or abs(float(jacobian[2, 2]) - 1) > 1e-3


def test_the_octave_encoding_is_x_then_the_sines_and_cosines_of_its_octaves():
    x = torch.tensor([[0.25, -1.0], [0.1, 0.0]], dtype=torch.float64)
    encoded = OctaveEncoding(2).double()(x)
    angles = torch.pi * torch.stack([x[:, 0], 2 * x[:, 0], x[:, 1], 2 * x[:, 1]], dim=1)  # (d, k) flattened
    torch.testing.assert_close(encoded, torch.cat([x, angles.sin(), angles.cos()], dim=1), rtol=0, atol=1e-15)
    flow = CouplingFlow(dim=2, num_couplings=2, hidden_size=8, coupling_type="spline", num_position_frequencies=2)
    nets = [layer.net for layer in flow.layers if isinstance(layer, SplineCoupling)]
    assert all(isinstance(net[0], OctaveEncoding) and net[1].in_features == 2 * (1 + 2 * 2) for net in nets)
    assert all(not isinstance(net[0], OctaveEncoding) for net in [CouplingFlow(dim=2, hidden_size=8).layers[1].net])
