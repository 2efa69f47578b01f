r"""Training the γ-step diffusion Schrödinger bridge: the course's two stages as resumable half-iterations.

The chain is :class:`~hfgen.schedulers.BridgeScheduler`'s: ``X_0 ~ p_data``, ``X_N ~ p'_data``, forward
``X_{k+1} = f_k(X_k) + √(2γ_k) Z``, backward ``X_k = b_{k+1}(X_{k+1}) + √(2γ_k) Z``, with mean-predicting networks
trained by DSB's mean matching (De Bortoli et al. 2021; :mod:`hfgen.ipf`).

Design. IPF alternates two networks, which does not fit :class:`~hfgen.training.loop.Trainer`'s one-model loop, so
a run is a list of *half-iterations*, each one Accelerate-prepared optimisation of ONE direction's network by mean
matching against a FIXED chain (the other network, or a reference), with its own AdamW, learning-rate schedule
(warm-up, then ``lr_scheduler``) and optional EMA over ``max_train_steps`` steps:

- ``stage="diffusion"`` (the simplified diffusion approach): the forward network learns the time reversal of the
  Ornstein–Uhlenbeck chain that noises ``p'_data`` into ``N(0, I)`` (so its chain goes ``N(0, I) → p'_data``) and
  the backward network that of ``p_data`` (``N(0, I) → p_data``); :func:`hfgen.ipf.fit_from_noise`. Started from
  ``x_0 ~ p_data`` instead of noise, the forward chain still ends near ``p'_data`` (the OU chain forgets its
  start), and the backward chain takes ``y ~ p'_data`` to ``p_data``. (The course calls the network that reaches
  ``p'_data`` "b"; here names follow the direction of the chain.)
- ``stage="ipf"``: iteration ``n`` fits the backward network to the forward chain from ``p_data`` (the Brownian
  reference ``f_k(x) = x`` when ``n = 0``), then the forward network to that backward chain from ``p'_data``.

Randomness of half-iteration ``h`` (trajectory caches, minibatches) comes from its own counter-based generator
(:func:`hfgen.data.pairs.batch_generator` of ``(seed, process, h)``) and the optimiser starts afresh, so the run
after ``h`` half-iterations is a function of the two networks' weights alone. That is what a checkpoint stores
(``checkpoints/checkpoint-<h>``: both networks as safetensors and ``trainer_state.json``); a resumed run skips the
finished half-iterations and ends with the same weights as an uninterrupted run. After every ``validation_steps``
IPF iterations (and at the end) both networks transport ``num_validation_samples`` points, the W2 of each end to its
target marginal is logged beside the floor, and the progression plots are saved under ``ipf/``.

Several processes: each draws its own trajectories (stream = process index) and gradients are averaged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin
from safetensors.torch import load_file, save_file

from hfgen.data import Shifted, ToyDistribution, get_toy_distribution
from hfgen.data.pairs import batch_generator
from hfgen.ipf import (
    mean_matching_loss,
    mean_matching_targets,
    opposite,
    reference_mean,
    simulate_chain,
    step_weights,
)
from hfgen.metrics import sample_quality_report
from hfgen.models.residual_mean import ResidualMean
from hfgen.pipelines import SchrodingerBridgePipeline
from hfgen.schedulers.bridge import SCHEDULES, BridgeScheduler
from hfgen.training.arguments import TrainingArguments, documented
from hfgen.training.checkpoints import (
    STATE_FILE,
    CheckpointError,
    checkpoints_root,
    list_checkpoints,
    resolve_checkpoint,
)
from hfgen.training.loop import ARGS_FILE, METRICS_FILE, _report_to, _save_figure, _write_atomic, check_output_dir

logger = logging.getLogger(__name__)
STAGES = ("diffusion", "ipf")
LOSS_WEIGHTINGS = ("none", "inverse_gamma")
PLOTS_FOLDER = "ipf"
HELD_OUT_SEED = 20_231_123  # the reference samples every evaluation compares against
DIRECTIONS = ("forward", "backward")


@dataclass
class BridgeArguments(TrainingArguments):
    """Arguments of ``training/train_bridge.py``; the defaults are the course's bridge between two balls and the
    same two balls shifted, ``N = 20`` steps of ``γ = 2 / N``.

    ``max_train_steps`` counts the optimizer steps of ONE half-iteration (one direction), ``checkpointing_steps``
    and ``validation_steps`` count half-iterations and IPF iterations.
    """

    run_only_fields = TrainingArguments.run_only_fields | {"num_eval_samples", "plots"}

    output_dir: str = documented("out/bridge-two-balls", "where the run writes its outputs")
    stage: str = documented("ipf", f"{STAGES}: 'diffusion' trains each direction from N(0, I); 'ipf' alternates")
    dataset: str = documented("two_balls", "p_data, the law of X_0 (hfgen.data toy name)")
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
        "inverse_gamma", f"{LOSS_WEIGHTINGS}: weight each mean-matching pair by γ̄ / γ_k (hfgen.ipf.step_weights)"
    )
    ipf_iterations: int = documented(3, "IPF iterations (stage 'ipf'); each trains both directions")
    num_trajectories: int = documented(4_000, "trajectories per cache of regression pairs (DSB Alg. 1)")
    refresh_every: int = documented(100, "redraw the cache every N optimizer steps")
    residual: bool = documented(True, "mean network x + g(x, k) (ResidualMean); False: a plain TimeMLP")
    hidden_size: int = 128
    num_layers: int = 3
    max_train_steps: int = documented(5_000, "optimizer steps per half-iteration")
    learning_rate: float = 3e-3
    lr_warmup_steps: int = 50
    ema_decay: float = documented(0.0, "EMA decay within a half-iteration (0: off; the cosine schedule averages)")
    checkpointing_steps: int = documented(1, "save both networks every N half-iterations (0: never)")
    checkpoints_total_limit: int = documented(0, "keep only the newest N checkpoints (0: keep all)")
    validation_steps: int = documented(1, "evaluate and plot every N IPF iterations (0: at the end only)")
    num_validation_samples: int = documented(2_000, "points transported at each evaluation")
    num_eval_samples: int = documented(2_000, "points transported for the final metrics")
    plots: bool = documented(True, "save the progression plots at each evaluation and beside the final pipeline")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}, got {self.stage!r}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"`loss_weighting` must be one of {LOSS_WEIGHTINGS}, got {self.loss_weighting!r}")
        for name in ("num_steps", "ipf_iterations", "num_trajectories", "refresh_every", "num_eval_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
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
        from hfgen.ipf import build_mean_network

        return build_mean_network(dim=dim, hidden_size=self.hidden_size, num_layers=self.num_layers)


@dataclass
class BridgeRunResult:
    """The trained pipeline and the run's numbers (``history``: one record per evaluation)."""

    pipeline: SchrodingerBridgePipeline
    metrics: dict[str, Any] = field(default_factory=dict)


