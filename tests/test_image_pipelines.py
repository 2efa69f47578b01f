"""The image flow-matching and DDPM pipelines: conformance, classifier-free guidance, SDEdit, bits/dim against closed
forms, output types and refused inputs, on a tiny UNet2DModel (8 × 8 images, channels 8 and 16)."""

from __future__ import annotations

import math

import factories
import numpy as np
import pytest
import torch
from conformance import PipelineConformance, seeded
from diffusers import UNet2DModel

from hfgen.methods.image_diffusion import (
    bits_per_dim,
    classifier_free_guidance,
    to_image_space,
    to_network_space,
    uniform_dequantize,
)
from hfgen.pipelines.image_ddpm import DDPMImagePipeline
from hfgen.pipelines.image_flow_matching import FlowMatchingImagePipeline
from hfgen.schedulers import ConstantAlphaDDPMScheduler
from hfgen.schedulers.flow_match_solvers import flow_match_scheduler

SIZE = 8
NUM_CLASSES = 3


def tiny_unet(conditional: bool = False, seed: int = 0) -> UNet2DModel:
    return factories.tiny_unet(NUM_CLASSES if conditional else None, seed=seed)


def fm_pipeline(conditional: bool = False, solver: str = "euler", seed: int = 0) -> FlowMatchingImagePipeline:
    pipe = FlowMatchingImagePipeline(tiny_unet(conditional, seed), flow_match_scheduler(solver))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ddpm_pipeline(
    conditional: bool = False, sampler: str = "ancestral", seed: int = 0, clip_sample: bool = True
) -> DDPMImagePipeline:
    scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(10, 1e-3, sampler=sampler)
    pipe = DDPMImagePipeline(tiny_unet(conditional, seed), scheduler, clip_sample=clip_sample)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=seeded(seed))


# ------------------------------------------------------------------------------------------------- conformance


class _ImageConformance(PipelineConformance):
    output_name = "images"
    call_kwargs = {"num_samples": 3, "num_inference_steps": 2, "class_labels": [0, 1, 2], "guidance_scale": 2.0}
    output_type_kwargs = {"return_trajectory": True}

    def to_numpy_layout(self, name, tensor):
        # images (N, C, H, W) → (N, H, W, C); the trajectory (S + 1, N, C, H, W) → (S + 1, N, H, W, C)
        if name == "images":
            return tensor.permute(0, 2, 3, 1).numpy()
        if name == "trajectory":
            return tensor.permute(0, 1, 3, 4, 2).numpy()
        return tensor.numpy()

    def bad_size_overrides(self):
        # the labels fix the number of images; a bad num_samples is refused before they are compared with it
        return [{"num_samples": value, "class_labels": None, "guidance_scale": None} for value in (0, -1, 1.5, True)]

    def float64_call(self, pipeline, dtype):
        # SDEdit from float64 start images gives the float32 result
        return pipeline(strength=0.5, num_inference_steps=2, start_images=images().to(dtype), generator=seeded()).images


class TestFlowMatchingImagePipeline(_ImageConformance):
    pipeline_class = FlowMatchingImagePipeline

    def get_pipeline(self):
        return fm_pipeline(conditional=True, solver="heun")


class TestDDPMImagePipeline(_ImageConformance):
    pipeline_class = DDPMImagePipeline

    def get_pipeline(self):
        return ddpm_pipeline(conditional=True)


# ------------------------------------------------------------------------------------------- guidance (CFG)


@pytest.mark.parametrize("make", [fm_pipeline, ddpm_pipeline])
def test_guidance_one_is_the_conditional_model_and_zero_the_unconditional_one(make):
    pipe = make(conditional=True)
    labels = torch.tensor([0, 2, 1])
    x = torch.randn(3, 1, SIZE, SIZE, generator=seeded())
    t = torch.tensor(0.3) if isinstance(pipe, FlowMatchingImagePipeline) else torch.tensor(4)
    field = pipe.velocity_field if isinstance(pipe, FlowMatchingImagePipeline) else pipe.noise_prediction
    with torch.no_grad():
        conditional = field(x, t, labels)
        unconditional = field(x, t)  # the null class
        null = field(x, t, torch.full((3,), NUM_CLASSES))
        torch.testing.assert_close(field(x, t, labels, 1.0), conditional, rtol=0, atol=1e-6)
        torch.testing.assert_close(field(x, t, labels, 0.0), unconditional, rtol=0, atol=1e-6)
        torch.testing.assert_close(unconditional, null, rtol=0, atol=0)
        # w = 3: v_∅ + 3 (v_c − v_∅)
        torch.testing.assert_close(field(x, t, labels, 3.0), 3 * conditional - 2 * unconditional, atol=1e-5, rtol=0)
    assert not torch.allclose(conditional, unconditional)
    # sampling with w = 1 equals sampling the conditional model (no guidance) from the same noise
    a = pipe(num_inference_steps=2, generator=seeded(), class_labels=labels, guidance_scale=1.0).images
    b = pipe(num_inference_steps=2, generator=seeded(), class_labels=labels).images
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_classifier_free_guidance_formula():
    u, c = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    assert torch.equal(classifier_free_guidance(u, c, 0.0), u)
    assert torch.equal(classifier_free_guidance(u, c, 1.0), c)
    assert torch.equal(classifier_free_guidance(u, c, 2.0), torch.tensor([5.0, 2.0]))


