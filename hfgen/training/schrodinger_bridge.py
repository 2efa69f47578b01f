r"""Training the γ-step diffusion Schrödinger bridge: the course's two stages as phases of the one Trainer.

The chain is :class:`~hfgen.schedulers.BridgeScheduler`'s: ``X_0 ~ p_data``, ``X_N ~ p'_data``, forward
``X_{k+1} = f_k(X_k) + √(2γ_k) Z``, backward ``X_k = b_{k+1}(X_{k+1}) + √(2γ_k) Z``, with mean-predicting networks
trained by DSB's mean matching (De Bortoli et al. 2021; :mod:`hfgen.methods.schrodinger_bridge`).

A run is a list of *half-iterations*, each a :class:`~hfgen.training.task.Phase`: one optimisation of ONE
direction's network by mean matching against a FIXED chain (the other network, or a reference), with a fresh
AdamW, learning-rate schedule (warm-up, then ``lr_scheduler``) and optional EMA over ``half_iteration_steps`` steps:

- ``stage="diffusion"`` (the simplified diffusion approach): the forward network learns the time reversal of the
  Ornstein–Uhlenbeck chain that noises ``p'_data`` into ``N(0, I)`` (so its chain goes ``N(0, I) → p'_data``) and
  the backward network that of ``p_data`` (``N(0, I) → p_data``). Started from ``x_0 ~ p_data`` instead of noise,
  the forward chain still ends near ``p'_data`` (the OU chain forgets its start), and the backward chain takes
  ``y ~ p'_data`` to ``p_data``. (The course calls the network that reaches ``p'_data`` "b"; here names follow the
  direction of the chain.)
- ``stage="ipf"``: iteration ``n`` fits the backward network to the forward chain from ``p_data`` (the Brownian
  reference ``f_k(x) = x`` when ``n = 0``), then the forward network to that backward chain from ``p'_data``.

Randomness of half-iteration ``h`` (trajectory caches, minibatches) comes from its own counter-based generator
(:func:`hfgen.utils.batch_generator` of ``(seed, process, h)``) and the optimiser starts afresh, so the run after
``h`` half-iterations is a function of the two networks' weights alone: checkpoints are taken at the ends of
half-iterations (every ``checkpointing_steps`` of them) and a resumed run ends with the same weights as an
uninterrupted one. After every ``validation_steps`` IPF iterations (and at the end) both networks transport
``num_validation_samples`` points, the W2 of each end to its target marginal is logged beside the floor, and the
progression plots are saved under ``validation/``.

Several processes: each draws its own trajectories (stream = process index) and gradients are averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin

from hfgen.data import TOY_DISTRIBUTIONS, Shifted, ToyDistribution, get_toy_distribution
from hfgen.methods.schrodinger_bridge import (
    mean_matching_loss,
    mean_matching_targets,
    opposite,
    reference_mean,
    simulate_chain,
    step_weights,
)
from hfgen.metrics import sample_quality_report
from hfgen.model_cards.schrodinger_bridge import schrodinger_bridge_card
from hfgen.models.mlp import TimeMLP
from hfgen.models.residual_mean import ResidualMean
from hfgen.pipelines import SchrodingerBridgePipeline
from hfgen.plotting.points import bridge_progression_figures
from hfgen.schedulers.schrodinger_bridge import SCHEDULES, BridgeScheduler
from hfgen.training.arguments import TrainingArguments, documented
from hfgen.training.engine import HELD_OUT_SEED
from hfgen.training.task import Phase, Progress, TrainingTask
from hfgen.training.trainer import Trainer, run
from hfgen.utils import batch_generator, check_positive_int

STAGES = ("diffusion", "ipf")
LOSS_WEIGHTINGS = ("none", "inverse_gamma")
DIRECTIONS = ("forward", "backward")


@dataclass
class SchrodingerBridgeArguments(TrainingArguments):
    """Arguments of ``training/train_bridge.py``; the defaults are the course's bridge between two balls and the
    same two balls shifted, ``N = 20`` steps of ``γ = 2 / N``.

    ``half_iteration_steps`` counts the optimizer steps of ONE half-iteration (one direction); ``max_train_steps``,
    the optimizer steps of the whole run, follows from it (not an argument). ``checkpointing_steps`` and
    ``validation_steps`` count half-iterations and IPF iterations.
    """

    run_only_fields = TrainingArguments.run_only_fields | {"num_eval_samples", "plots"}
    # a half-iteration's length decides where every later phase starts: it cannot change on resume
    adjustable_on_resume = TrainingArguments.adjustable_on_resume - {"max_train_steps"}
    step_fields = ("half_iteration_steps",)

    output_dir: str = documented("out/bridge-two-balls", "where the run writes its outputs")
    stage: str = documented("ipf", f"{STAGES}: 'diffusion' trains each direction from N(0, I); 'ipf' alternates")
    dataset: str = documented("two_balls", f"p_data, the law of X_0, one of {', '.join(TOY_DISTRIBUTIONS)}")
    target_dataset: str | None = documented(None, "base of p'_data, the law of X_N (default: dataset)")
    target_shift: list[float] = field(
        default_factory=lambda: [0.0, 3.0], metadata={"help": "p'_data = target_dataset shifted by this vector"}
    )
    num_steps: int = documented(20, "number N of steps of the chain")
    gamma: float | None = documented(None, "mean step size γ (default 2 / N)")
    schedule: str = documented("symmetric", f"step sizes {SCHEDULES}: all γ, or small steps near both ends (DSB)")
    schedule_power: float = documented(1.0, "symmetric schedule: γ_k ∝ min(k + 1, N − k)^p (larger p: smaller ends)")
    final_step_noise: bool = documented(False, "sampling adds noise at the last step too (default: its mean)")
    loss_weighting: str = documented(
        "inverse_gamma",
        f"{LOSS_WEIGHTINGS}: weight each mean-matching pair by γ̄ / γ_k (hfgen.methods.schrodinger_bridge.step_weights)",
    )
    ipf_iterations: int = documented(3, "IPF iterations (stage 'ipf'); each trains both directions")
    num_trajectories: int = documented(4_000, "trajectories per cache of regression pairs (DSB Alg. 1)")
    refresh_every: int = documented(100, "redraw the cache every N optimizer steps")
    residual: bool = documented(True, "mean network x + g(x, k) (ResidualMean); False: a plain TimeMLP")
    hidden_size: int = 128
    num_layers: int = 3
    half_iteration_steps: int = documented(5_000, "optimizer steps of each half-iteration (one direction)")
    max_train_steps: int = field(init=False, default=0, metadata={"help": "optimizer steps of the whole run"})
    learning_rate: float = 3e-3
    lr_warmup_steps: int = 50
    ema_decay: float = documented(0.0, "EMA decay within a half-iteration (0: off; the cosine schedule averages)")
    checkpointing_steps: int = documented(1, "save both networks every N half-iterations (0: never)")
    checkpoints_total_limit: int = documented(0, "keep only the newest N checkpoints (0: keep all)")
    validation_steps: int = documented(1, "evaluate and plot every N IPF iterations (0: at the end only)")
    num_validation_samples: int = documented(2_000, "points transported at each evaluation")
    num_eval_samples: int = documented(2_000, "points transported for the final metrics")
    plots: bool = documented(True, "save the progression plots at each evaluation and beside the final pipeline")

    positive_fields = (
        *TrainingArguments.positive_fields,
        *("num_steps", "num_trajectories", "refresh_every", "num_eval_samples"),
    )
    choice_fields = {**TrainingArguments.choice_fields, "loss_weighting": LOSS_WEIGHTINGS}

    def run_length(self) -> tuple[int, int]:
        """``(optimizer steps of a half-iteration, the recipe's)``."""
        default = next(f.default for f in fields(self) if f.name == "half_iteration_steps")
        return self.half_iteration_steps, default

    def __post_init__(self) -> None:
        check_positive_int(self.half_iteration_steps, "half_iteration_steps")
        if self.stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}, got {self.stage!r}")
        check_positive_int(self.ipf_iterations, "ipf_iterations")
        self.max_train_steps = len(self.half_iterations()) * self.half_iteration_steps
        super().__post_init__()
        if self.gamma is not None and not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"`gamma` must be a finite number > 0 (or None for 2 / num_steps), got {self.gamma!r}")
        scheduler = self.noise_scheduler()  # the scheduler's own checks (schedule name)
        largest = float(scheduler.gammas.max())
        if self.stage == "diffusion" and largest >= 0.5:
            raise ValueError(
                f"stage 'diffusion' noises the data with the chain X' = √(1 − 2γ_k) X + √(2γ_k) Z, which needs every "
                f"γ_k < 1/2, got max γ_k = {largest:.4g} (num_steps={self.num_steps}, gamma={self.gamma}, "
                f"schedule={self.schedule!r}); use more steps or a smaller gamma"
            )
        source, target = self.marginals()
        if source.dim != target.dim:
            raise ValueError(
                f"p_data `dataset` {self.dataset!r} has dimension {source.dim} but p'_data `target_dataset` "
                f"{self.target_dataset or self.dataset!r} has dimension {target.dim}; both ends need the same dimension"
            )

    def noise_scheduler(self) -> BridgeScheduler:
        """The run's chain: ``num_steps`` steps of mean size ``gamma`` (``2 / N`` when None)."""
        return BridgeScheduler(
            num_steps=self.num_steps,
            gamma=self.gamma,
            schedule=self.schedule,
            final_step_noise=self.final_step_noise,
            schedule_power=self.schedule_power,
        )

    def marginals(self) -> tuple[ToyDistribution, ToyDistribution]:
        """``(p_data, p'_data)``: ``dataset`` and ``target_dataset`` shifted by ``target_shift``."""
        source = get_toy_distribution(self.dataset)
        base = get_toy_distribution(self.target_dataset or self.dataset)
        if len(self.target_shift) != base.dim:
            raise ValueError(
                f"`target_shift` {list(self.target_shift)} has length {len(self.target_shift)} but p'_data's base "
                f"{self.target_dataset or self.dataset!r} has dimension {base.dim}"
            )
        return source, Shifted(base, [float(v) for v in self.target_shift])

    def describe_target(self) -> str:
        """``p'_data`` in words, e.g. ``two_balls shifted by (0.0, 3.0)``."""
        shift = ", ".join(f"{float(v):g}" for v in self.target_shift)
        return f"{self.target_dataset or self.dataset} shifted by ({shift})"

    def half_iterations(self) -> list[tuple[str, str]]:
        """The run's plan, ``(direction, what it is fitted to)`` per half-iteration."""
        if self.stage == "diffusion":
            return [("forward", "noise"), ("backward", "noise")]
        plan = []
        for n in range(self.ipf_iterations):
            plan += [("backward", "reference" if n == 0 else "forward"), ("forward", "backward")]
        return plan

    def build_network(self, dim: int) -> ModelMixin:
        """A direction's mean network: :class:`ResidualMean`, or a plain :class:`TimeMLP` mean."""
        if self.residual:
            return ResidualMean(dim=dim, hidden_size=self.hidden_size, num_layers=self.num_layers)
        # the integer state index k is the time input (time_scale 1, sinusoidal embedding)
        return TimeMLP(dim=dim, hidden_size=self.hidden_size, num_layers=self.num_layers, time_scale=1.0)