class BridgeTrainer:
    """Runs the half-iterations of :meth:`BridgeArguments.half_iterations` under Accelerate, with checkpoints,
    evaluation, plots, and the run's outputs (main process only)."""

    def __init__(self, args: BridgeArguments):
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        check_output_dir(args)
        self.args = args
        self.accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=_report_to(args.report_to),
            project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=args.output_dir),
        )
        set_seed(args.seed)
        self.source, self.target = args.marginals()
        self.scheduler = args.noise_scheduler()
        self.models = {direction: args.build_network(self.source.dim) for direction in DIRECTIONS}
        self.history: list[dict[str, Any]] = []
        self.last_loss: dict[str, float] = {}
        self.train_seconds = 0.0

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def out(self) -> Path:
        return Path(self.args.output_dir)

    # -- the plan ---------------------------------------------------------------------------------------------

    def train(self) -> BridgeRunResult:
        """Run the remaining half-iterations (all of them, or those after the resumed checkpoint)."""
        args = self.args
        self._start_output_dir()
        done = self._resume()
        if self.is_main and self.accelerator.log_with:
            self.accelerator.init_trackers("schrodinger_bridge", config=_scalar_config(args.to_dict()))
        plan = args.half_iterations()
        for index in range(done, len(plan)):
            direction, fitted_to = plan[index]
            tick = time.perf_counter()
            losses = self.fit(index, direction, self._chain(fitted_to, direction))
            self.train_seconds += time.perf_counter() - tick
            self.last_loss[direction] = _tail_mean(losses)
            self.accelerator.log({f"{direction}_loss": self.last_loss[direction]}, step=index + 1)
            iteration, last = index // 2, index == len(plan) - 1
            if index % 2 == 1 and (last or (args.validation_steps and (iteration + 1) % args.validation_steps == 0)):
                self.evaluate(iteration)
            if args.checkpointing_steps and ((index + 1) % args.checkpointing_steps == 0 or last):
                self.save_checkpoint(index + 1)
        info = {"stage": args.stage, "half_iterations": len(plan), "train_seconds": self.train_seconds}
        return BridgeRunResult(self.pipeline(), info)

    def _chain(self, fitted_to: str, direction: str) -> tuple[Callable, Callable]:
        """``(start_sampler, other_mean)`` of the half-iteration: where its trajectories start and the mean that
        runs them in the other direction."""
        start = self.source if direction == "backward" else self.target  # X_0 ~ p_data or X_N ~ p'_data
        if fitted_to == "noise":  # learn the reversal of the OU chain that noises that data into N(0, I)
            return start.sample, reference_mean(self.scheduler, opposite(direction), "ornstein_uhlenbeck")
        if fitted_to == "reference":
            return start.sample, reference_mean(self.scheduler, opposite(direction))
        return start.sample, self.models[fitted_to]

    def fit(self, index: int, direction: str, chain: tuple[Callable, Callable]) -> list[float]:
        r"""Half-iteration ``index``: minimise ``E ‖m(Y, k) − T‖²`` over the ``direction`` network ``m`` with the
        regression pairs ``(Y, k, T)`` of :func:`hfgen.ipf.mean_matching_targets`, from a cache of
        ``num_trajectories`` chains redrawn every ``refresh_every`` steps. Returns the loss of every step."""
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel
        from tqdm.auto import tqdm

        args, accelerator = self.args, self.accelerator
        start_sampler, other_mean = chain
        model = self.models[direction]
        model.train()
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay,
        )
        lr_schedule = get_scheduler(
            args.lr_scheduler,
            optimizer,
            num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=args.max_train_steps * accelerator.num_processes,
        )
        prepared, optimizer, lr_schedule = accelerator.prepare(model, optimizer, lr_schedule)
        ema = EMAModel(model.parameters(), decay=args.ema_decay, foreach=True) if args.ema_decay > 0 else None
        generator = batch_generator(args.seed, accelerator.process_index, index)
        device, losses = accelerator.device, []
        progress = tqdm(total=args.max_train_steps, disable=not self.is_main, desc=f"{index + 1}: {direction}")
        micro_step = 0
        for step in range(args.max_train_steps):
            for _ in range(args.gradient_accumulation_steps):
                if micro_step % args.refresh_every == 0:
                    start = start_sampler(args.num_trajectories, generator)
                    trajectory = simulate_chain(other_mean, start, self.scheduler, opposite(direction), generator)
                    cache = mean_matching_targets(trajectory, other_mean, direction)
                    if args.loss_weighting == "inverse_gamma":
                        cache = (*cache, step_weights(self.scheduler, cache[1], direction))
                micro_step += 1
                rows = torch.randint(len(cache[0]), (args.train_batch_size,), generator=generator)
                batch = [tensor[rows].to(device) for tensor in cache]
                with accelerator.accumulate(prepared), accelerator.autocast():
                    loss = mean_matching_loss(prepared, *batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"the mean-matching loss became {loss.item()} at step {step} of half-iteration "
                            f"{index + 1} ({direction}); lower --learning_rate or set --max_grad_norm"
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and args.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(prepared.parameters(), args.max_grad_norm)
                    optimizer.step()
                    lr_schedule.step()
                    optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(model.parameters())
            losses.append(accelerator.reduce(loss.detach().float(), "mean").item())
            progress.update(1)
            if args.logging_steps and (step + 1) % args.logging_steps == 0:
                progress.set_postfix(loss=f"{_tail_mean(losses, args.logging_steps):.4f}")
        progress.close()
        if ema is not None:
            ema.copy_to(model.parameters())
        accelerator.free_memory()
        model.eval()
        return losses

    # -- evaluation and outputs -------------------------------------------------------------------------------

    def pipeline(self) -> SchrodingerBridgePipeline:
        """The pipeline around the current networks (shared, not copied)."""
        pipeline = SchrodingerBridgePipeline(
            self.models["forward"], self.models["backward"], self.args.noise_scheduler(), self.source, self.target
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    @torch.no_grad()
    def evaluate(self, iteration: int) -> dict[str, Any]:
        """Transport ``num_validation_samples`` points each way, score each end against its target marginal
        (W2 beside the floor), save the progression plots under ``ipf/`` and log the record."""
        record = evaluate_bridge(self.pipeline(), self.args.num_validation_samples, seed=self.args.seed + iteration)
        losses = {f"{direction}_loss": loss for direction, loss in self.last_loss.items()}
        record = {"iteration": iteration, **record, **losses}
        if self.is_main:
            if self.args.plots:
                folder = self.out / PLOTS_FOLDER
                folder.mkdir(parents=True, exist_ok=True)
                for name, figure in progression_figures(self.pipeline(), 1000, seed=3).items():
                    _save_figure(figure, folder / f"iteration-{iteration:03d}-{name}")
            self.history.append(record)
            self.accelerator.log({k: v for k, v in record.items() if isinstance(v, float)}, step=2 * iteration + 2)
            logger.info("evaluation after IPF iteration %d: %s", iteration, json.dumps(record))
        return record

    def save(self, result: BridgeRunResult, metrics: Mapping[str, Any]) -> None:
        """Write the pipeline, ``metrics.json``, the card ``README.md`` and the final plots (main process)."""
        if self.is_main:
            result.pipeline.save_pretrained(self.out, safe_serialization=True)
            _write_atomic(self.out / METRICS_FILE, json.dumps(dict(metrics), indent=2))
            bridge_card(self.args, metrics, repo_id=self.args.hub_model_id).save(self.out / "README.md")
            figures = progression_figures(result.pipeline, 1000, seed=2) if self.args.plots else {}
            for name, figure in figures.items():
                _save_figure(figure, self.out / name)
        self.accelerator.wait_for_everyone()

    # -- checkpoints ------------------------------------------------------------------------------------------

    def _start_output_dir(self) -> None:
        if self.is_main:
            if self.args.overwrite_output_dir and self.args.resume_from_checkpoint is None:
                shutil.rmtree(checkpoints_root(self.out), ignore_errors=True)
                shutil.rmtree(self.out / PLOTS_FOLDER, ignore_errors=True)
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / ARGS_FILE).write_text(json.dumps(self.args.to_dict(), indent=2), encoding="utf-8")
        self.accelerator.wait_for_everyone()

    def save_checkpoint(self, done: int) -> Path:
        """Save both networks after ``done`` half-iterations to ``checkpoints/checkpoint-<done>``, atomically."""
        root = checkpoints_root(self.out)
        final, tmp = root / f"checkpoint-{done}", root / f".tmp-checkpoint-{done}"
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for direction, model in self.models.items():
                weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
                save_file(weights, str(tmp / f"{direction}_model.safetensors"))
            state = {
                "step": done,
                "trained_config": self.args.trained_config(),
                "train_seconds": self.train_seconds,
                "history": self.history,
            }
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            if self.args.checkpoints_total_limit:
                for _, old in list_checkpoints(self.out)[: -self.args.checkpoints_total_limit]:
                    shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return final

    def _resume(self) -> int:
        """Load the checkpoint named by ``resume_from_checkpoint``; returns the number of finished half-iterations."""
        which = self.args.resume_from_checkpoint
        folder = None if which is None else resolve_checkpoint(self.out, which)
        if folder is None:
            if which is not None:
                logger.warning("no checkpoint in %s yet: starting a new run", self.out)
            return 0
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            done = int(state["step"])
            weights = {d: load_file(str(folder / f"{d}_model.safetensors")) for d in DIRECTIONS}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"checkpoint {folder} is missing a file or corrupt: {error}") from error
        saved, now = state.get("trained_config", {}), self.args.trained_config()
        differences = sorted(k for k in now if saved.get(k) != now[k])
        if differences:
            listed = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in differences)
            raise CheckpointError(f"cannot resume from {folder}: it was trained with other arguments ({listed})")
        for direction, model in self.models.items():
            model.load_state_dict(weights[direction])
        self.history = state.get("history", [])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        logger.info("resumed from %s after %d half-iterations", folder, done)
        return done

    def end(self) -> None:
        self.accelerator.end_training()