def test_one_label_for_all_and_the_number_of_images_follow_the_labels():
    pipe = fm_pipeline(conditional=True)
    out = pipe(num_inference_steps=1, class_labels=[2, 0])
    assert out.images.shape == (2, 1, SIZE, SIZE) and out.class_labels.tolist() == [2, 0]
    out = pipe(num_samples=4, num_inference_steps=1, class_labels=1)
    assert out.class_labels.tolist() == [1, 1, 1, 1]
    assert fm_pipeline()(num_samples=2, num_inference_steps=1).class_labels is None


# ----------------------------------------------------------------------------------------------------- SDEdit


@pytest.mark.parametrize("make", [fm_pipeline, ddpm_pipeline])
def test_sdedit_strength_zero_returns_the_images(make):
    pipe, x = make(), images()
    out = pipe(strength=0.0, start_images=x, num_inference_steps=4, generator=seeded())
    assert torch.equal(out.images, x) and out.nfe == 0


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_flow_matching_sdedit_strength_one_is_plain_sampling_from_the_same_noise(solver):
    pipe = fm_pipeline(solver=solver)
    plain = pipe(num_samples=3, num_inference_steps=4, generator=seeded(5)).images
    edited = pipe(strength=1.0, start_images=images(), num_inference_steps=4, generator=seeded(5)).images
    assert torch.equal(edited, plain)


def test_flow_matching_sdedit_runs_the_ode_from_the_path_point_at_one_minus_strength():
    # one Euler step of size s from y_{1−s} = s z + (1 − s) y: y_1 = y_{1−s} + s v(y_{1−s}, 1 − s)
    pipe, x, s = fm_pipeline(), images(), 0.25
    z = torch.randn(3, 1, SIZE, SIZE, generator=seeded(7))
    start = s * z + (1 - s) * to_network_space(x)
    with torch.no_grad():
        expected = to_image_space(start + s * pipe.velocity_field(start, 1 - s))
    edited = pipe(strength=s, start_images=x, num_inference_steps=4, generator=seeded(7))
    assert edited.nfe == 1
    torch.testing.assert_close(edited.images, expected, atol=1e-6, rtol=0)


def test_ddpm_sdedit_noises_the_images_to_the_first_level_below_strength_and_runs_the_sampler_from_there():
    pipe, x = ddpm_pipeline(sampler="ddim", clip_sample=False), images()  # deterministic: the start's noise only
    edited = pipe(strength=0.45, start_images=x, generator=seeded(2))
    assert edited.nfe == 4  # levels 4, 3, 2, 1 of T = 10
    z = torch.randn(3, 1, SIZE, SIZE, generator=seeded(2))
    y = pipe.scheduler.add_noise(to_network_space(x), z, 4)
    pipe.scheduler.set_timesteps(10)
    with torch.no_grad():
        for t in (4, 3, 2, 1):
            y = pipe.scheduler.step(pipe.noise_prediction(y, t), t, y).prev_sample
    torch.testing.assert_close(edited.images, to_image_space(y), atol=1e-6, rtol=0)


def test_clip_sample_clips_the_predicted_image_of_each_step_to_the_network_range():
    # the step given ε̃ predicts clip(ŷ_0) (diffusers' clip_sample); unclipped, the tiny network's ŷ_0 leaves [−1, 1]
    pipe = ddpm_pipeline(sampler="ddim")
    pipe.scheduler.set_timesteps(10)
    y = torch.randn(3, 1, SIZE, SIZE, generator=seeded(3))
    with torch.no_grad():
        eps = pipe.noise_prediction(y, 10)
    raw = pipe.scheduler.step(eps, 10, y).pred_original_sample
    assert float(raw.abs().max()) > 1
    pipe.scheduler.set_timesteps(10)
    clipped = pipe.scheduler.step(pipe.clipped_noise(eps, 10, y), 10, y).pred_original_sample
    torch.testing.assert_close(clipped, raw.clamp(-1, 1), atol=1e-5, rtol=0)
    # and the sampler uses it: with clip_sample=False the images differ
    a = pipe(num_samples=2, num_inference_steps=5, generator=seeded()).images
    b = ddpm_pipeline(sampler="ddim", clip_sample=False)(
        num_samples=2, num_inference_steps=5, generator=seeded()
    ).images
    assert not torch.equal(a, b)


