"""Score SDE training (denoising score matching) as a :class:`~hfgen.training.task.TrainingTask`: arguments, the
noised batch stream, loss, metrics, figures and the model card."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from hfgen.arguments.score_sde import ScoreSDEArguments
from hfgen.data import ToyDistribution
from hfgen.methods.flow_matching import sample_times
from hfgen.methods.score_matching import denoising_score_matching_loss_at
from hfgen.model_cards.score_sde import score_sde_card
from hfgen.models import TimeMLP
from hfgen.pipelines.score_sde import ScoreSDEPipeline
from hfgen.schedulers.score_sde import ScoreSDEScheduler
from hfgen.training.evaluation import evaluate_in_process
from hfgen.training.points import PointLikelihoodTask
from hfgen.training.task import IndexedBatches
from hfgen.training.trainer import train_in_process
from hfgen.utils import batch_generator

__all__ = ["evaluate_score_sde", "ScoreSDETask", "train_score_sde"]


class NoisedScoreBatches(IndexedBatches):
    r"""Iterator of denoising-score-matching batches ``(x_t, t, z)``: ``x_0 ~ target``,
    ``t = ε + (1 − ε)(1 − u)`` with ``u ~ Beta(1, b)`` (:func:`~hfgen.methods.flow_matching.sample_times`; ``b = 1``
    is Song et al.'s ``t ~ U[ε, 1]``, ``b < 1`` puts more times near the data), ``z ~ N(0, I)`` and
    ``x_t = m_t x_0 + σ_t z`` (:meth:`ScoreSDEScheduler.add_noise`).

    Batch ``k`` is drawn from :func:`~hfgen.utils.batch_generator` ``(seed, stream, k)``, a pure function of its
    index, so a run resumed at ``start = k`` sees exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        target: ToyDistribution,
        scheduler: ScoreSDEScheduler,
        batch_size: int,
        time_beta: float = 1.0,
        seed: int = 0,
        stream: int = 0,
        start: int = 0,
    ):
        super().__init__(start)
        self.target, self.scheduler, self.batch_size, self.time_beta = target, scheduler, batch_size, time_beta
        self.seed, self.stream = seed, stream

    def draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = batch_generator(self.seed, self.stream, index)
        x0 = self.target.sample(self.batch_size, generator)
        eps = self.scheduler.config.sampling_eps
        u = sample_times(self.batch_size, generator, self.time_beta, dtype=torch.float64)
        timesteps = (eps + (1.0 - eps) * (1.0 - u)).clamp(eps, 1.0).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        return self.scheduler.add_noise(x0, noise, timesteps), timesteps, noise


class ScoreSDETask(PointLikelihoodTask):
    r"""A score SDE (Song et al. 2021) on ``args.dataset`` with a :class:`~hfgen.models.TimeMLP` score network.

    Each micro-batch draws ``(x_0, t, z)`` (:class:`NoisedScoreBatches`) and minimises the denoising score matching
    objective with the usual weight ``λ(t) = σ_t²``, ``σ_t² ‖s_θ(x_t, t) + z/σ_t‖²`` (Vincent 2011; Song et al.
    2021, eq. 7; :func:`~hfgen.methods.score_matching.denoising_score_matching_loss_at`), which in the
    ε-parametrisation is ``‖ε̂_θ(x_t, t) − z‖²``. The network receives the SDE time ``t ∈ [ε, 1]``.
    """

    name = "score_sde"
    card = staticmethod(score_sde_card)
    evaluation_fields = ("num_eval_samples", "num_nll_samples")
    args: ScoreSDEArguments

    def __init__(self, args: ScoreSDEArguments):
        super().__init__(args)
        self.scheduler = args.noise_scheduler()

    @contextmanager
    def batches(self, start: int, stream: int, phase: int = 0) -> Iterator[NoisedScoreBatches]:
        args = self.args
        yield NoisedScoreBatches(
            self.target,
            self.scheduler,
            args.train_batch_size,
            time_beta=args.time_beta,
            seed=args.seed,
            stream=stream,
            start=start,
        )

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        noisy, timesteps, noise = (tensor.to(device) for tensor in batch)
        return denoising_score_matching_loss_at(model, noisy, timesteps, noise, self.scheduler)

    def pipeline(self, model: TimeMLP) -> ScoreSDEPipeline:
        return ScoreSDEPipeline(model, self.args.noise_scheduler())

    def sample(self, pipeline: ScoreSDEPipeline, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        args = self.args
        return pipeline(num_samples, args.num_inference_steps, sampler=args.sampler, generator=generator).samples

    def trajectory_figure(self, pipeline: ScoreSDEPipeline, num_samples: int, seed: int) -> Any:
        from hfgen import plotting

        generator = torch.Generator().manual_seed(seed)
        out = pipeline(
            num_samples, self.args.num_inference_steps, sampler=self.args.sampler, generator=generator,
            return_trajectory=True,
        )  # fmt: skip
        # plot_trajectory reads its panels as time running from the source to the data: t ↦ 1 − t.
        return plotting.plot_trajectory(out.trajectory, [1.0 - t for t in out.timesteps], bounds=(-3.0, 3.0))

    def final_figures(self, pipeline: ScoreSDEPipeline) -> dict[str, Any]:
        from hfgen import plotting

        if self.target.dim != 2:
            return {}
        generator = torch.Generator().manual_seed(2)
        samples = self.sample(pipeline, 2000, generator)
        t_small = 0.05
        m, s = (float(v) for v in pipeline.scheduler.marginal_coefficients(t_small))
        figures = {
            "samples.png": plotting.plot_samples(
                samples, reference=self.target.sample(2000, generator), title="samples"
            ),
            "trajectory.png": self.trajectory_figure(pipeline, 1000, seed=2),
            "score_field.png": plotting.plot_velocity_field(
                pipeline.score,
                t=t_small,
                bounds=(-2.5, 2.5),
                grid_size=21,
                titles=(f"learned score s_θ(x, t), m_t = {m:.2f}, σ_t = {s:.2f}", ""),
            ),
        }
        if self.target.has_log_prob:
            figures["density.png"] = plotting.plot_density(
                lambda x: pipeline.log_prob(x, rtol=1e-3, atol=1e-3), bounds=(-2.5, 2.5), grid_size=60,
                title="probability-flow density",
            )  # fmt: skip
        return figures


def train_score_sde(args: ScoreSDEArguments) -> tuple[ScoreSDEPipeline, dict[str, Any]]:
    """Train in this process without writing outputs (benchmarks, notebooks); returns the EMA pipeline and the
    training numbers."""
    result = train_in_process(ScoreSDETask(args))
    return result.pipeline, result.metrics


def evaluate_score_sde(pipeline: ScoreSDEPipeline, args: ScoreSDEArguments, seed: int = 1) -> dict[str, Any]:
    """Final metrics of a trained pipeline in this process: W2 and its floor, MMD, support, and the
    probability-flow NLL of ``num_nll_samples`` held-out points."""
    return evaluate_in_process(ScoreSDETask(args), pipeline, args.num_eval_samples, args.num_nll_samples, seed)