def _tail_mean(losses: list[float], size: int = 100) -> float:
    """Mean of the last ``size`` losses (the end of a half-iteration, where the schedule has settled)."""
    tail = losses[-size:]
    return sum(tail) / len(tail) if tail else math.nan


def _scalar_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}


@torch.no_grad()
def evaluate_bridge(pipeline: SchrodingerBridgePipeline, num_samples: int, seed: int = 1) -> dict[str, float]:
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


@torch.no_grad()
def progression_figures(pipeline: SchrodingerBridgePipeline, num_points: int, seed: int) -> dict[str, Any]:
    """The course's progression plots (2-D only): ``x_0 ~ p_data`` carried forward to ``p'_data`` and
    ``y ~ p'_data`` carried backward, at six states of the chain titled with the diffusion time
    ``t_k = Σ_{j<k} γ_j``."""
    from hfgen import plotting

    if pipeline.dim != 2:
        return {}
    generator = torch.Generator().manual_seed(seed)
    times = pipeline.scheduler.times.tolist()
    ends = [pipeline.source_distribution.sample(2000, generator), pipeline.target_distribution.sample(2000, generator)]
    both = torch.cat(ends)
    bounds = (float(both.min()) - 1.0, float(both.max()) + 1.0)  # room for the noise of the middle states
    figures = {}
    for direction, visited in (("forward", times), ("backward", times[::-1])):
        out = pipeline(num_points, direction=direction, generator=generator, return_trajectory=True)
        figures[f"{direction}.png"] = plotting.plot_trajectory(out.trajectory, visited, bounds=bounds)
    return figures