# -------------------------------------------------------------------------------------------------- bits/dim


def test_uniform_dequantization_stays_in_the_pixel_bin():
    x = torch.tensor([[[[0.0, 1.0], [128 / 255, 3 / 255]]]])
    v = uniform_dequantize(x.expand(500, 1, 2, 2), seeded())
    k = torch.tensor([0.0, 255.0, 128.0, 3.0]).view(1, 1, 2, 2)
    assert bool(((v * 256 >= k) & (v * 256 < k + 1)).all())


def test_bits_per_dim_of_a_zero_field_is_that_of_the_standard_normal_in_dequantized_space():
    # v ≡ 0: the flow is the identity, p_1 = N(0, I) on y = 2v − 1, so log p(v) = log N(2v − 1; 0, I) + D log 2
    pipe = fm_pipeline()
    torch.nn.init.zeros_(pipe.unet.conv_out.weight)
    torch.nn.init.zeros_(pipe.unet.conv_out.bias)
    x = images(4)
    out = pipe.log_prob(x, generator=seeded(9), ode_solver="euler", num_inference_steps=2)
    v = uniform_dequantize(x, seeded(9))
    y = (2 * v - 1).flatten(1).double()
    dims = SIZE * SIZE
    log_p = -0.5 * y.square().sum(1) - 0.5 * dims * math.log(2 * math.pi) + dims * math.log(2)
    expected = -(log_p - dims * math.log(256)) / (dims * math.log(2))
    torch.testing.assert_close(out.bits_per_dim, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.log_prob, log_p - dims * math.log(256), atol=1e-3, rtol=0)
    assert out.mean_bits_per_dim == pytest.approx(float(expected.mean()), abs=1e-4)
    assert out.stderr_bits_per_dim == pytest.approx(float(expected.std() / 2), abs=1e-4)


