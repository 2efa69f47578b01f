"""The training loop every hfgen model shares, on one CPU, one GPU or many processes under Accelerate.

A model family describes itself as a :class:`TrainingTask` (network, batches, loss, pipeline, evaluation,
figures, card); :class:`Trainer` does the rest: Accelerate setup (mixed precision, gradient accumulation and
clipping, learning-rate schedule with warm-up), diffusers' ``EMAModel``, a progress bar with loss and
throughput, trackers, validation with the EMA weights every ``validation_steps``, atomic checkpoints with exact
resume, a stop with a clear message on a non-finite loss, and the run's outputs (written by the main process
only).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin

from hfgen.training.arguments import TrainingArguments
from hfgen.training.checkpoints import (
    CHECKPOINTS_FOLDER,
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)

logger = logging.getLogger(__name__)
ARGS_FILE = "args.json"
METRICS_FILE = "metrics.json"
VALIDATION_FOLDER = "validation"
HELD_OUT_SEED = 20_231_123  # seeds the held-out data every evaluation compares against


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the checkpoints saved before stay as they were."""


class TrainingTask(ABC):
    """What a model family tells :class:`Trainer`: its network, data, loss, pipeline, metrics and figures."""

    #: tracker project name and the card's template in ``model_cards/``
    name: str = "hfgen"

    def __init__(self, args: TrainingArguments):
        self.args = args

    @abstractmethod
    def build_model(self) -> ModelMixin:
        """The trainable network (seeded by the caller)."""

    @abstractmethod
    def batches(self, start: int, stream: int) -> AbstractContextManager[Iterator[Any]]:
        """Context manager over the micro-batches ``start, start + 1, …`` of process ``stream``; batch ``k`` must
        be a pure function of ``(seed, stream, k)`` so that resuming is exact."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        """The scalar training loss of one micro-batch."""

    @abstractmethod
    def pipeline(self, model: ModelMixin) -> Any:
        """The inference pipeline around ``model`` (which holds the weights to use)."""

    @abstractmethod
    def sample(self, pipeline: Any, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """``num_samples`` model samples, for validation and evaluation."""

    @abstractmethod
    def score(self, samples: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """Metrics of (all processes') samples against held-out data drawn from ``generator`` (seeded the same at
        every evaluation, so the reference set is fixed)."""

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> torch.Tensor | None:
        """Held-out data points whose model log-density is scored (``None``: no likelihood for this task)."""
        return None

    def log_likelihood(self, pipeline: Any, points: torch.Tensor) -> torch.Tensor:
        """Model log-density of ``points`` (only called when :meth:`log_likelihood_points` gives points)."""
        raise NotImplementedError

    def score_log_likelihood(self, log_prob: torch.Tensor) -> dict[str, float]:
        """Metrics of the gathered log-densities."""
        raise NotImplementedError

    def validation_figures(self, pipeline: Any, samples: torch.Tensor) -> dict[str, Any]:
        """Figures saved at each validation (file name → matplotlib Figure)."""
        return {}

    def final_figures(self, pipeline: Any) -> dict[str, Any]:
        """Figures saved with the final pipeline (file name → matplotlib Figure)."""
        return {}

    def model_card(self, metrics: dict[str, Any], repo_id: str | None) -> Any:
        """The run's ``huggingface_hub.ModelCard``."""
        raise NotImplementedError


class Stopwatch:
    """Training time, wall-clock and CPU (this process, all threads), accumulated while running.

    With one thread the CPU time is what the wall-clock time would be on an otherwise idle machine."""

    def __init__(self, wall: float = 0.0, cpu: float = 0.0):
        self.wall, self.cpu = float(wall), float(cpu)
        self._since: tuple[float, float] | None = None
        self.resume()

    def resume(self) -> None:
        self._since = (time.perf_counter(), time.process_time())

    def pause(self) -> None:
        if self._since is not None:
            self.wall += time.perf_counter() - self._since[0]
            self.cpu += time.process_time() - self._since[1]
            self._since = None


@dataclass
class TrainingResult:
    """The trained pipeline (EMA weights when EMA is on) and the run's numbers."""

    pipeline: Any
    metrics: dict[str, Any] = field(default_factory=dict)


