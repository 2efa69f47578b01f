"""Constant-α DDPM as a :class:`~hfgen.training.task.TrainingTask`: arguments, batches, loss, metrics, figures,
model card."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor

from hfgen.data import get_toy_distribution
from hfgen.data.toy import ToyDistribution
from hfgen.methods.ddpm import epsilon_loss
from hfgen.model_cards.ddpm_points import ddpm_points_card
from hfgen.models import TimeMLP
from hfgen.models.mlp import TIME_EMBEDDINGS
from hfgen.pipelines import DDPMPointsPipeline
from hfgen.schedulers import ConstantAlphaDDPMScheduler
from hfgen.schedulers.constant_alpha_ddpm import SAMPLERS, VARIANCE_TYPES, alpha_for_final_alpha_bar
from hfgen.training.arguments import TrainingArguments, documented
from hfgen.training.points import PointTask
from hfgen.utils import batch_generator

#: α of the built-in recipe when neither ``alpha`` nor ``final_alpha_bar`` is given (with T = 500: ᾱ_T ≈ 0.0066)
DEFAULT_ALPHA = 0.99
#: ``beta_schedule`` choices: the course's constant α, or one of diffusers' DDPMScheduler/DDIMScheduler schedules
BETA_SCHEDULES = ("constant_alpha", "linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass
class DDPMPointsArguments(TrainingArguments):
    """Arguments of ``training/train_ddpm.py``; the defaults are the built-in recipe (checkerboard target).

    The schedule is ``ᾱ_t = α^t``, ``t = 0 … T``: give ``alpha`` or ``final_alpha_bar`` (then
    ``α = ᾱ_T^{1/T}``), not both; with neither, ``α = 0.99``. With ``beta_schedule`` other than ``"constant_alpha"``
    the run uses diffusers' own ``DDPMScheduler`` (or ``DDIMScheduler`` for ``sampler="ddim"``) with that β schedule
    from ``beta_start`` to ``beta_end`` (``clip_sample=False``, ε-prediction), ``ᾱ_t = Π_{s ≤ t} (1 − β_s)``.
    """

    run_only_fields = TrainingArguments.run_only_fields | {"num_eval_samples"}

    output_dir: str = documented("out/ddpm-checkerboard", "where the run writes its outputs")
    max_train_steps: int = field(default=12_000, metadata={"help": "optimizer steps"})
    checkpointing_steps: int = documented(4_000, "save the training state every N steps (0: never)")
    validation_steps: int = documented(4_000, "sample with the EMA weights, plot and score every N steps (0: never)")
    dataset: str = field(default="checkerboard", metadata={"help": "data distribution x_0 (hfgen.data toy name)"})
    num_train_timesteps: int = field(default=500, metadata={"help": "number T of diffusion steps"})
    beta_schedule: str = field(
        default="constant_alpha",
        metadata={"help": f"{BETA_SCHEDULES}: the course's ᾱ_t = α^t, or a diffusers DDPMScheduler β schedule"},
    )
    beta_start: float = field(default=1e-4, metadata={"help": "β_1 of a diffusers linear or scaled_linear schedule"})
    beta_end: float = field(default=0.02, metadata={"help": "β_T of a diffusers linear or scaled_linear schedule"})
    alpha: float | None = field(default=None, metadata={"help": f"constant α in (0, 1) (default {DEFAULT_ALPHA})"})
    final_alpha_bar: float | None = field(
        default=None, metadata={"help": "instead of alpha: ᾱ_T in (0, 1), giving α = ᾱ_T^(1/T)"}
    )
    hidden_size: int = 256
    num_layers: int = 4
    activation: str = "silu"
    time_embedding: str = field(
        default="sinusoidal",
        metadata={"help": f"{TIME_EMBEDDINGS}: sinusoids of the integer t, or Fourier features of t / T"},
    )
    num_position_frequencies: int = field(
        default=6, metadata={"help": "octave encodings sin/cos(2^k π x), k < L, of the input point (0: none)"}
    )
    variance_type: str = field(
        default="beta_tilde", metadata={"help": f"reverse-step variance {VARIANCE_TYPES} (β̃: posterior variance)"}
    )
    sampler: str = field(default="ancestral", metadata={"help": f"sampler saved in the scheduler: {SAMPLERS}"})
    eta: float = field(default=0.0, metadata={"help": "DDIM noise scale η in [0, 1] (sampler='ddim' only)"})
    num_inference_steps: int | None = field(
        default=None, metadata={"help": "sampling steps in 1 … T for validation and evaluation (default: all T)"}
    )
    num_eval_samples: int = documented(10_000, "samples for W2, MMD and support at the end")

    positive_fields = (*TrainingArguments.positive_fields, "num_train_timesteps", "num_eval_samples")
    choice_fields = {
        **TrainingArguments.choice_fields,
        "beta_schedule": BETA_SCHEDULES,
        "variance_type": VARIANCE_TYPES,
        "sampler": SAMPLERS,
        "time_embedding": TIME_EMBEDDINGS,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        get_toy_distribution(self.dataset)  # raises a clear error for unknown names
        if self.beta_schedule != "constant_alpha":
            for name in ("alpha", "final_alpha_bar"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"`{name}` applies to beta_schedule='constant_alpha' only, got beta_schedule="
                        f"{self.beta_schedule!r}, {name}={getattr(self, name)}"
                    )
            if self.eta:
                raise ValueError(
                    f"`eta` applies to beta_schedule='constant_alpha' only (diffusers' DDIMScheduler takes η at each "
                    f"step), got beta_schedule={self.beta_schedule!r}, eta={self.eta}"
                )
            if not 0.0 < self.beta_start <= self.beta_end < 1.0:
                raise ValueError(
                    f"`beta_start` and `beta_end` must satisfy 0 < beta_start <= beta_end < 1, got "
                    f"beta_start={self.beta_start}, beta_end={self.beta_end}"
                )
        if self.alpha is not None and self.final_alpha_bar is not None:
            raise ValueError(
                f"give `alpha` ({self.alpha}) or `final_alpha_bar` ({self.final_alpha_bar}), not both: "
                "ᾱ_T = α^T ties them together"
            )
        for name in ("alpha", "final_alpha_bar"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise ValueError(f"`{name}` must be in the open interval (0, 1), got {value}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"`eta` must be in [0, 1], got {self.eta}")
        if self.eta and self.sampler != "ddim":
            raise ValueError(f"`eta` applies to sampler='ddim' only, got sampler={self.sampler!r}, eta={self.eta}")
        steps = self.num_inference_steps
        if steps is not None and not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(
                f"`num_inference_steps` must be in 1 … {self.num_train_timesteps} (num_train_timesteps), got {steps}"
            )

    def schedule_alpha(self) -> float:
        """The constant ``α``: ``alpha``, else ``final_alpha_bar^{1/T}``, else :data:`DEFAULT_ALPHA`."""
        if self.alpha is not None:
            return float(self.alpha)
        if self.final_alpha_bar is not None:
            return alpha_for_final_alpha_bar(self.num_train_timesteps, self.final_alpha_bar)
        return DEFAULT_ALPHA

    def noise_scheduler(self) -> ConstantAlphaDDPMScheduler | DDPMScheduler | DDIMScheduler:
        """The run's scheduler: ``ᾱ_t = α^t`` for ``t = 0 … T`` with the chosen sampler, or diffusers' DDPM (DDIM for
        ``sampler="ddim"``) scheduler with ``beta_schedule``; ``variance_type`` ``beta_tilde``/``beta`` is diffusers'
        ``fixed_small``/``fixed_large``."""
        if self.beta_schedule != "constant_alpha":
            common = {
                "num_train_timesteps": self.num_train_timesteps,
                "beta_schedule": self.beta_schedule,
                "beta_start": self.beta_start,
                "beta_end": self.beta_end,
                "clip_sample": False,
                "prediction_type": "epsilon",
            }
            if self.sampler == "ddim":
                return DDIMScheduler(**common)
            variance = "fixed_small" if self.variance_type == "beta_tilde" else "fixed_large"
            return DDPMScheduler(variance_type=variance, **common)
        return ConstantAlphaDDPMScheduler(
            alpha=self.schedule_alpha(),
            num_train_timesteps=self.num_train_timesteps,
            variance_type=self.variance_type,
            sampler=self.sampler,
            eta=self.eta,
        )


class NoisedBatches:
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
        if start < 0:
            raise ValueError(f"`start` must be >= 0, got {start}")
        self.target, self.scheduler, self.batch_size = target, scheduler, batch_size
        self.seed, self.stream, self.next_index = seed, stream, start

    def draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch number ``index``."""
        generator = batch_generator(self.seed, self.stream, index)
        x0 = self.target.sample(self.batch_size, generator)
        if isinstance(self.scheduler, ConstantAlphaDDPMScheduler):
            return self.scheduler.sample_training_inputs(x0, generator)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
        noise = randn_tensor(x0.shape, generator=generator, dtype=x0.dtype)
        return self.scheduler.add_noise(x0, noise, timesteps), timesteps, noise

    def __iter__(self) -> NoisedBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index, self.next_index = self.next_index, self.next_index + 1
        return self.draw(index)