def test_bits_per_dim_of_a_linear_field_matches_the_gaussian_it_transports(monkeypatch):
    # v(y, t) = a y has the flow y(t) = e^{a t} y(0): p_1 = N(0, e^{2a} I) and Tr ∂v/∂y = a D exactly, so the
    # Hutchinson estimate has no variance; rk4 integrates e^{a t} to within 1e-8
    pipe, a = fm_pipeline(), 0.3
    monkeypatch.setattr(pipe, "_velocity", lambda sample, t, labels, scale: a * sample)
    x = images(2)
    out = pipe.log_prob(x, generator=seeded(1), ode_solver="rk4", num_inference_steps=20)
    y = to_network_space(uniform_dequantize(x, seeded(1))).flatten(1).double()
    dims = SIZE * SIZE
    std = math.exp(a)
    log_p = -0.5 * (y / std).square().sum(1) - dims * math.log(std) - 0.5 * dims * math.log(2 * math.pi)
    expected = bits_per_dim(log_p + dims * math.log(2), dims)
    torch.testing.assert_close(out.bits_per_dim, expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- outputs and inputs


@pytest.mark.parametrize("make", [fm_pipeline, ddpm_pipeline])
def test_output_types_and_the_trajectory_strip(make):
    pipe = make()
    steps = {"num_inference_steps": 2}
    pt = pipe(num_samples=2, generator=seeded(), return_trajectory=True, **steps)
    assert pt.images.shape == (2, 1, SIZE, SIZE) and 0 <= float(pt.images.min()) <= float(pt.images.max()) <= 1
    assert pt.trajectory.shape[1:] == (2, 1, SIZE, SIZE)
    assert torch.equal(pt.trajectory[-1], pt.images)
    arrays = pipe(num_samples=2, generator=seeded(), output_type="np", **steps).images
    assert isinstance(arrays, np.ndarray) and arrays.shape == (2, SIZE, SIZE, 1)
    pil = pipe(num_samples=2, generator=seeded(), output_type="pil", return_trajectory=True, **steps)
    assert len(pil.images) == 2 and pil.images[0].size == (SIZE, SIZE) and pil.images[0].mode == "L"
    states = pt.trajectory.shape[0]
    assert len(pil.trajectory) == 2 and pil.trajectory[0].size == (states * SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(pil.images[1]), np.asarray(pil.trajectory[1])[:, -SIZE:])


@pytest.mark.parametrize("make", [fm_pipeline, ddpm_pipeline])
def test_bad_inputs_are_refused_with_the_argument_named(make):
    conditional, unconditional = make(conditional=True), make()
    steps = {"num_inference_steps": 2}
    cases = [
        (conditional, {"class_labels": [0, NUM_CLASSES]}, ValueError, "class_labels"),
        (conditional, {"class_labels": [-1]}, ValueError, "class_labels"),
        (conditional, {"num_samples": 3, "class_labels": [0, 1]}, ValueError, "class_labels"),
        (conditional, {"class_labels": [0.5, 1.0]}, TypeError, "class_labels"),
        (conditional, {"class_labels": "1"}, TypeError, "class_labels"),
        (conditional, {"class_labels": [0, 1], "guidance_scale": -1.0}, ValueError, "guidance_scale"),
        (conditional, {"class_labels": [0, 1], "guidance_scale": float("nan")}, ValueError, "guidance_scale"),
        (conditional, {"num_samples": 2, "guidance_scale": 2.0}, ValueError, "guidance_scale"),
        (unconditional, {"num_samples": 2, "guidance_scale": 2.0}, ValueError, "guidance_scale"),
        (unconditional, {"class_labels": [0, 1]}, ValueError, "class_labels"),
        (unconditional, {"strength": 0.5, "start_images": torch.rand(2, 1, 4, 4)}, ValueError, "start_images"),
        (unconditional, {"strength": 0.5, "start_images": torch.rand(2, SIZE, SIZE)}, ValueError, "start_images"),
        (unconditional, {"strength": 0.5, "start_images": images() * 2}, ValueError, "start_images"),
        (unconditional, {"strength": 0.5, "start_images": images() - 0.5}, ValueError, "start_images"),
        (unconditional, {"strength": 0.5, "start_images": images().numpy()}, TypeError, "start_images"),
        (unconditional, {"strength": 1.5, "start_images": images()}, ValueError, "strength"),
        (unconditional, {"strength": 0.5}, ValueError, "start_images"),
        (unconditional, {"start_images": images()}, ValueError, "strength"),
        (unconditional, {"num_samples": 2, "start_images": images(), "strength": 0.5}, ValueError, "num_samples"),
        (unconditional, {"num_samples": 2, "output_type": "latent"}, ValueError, "output_type"),
        (unconditional, {"num_samples": 2, "generator": 0}, TypeError, "generator"),
        (unconditional, {"num_samples": 10**12}, ValueError, "num_samples`=1,000,000,000,000 needs at least"),
    ]
    for pipe, kwargs, error, name in cases:
        with pytest.raises(error, match=name):
            pipe(**steps, **kwargs)


def test_the_pipelines_refuse_networks_and_schedulers_they_cannot_run():
    unet = tiny_unet()
    with pytest.raises(TypeError, match="scheduler"):
        FlowMatchingImagePipeline(unet, ConstantAlphaDDPMScheduler())
    with pytest.raises(TypeError, match="scheduler"):
        DDPMImagePipeline(unet, flow_match_scheduler("euler"))
    with pytest.raises(TypeError, match="unet"):
        DDPMImagePipeline(torch.nn.Linear(2, 2), ConstantAlphaDDPMScheduler())
    with pytest.raises(ValueError, match="time_scale"):
        FlowMatchingImagePipeline(unet, flow_match_scheduler("euler"), time_scale=0.0)
    with pytest.raises(TypeError, match="clip_sample"):
        DDPMImagePipeline(unet, ConstantAlphaDDPMScheduler(), clip_sample="yes")


def test_ddim_is_a_scheduler_swap_and_is_deterministic_given_the_start_noise():
    pipe = ddpm_pipeline()
    pipe.scheduler = ConstantAlphaDDPMScheduler.from_config(pipe.scheduler.config, sampler="ddim")
    a = pipe(num_samples=2, num_inference_steps=5, generator=seeded(4)).images
    b = pipe(num_samples=2, num_inference_steps=5, generator=seeded(4)).images
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="scheduler"):
        pipe.scheduler = flow_match_scheduler("euler")


def test_save_and_load_keep_the_time_scale_and_the_class_embedding(tmp_path):
    pipe = FlowMatchingImagePipeline(tiny_unet(True), flow_match_scheduler("midpoint"), time_scale=250.0)
    pipe.save_pretrained(tmp_path)
    loaded = FlowMatchingImagePipeline.from_pretrained(tmp_path)
    assert loaded.config.time_scale == 250.0 and loaded.num_classes == NUM_CLASSES
    loaded.set_progress_bar_config(disable=True)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": 2, "class_labels": [1, 2], "guidance_scale": 1.5}
    assert torch.equal(loaded(generator=seeded(), **kwargs).images, pipe(generator=seeded(), **kwargs).images)
