"""DensityPipeline conformance for every likelihood model, and normalisation of every 2-D density on a grid."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from hfgen.data import get_toy_distribution
from hfgen.methods.mixtures import fit_em
from hfgen.models.coupling_flow import CouplingFlow
from hfgen.models.kde import KernelDensity
from hfgen.models.made import MADE
from hfgen.models.mixture import GaussianMixture
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.density import DensityPipeline, DensityPipelineOutput


def eight_gaussians(n: int) -> torch.Tensor:
    return get_toy_distribution("8gaussians").sample(n, generator=torch.Generator().manual_seed(0))


def gaussian_mixture() -> GaussianMixture:
    model = GaussianMixture(num_components=8, dim=2, covariance_type="full")
    fit_em(model, eight_gaussians(400), max_iter=50, generator=torch.Generator().manual_seed(0))
    return model


def kernel_density() -> KernelDensity:
    return KernelDensity.from_data(eight_gaussians(100), bandwidth="scott")


def made_points() -> MADE:
    torch.manual_seed(0)
    return MADE(dim=2, hidden_sizes=[16, 16], conditional="gaussian_mixture", num_components=3, num_masks=2)


def made_images() -> MADE:
    torch.manual_seed(0)
    return MADE(dim=6, hidden_sizes=[16], num_masks=2, order="random", image_shape=[1, 2, 3])


def coupling_flow(coupling_type: str = "affine") -> CouplingFlow:
    torch.manual_seed(0)
    flow = CouplingFlow(dim=2, num_couplings=4, hidden_size=16, invertible_linear=True, coupling_type=coupling_type)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.15 * torch.randn(parameter.shape, generator=g))
    return flow


FACTORIES: dict[str, Callable[[], torch.nn.Module]] = {
    "gaussian_mixture": gaussian_mixture,
    "kernel_density": kernel_density,
    "made_points": made_points,
    "made_images": made_images,
    "coupling_flow": coupling_flow,
    "spline_flow": lambda: coupling_flow("spline"),
}
# half-width of a square [-w, w]² holding all but a negligible part of each 2-D density's mass
HALF_WIDTHS = {
    "gaussian_mixture": 4.5,
    "kernel_density": 6.0,
    "made_points": 12.0,
    "coupling_flow": 10.0,
    "spline_flow": 10.0,
}


def pipeline(name: str) -> DensityPipeline:
    pipe = DensityPipeline(FACTORIES[name]())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(params=sorted(FACTORIES))
def name(request) -> str:
    return request.param


def test_samples_have_the_model_shape_and_are_repeatable(name):
    pipe = pipeline(name)
    output = pipe(num_samples=12, generator=torch.Generator().manual_seed(0))
    assert isinstance(output, DensityPipelineOutput)
    expected_shape = (12, 1, 2, 3) if name == "made_images" else (12, 2)
    assert output.samples.shape == expected_shape and torch.isfinite(output.samples).all()
    again = pipe(num_samples=12, generator=torch.Generator().manual_seed(0)).samples
    other = pipe(num_samples=12, generator=torch.Generator().manual_seed(1)).samples
    assert torch.equal(output.samples, again) and not torch.equal(output.samples, other)
    log_prob = pipe.log_prob(output.samples)
    assert log_prob.shape == (12,) and torch.isfinite(log_prob).all()


def test_save_and_load_give_identical_samples_and_log_prob(name, tmp_path):
    pipe = pipeline(name)
    pipe.save_pretrained(tmp_path)
    assert any(path.suffix == ".safetensors" for path in (tmp_path / "model").iterdir())
    for loader in (DensityPipeline, HfgenPipeline):
        loaded = loader.from_pretrained(tmp_path)
        loaded.set_progress_bar_config(disable=True)
        assert isinstance(loaded, DensityPipeline) and type(loaded.model) is type(pipe.model)
        samples = pipe(num_samples=20, generator=torch.Generator().manual_seed(3)).samples
        assert torch.equal(loaded(num_samples=20, generator=torch.Generator().manual_seed(3)).samples, samples)
        assert torch.equal(loaded.log_prob(samples), pipe.log_prob(samples))
        for ours, theirs in zip(pipe.model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
            assert ours[0] == theirs[0] and torch.equal(ours[1], theirs[1])


def test_tuple_and_numpy_outputs(name):
    pipe = pipeline(name)
    samples = pipe(num_samples=5, generator=torch.Generator().manual_seed(0)).samples
    as_tuple = pipe(num_samples=5, generator=torch.Generator().manual_seed(0), return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1 and torch.equal(as_tuple[0], samples)
    as_numpy = pipe(num_samples=5, generator=torch.Generator().manual_seed(0), output_type="np").samples
    assert isinstance(as_numpy, np.ndarray) and np.array_equal(as_numpy, samples.numpy())


@pytest.mark.parametrize("num_samples, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_num_samples_are_refused(name, num_samples, error):
    with pytest.raises(error, match="num_samples"):
        pipeline(name)(num_samples=num_samples)


def test_bad_output_type_and_model_are_refused():
    with pytest.raises(ValueError, match="output_type"):
        pipeline("kernel_density")(num_samples=3, output_type="pil")
    with pytest.raises(TypeError, match="model"):
        DensityPipeline(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("model_name", sorted(HALF_WIDTHS))
def test_every_two_dimensional_density_integrates_to_one(model_name):
    pipe = DensityPipeline(FACTORIES[model_name]().double())
    half_width, cells = HALF_WIDTHS[model_name], 400
    step = 2 * half_width / cells
    axis = -half_width + step * (torch.arange(cells, dtype=torch.float64) + 0.5)  # midpoint rule
    density = pipe.log_prob(torch.cartesian_prod(axis, axis)).exp()
    assert abs(float(density.sum()) * step * step - 1) <= 1e-3
    edge = density.reshape(cells, cells)
    assert max(float(edge[0].max()), float(edge[-1].max()), float(edge[:, 0].max()), float(edge[:, -1].max())) < 1e-6