def run_bridge(args: BridgeArguments) -> dict[str, Any]:
    """Train (or resume), evaluate with ``num_eval_samples`` points each way, save the pipeline, ``metrics.json``,
    the card and the plots in ``output_dir`` and, with ``--push_to_hub``, upload them. Returns the metrics (main
    process; ``{}`` elsewhere)."""
    trainer = BridgeTrainer(args)
    result = trainer.train()
    final = evaluate_bridge(result.pipeline, args.num_eval_samples, seed=1)
    metrics = {**result.metrics, **final, "history": trainer.history}
    trainer.save(result, metrics)
    if trainer.is_main and args.push_to_hub:
        from hfgen.hub import push_folder_to_hub

        push_folder_to_hub(args.output_dir, args.hub_model_id, private=args.hub_private_repo)
    trainer.end()
    return metrics if trainer.is_main else {}


# ---- model card ------------------------------------------------------------------------------------------

_METRICS = {
    "w2": ("wasserstein-2", "W2"),
    "w2_floor": ("wasserstein-2-floor", "W2 floor"),
    "w2_ratio": ("wasserstein-2-over-floor", "W2 / floor"),
}


def bridge_history_table(history: list[Mapping[str, Any]]) -> str:
    """Per IPF iteration: W2 of each end to its marginal beside the floor, and the final mean-matching losses."""
    from hfgen.hub import markdown_table

    def number(record: Mapping[str, Any], key: str) -> str:
        return f"{record[key]:.4f}" if key in record else ""

    rows = [
        (
            record["iteration"] + 1,
            *(number(record, f"{d}_{k}") for d in DIRECTIONS for k in ("w2", "w2_floor", "w2_ratio")),
            number(record, "forward_loss"),
            number(record, "backward_loss"),
        )
        for record in history
    ]
    header = ("iteration", "→ p'_data W2", "floor", "ratio", "→ p_data W2", "floor", "ratio", "loss f", "loss b")
    return markdown_table(header, rows)


