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
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin

from hfgen.arguments.schrodinger_bridge import DIRECTIONS, SchrodingerBridgeArguments
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
from hfgen.pipelines import SchrodingerBridgePipeline
from hfgen.plotting.points import bridge_progression_figures
from hfgen.training.engine import HELD_OUT_SEED
from hfgen.training.task import Phase, Progress, TrainingTask
from hfgen.training.trainer import Trainer, run
from hfgen.utils import batch_generator

__all__ = ["evaluate_schrodinger_bridge", "run_bridge", "SchrodingerBridgeTask"]


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
    card = staticmethod(schrodinger_bridge_card)
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
