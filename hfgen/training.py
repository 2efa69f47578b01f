"""What every training script shares: arguments, the flow-matching training loop, evaluation and outputs.

A script under ``training/`` parses a dataclass with ``transformers.HfArgumentParser`` (command line, YAML or
JSON) and calls :func:`train_flow_matching`. Accelerate places the model and optimizer on the available
device (one CPU, one GPU, or several processes under ``accelerate launch``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from hfgen.data import CoupledPairs, ToyDistribution, get_toy_distribution
from hfgen.metrics import nll_report, sample_quality_report
from hfgen.models import TimeMLP
from hfgen.paths import COUPLINGS, PATHS, AffinePath, cfm_loss, get_path
from hfgen.pipelines import FlowMatchingPipeline
from hfgen.schedulers import FlowMatchEulerScheduler
from hfgen.schedulers.flow_match_euler import SOLVERS


@dataclass
class FlowMatchingArguments:
    """Arguments of ``training/train_fm.py``; the defaults are the built-in checkerboard recipe."""

    output_dir: str = field(default="out/fm-checkerboard", metadata={"help": "where the run writes its outputs"})
    dataset: str = field(default="checkerboard", metadata={"help": "target toy distribution (hfgen.data)"})
    source: str = field(default="gaussian", metadata={"help": "source toy distribution (t = 0)"})
    path: str = field(default="linear", metadata={"help": f"probability path: {sorted(PATHS)}"})
    sigma_min: float = field(default=0.0, metadata={"help": "σ_min of the linear path"})
    coupling: str = field(default="independent", metadata={"help": f"minibatch coupling: {COUPLINGS}"})
    hidden_size: int = 256
    num_layers: int = 4
    activation: str = "silu"
    time_embedding: str = "sinusoidal"
    num_position_frequencies: int = field(
        default=6, metadata={"help": "octave encodings sin/cos(2^k π x), k < L, of the input point (0: none)"}
    )
    time_beta: float = field(
        default=0.5, metadata={"help": "train on t ~ Beta(1, b): b = 1 uniform, b < 1 favours the data end t = 1"}
    )
    train_batch_size: int = 512
    max_train_steps: int = 15_000
    learning_rate: float = 2e-3
    lr_warmup_steps: int = 200
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the weights; 0 turns EMA off"})
    seed: int = 0
    solver: str = field(default="euler", metadata={"help": f"fixed-step sampler saved in the scheduler: {SOLVERS}"})
    num_inference_steps: int = 100
    num_eval_samples: int = field(default=10_000, metadata={"help": "samples for W2, MMD and support at the end"})
    num_nll_samples: int = field(default=2_000, metadata={"help": "held-out points for the NLL (dopri5)"})
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16 (Accelerate)"})
    logging_steps: int = 100

    def __post_init__(self) -> None:
        for name in ("dataset", "source"):
            get_toy_distribution(getattr(self, name))  # raises a clear error for unknown names
        if self.coupling not in COUPLINGS:
            raise ValueError(f"`coupling` must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"`solver` must be one of {SOLVERS}, got {self.solver!r}")
        if self.sigma_min and self.path != "linear":
            raise ValueError(
                f"`sigma_min` applies to the linear path only, got path={self.path!r}, sigma_min={self.sigma_min}"
            )
        self.probability_path()  # raises a clear error for unknown paths
        for name in (
            "train_batch_size",
            "max_train_steps",
            "num_inference_steps",
            "num_eval_samples",
            "num_nll_samples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.time_beta <= 0:
            raise ValueError(f"`time_beta` must be > 0, got {self.time_beta}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {self.ema_decay}")

    def probability_path(self) -> AffinePath:
        """The conditional path named by ``path`` (with ``sigma_min`` for the linear one)."""
        return get_path(self.path, **({"sigma_min": self.sigma_min} if self.path == "linear" else {}))


def build_velocity_model(args: FlowMatchingArguments, dim: int) -> TimeMLP:
    """The velocity network of the run."""
    return TimeMLP(
        dim=dim,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        activation=args.activation,
        time_embedding=args.time_embedding,
        num_position_frequencies=args.num_position_frequencies,
    )


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup_steps``, then ``½(1 + cos(π s / S))`` to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(step - warmup_steps, total_steps - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class EMA:
    r"""Exponential moving average of weights, ``θ̄ ← d θ̄ + (1 − d) θ`` with the warm-up
    ``d_s = min(decay, (1 + s)/(10 + s))`` (as diffusers' ``EMAModel``), one fused update per step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        self.num_updates += 1
        torch._foreach_lerp_(self.shadow, [p.detach() for p in model.parameters()], 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for shadow, param in zip(self.shadow, model.parameters(), strict=True):
            param.copy_(shadow)


def train_flow_matching(args: FlowMatchingArguments) -> tuple[FlowMatchingPipeline, dict]:
    r"""Train a velocity network by conditional flow matching from ``args.source`` to ``args.dataset``.

    Each step draws fresh pairs ``x_0 ~ source``, ``x_1 ~ target``, couples them (independent or minibatch
    OT), and minimises ``‖v_θ(x_t, t) − u_t‖²`` on the chosen path (:func:`hfgen.paths.cfm_loss`). The
    returned pipeline carries the EMA weights when EMA is on.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    set_seed(args.seed)
    target, source = get_toy_distribution(args.dataset), get_toy_distribution(args.source)
    if source.dim != target.dim:
        raise ValueError(f"source {args.source!r} has dim {source.dim} but dataset {args.dataset!r} has {target.dim}")
    path = args.probability_path()
    model = build_velocity_model(args, target.dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, args.lr_warmup_steps, args.max_train_steps)
    )
    model, optimizer, lr_schedule = accelerator.prepare(model, optimizer, lr_schedule)
    ema = EMA(accelerator.unwrap_model(model), args.ema_decay) if args.ema_decay > 0 else None
    data_generator = torch.Generator().manual_seed(args.seed + accelerator.process_index)
    # The OT solve runs in a background thread (it releases the GIL) while the network trains.
    pairs = CoupledPairs(
        source,
        target,
        args.train_batch_size,
        args.coupling,
        data_generator,
        time_beta=args.time_beta,
        prefetch=2 if args.coupling == "ot" else 0,
    )

    with pairs:
        progress = tqdm(range(args.max_train_steps), disable=not accelerator.is_main_process, desc="train")
        start = time.perf_counter()
        device = accelerator.device
        for step, (x0, x1, t) in zip(progress, pairs, strict=False):  # the pair stream is endless
            loss = cfm_loss(model, x0.to(device), x1.to(device), path, t=t.to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at step {step}; lower the learning rate")
            accelerator.backward(loss)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(accelerator.unwrap_model(model))
            if step % args.logging_steps == 0:
                progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr_schedule.get_last_lr()[0]:.2e}")
        train_seconds = time.perf_counter() - start

    final = accelerator.unwrap_model(model)
    if ema is not None:
        ema.copy_to(final)
    pipeline = FlowMatchingPipeline(final.eval(), FlowMatchEulerScheduler(solver=args.solver), source=source)
    return pipeline, {"train_seconds": train_seconds, "train_steps": args.max_train_steps}


def evaluate_flow_matching(
    pipeline: FlowMatchingPipeline,
    target: ToyDistribution,
    num_samples: int,
    num_inference_steps: int,
    num_nll_samples: int = 2_000,
    seed: int = 1,
) -> dict:
    """Sample quality against a held-out target sample (W2 and its floor, MMD, support) and, where the
    target has a density, NLL against its entropy (Euler samples and dopri5 log-densities)."""
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(seed)
    samples = pipeline(num_samples, num_inference_steps, generator=generator).samples
    metrics = {f"samples_{k}": v for k, v in sample_quality_report(samples, target, generator=generator).items()}
    if target.has_log_prob and pipeline.source_distribution.has_log_prob:
        held_out = target.sample(num_nll_samples, generator=generator)
        metrics |= nll_report(pipeline.log_prob(held_out), target.entropy)
    return metrics


def write_outputs(pipeline: FlowMatchingPipeline, metrics: dict, args: FlowMatchingArguments) -> None:
    """Save the pipeline (safetensors + configs), the model card ``README.md``, ``metrics.json``, ``args.json``
    and the plots."""
    from hfgen import plotting
    from hfgen.hub import flow_matching_card

    os.makedirs(args.output_dir, exist_ok=True)
    pipeline.save_pretrained(args.output_dir)
    with open(os.path.join(args.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    with open(os.path.join(args.output_dir, "args.json"), "w", encoding="utf-8") as f:
        json.dump(asdict(args), f, indent=2)
    flow_matching_card(args, metrics).save(os.path.join(args.output_dir, "README.md"))
    target = get_toy_distribution(args.dataset)
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(2)
    out = pipeline(2000, args.num_inference_steps, generator=generator, return_trajectory=True)
    # At t = 0 the CFM minimiser is v*(x, 0) = E[x_1] − x (x_0 carries no information about x_1).
    target_mean = target.sample(100_000, generator).mean(0)
    times = torch.linspace(0, 1, args.num_inference_steps + 1)
    figures = {
        "samples.png": plotting.plot_samples(out.samples, reference=target.sample(2000, generator), title="samples"),
        "trajectory.png": plotting.plot_trajectory(out.trajectory, times),
        "velocity_field.png": plotting.plot_velocity_field(
            pipeline.velocity_field,
            t=0.0,
            reference=lambda x, t: target_mean - x,
            titles=("learned v(x, 0)", "optimal E[x_1] − x"),
        ),
    }
    if pipeline.source_distribution.has_log_prob and target.dim == 2:
        figures["density.png"] = plotting.plot_density(
            lambda x: pipeline.log_prob(x, rtol=1e-4, atol=1e-4), bounds=(-2.5, 2.5), grid_size=80
        )
    for name, figure in figures.items():
        figure.savefig(os.path.join(args.output_dir, name), dpi=100, bbox_inches="tight")