class HalfIterationBatches:
    r"""The micro-batches of one half-iteration: regression pairs ``(Y, k, T[, w])`` of
    :func:`~hfgen.methods.schrodinger_bridge.mean_matching_targets` drawn from a cache of ``num_trajectories``
    chains, redrawn every ``refresh_every`` micro-batches (DSB Alg. 1), all from the half-iteration's generator."""

    def __init__(self, task: SchrodingerBridgeTask, index: int, stream: int):
        self.task, self.stream = task, stream
        direction, fitted_to = task.args.half_iterations()[index]
        self.direction = direction
        self.start_sampler, self.other_mean = task.chain(fitted_to, direction)
        self.generator = batch_generator(task.args.seed, stream, index)
        self.micro_step = 0
        self.cache: tuple[torch.Tensor, ...] = ()

    def __iter__(self) -> HalfIterationBatches:
        return self

    def __next__(self) -> list[torch.Tensor]:
        args, scheduler = self.task.args, self.task.scheduler
        if self.micro_step % args.refresh_every == 0:
            start = self.start_sampler(args.num_trajectories, self.generator)
            trajectory = simulate_chain(self.other_mean, start, scheduler, opposite(self.direction), self.generator)
            self.cache = mean_matching_targets(trajectory, self.other_mean, self.direction)
            if args.loss_weighting == "inverse_gamma":
                self.cache = (*self.cache, step_weights(scheduler, self.cache[1], self.direction))
        self.micro_step += 1
        rows = torch.randint(len(self.cache[0]), (args.train_batch_size,), generator=self.generator)
        return [tensor[rows] for tensor in self.cache]


