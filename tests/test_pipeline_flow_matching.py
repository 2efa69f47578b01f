"""FlowMatchingPipeline: sampling, trajectories, exact log-densities, saved sources, errors (the round trips and
other shared checks are in tests/test_conformance.py)."""

import json

import pytest
import torch
from factories import AFFINE_A, StraightLineAffineVelocity, tiny_flow_matching_pipeline

from hfgen import FlowMatchingPipeline, HfgenPipeline
from hfgen.data import Checkerboard, SampleOnly, TwoMoons
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler
from hfgen.schedulers.flow_match_heun import FlowMatchHeunScheduler
from hfgen.schedulers.flow_match_solvers import FLOW_MATCH_SCHEDULERS, flow_match_scheduler


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_samples_shape_and_dtype():
    # Repeatability, output types, save/load and Hub-id round trips: tests/test_conformance.py.
    a = tiny_flow_matching_pipeline()(num_samples=13, num_inference_steps=5, generator=seeded()).samples
    assert a.shape == (13, 2) and a.dtype == torch.float32


@pytest.mark.parametrize("solver", ["euler", "heun", "midpoint"])
def test_trajectory_runs_from_the_source_to_the_samples(solver):
    pipe = tiny_flow_matching_pipeline(solver)
    out = pipe(num_samples=4, num_inference_steps=6, generator=seeded(), return_trajectory=True)
    assert out.trajectory.shape == (7, 4, 2)
    torch.testing.assert_close(out.trajectory[0], pipe.source_distribution.sample(4, seeded()))
    torch.testing.assert_close(out.trajectory[-1], out.samples)
    assert out.nfe == 6 * pipe.scheduler.order


def test_euler_follows_the_straight_line_flow_and_lands_on_a_z():
    # The straight-line affine flow has x(t) linear in t, so Euler is exact on it: x(1) = A z.
    pipe = FlowMatchingPipeline(StraightLineAffineVelocity(), FlowMatchEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    z = torch.randn(50, 2)
    out = pipe(source_samples=z, num_inference_steps=3)
    torch.testing.assert_close(out.samples, z @ torch.tensor(AFFINE_A).T, rtol=1e-5, atol=1e-5)
    adaptive = pipe(source_samples=z, ode_solver="dopri5", rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(adaptive.samples, out.samples, rtol=1e-4, atol=1e-4)
    assert adaptive.nfe > 0


def test_log_prob_of_the_affine_flow_is_the_gaussian_with_covariance_a_at():
    pipe = FlowMatchingPipeline(StraightLineAffineVelocity().double(), FlowMatchEulerScheduler())
    a = torch.tensor(AFFINE_A, dtype=torch.float64)
    oracle = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), a @ a.T)
    x = oracle.sample((40,))
    log_p = pipe.log_prob(x, rtol=1e-8, atol=1e-8)
    assert not log_p.requires_grad
    torch.testing.assert_close(log_p, oracle.log_prob(x), rtol=0, atol=1e-5)
    hutchinson = pipe.log_prob(x, divergence="hutchinson", generator=seeded(), rtol=1e-8, atol=1e-8)
    # Rademacher noise errs by ±∫(J₁₂ + J₂₁) dt per point (0.916 here) with random signs: unbiased on average.
    error = hutchinson - oracle.log_prob(x)
    assert error.abs().max() < 1.0 and error.mean().abs() < 3 * 0.92 / 40**0.5