def _report_to(choice: str) -> str | None:
    if choice == "auto":
        from accelerate.utils import is_tensorboard_available

        return "tensorboard" if is_tensorboard_available() else None
    return None if choice == "none" else choice


def check_output_dir(args: TrainingArguments) -> None:
    """Refuse to start a new run in a folder that holds another run, unless asked to overwrite it.

    Resuming checks instead that the folder's ``args.json`` agrees on every weight-deciding argument."""
    out = Path(args.output_dir)
    previous = out / ARGS_FILE
    holds_run = previous.is_file() or (out / "model_index.json").is_file() or (out / CHECKPOINTS_FOLDER).is_dir()
    if args.resume_from_checkpoint is not None or not holds_run:
        return
    if not args.overwrite_output_dir:
        raise FileExistsError(
            f"output_dir {str(out)!r} holds another run (args.json, model_index.json or checkpoints/). Pass "
            "--resume_from_checkpoint latest to continue it, --overwrite_output_dir to replace it, or another "
            "--output_dir"
        )


class Trainer:
    """Runs a :class:`TrainingTask` under Accelerate: ``Trainer(task).train()`` then ``evaluate`` and
    ``save``; :func:`run` does all three and the upload."""

    def __init__(self, task: TrainingTask):
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        self.task, self.args = task, task.args
        check_output_dir(self.args)
        self.accelerator = Accelerator(
            mixed_precision=self.args.mixed_precision,
            gradient_accumulation_steps=self.args.gradient_accumulation_steps,
            log_with=_report_to(self.args.report_to),
            project_config=ProjectConfiguration(project_dir=self.args.output_dir, logging_dir=self.args.output_dir),
        )
        set_seed(self.args.seed)
        self.history: list[dict[str, Any]] = []

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _start_fresh_output_dir(self) -> None:
        out = Path(self.args.output_dir)
        if self.is_main:
            if self.args.overwrite_output_dir and self.args.resume_from_checkpoint is None:
                shutil.rmtree(out / CHECKPOINTS_FOLDER, ignore_errors=True)
                shutil.rmtree(out / VALIDATION_FOLDER, ignore_errors=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / ARGS_FILE).write_text(json.dumps(self.args.to_dict(), indent=2), encoding="utf-8")
        self.accelerator.wait_for_everyone()

    def _build(self) -> None:
        from accelerate.utils import DistributedType
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        args, accelerator = self.args, self.accelerator
        model = self.task.build_model()
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay,
            foreach=True,  # torch picks the per-tensor loop on CPU; the fused multi-tensor update is faster
        )
        # Accelerate steps a prepared schedule once per process per optimizer step (diffusers' convention).
        lr_schedule = get_scheduler(
            args.lr_scheduler,
            optimizer,
            num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=args.max_train_steps * accelerator.num_processes,
        )
        self.model, self.optimizer, self.lr_schedule = accelerator.prepare(model, optimizer, lr_schedule)
        self.unwrapped = unwrapped = accelerator.unwrap_model(self.model)
        # AcceleratedOptimizer.step looks up optional packages on every call (about 0.3 ms each on CPU, 20% of a
        # small network's step); without a gradient scaler or XLA it only calls the wrapped optimizer's step.
        self._step_directly = accelerator.scaler is None and accelerator.distributed_type != DistributedType.XLA
        self.ema = (
            EMAModel(
                unwrapped.parameters(),
                decay=args.ema_decay,
                foreach=True,
                model_cls=type(unwrapped),
                model_config=unwrapped.config,
            )
            if args.ema_decay > 0
            else None
        )

    def _resume(self) -> tuple[int, dict[str, Any]]:
        which = self.args.resume_from_checkpoint
        if which is None:
            return 0, {}
        folder = resolve_checkpoint(self.args.output_dir, which)
        if folder is None:
            logger.warning("no checkpoint in %s yet: starting a new run", self.args.output_dir)
            return 0, {}
        self.accelerator.wait_for_everyone()
        state = load_checkpoint(self.accelerator, folder, self.ema, self.args.trained_config())
        self.history = state.get("validation", [])
        logger.info("resumed from %s at step %d", folder, state["step"])
        return state["step"], state

    def train(self) -> TrainingResult:
        """Optimise the task's loss for ``max_train_steps`` optimizer steps; returns the EMA pipeline."""
        from tqdm.auto import tqdm

        args, accelerator, task = self.args, self.accelerator, self.task
        self._start_fresh_output_dir()
        self._build()
        step, state = self._resume()
        clock = Stopwatch(state.get("train_seconds", 0.0), state.get("train_cpu_seconds", 0.0))
        if self.is_main and accelerator.log_with:
            accelerator.init_trackers(task.name, config=_scalar_config(args.to_dict()))
        accum, world = args.gradient_accumulation_steps, accelerator.num_processes
        samples_per_step = args.train_batch_size * accum * world
        device = accelerator.device
        progress = tqdm(total=args.max_train_steps, initial=step, disable=not self.is_main, desc=f"train {task.name}")
        rate_since, rate_step = time.perf_counter(), step
        with task.batches(start=step * accum, stream=accelerator.process_index) as batches:
            while step < args.max_train_steps:
                for _ in range(accum):
                    batch = next(batches)
                    with accelerator.accumulate(self.model), accelerator.autocast():
                        loss = task.loss(self.model, batch, device)
                        self._check_finite(loss, step)
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and args.max_grad_norm > 0:
                            accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                        if not self._step_directly:
                            self.optimizer.step()
                        elif accelerator.sync_gradients:
                            self.optimizer.optimizer.step()
                        self.lr_schedule.step()
                        self.optimizer.zero_grad(set_to_none=True)
                step += 1
                if self.ema is not None:
                    self.ema.step(self.unwrapped.parameters())
                progress.update(1)
                if args.logging_steps and (step % args.logging_steps == 0 or step == args.max_train_steps):
                    now = time.perf_counter()
                    rate = (step - rate_step) * samples_per_step / max(now - rate_since, 1e-9)
                    mean_loss = accelerator.reduce(loss.detach().float(), "mean").item()
                    lr = self.lr_schedule.get_last_lr()[0]
                    progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", samples_per_s=f"{rate:,.0f}")
                    accelerator.log({"loss": mean_loss, "lr": lr, "samples_per_second": rate}, step=step)
                    rate_since, rate_step = time.perf_counter(), step
                validate = args.validation_steps and step % args.validation_steps == 0
                checkpoint = args.checkpointing_steps and step % args.checkpointing_steps == 0
                if validate or checkpoint:  # not training time
                    clock.pause()
                    if validate:
                        self.validate(step)
                    if checkpoint:
                        self.save_checkpoint(step, clock)
                    clock.resume()
                    rate_since, rate_step = time.perf_counter(), step
        clock.pause()
        progress.close()
        model = self.unwrapped
        if self.ema is not None:
            self.ema.copy_to(model.parameters())
        info = {
            "train_steps": step,
            "train_seconds": clock.wall,
            "train_cpu_seconds": clock.cpu,
            "num_processes": world,
            "samples_seen": step * samples_per_step,
            "ema": self.ema is not None,
        }
        return TrainingResult(task.pipeline(model.eval()), info)

    def _check_finite(self, loss: torch.Tensor, step: int) -> None:
        bad = (~torch.isfinite(loss.detach())).float()
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, "sum")
        if bad.item():
            found = list_checkpoints(self.args.output_dir)
            last = f"the last good checkpoint is {found[-1][1]}" if found else "no checkpoint was saved yet"
            raise TrainingDivergedError(
                f"the training loss became {loss.item()} at optimizer step {step + 1}: stopping; {last}. Lower the "
                "learning rate (or set --max_grad_norm) and resume with --resume_from_checkpoint"
            )

    def save_checkpoint(self, step: int, clock: Stopwatch) -> Path:
        return save_checkpoint(
            self.accelerator,
            self.args.output_dir,
            step,
            self.ema,
            self.args.trained_config(),
            {"train_seconds": clock.wall, "train_cpu_seconds": clock.cpu, "validation": self.history},
            self.args.checkpoints_total_limit,
        )

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
        samples = self._gather_samples(pipeline, num_samples, seed)
        reference = torch.Generator().manual_seed(HELD_OUT_SEED)
        metrics = self.task.score(samples, reference) if self.is_main else {}
        held_out = torch.Generator().manual_seed(HELD_OUT_SEED + 1)
        points = self.task.log_likelihood_points(num_likelihood_points, held_out) if num_likelihood_points else None
        if points is not None:
            log_prob = self._gather_log_likelihood(pipeline, points)
            if self.is_main:
                metrics |= self.task.score_log_likelihood(log_prob)
        return metrics, samples

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, Any]:
        """Sample with the EMA weights, save the task's figures under ``validation/`` and log the metrics."""
        model = self.unwrapped
        if self.ema is not None:
            self.ema.store(model.parameters())
            self.ema.copy_to(model.parameters())
        model.eval()
        pipeline = self.task.pipeline(model)
        pipeline.set_progress_bar_config(disable=True)
        num_points = getattr(self.args, "num_validation_nll_samples", 0)
        metrics, samples = self.evaluate_pipeline(
            pipeline, self.args.num_validation_samples, num_points, seed=self.args.seed + step
        )
        if self.is_main:
            folder = Path(self.args.output_dir) / VALIDATION_FOLDER
            folder.mkdir(parents=True, exist_ok=True)
            for name, figure in self.task.validation_figures(pipeline, samples).items():
                _save_figure(figure, folder / f"step-{step:07d}-{name}")
            record = {"step": step, **metrics}
            self.history.append(record)
            self.accelerator.log({f"validation/{k}": v for k, v in metrics.items() if _is_number(v)}, step=step)
            logger.info("validation at step %d: %s", step, json.dumps(record))
        model.train()
        if self.ema is not None:
            self.ema.restore(model.parameters())
        return metrics

    def save(self, result: TrainingResult, metrics: dict[str, Any]) -> None:
        """Write the pipeline (safetensors + configs), ``metrics.json``, the card ``README.md`` and the figures
        into ``output_dir`` (main process only)."""
        if self.is_main:
            out = Path(self.args.output_dir)
            result.pipeline.save_pretrained(out, safe_serialization=True)
            record = {**metrics, "validation": self.history}
            _write_atomic(out / METRICS_FILE, json.dumps(record, indent=2))
            self.task.model_card(record, self.args.hub_model_id).save(out / "README.md")
            for name, figure in self.task.final_figures(result.pipeline).items():
                _save_figure(figure, out / name)
        self.accelerator.wait_for_everyone()

    def end(self) -> None:
        self.accelerator.end_training()


