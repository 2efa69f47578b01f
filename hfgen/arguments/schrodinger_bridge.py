"""Arguments of ``training/train_bridge.py``: the course's bridge between two balls, without torch (the chain and
the marginals, which check the rest, are built when the arguments are checked)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from hfgen.arguments.common import TrainingArguments
from hfgen.checks import check_int
from hfgen.choices import BRIDGE_SCHEDULES, TOY_DISTRIBUTION_NAMES
from hfgen.cli.parser import documented, recipe

__all__ = ["SchrodingerBridgeArguments"]

STAGES = ("diffusion", "ipf")
LOSS_WEIGHTINGS = ("none", "inverse_gamma")
DIRECTIONS = ("forward", "backward")


@dataclass
@recipe(learning_rate=3e-3, lr_warmup_steps=50)
class SchrodingerBridgeArguments(TrainingArguments):
    """Arguments of ``training/train_bridge.py``; the defaults are the course's bridge between two balls and the
    same two balls shifted, ``N = 20`` steps of ``γ = 2 / N``.

    ``half_iteration_steps`` counts the optimizer steps of ONE half-iteration (one direction); ``max_train_steps``,
    the optimizer steps of the whole run, follows from it (not an argument). ``checkpointing_steps`` and
    ``validation_steps`` count half-iterations and IPF iterations.
    """

    run_only_fields = TrainingArguments.run_only_fields | {"plots"}
    # a half-iteration's length decides where every later phase starts: it cannot change on resume
    adjustable_on_resume = TrainingArguments.adjustable_on_resume - {"max_train_steps"}
    step_fields = ("half_iteration_steps",)

    output_dir: str = documented("out/bridge-two-balls", "where the run writes its outputs")
    stage: str = documented("ipf", f"{STAGES}: 'diffusion' trains each direction from N(0, I); 'ipf' alternates")
    dataset: str = documented("two_balls", f"p_data, the law of X_0, one of {', '.join(TOY_DISTRIBUTION_NAMES)}")
    target_dataset: str | None = documented(None, "base of p'_data, the law of X_N (default: dataset)")
    target_shift: list[float] = field(
        default_factory=lambda: [0.0, 3.0], metadata={"help": "p'_data = target_dataset shifted by this vector"}
    )
    num_steps: int = documented(20, "number N of steps of the chain")
    gamma: float | None = documented(None, "mean step size γ (default 2 / N)")
    schedule: str = documented("symmetric", f"step sizes {BRIDGE_SCHEDULES}: all γ, or small steps at both ends (DSB)")
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
        check_int(self.half_iteration_steps, "half_iteration_steps")
        if self.stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}, got {self.stage!r}")
        check_int(self.ipf_iterations, "ipf_iterations")
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

    def noise_scheduler(self) -> Any:
        """The run's chain: ``num_steps`` steps of mean size ``gamma`` (``2 / N`` when None)."""
        from hfgen.schedulers.schrodinger_bridge import BridgeScheduler  # torch: the scheduler owns its checks

        return BridgeScheduler(
            num_steps=self.num_steps,
            gamma=self.gamma,
            schedule=self.schedule,
            final_step_noise=self.final_step_noise,
            schedule_power=self.schedule_power,
        )

    def marginals(self) -> tuple[Any, Any]:
        """``(p_data, p'_data)``: ``dataset`` and ``target_dataset`` shifted by ``target_shift``."""
        from hfgen.data import Shifted, get_toy_distribution  # torch, and the registry's own checks

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

    def build_network(self, dim: int) -> Any:
        """A direction's mean network: :class:`ResidualMean`, or a plain :class:`TimeMLP` mean."""
        from hfgen.models import ResidualMean, TimeMLP  # torch, imported when the run builds its task

        if self.residual:
            return ResidualMean(dim=dim, hidden_size=self.hidden_size, num_layers=self.num_layers)
        # the integer state index k is the time input (time_scale 1, sinusoidal embedding)
        return TimeMLP(dim=dim, hidden_size=self.hidden_size, num_layers=self.num_layers, time_scale=1.0)