def bridge_card(args: BridgeArguments, metrics: Mapping[str, Any], repo_id: str | None = None) -> Any:
    """Render ``model_cards/schrodinger_bridge.md`` for a run: metadata (W2 of both ends as eval results), the
    chain, the mean-matching loss and IPF, usage, metrics per iteration, plots and configuration.

    ``repo_id`` is the Hub id the usage snippet loads (the output folder when ``None``).
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hfgen.hub import LICENSE, TASK, card_template, markdown_table

    source, target = args.marginals()
    scheduler = args.noise_scheduler()
    model_name = repo_id.split("/")[-1] if repo_id else f"bridge-{args.dataset}"
    eval_results = [
        EvalResult(
            task_type=TASK,
            dataset_type=f"hfgen/{marginal.name}",
            dataset_name=name,
            metric_type=f"{direction}-{metric_type}",
            metric_name=f"{direction} {metric_name}",
            metric_value=round(float(metrics[f"{direction}_{key}"]), 6),
        )
        for direction, marginal, name in (
            ("forward", target, args.describe_target()),
            ("backward", source, args.dataset),
        )
        for key, (metric_type, metric_name) in _METRICS.items()
        if f"{direction}_{key}" in metrics
    ]
    card_data = ModelCardData(
        library_name="hfgen",
        license=LICENSE,
        tags=["hfgen", "schrodinger-bridge", "diffusion", "diffusers", "toy-2d"],
        model_name=model_name,
        eval_results=eval_results or None,
        source_distribution=args.dataset,
        target_distribution=args.describe_target(),
    )
    final = [
        (f"x_0 ~ p_data → {direction}" if direction == "forward" else f"y ~ p'_data → {direction}",
         *(f"{metrics[f'{direction}_{k}']:.4f}" for k in ("w2", "w2_floor", "w2_ratio")))
        for direction in DIRECTIONS
        if f"{direction}_w2" in metrics
    ]  # fmt: skip
    gammas = scheduler.gammas
    return ModelCard.from_template(
        card_data,
        template_str=card_template("schrodinger_bridge"),
        model_name=model_name,
        repo_id=repo_id or args.output_dir,
        source=f"{args.dataset}: {source!r}",
        target=f"{args.describe_target()}: {target!r}",
        stage=args.stage,
        num_steps=args.num_steps,
        gamma=f"{float(gammas.mean()):.4g}",
        schedule=args.schedule,
        gamma_range=f"{float(gammas.min()):.4g} … {float(gammas.max()):.4g}",
        reference_variance=f"{scheduler.reference_variance:.4g}",
        final_step_noise=args.final_step_noise,
        ipf_iterations=args.ipf_iterations,
        loss_weighting=args.loss_weighting,
        network="x + g_θ(x, k) (ResidualMean)" if args.residual else "a TimeMLP m_θ(x, k)",
        num_eval_samples=args.num_eval_samples,
        final_table=markdown_table(("transport", "W2", "floor", "W2 / floor"), final),
        history_table=bridge_history_table(metrics.get("history", [])),
        train_seconds=f"{metrics.get('train_seconds', 0.0):.0f}",
        half_iterations=metrics.get("half_iterations", len(args.half_iterations())),
        max_train_steps=args.max_train_steps,
        config_table=markdown_table(("argument", "value"), sorted(args.to_dict().items())),
    )