def test_velocity_field_matches_the_network():
    pipe = tiny_flow_matching_pipeline()
    points = torch.randn(9, 2)
    with torch.no_grad():
        expected = pipe.velocity(points, torch.full((9,), 0.3)).sample
    torch.testing.assert_close(pipe.velocity_field(points, 0.3), expected)
    torch.testing.assert_close(pipe.velocity_field(points, torch.full((9,), 0.3)), expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_velocity_field_casts_points_like_sampling_and_answers_in_their_dtype(dtype):
    pipe = tiny_flow_matching_pipeline()
    points = torch.randn(9, 2).to(dtype)
    v = pipe.velocity_field(points, 0.3)
    assert v.dtype == dtype
    torch.testing.assert_close(v, pipe.velocity_field(points.float(), 0.3).to(dtype))


@pytest.mark.parametrize(
    ("t", "reported"),
    [
        (float("nan"), "nan"),  # gave NaN velocities before
        (float("inf"), "inf"),
        (-0.1, "-0.1"),
        (2, "2.0"),
        (torch.tensor([0.2, float("nan"), 0.3]), "nan"),
        (torch.tensor([0.5, 0.5, 1.5]), "1.5"),
    ],
)
def test_velocity_field_refuses_times_outside_the_training_range(t, reported):
    with pytest.raises(
        ValueError, match=rf"`t` must lie in \[0, 1\], the times the velocity is trained on, got {reported}$"
    ):
        tiny_flow_matching_pipeline().velocity_field(torch.zeros(3, 2), t)


def test_velocity_field_refuses_times_of_the_wrong_shape_or_type():
    pipe = tiny_flow_matching_pipeline()
    with pytest.raises(ValueError, match=r"`t` must be a scalar or a tensor of shape \(3,\)"):
        pipe.velocity_field(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(TypeError, match="`t` must be a float or a tensor"):
        pipe.velocity_field(torch.zeros(3, 2), "0.5")
    with pytest.raises(TypeError, match="`t` must be a float or a tensor"):
        pipe.velocity_field(torch.zeros(3, 2), True)


def test_saved_folder_records_the_source_and_loading_restores_it(tmp_path):
    pipe = tiny_flow_matching_pipeline("heun", source=Checkerboard())
    pipe.save_pretrained(tmp_path)
    names = ["model_index.json", "pipeline_flow_matching.py", "scheduler", "velocity", "weights_sha256.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert (tmp_path / "velocity" / "diffusion_pytorch_model.safetensors").is_file()
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["source"] == {"name": "checkerboard"}
    assert index["scheduler"] == ["scheduling_flow_match_heun", "FlowMatchHeunScheduler"]
    assert json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == (
        "FlowMatchHeunScheduler"
    )
    for loader in (FlowMatchingPipeline, HfgenPipeline):
        loaded = loader.from_pretrained(tmp_path)
        assert type(loaded.scheduler) is FlowMatchHeunScheduler
        assert isinstance(loaded.source_distribution, Checkerboard)


@pytest.mark.parametrize("solver", ["heun", "midpoint"])
def test_sdedit_integrates_with_the_torchdiffeq_method_of_the_scheduler_solver(solver):
    # Fixed-step SDEdit runs torchdiffeq's method of the same solver: s = 1 over n steps is plain sampling.
    pipe = tiny_flow_matching_pipeline(solver)
    x = torch.randn(6, 2, generator=seeded(1))
    edited = pipe(strength=1.0, start_samples=x, num_inference_steps=4, generator=seeded(2)).samples
    fresh = pipe(source_samples=pipe.source_distribution.sample(6, seeded(2)), num_inference_steps=4).samples
    torch.testing.assert_close(edited, fresh, rtol=1e-5, atol=1e-6)


def test_a_scheduler_of_another_kind_is_refused():
    pipe = tiny_flow_matching_pipeline()
    with pytest.raises(TypeError, match="`scheduler` must be one of FlowMatchEulerScheduler, FlowMatchHeunScheduler"):
        FlowMatchingPipeline(pipe.velocity, object())


def test_a_config_saved_by_the_multi_solver_class_gets_that_solver_scheduler():
    # {"_class_name": "FlowMatchEulerScheduler", "solver": ...} was how every solver was saved; the folders
    # themselves are in tests/test_legacy_pipelines.py.
    velocity = tiny_flow_matching_pipeline().velocity
    for solver, scheduler_class in FLOW_MATCH_SCHEDULERS.items():
        legacy = FlowMatchEulerScheduler.from_config({"_class_name": "FlowMatchEulerScheduler", "solver": solver})
        assert type(FlowMatchingPipeline(velocity, legacy).scheduler) is scheduler_class
        assert type(flow_match_scheduler(solver)) is scheduler_class
    with pytest.raises(ValueError, match="`solver` must be one of \\('euler', 'heun', 'midpoint'\\), got 'rk4'"):
        flow_match_scheduler("rk4")


def test_sample_only_source_samples_but_has_no_log_prob():
    pipe = tiny_flow_matching_pipeline(source=TwoMoons())
    assert pipe(num_samples=5, num_inference_steps=2).samples.shape == (5, 2)
    with pytest.raises(ValueError, match="sample-only"):
        pipe.log_prob(torch.zeros(3, 2))


def test_python_sampler_source_works_but_cannot_be_saved(tmp_path):
    source = SampleOnly(lambda n, generator: torch.rand(n, 2, generator=generator), dim=2)
    pipe = tiny_flow_matching_pipeline(source=source)
    assert pipe(num_samples=4, num_inference_steps=2).samples.shape == (4, 2)
    with pytest.raises(ValueError, match="cannot save"):
        pipe.save_pretrained(tmp_path)


def test_bad_inputs():
    pipe = tiny_flow_matching_pipeline()
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        pipe.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        pipe.log_prob(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="points"):
        pipe.velocity_field(torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="source_samples"):
        pipe(source_samples=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_samples=2, output_type="pil")
    with pytest.raises(ValueError, match="dimension"):
        FlowMatchingPipeline(pipe.velocity, pipe.scheduler, source={"name": "gaussian", "dim": 3})


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        FlowMatchingPipeline.from_pretrained(tmp_path)
    pipe = tiny_flow_matching_pipeline()
    pipe.save_pretrained(tmp_path / "run")
    weights = tmp_path / "run" / "velocity" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors is not a readable safetensors file"):
        FlowMatchingPipeline.from_pretrained(tmp_path / "run")
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors is missing"):
        FlowMatchingPipeline.from_pretrained(tmp_path / "run")
    (tmp_path / "run" / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        FlowMatchingPipeline.from_pretrained(tmp_path / "run")


def test_loading_a_different_pipeline_class_is_refused(tmp_path):
    tiny_flow_matching_pipeline().save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index["_class_name"] = "SomethingElsePipeline"
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="not a FlowMatchingPipeline"):
        FlowMatchingPipeline.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not an hfgen pipeline"):
        HfgenPipeline.from_pretrained(tmp_path)
