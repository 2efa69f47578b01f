"""Constant-α DDPM as a :class:`~hfgen.training.task.TrainingTask`: arguments, batches, loss, metrics, figures,
model card."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor

from hfgen.arguments.ddpm_points import DDPMPointsArguments
from hfgen.data.toy import ToyDistribution
from hfgen.methods.ddpm import epsilon_loss
from hfgen.model_cards.ddpm_points import ddpm_points_card
from hfgen.models import TimeMLP
from hfgen.pipelines import DDPMPointsPipeline
from hfgen.schedulers import ConstantAlphaDDPMScheduler
from hfgen.training.points import PointTask
from hfgen.training.task import IndexedBatches
from hfgen.utils import batch_generator

__all__ = ["DDPMPointsTask", "evaluate_ddpm_points", "train_ddpm_points"]


class NoisedBatches(IndexedBatches):
    r"""Iterator of ε-prediction batches ``(x_t, t, z)``: ``x_0 ~ target``, ``t ~ U{1, …, T}``, ``z ~ N(0, I)``,
    ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z`` (:meth:`ConstantAlphaDDPMScheduler.sample_training_inputs`; with a diffusers
    scheduler, its index ``τ = t − 1 ~ U{0, …, T − 1}`` and its ``add_noise``).

    Batch ``k`` is drawn from :func:`hfgen.data.pairs.batch_generator` ``(seed, stream, k)``, a pure function of its
    index, so a run resumed at ``start = k`` sees exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        target: ToyDistribution,
        scheduler: ConstantAlphaDDPMScheduler | DDPMScheduler | DDIMScheduler,
        batch_size: int,
        seed: int = 0,
        stream: int = 0,
        start: int = 0,
    ):
        super().__init__(start)
        self.target, self.scheduler, self.batch_size = target, scheduler, batch_size
        self.seed, self.stream = seed, stream

    def draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = batch_generator(self.seed, self.stream, index)
        x0 = self.target.sample(self.batch_size, generator)
        if isinstance(self.scheduler, ConstantAlphaDDPMScheduler):
            return self.scheduler.sample_training_inputs(x0, generator)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
        noise = randn_tensor(x0.shape, generator=generator, dtype=x0.dtype)
        return self.scheduler.add_noise(x0, noise, timesteps), timesteps, noise


class DDPMPointsTask(PointTask):
    r"""DDPM (constant α, or a diffusers β schedule) on ``args.dataset`` with an ε-predicting
    :class:`~hfgen.models.TimeMLP`.

    Each micro-batch draws ``x_0 ~ target``, ``t ~ U{1, …, T}`` and ``z ~ N(0, I)`` and minimises
    ``‖ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) z, t) − z‖²`` with ``ᾱ_t = α^t`` (Ho et al. 2020). The network receives the integer
    step ``t`` (sinusoidal embedding, ``time_scale = 1``) or ``t / T`` (Fourier features).
    """

    name = "ddpm_points"
    card = staticmethod(ddpm_points_card)
    trajectory_file = "reverse.png"
    evaluation_fields = ("num_eval_samples", None)
    args: DDPMPointsArguments

    def __init__(self, args: DDPMPointsArguments):
        super().__init__(args)
        self.scheduler = args.noise_scheduler()

    def build_model(self) -> TimeMLP:
        args = self.args
        return super().build_model(
            time_scale=1.0 if args.time_embedding == "sinusoidal" else 1.0 / args.num_train_timesteps
        )

    @contextmanager
    def batches(self, start: int, stream: int, phase: int = 0) -> Iterator[NoisedBatches]:
        args = self.args
        yield NoisedBatches(
            self.target, self.scheduler, args.train_batch_size, seed=args.seed, stream=stream, start=start
        )

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        noisy, timesteps, noise = (tensor.to(device) for tensor in batch)
        return epsilon_loss(model, noisy, timesteps, noise)

    def pipeline(self, model: TimeMLP) -> DDPMPointsPipeline:
        return DDPMPointsPipeline(model, self.args.noise_scheduler())

    def sample(self, pipeline: DDPMPointsPipeline, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return pipeline(num_samples, self.args.num_inference_steps, generator=generator).samples

    def trajectory_figure(self, pipeline: DDPMPointsPipeline, num_samples: int, seed: int) -> Any:
        from hfgen import plotting

        generator = torch.Generator().manual_seed(seed)
        out = pipeline(num_samples, self.args.num_inference_steps, generator=generator, return_trajectory=True)
        if self.args.beta_schedule != "constant_alpha":
            return plotting.plot_trajectory(out.trajectory, out.timesteps)
        return plotting.plot_diffusion_reverse(out.trajectory, out.timesteps, pipeline.scheduler.config.alpha)

    def final_figures(self, pipeline: DDPMPointsPipeline) -> dict[str, Any]:
        from hfgen import plotting

        if self.target.dim != 2:
            return {}
        generator = torch.Generator().manual_seed(2)
        samples = pipeline(2000, self.args.num_inference_steps, generator=generator).samples
        data = self.target.sample(2000, generator)
        # The course's "tuning T and α" row: one forward path at six evenly spaced steps 0 … T.
        T = self.args.num_train_timesteps
        steps = sorted({round(T * k / 5) for k in range(6)})
        forward = pipeline.forward_trajectory(data[:1000], steps, generator=generator)
        if self.args.beta_schedule == "constant_alpha":
            forward_figure = plotting.plot_diffusion_forward(forward, steps, pipeline.scheduler.config.alpha)
        else:
            forward_figure = plotting.plot_trajectory(forward, steps)
        return {
            "samples.png": plotting.plot_samples(samples, reference=data, title="samples"),
            "forward.png": forward_figure,
            "reverse.png": self.trajectory_figure(pipeline, 1000, seed=2),
        }


def train_ddpm_points(args: DDPMPointsArguments) -> tuple[DDPMPointsPipeline, dict[str, Any]]:
    """Train in this process without writing outputs (benchmarks, notebooks); returns the EMA pipeline and the
    training numbers."""
    from hfgen.training.trainer import train_in_process

    result = train_in_process(DDPMPointsTask(args))
    return result.pipeline, result.metrics


def evaluate_ddpm_points(pipeline: DDPMPointsPipeline, args: DDPMPointsArguments, seed: int = 1) -> dict[str, Any]:
    """Final metrics of a trained pipeline in this process: W2 against ``num_eval_samples`` fresh data points, its
    floor and their ratio, MMD² (and the fraction in the support for bounded targets)."""
    from hfgen.training.evaluation import evaluate_in_process

    return evaluate_in_process(DDPMPointsTask(args), pipeline, args.num_eval_samples, seed=seed)