def run(task: TrainingTask, num_eval_samples: int, num_likelihood_points: int = 0) -> dict[str, Any]:
    """Train, evaluate (``num_eval_samples`` samples, ``num_likelihood_points`` held-out points), save the
    outputs and, with ``--push_to_hub``, upload them. Returns the final metrics (on the main process; ``{}`` on
    the others)."""
    trainer = Trainer(task)
    result = trainer.train()
    result.pipeline.set_progress_bar_config(disable=True)
    metrics, _ = trainer.evaluate_pipeline(result.pipeline, num_eval_samples, num_likelihood_points, seed=1)
    metrics = {**result.metrics, **metrics}
    trainer.save(result, metrics)
    if trainer.is_main and task.args.push_to_hub:
        from hfgen.hub import push_folder_to_hub

        push_folder_to_hub(task.args.output_dir, task.args.hub_model_id, private=task.args.hub_private_repo)
    trainer.end()
    return metrics if trainer.is_main else {}


def train_in_process(task: TrainingTask) -> TrainingResult:
    """Train ``task`` in this process without writing the final outputs (benchmarks, notebooks)."""
    trainer = Trainer(task)
    result = trainer.train()
    trainer.end()
    return result


def evaluate_in_process(
    task: TrainingTask, pipeline: Any, num_samples: int, num_likelihood_points: int = 0, seed: int = 1
) -> dict[str, Any]:
    """The task's final metrics of ``pipeline`` in this process: sample quality of ``num_samples`` samples and,
    where the task has one, the likelihood of ``num_likelihood_points`` held-out points (all drawn from ``seed``)."""
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(seed)
    metrics = task.score(task.sample(pipeline, num_samples, generator), generator)
    points = task.log_likelihood_points(num_likelihood_points, generator) if num_likelihood_points else None
    if points is not None:
        metrics |= task.score_log_likelihood(task.log_likelihood(pipeline, points))
    return metrics


def _scalar_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _save_figure(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
