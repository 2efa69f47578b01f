"""Every pipeline and scheduler of hfgen through the shared conformance classes (tests/conformance.py)."""

from __future__ import annotations

import inspect
from typing import Any

import factories
import torch
from conformance import PipelineConformance, SchedulerConformance, conformance_classes, seeded
from diffusers import SchedulerMixin

import hfgen.schedulers
from hfgen import (
    AutoEncoderPipeline,
    BridgeScheduler,
    ConstantAlphaDDPMScheduler,
    CouplingFlow,
    DDPMPointsPipeline,
    DensityPipeline,
    FlowMatchEulerScheduler,
    FlowMatchingPipeline,
    GaussianMixture,
    GibbsScheduler,
    RBMPipeline,
    SchrodingerBridgePipeline,
    ScoreSDEPipeline,
    VAEPipeline,
    VESDEScheduler,
    VPSDEScheduler,
)
from hfgen.data import Checkerboard, Shifted, TwoBalls
from hfgen.schedulers.flow_match_heun import FlowMatchHeunScheduler
from hfgen.schedulers.flow_match_midpoint import FlowMatchMidpointScheduler

# ------------------------------------------------------------------------------------------------- pipelines


class TestFlowMatchingPipeline(PipelineConformance):
    kind = "flow_matching"
    tiny = staticmethod(factories.tiny_flow_matching_pipeline)
    pipeline_class = FlowMatchingPipeline
    call_kwargs = {"num_samples": 6, "num_inference_steps": 2}
    output_type_kwargs = {"return_trajectory": True}

    def get_pipeline(self):
        # A two-stage solver and a saved toy source: the round trips must restore both.
        return factories.tiny_flow_matching_pipeline("heun", source=Checkerboard())

    def float64_call(self, pipeline, dtype):
        return pipeline(source_samples=torch.randn(4, 2, generator=seeded()).to(dtype), num_inference_steps=2).samples


class TestDDPMPointsPipeline(PipelineConformance):
    kind = "ddpm"
    tiny = staticmethod(factories.tiny_ddpm_pipeline)
    pipeline_class = DDPMPointsPipeline
    call_kwargs = {"num_samples": 6}
    output_type_kwargs = {"return_trajectory": True}

    def get_pipeline(self):
        return factories.tiny_ddpm_pipeline(variance_type="beta")

    def float64_call(self, pipeline, dtype):
        x = torch.randn(4, 2, generator=seeded()).to(dtype)
        return pipeline.forward_trajectory(x, [1, 5, 10], generator=seeded(1))


class TestSchrodingerBridgePipelineForward(PipelineConformance):
    kind = "bridge"
    tiny = staticmethod(factories.tiny_bridge_pipeline)
    pipeline_class = SchrodingerBridgePipeline
    call_kwargs: dict[str, Any] = {"num_samples": 6, "direction": "forward"}
    output_type_kwargs = {"return_trajectory": True}

    def get_pipeline(self):
        # Both marginals are saved toy distributions (a shifted one for the target).
        return factories.tiny_bridge_pipeline(source=TwoBalls(), target=Shifted(TwoBalls(), [0.0, 3.0]))

    def float64_call(self, pipeline, dtype):
        x = torch.randn(4, 2, generator=seeded()).to(dtype)
        return pipeline.transport(x, self.call_kwargs["direction"], generator=seeded(1))


class TestSchrodingerBridgePipelineBackward(TestSchrodingerBridgePipelineForward):
    call_kwargs = {"num_samples": 6, "direction": "backward"}


class TestVAEPipeline(PipelineConformance):
    kind = "vae"
    tiny = staticmethod(factories.tiny_vae_pipeline)
    pipeline_class = VAEPipeline
    output_name = "images"
    call_kwargs = {"num_samples": 3}
    # One decoder pass per image: the VAE has no inference steps.
    takes_num_inference_steps = False

    def get_pipeline(self):
        return factories.tiny_vae_pipeline(seed=3, architecture="conv")

    def to_numpy_layout(self, name, tensor):
        # Images are (N, C, H, W) under "pt" and (N, H, W, C) under "np", diffusers' layout for images.
        return tensor.permute(0, 2, 3, 1).numpy() if name == "images" else tensor.numpy()

    def float64_call(self, pipeline, dtype):
        return pipeline.encode(torch.rand(3, 1, 8, 8, generator=seeded()).to(dtype))


class TestAutoEncoderPipeline(TestVAEPipeline):
    kind = "autoencoder"
    tiny = staticmethod(factories.tiny_autoencoder_pipeline)
    # An autoencoder has no prior: calling the pipeline reconstructs given images. The conformance draws are
    # adapted through the hooks: the generator draws the input images (same seed, same images, same
    # reconstructions), and the "number of draws" is the batch of images, so the bad sizes are bad batches.
    pipeline_class = AutoEncoderPipeline
    call_kwargs = {}
    size_argument = "images"

    def get_pipeline(self):
        return factories.tiny_autoencoder_pipeline(seed=4)

    def sample(self, pipeline, generator=None, **overrides):
        images = torch.rand(3, 1, 8, 8, generator=generator)
        return pipeline(**{"images": images, **self.call_kwargs, **overrides})

    def bad_size_overrides(self):
        return [{"images": torch.zeros(0, 1, 8, 8)}, {"images": torch.zeros(2, 1, 4, 4)}, {"images": [1.5]}]