class SchrodingerBridgeTask(TrainingTask):
    """The bridge's two mean networks, ``forward`` and ``backward``, trained phase by phase
    (:meth:`SchrodingerBridgeArguments.half_iterations`), evaluated after each IPF iteration by transporting points
    each way."""

    name = "schrodinger_bridge"
    evaluation_fields, fast_evaluation_sizes = ("num_eval_samples", None), (500, 0)

    def __init__(self, args: SchrodingerBridgeArguments):
        super().__init__(args)
        self.source, self.target = args.marginals()
        self.scheduler = args.noise_scheduler()
        self.last_loss: dict[str, float] = {}

    def build_models(self) -> dict[str, ModelMixin]:
        self.models = {direction: self.args.build_network(self.source.dim) for direction in DIRECTIONS}
        return self.models

    def phases(self) -> list[Phase]:
        plan = self.args.half_iterations()
        return [
            Phase(direction, self.args.half_iteration_steps, f"{h + 1}: {direction}")
            for h, (direction, _) in enumerate(plan)
        ]

    def chain(self, fitted_to: str, direction: str) -> tuple[Callable, Callable]:
        """``(start_sampler, other_mean)`` of a half-iteration: where its trajectories start and the mean that
        runs them in the other direction."""
        start = self.source if direction == "backward" else self.target  # X_0 ~ p_data or X_N ~ p'_data
        if fitted_to == "noise":  # learn the reversal of the OU chain that noises that data into N(0, I)
            return start.sample, reference_mean(self.scheduler, opposite(direction), "ornstein_uhlenbeck")
        if fitted_to == "reference":
            return start.sample, reference_mean(self.scheduler, opposite(direction))
        return start.sample, self.models[fitted_to]

    @contextmanager
    def batches(self, start: int, stream: int, phase: int = 0) -> Iterator[HalfIterationBatches]:
        if start != 0:
            raise ValueError(
                f"a bridge half-iteration restarts from its beginning (its trajectory cache is not checkpointed), "
                f"got start={start}; checkpoints are taken at the ends of half-iterations"
            )
        yield HalfIterationBatches(self, phase, stream)

    def loss(self, model: torch.nn.Module, batch: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        return mean_matching_loss(model, *(tensor.to(device) for tensor in batch))

    def pipeline(self, forward: ModelMixin, backward: ModelMixin) -> SchrodingerBridgePipeline:
        pipeline = SchrodingerBridgePipeline(forward, backward, self.args.noise_scheduler(), self.source, self.target)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def end_phase(self, phase: int, losses: list[float]) -> dict[str, Any]:
        direction = self.args.half_iterations()[phase][0]
        self.last_loss[direction] = _tail_mean(losses)
        return {f"{direction}_loss": self.last_loss[direction]}

    def _iteration_end(self, progress: Progress) -> bool:
        """After the second half-iteration of IPF iteration ``n`` (``n + 1`` a multiple of ``validation_steps``),
        and after the last one."""
        if not progress.phase_done or progress.phase % 2 == 0:
            return False
        every = self.args.validation_steps
        return progress.run_done or bool(every) and (progress.phase // 2 + 1) % every == 0

    def validation_due(self, progress: Progress) -> bool:
        return self._iteration_end(progress)

    def checkpoint_due(self, progress: Progress) -> bool:
        every = self.args.checkpointing_steps
        return progress.phase_done and bool(every) and ((progress.phase + 1) % every == 0 or progress.run_done)

    def evaluate(
        self,
        trainer: Trainer,
        pipeline: SchrodingerBridgePipeline,
        num_samples: int,
        num_likelihood_points: int,
        seed: int,
    ) -> tuple[dict[str, Any], None]:
        """:func:`evaluate_schrodinger_bridge` of ``num_samples`` points each way, and the last mean-matching losses."""
        record = evaluate_schrodinger_bridge(pipeline, num_samples, seed=seed)
        losses = {f"{direction}_loss": loss for direction, loss in self.last_loss.items()}
        return record | losses, None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{direction}_loss": torch.tensor(loss) for direction, loss in self.last_loss.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.last_loss = {key.removesuffix("_loss"): float(value) for key, value in state.items()}

    def validation_figures(self, pipeline: SchrodingerBridgePipeline, samples: None) -> dict[str, Any]:
        return bridge_progression_figures(pipeline, 1000, seed=3) if self.args.plots else {}

    def final_figures(self, pipeline: SchrodingerBridgePipeline) -> dict[str, Any]:
        return bridge_progression_figures(pipeline, 1000, seed=2) if self.args.plots else {}

    def model_card(self, metrics: dict[str, Any], repo_id: str | None) -> Any:
        return schrodinger_bridge_card(self.args, metrics, repo_id)


def _tail_mean(losses: list[float], size: int = 100) -> float:
    """Mean of the last ``size`` losses (the end of a half-iteration, where the schedule has settled)."""
    tail = losses[-size:]
    return sum(tail) / len(tail) if tail else math.nan


@torch.no_grad()
def evaluate_schrodinger_bridge(
    pipeline: SchrodingerBridgePipeline, num_samples: int, seed: int = 1
) -> dict[str, float]:
    r"""How well each end of the bridge matches its marginal.

    ``forward_*``: ``x_0 ~ p_data`` transported by the forward chain, against fresh ``p'_data`` samples;
    ``backward_*``: ``y ~ p'_data`` transported back, against fresh ``p_data`` samples. Each has ``w2`` (exact W2,
    :func:`hfgen.metrics.wasserstein2`), ``w2_floor`` (W2 between two marginal samples of the same size,
    :func:`hfgen.metrics.wasserstein2_floor`), ``w2_ratio``, ``mmd`` and, for bounded marginals,
    ``fraction_in_support`` (:func:`hfgen.metrics.sample_quality_report`). The reference samples are drawn from a
    fixed seed, so successive evaluations compare against the same points.
    """
    generator = torch.Generator().manual_seed(seed)
    record: dict[str, float] = {}
    for offset, (direction, marginal) in enumerate(
        (("forward", pipeline.target_distribution), ("backward", pipeline.source_distribution))
    ):
        samples = pipeline(num_samples, direction=direction, generator=generator).samples
        reference = torch.Generator().manual_seed(HELD_OUT_SEED + offset)
        report = sample_quality_report(samples, marginal, generator=reference)
        record |= {f"{direction}_{key}": value for key, value in report.items()}
    return record


def run_bridge(args: SchrodingerBridgeArguments) -> dict[str, Any]:
    """Train (or resume), evaluate with ``num_eval_samples`` points each way, save the pipeline, ``metrics.json``,
    the card and the plots in ``output_dir`` and, with ``--push_to_hub``, upload them. Returns the metrics (main
    process; ``{}`` elsewhere)."""
    return run(SchrodingerBridgeTask(args))
