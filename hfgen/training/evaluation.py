"""The evaluation stages of a run: validation during training and, after it, the saved pipeline, the final evaluation
(full or fast, :meth:`~hfgen.arguments.TrainingArguments.fast_evaluation`), ``metrics.json``, the card and
the figures. Each stage that can take more than a moment says on stderr what it does and how large it is.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hfgen.training.engine import (
    HELD_OUT_SEED,
    METRICS_FILE,
    VALIDATION_FOLDER,
    finish_output_dir,
    is_number,
    save_figure,
    status,
    write_atomic,
)
from hfgen.training.task import TrainingTask

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """The trained pipeline (EMA weights when EMA is on) and the run's numbers."""

    pipeline: Any
    metrics: dict[str, Any] = field(default_factory=dict)


class EvaluationStage:
    """The :class:`~hfgen.training.trainer.Trainer`'s evaluation and saving: sampling and likelihoods across
    processes, validation with the EMA weights, the final evaluation and the run's outputs (main process)."""

    accelerator: Any
    task: TrainingTask
    args: Any
    ema: Any
    model: torch.nn.Module
    models: dict[str, Any]
    history: list[dict[str, Any]]
    #: whether :meth:`stage` lines are printed (during the final evaluation, not within the training bar)
    announcing: bool = False

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def stage(self, message: str) -> None:
        """One ``[hfgen] …`` line on stderr for a stage of the final evaluation (main process)."""
        if self.announcing:
            status(self.accelerator, message)

    def _gather_samples(self, pipeline: Any, num_samples: int, seed: int) -> torch.Tensor:
        """``num_samples`` samples drawn across processes (each its share, own generator), gathered everywhere."""
        accelerator = self.accelerator
        share = math.ceil(num_samples / accelerator.num_processes)
        generator = torch.Generator().manual_seed(seed + 7919 * accelerator.process_index)
        samples = self.task.sample(pipeline, share, generator).to(accelerator.device).contiguous()
        return accelerator.gather(samples)[:num_samples].cpu()

    def _gather_log_likelihood(self, pipeline: Any, points: torch.Tensor) -> torch.Tensor:
        accelerator = self.accelerator
        share = math.ceil(points.shape[0] / accelerator.num_processes)
        mine = points[accelerator.process_index * share : (accelerator.process_index + 1) * share]
        padded = torch.full((share,), float("nan"))
        if mine.shape[0]:
            padded[: mine.shape[0]] = self.task.log_likelihood(pipeline, mine).detach().cpu()
        gathered = accelerator.gather(padded.to(accelerator.device)).cpu()
        return gathered[~torch.isnan(gathered)]

    def evaluate_pipeline(
        self, pipeline: Any, num_samples: int, num_likelihood_points: int, seed: int
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """Metrics of ``pipeline``: sample quality from ``num_samples`` samples drawn across processes (seeded by
        ``seed``) against a fixed held-out reference, and the likelihood of ``num_likelihood_points`` fixed
        held-out points where the task has one. The same reference at every validation makes them comparable."""
        self.stage(f"drawing {num_samples:,} samples …")
        samples = self._gather_samples(pipeline, num_samples, seed)
        reference = torch.Generator().manual_seed(HELD_OUT_SEED)
        self.stage(f"scoring the {num_samples:,} samples against held-out data …")
        metrics = self.task.score(samples, reference) if self.is_main else {}
        held_out = torch.Generator().manual_seed(HELD_OUT_SEED + 1)
        points = self.task.log_likelihood_points(num_likelihood_points, held_out) if num_likelihood_points else None
        if points is not None:
            self.stage(f"log-likelihood of {points.shape[0]:,} held-out points …")
            log_prob = self._gather_log_likelihood(pipeline, points)
            if self.is_main:
                metrics |= self.task.score_log_likelihood(log_prob)
        return metrics, samples

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, Any]:
        """Evaluate with the EMA weights, save the task's figures under ``validation/`` and log the metrics."""
        if self.ema is not None:
            self.ema.store(self.model.parameters())
            self.ema.copy_to(self.model.parameters())
        for model in self.models.values():
            model.eval()
        pipeline = self.task.pipeline(**self.models)
        quiet(pipeline)
        num_points = getattr(self.args, "num_validation_nll_samples", 0)
        metrics, samples = self.task.evaluate(
            self, pipeline, self.args.num_validation_samples, num_points, self.args.seed + step
        )
        if self.is_main:
            folder = Path(self.args.output_dir) / VALIDATION_FOLDER
            for name, figure in self.task.validation_figures(pipeline, samples).items():
                folder.mkdir(parents=True, exist_ok=True)
                save_figure(figure, folder / f"step-{step:07d}-{name}")
            record = {"step": step, **metrics}
            self.history.append(record)
            self.accelerator.log({f"validation/{k}": v for k, v in metrics.items() if is_number(v)}, step=step)
            logger.info("validation at step %d: %s", step, json.dumps(record))
        if self.ema is not None:
            self.ema.restore(self.model.parameters())
        self.model.train()
        return metrics

    def final_evaluation(self, pipeline: Any) -> dict[str, Any]:
        """The task's metrics of the trained ``pipeline`` at :meth:`TrainingTask.evaluation_sizes` (seed 1), with
        ``evaluation`` (``"fast"`` or ``"full"``), its sizes and its CPU seconds when the task has a sized
        evaluation."""
        quiet(pipeline)
        num_samples, num_points = self.task.evaluation_sizes()
        sized = any(self.task.evaluation_fields)
        kind = ("fast" if self.args.fast_evaluation() else "full") if sized else "final"
        held_out = f" and {num_points:,} held-out log-likelihoods" if num_points else ""
        status(self.accelerator, f"{kind} evaluation: {num_samples:,} samples{held_out} …")
        wall, cpu = time.perf_counter(), time.process_time()
        self.announcing = True
        try:
            metrics, _ = self.task.evaluate(self, pipeline, num_samples, num_points, 1)
        finally:
            self.announcing = False
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        status(self.accelerator, f"{kind} evaluation done in {wall:.1f} s ({cpu:.1f} CPU s)")
        if not sized:
            return metrics
        return metrics | {
            "evaluation": kind,
            "evaluation_samples": num_samples,
            "evaluation_likelihood_points": num_points,
            "evaluation_cpu_seconds": cpu,
        }

    def save_pipeline(self, result: TrainingResult) -> None:
        """Write the trained pipeline (safetensors + configs + checksums) into ``output_dir`` (main process): the
        folder loads from now on, whatever happens during the evaluation that follows."""
        if self.is_main:
            result.pipeline.save_pretrained(Path(self.args.output_dir), safe_serialization=True)
            finish_output_dir(self.args)
        self.accelerator.wait_for_everyone()

    def save(self, result: TrainingResult, metrics: dict[str, Any]) -> None:
        """Write ``metrics.json``, the card ``README.md`` and the final figures beside the saved pipeline (main
        process only), saying which it is writing."""
        if self.is_main:
            out = Path(self.args.output_dir)
            record = {**metrics, "validation": self.history}
            status(self.accelerator, "writing metrics.json and the model card …")
            write_atomic(out / METRICS_FILE, json.dumps(record, indent=2))
            self.task.model_card(record, self.args.hub_model_id).save(out / "README.md")
            status(self.accelerator, "drawing the final figures …")
            figures = self.task.final_figures(result.pipeline)
            for index, (name, figure) in enumerate(figures.items()):
                status(self.accelerator, f"saving figure {index + 1}/{len(figures)}: {name}")
                save_figure(figure, out / name)
        self.accelerator.wait_for_everyone()


def evaluate_in_process(
    task: TrainingTask, pipeline: Any, num_samples: int, num_likelihood_points: int = 0, seed: int = 1
) -> dict[str, Any]:
    """The task's final metrics of ``pipeline`` in this process: sample quality of ``num_samples`` samples and,
    where the task has one, the likelihood of ``num_likelihood_points`` held-out points (all drawn from ``seed``)."""
    quiet(pipeline)
    generator = torch.Generator().manual_seed(seed)
    metrics = task.score(task.sample(pipeline, num_samples, generator), generator)
    points = task.log_likelihood_points(num_likelihood_points, generator) if num_likelihood_points else None
    if points is not None:
        metrics |= task.score_log_likelihood(task.log_likelihood(pipeline, points))
    return metrics


def quiet(pipeline: Any) -> None:
    """No progress bars while evaluating (a trained network that is not a pipeline has none)."""
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)