class DDPMPointsTask(PointTask):
    r"""DDPM (constant α, or a diffusers β schedule) on ``args.dataset`` with an ε-predicting
    :class:`~hfgen.models.TimeMLP`.

    Each micro-batch draws ``x_0 ~ target``, ``t ~ U{1, …, T}`` and ``z ~ N(0, I)`` and minimises
    ``‖ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) z, t) − z‖²`` with ``ᾱ_t = α^t`` (Ho et al. 2020). The network receives the integer
    step ``t`` (sinusoidal embedding, ``time_scale = 1``) or ``t / T`` (Fourier features).
    """

    name = "ddpm_points"
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

    def _reverse_figure(self, pipeline: DDPMPointsPipeline, num_samples: int, seed: int) -> Any:
        from hfgen import plotting

        generator = torch.Generator().manual_seed(seed)
        out = pipeline(num_samples, self.args.num_inference_steps, generator=generator, return_trajectory=True)
        if self.args.beta_schedule != "constant_alpha":
            return plotting.plot_trajectory(out.trajectory, out.timesteps)
        return plotting.plot_diffusion_reverse(out.trajectory, out.timesteps, pipeline.scheduler.config.alpha)

    def validation_figures(self, pipeline: DDPMPointsPipeline, samples: torch.Tensor) -> dict[str, Any]:
        if self.target.dim != 2:
            return {}
        return {**self.samples_figure(samples), "reverse.png": self._reverse_figure(pipeline, 500, seed=3)}

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
            "reverse.png": self._reverse_figure(pipeline, 1000, seed=2),
        }

    def model_card(self, metrics: dict[str, Any], repo_id: str | None) -> Any:
        return ddpm_points_card(self.args, metrics, repo_id)


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