class TestDensityPipelineWithAMixture(PipelineConformance):
    pipeline_class = DensityPipeline
    call_kwargs = {"num_samples": 6}
    takes_num_inference_steps = False  # the density models sample exactly, in one pass: no steps, no bar
    shows_progress = False

    def get_pipeline(self):
        torch.manual_seed(0)
        model = GaussianMixture(num_components=3, dim=2, covariance_type="full")
        pipeline = DensityPipeline(model)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def float64_call(self, pipeline, dtype):
        return pipeline.log_prob(torch.randn(4, 2, generator=seeded()).to(dtype))


class TestDensityPipelineWithACouplingFlow(TestDensityPipelineWithAMixture):
    def get_pipeline(self):
        torch.manual_seed(0)
        pipeline = DensityPipeline(CouplingFlow(dim=2, num_couplings=2, hidden_size=8))
        pipeline.set_progress_bar_config(disable=True)
        return pipeline


class TestRBMPipeline(PipelineConformance):
    kind = "rbm"
    tiny = staticmethod(factories.tiny_rbm_pipeline)
    pipeline_class = RBMPipeline
    output_name = "images"
    call_kwargs = {"num_samples": 3, "num_inference_steps": 2}

    def get_pipeline(self):
        return factories.tiny_rbm_pipeline()

    def to_numpy_layout(self, name, tensor):
        # images (and the trajectory of states) are (…, C, H, W) under "pt", channels last under "np"
        return tensor.movedim(-3, -1).numpy() if tensor.ndim >= 4 else tensor.numpy()


class TestScoreSDEPipeline(PipelineConformance):
    kind = "score_sde"
    tiny = staticmethod(factories.tiny_score_sde_pipeline)
    pipeline_class = ScoreSDEPipeline
    call_kwargs = {"num_samples": 6, "num_inference_steps": 3}
    output_type_kwargs = {"return_trajectory": True}

    def get_pipeline(self):
        return factories.tiny_score_sde_pipeline("vp")


# ------------------------------------------------------------------------------------------------ schedulers


class TestFlowMatchEulerScheduler(SchedulerConformance):
    scheduler_class = FlowMatchEulerScheduler


class TestFlowMatchHeunScheduler(SchedulerConformance):
    scheduler_class = FlowMatchHeunScheduler


class TestFlowMatchMidpointScheduler(SchedulerConformance):
    scheduler_class = FlowMatchMidpointScheduler


class TestConstantAlphaDDPMScheduler(SchedulerConformance):
    scheduler_class = ConstantAlphaDDPMScheduler
    scheduler_kwargs = {
        "alpha": 0.93,
        "num_train_timesteps": 17,
        "variance_type": "beta",
        "sampler": "ddim",
        "eta": 0.3,
    }

    def step_off_schedule(self, scheduler, sample):
        # The DDPM step is stateless (any grid timestep may be stepped again); leaving the schedule means a
        # timestep that is not on the grid.
        scheduler.step(self.model_output(sample, 0), 0, sample)


class TestBridgeScheduler(SchedulerConformance):
    scheduler_class = BridgeScheduler
    # The chain has a fixed number of steps: num_inference_steps must be num_steps (or None).
    num_inference_steps = 7
    set_timesteps_kwargs = {"direction": "backward"}
    scheduler_kwargs = {"num_steps": 7, "gamma": 0.03, "schedule": "symmetric"}

    def model_output(self, sample, t):
        return 0.9 * sample  # a mean network: the predicted mean of the next state


class TestGibbsScheduler(SchedulerConformance):
    # The model output is the conditional's probabilities p(block | other block), (N, units) in [0, 1]; the state is
    # the other block's draw (two units each here, so every draw has the sample's shape). Gibbs has no settings.
    scheduler_class = GibbsScheduler

    def model_output(self, sample, t):
        return torch.sigmoid(sample + 0.1 * float(t))


class TestVPSDEScheduler(SchedulerConformance):
    scheduler_class = VPSDEScheduler
    scheduler_kwargs = {"beta_min": 0.2, "beta_max": 12.0, "sampling_eps": 1e-2, "snr": 0.1, "num_corrector_steps": 2}

    def step_off_schedule(self, scheduler, sample):
        # The SDE step is stateless (a grid time may be stepped again, as with DDPM); leaving the schedule means a
        # time between two grid points.
        t = 0.5 * (scheduler.timesteps[0] + scheduler.timesteps[1])
        scheduler.step(self.model_output(sample, t), t, sample)


class TestVESDEScheduler(TestVPSDEScheduler):
    scheduler_class = VESDEScheduler
    scheduler_kwargs = {"sigma_min": 0.02, "sigma_max": 10.0, "sampling_eps": 1e-3, "prediction_type": "score"}


def test_every_scheduler_hfgen_exports_runs_the_scheduler_conformance():
    exported = [getattr(hfgen.schedulers, name) for name in hfgen.schedulers.__all__]
    schedulers = {cls for cls in exported if isinstance(cls, type) and issubclass(cls, SchedulerMixin)}
    schedulers -= {cls for cls in schedulers if inspect.isabstract(cls)}  # ScoreSDEScheduler: VP and VE are its SDEs
    assert {cls.scheduler_class for cls in conformance_classes(SchedulerConformance)} == schedulers


def test_conformance_classes_are_found_in_every_test_module():
    found = {cls.__module__ for cls in conformance_classes(PipelineConformance)}
    assert {"test_conformance", "test_energy"} <= found  # the energy family keeps its classes in its own file
