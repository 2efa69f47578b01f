"""The one training loop of hfgen, on one CPU, one GPU or many processes under Accelerate.

A model family describes itself as a :class:`TrainingTask`: its networks, the phases that optimise them, batches,
loss, pipeline, evaluation, figures and card. :class:`Trainer` does the rest: Accelerate setup (mixed precision,
gradient accumulation and clipping, a learning-rate schedule with warm-up), fused AdamW, diffusers' ``EMAModel``, a
progress bar with loss and throughput, trackers, validation with the EMA weights, atomic checkpoints with exact resume
(every model and the task's own state), a stop with a clear message on a non-finite loss, and the run's outputs
(written by the main process only). Validation, the final evaluation and the outputs are in
:mod:`hfgen.training.evaluation`; the optimizer, the EMA and the clock in :mod:`hfgen.training.optimization`.

A *phase* optimises one of the task's models for a number of steps with a fresh optimizer, schedule and EMA: flow
matching, DDPM, the VAE and the classifier have one phase; the Schrödinger bridge's IPF has ``2n``, alternating
between its forward and backward networks.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin

from hfgen.cli.errors import TrainingDivergedError
from hfgen.training.checkpoints import (
    TASK_STATE_FILE,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_trainer_state,
    resolve_checkpoint,
    save_checkpoint,
)
from hfgen.training.engine import (
    OutputFolderLock,
    check_fresh_start_allowed,
    check_output_dir,
    make_accelerator,
    push_outputs,
    scalar_config,
    start_output_dir,
    status,
)
from hfgen.training.evaluation import EvaluationStage, TrainingResult
from hfgen.training.optimization import ListEMA, Loop, Stopwatch, TaskLoss, fused_adamw
from hfgen.training.task import Phase, Progress, TrainingTask

__all__ = ["run", "Trainer", "TrainingResult"]

logger = logging.getLogger(__name__)


class Trainer(EvaluationStage):
    """Runs a :class:`TrainingTask` under Accelerate: ``Trainer(task).train()`` then ``evaluate_pipeline`` and
    ``save``; :func:`run` does all of it and the upload."""

    def __init__(self, task: TrainingTask):
        self.task, self.args = task, task.args
        self.accelerator = make_accelerator(self.args)
        # the main process holds the folder for the life of the run (a second run started at the same instant stops)
        # and alone decides whether the folder may be used: the others would see the files it writes next
        self.lock: OutputFolderLock | None = None
        task.check_processes(self.accelerator.num_processes)
        self._refuse_on_every_process(self._lock_output_dir)
        self.history: list[dict[str, Any]] = []
        self.models: dict[str, ModelMixin] = {}
        self.ema: Any = None

    def _lock_output_dir(self) -> None:
        self.lock = OutputFolderLock(self.args.output_dir)
        check_output_dir(self.args)

    def _refuse_on_every_process(self, check: Callable[[], None]) -> None:
        """Run ``check`` of the output folder on the main process (which alone locks and writes it) and raise its
        refusal on every process, the folder unlocked: none goes on alone into a collective operation that the
        others left."""
        refusal = None
        if self.is_main:
            try:
                check()
            except (OSError, ValueError) as error:
                refusal = error
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            refusal = broadcast_object_list([refusal], from_process=0)[0]
        if refusal is not None:
            if self.lock is not None:  # the run stops here: its folder is free again
                self.lock.release()
            raise refusal

    # -- one phase's optimisation objects -------------------------------------------------------------------------

    def _prepare_phase(self, phase: Phase) -> None:
        """A fresh AdamW, learning-rate schedule and EMA for ``phase``'s model, prepared by Accelerate (nothing
        for a closed-form phase)."""
        from accelerate.utils import DistributedType
        from diffusers.optimization import get_scheduler

        args, accelerator = self.args, self.accelerator
        model = self.models[phase.model]
        for other in self.models.values():
            other.eval()
        model.train()
        self.model, self.ema = model, None
        if not phase.optimize:
            model.to(accelerator.device)
            return
        optimizer = fused_adamw(
            model,
            accelerator.device,
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay,
        )
        # Accelerate steps a prepared schedule once per process per optimizer step (diffusers' convention).
        lr_schedule = get_scheduler(
            args.lr_scheduler,
            optimizer,
            num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=phase.num_steps * accelerator.num_processes,
        )
        self.loss_module, self.optimizer, self.lr_schedule = accelerator.prepare(
            TaskLoss(model, self.task), optimizer, lr_schedule
        )
        # AcceleratedOptimizer.step looks up optional packages on every call (about 0.3 ms each on CPU, 20% of a
        # small network's step) and its zero_grad inspects a signature; without a gradient scaler, XLA or split
        # batches, a synchronising micro-batch only steps the wrapped optimizer, steps the wrapped schedule once per
        # process and zeroes the gradients, which the loop then does itself.
        self._step_directly = (
            accelerator.scaler is None
            and accelerator.distributed_type != DistributedType.XLA
            and not accelerator.split_batches
        )
        # Accelerator.backward divides the loss by the accumulation steps before ``loss.backward()``: with one
        # micro-batch per step (and no DeepSpeed or Megatron engine) that is a division by 1, exact, so skipped.
        self._backward_directly = (
            self._step_directly
            and accelerator.gradient_accumulation_steps == 1
            and accelerator.distributed_type not in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)
        )
        self.parameters = list(model.parameters())
        self.ema = (
            ListEMA(
                self.parameters,
                decay=args.ema_decay,
                foreach=True,
                model_cls=type(model),
                model_config=model.config,
            )
            if args.ema_decay > 0
            else None
        )

    def _end_phase(self, another_follows: bool) -> None:
        """Copy the EMA weights into the phase's model and, when another phase follows, release the prepared
        objects (Accelerate then checkpoints only the next phase's; its ``gc.collect`` costs about 0.2 s)."""
        if self.ema is not None:
            self.ema.copy_to(self.model.parameters())
        self.model.eval()
        if another_follows:
            self.accelerator.free_memory()

    # -- resume -------------------------------------------------------------------------------------------------

    @staticmethod
    def _locate(step: int, phases: list[Phase], folder: Path | None) -> tuple[int, int]:
        """``(phase index, steps done in it)`` after ``step`` optimizer steps of the plan; the end of a phase is its
        last step (its optimizer and EMA are still in the checkpoint, the phase is ended after the resume). A
        checkpoint ``folder`` past the plan's end is refused."""
        remaining = step
        for index, phase in enumerate(phases):
            if remaining <= phase.num_steps:
                return index, remaining
            remaining -= phase.num_steps
        total = sum(phase.num_steps for phase in phases)
        raise CheckpointError(
            f"cannot resume from {folder}: it is at step {step}, past the end of this run's plan ({total} steps). "
            f"Resume with at least {step} steps (--max_train_steps), or start a new run in another output_dir"
        )

    def _checkpoint_to_resume(self) -> tuple[Path, dict[str, Any]] | None:
        """The checkpoint ``--resume_from_checkpoint`` names and its trainer state (checked against this run's
        arguments), or ``None`` for a fresh start (refused where it would overwrite a run)."""
        which = self.args.resume_from_checkpoint
        if which is None:
            return None
        folder = resolve_checkpoint(self.args.output_dir, which)
        if folder is None:
            self._refuse_on_every_process(lambda: check_fresh_start_allowed(self.args))
            logger.warning("no checkpoint in %s yet: starting a new run", self.args.output_dir)
            return None
        self.accelerator.wait_for_everyone()
        return folder, read_trainer_state(folder, self.args.trained_config(), self.args.adjustable_on_resume)

    def _restore(self, folder: Path, state: dict[str, Any]) -> None:
        """Load every model, the optimisation state and the task's state from the checkpoint ``folder``; a task
        state that does not fit this run is refused, naming the checkpoint."""
        task_state = load_checkpoint(self.accelerator, folder, state, self.ema, self.models)
        try:
            self.task.load_state_dict(task_state)
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"cannot resume from {folder / TASK_STATE_FILE}: {error}") from error
        self.history = state.get("validation", [])
        logger.info("resumed from %s at step %d", folder, state["step"])

    def _set_up(self) -> tuple[list[Phase], int, int, dict[str, Any]]:
        """Everything that can refuse the run, before anything is written to its folder: the networks, the plan,
        and on resume the checkpoint (arguments, plan, every file and the task's state), loaded into the first
        phase to run. Returns the plan, where to start in it (phase index, steps done in that phase) and the
        resumed trainer state (empty for a fresh start)."""
        self.models = self.task.build_models()
        phases = self.task.phases()
        resumed = self._checkpoint_to_resume()
        state = resumed[1] if resumed else {}
        phase_index, phase_step = self._locate(state.get("step", 0), phases, resumed[0] if resumed else None)
        self._prepare_phase(phases[phase_index])
        if resumed:
            self._restore(*resumed)
        return phases, phase_index, phase_step, state

    # -- the loop -------------------------------------------------------------------------------------------------

    def train(self) -> TrainingResult:
        """Run every phase of the task's plan (or what remains after the resumed checkpoint); returns the pipeline
        with the final (EMA) weights. A run that fails unlocks its output folder (its process may go on)."""
        try:
            return self._train()
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise

    def _train(self) -> TrainingResult:
        phases, phase_index, phase_step, state = self._set_up()
        start_output_dir(self.accelerator, self.args)
        loop = self._open_loop(phases, state)
        for index in range(phase_index, len(phases)):
            if index > phase_index:  # the first is prepared (and restored) by _set_up
                self._prepare_phase(phases[index])
            self._run_phase(loop, phases, index, phase_step if index == phase_index else 0)
            self._end_phase(another_follows=index + 1 < len(phases))
        return self._close_loop(loop, uses_ema=self.args.ema_decay > 0 and any(p.optimize for p in phases))

    def _open_loop(self, phases: list[Phase], state: dict[str, Any]) -> Loop:
        """The trackers, the progress bar and the loop's counters (from the resumed trainer ``state``)."""
        from tqdm.auto import tqdm

        args, accelerator = self.args, self.accelerator
        if self.is_main and accelerator.log_with:
            accelerator.init_trackers(self.task.name, config=scalar_config(args.to_dict()))
        step, total = state.get("step", 0), sum(phase.num_steps for phase in phases)
        # Contexts that do nothing are skipped: with one micro-batch per step every step synchronises, and without
        # mixed precision autocast is the identity (together about 0.1 ms a step on a small network).
        self._accumulate = accelerator.accumulate if args.gradient_accumulation_steps > 1 else lambda _: nullcontext()
        self._autocast = accelerator.autocast if args.mixed_precision != "no" else nullcontext
        return Loop(
            step=step,
            total=total,
            samples_per_step=args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes,
            clock=Stopwatch(state.get("train_seconds", 0.0), state.get("train_cpu_seconds", 0.0)),
            # redrawn at most once a second: each redraw is a write to the terminal
            progress=tqdm(
                total=total, initial=step, disable=not self.is_main, desc=f"train {self.task.name}", mininterval=1.0
            ),
        )

    def _run_phase(self, loop: Loop, phases: list[Phase], index: int, start: int) -> None:
        """Steps ``start, start + 1, …`` of phase ``index``: each a closed-form update or an optimizer step, then
        the EMA, the log, and validation and checkpoint when due."""
        phase, accum = phases[index], self.args.gradient_accumulation_steps
        losses: list[float] = []
        loop.rate_since, loop.rate_step = time.perf_counter(), loop.step
        if start >= phase.num_steps:
            return
        with self.task.batches(start=start * accum, stream=self.accelerator.process_index, phase=index) as batches:
            for local in range(start, phase.num_steps):
                loss = self._optimizer_step(batches, loop.step) if phase.optimize else self._update(batches, loop.step)
                loop.step += 1
                if self.ema is not None:
                    self.ema.step(self.parameters)
                if len(phases) > 1:
                    losses.append(self.accelerator.reduce(loss.detach().float(), "mean").item())
                loop.progress.update(1)
                self._log_step(loop, phase, loss)
                done = local + 1 == phase.num_steps
                if done:
                    self.accelerator.log(self.task.end_phase(index, losses), step=loop.step)
                where = Progress(loop.step, index, local + 1, done, done and index == len(phases) - 1)
                if self._after_step(where, loop.clock):
                    loop.rate_since, loop.rate_step = time.perf_counter(), loop.step

    def _update(self, batches: Iterator[Any], step: int) -> torch.Tensor:
        """One closed-form step of the task (no gradients); returns its loss."""
        with torch.no_grad():
            loss = self.task.update(self.model, next(batches), self.accelerator.device)
        self._check_finite(loss, step)
        return loss

    def _optimizer_step(self, batches: Iterator[Any], step: int) -> torch.Tensor:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches; returns the last one's loss."""
        accelerator = self.accelerator
        # one process: the prepared module is the plain wrapper, whose forward is called without nn.Module's call
        # machinery; several: through the distributed wrapper, which must see the pass
        compute_loss = self.loss_module if accelerator.num_processes > 1 else self.loss_module.forward
        for _ in range(self.args.gradient_accumulation_steps):
            with self._accumulate(self.loss_module), self._autocast():
                loss = compute_loss(next(batches), accelerator.device)
                self._check_finite(loss, step)
                if self._backward_directly:
                    loss.backward()
                else:
                    accelerator.backward(loss)
                self._apply_gradients()
        return loss

    def _apply_gradients(self) -> None:
        """Clip the gradients (``max_grad_norm``), step the optimizer and the schedule and zero the gradients
        when the micro-batch synchronises."""
        accelerator, optimizer = self.accelerator, self.optimizer
        if accelerator.sync_gradients and self.args.max_grad_norm > 0:
            accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        if not self._step_directly:
            optimizer.step()
            self.lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
        elif accelerator.sync_gradients:
            optimizer.optimizer.step()
            for _ in range(accelerator.num_processes):  # as AcceleratedScheduler.step does
                self.lr_schedule.scheduler.step()
            for parameter in self.parameters:  # zero_grad(set_to_none=True), unprofiled
                parameter.grad = None

    def _log_step(self, loop: Loop, phase: Phase, loss: torch.Tensor) -> None:
        """Every ``logging_steps`` steps (and at the last): the loss, learning rate and throughput to the trackers
        and the progress bar."""
        step, every = loop.step, self.args.logging_steps
        if not every or (step % every != 0 and step != loop.total):
            return
        now = time.perf_counter()
        rate = (step - loop.rate_step) * loop.samples_per_step / max(now - loop.rate_since, 1e-9)
        mean_loss = self.accelerator.reduce(loss.detach().float(), "mean").item()
        lr = self.lr_schedule.get_last_lr()[0] if phase.optimize else 0.0
        loop.progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", samples_per_s=f"{rate:,.0f}", refresh=False)
        self.accelerator.log({"loss": mean_loss, "lr": lr, "samples_per_second": rate}, step=step)
        loop.rate_since, loop.rate_step = time.perf_counter(), step

    def _close_loop(self, loop: Loop, uses_ema: bool) -> TrainingResult:
        """Stop the clock and the progress bar; the pipeline and the training numbers (``ema``: whether an EMA of
        the weights was kept, by an optimizer phase; a closed-form fit such as EM keeps none)."""
        loop.clock.pause()
        loop.progress.close()
        info = {
            "train_steps": loop.step,
            "train_seconds": loop.clock.wall,
            "train_cpu_seconds": loop.clock.cpu,
            "num_processes": self.accelerator.num_processes,
            "samples_seen": loop.step * loop.samples_per_step,
            "ema": uses_ema,
        }
        return TrainingResult(self.task.pipeline(**self.models), info)

    def _after_step(self, where: Progress, clock: Stopwatch) -> bool:
        """Validation and checkpoint when the task says they are due (neither counts as training time); returns
        whether either ran."""
        validate, checkpoint = self.task.validation_due(where), self.task.checkpoint_due(where)
        if validate or checkpoint:
            clock.pause()
            if validate:
                self.validate(where.step)
            if checkpoint:
                self.save_checkpoint(where.step, clock)
            clock.resume()
        return validate or checkpoint

    def _check_finite(self, loss: torch.Tensor, step: int) -> None:
        if self.accelerator.num_processes > 1:  # every process must stop, so the verdict is all-reduced
            bad = self.accelerator.reduce((~torch.isfinite(loss.detach())).float(), "sum").item()
        else:
            bad = not math.isfinite(loss.item())
        if bad:
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
            models=self.models,
            task_state=self.task.state_dict(),
        )

    def end(self) -> None:
        """Release the prepared module, then Accelerate's trackers and process group, then the output folder."""
        # A DDP reducer that outlives the process group destroys gloo's group itself, holding the GIL while it joins
        # gloo's worker threads, one of which may need the GIL to free a finished collective: a deadlock at exit
        # (about 1 two-process CPU run in 15). Freed first, the reducer leaves the group to destroy_process_group.
        self.loss_module = None
        self.accelerator.free_memory()
        gc.collect()
        self.accelerator.end_training()
        if self.lock is not None:
            self.lock.release()


def run(task: TrainingTask) -> dict[str, Any]:
    """Train, save the pipeline, evaluate it at the task's :meth:`~TrainingTask.evaluation_sizes` (full or fast,
    ``--evaluation``), save the metrics, card and figures and, with ``--push_to_hub``, upload them. Returns the final
    metrics (on the main process; ``{}`` on the others)."""
    trainer = Trainer(task)
    try:
        result = trainer.train()
        trainer.save_pipeline(result)  # the trained model is on disk before anything that can fail after training
        status(trainer.accelerator, f"saved the pipeline to {task.args.output_dir}")
        metrics = {**result.metrics, **trainer.final_evaluation(result.pipeline)}
        trainer.save(result, metrics)
        if trainer.is_main and task.args.push_to_hub:
            status(trainer.accelerator, f"uploading to {task.args.hub_model_id} …")
            push_outputs(task.args)
    finally:
        trainer.end()
    return metrics if trainer.is_main else {}


def train_in_process(task: TrainingTask) -> TrainingResult:
    """Train ``task`` in this process without writing the final outputs (benchmarks, notebooks)."""
    trainer = Trainer(task)
    result = trainer.train()
    trainer.end()
    return result
