"""Arguments of ``training/train_ddpm.py`` on toy points: the constant-α recipe, without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfgen.arguments.common import TrainingArguments, check_toy_name
from hfgen.choices import DDPM_SAMPLERS, TIME_EMBEDDINGS, VARIANCE_TYPES
from hfgen.cli.parser import documented, recipe

__all__ = ["DDPMPointsArguments"]

#: α of the built-in recipe when neither ``alpha`` nor ``final_alpha_bar`` is given (with T = 500: ᾱ_T ≈ 0.0066)
DEFAULT_ALPHA = 0.99
#: ``beta_schedule`` choices: the course's constant α, or one of diffusers' DDPMScheduler/DDIMScheduler schedules
BETA_SCHEDULES = ("constant_alpha", "linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass
@recipe(max_train_steps=12_000, validation_steps=4_000, checkpointing_steps=4_000)
class DDPMPointsArguments(TrainingArguments):
    """Arguments of ``training/train_ddpm.py``; the defaults are the built-in recipe (checkerboard target).

    The schedule is ``ᾱ_t = α^t``, ``t = 0 … T``: give ``alpha`` or ``final_alpha_bar`` (then
    ``α = ᾱ_T^{1/T}``), not both; with neither, ``α = 0.99``. With ``beta_schedule`` other than ``"constant_alpha"``
    the run uses diffusers' own ``DDPMScheduler`` (or ``DDIMScheduler`` for ``sampler="ddim"``) with that β schedule
    from ``beta_start`` to ``beta_end`` (``clip_sample=False``, ε-prediction), ``ᾱ_t = Π_{s ≤ t} (1 − β_s)``.
    """

    output_dir: str = documented("out/ddpm-checkerboard", "where the run writes its outputs")
    dataset: str = documented("checkerboard", "data distribution x_0 (hfgen.data toy name)")
    num_train_timesteps: int = documented(500, "number T of diffusion steps")
    beta_schedule: str = documented(
        "constant_alpha", f"{BETA_SCHEDULES}: the course's ᾱ_t = α^t, or a diffusers DDPMScheduler β schedule"
    )
    beta_start: float = documented(1e-4, "β_1 of a diffusers linear or scaled_linear schedule")
    beta_end: float = documented(0.02, "β_T of a diffusers linear or scaled_linear schedule")
    alpha: float | None = documented(None, f"constant α in (0, 1) (default {DEFAULT_ALPHA})")
    final_alpha_bar: float | None = documented(None, "instead of alpha: ᾱ_T in (0, 1), giving α = ᾱ_T^(1/T)")
    hidden_size: int = 256
    num_layers: int = 4
    activation: str = "silu"
    time_embedding: str = documented(
        "sinusoidal", f"{TIME_EMBEDDINGS}: sinusoids of the integer t, or Fourier features of t / T"
    )
    num_position_frequencies: int = documented(
        6, "octave encodings sin/cos(2^k π x), k < L, of the input point (0: none)"
    )
    variance_type: str = documented("beta_tilde", f"reverse-step variance {VARIANCE_TYPES} (β̃: posterior variance)")
    sampler: str = documented("ancestral", f"sampler saved in the scheduler: {DDPM_SAMPLERS}")
    eta: float = documented(0.0, "DDIM noise scale η in [0, 1] (sampler='ddim' only)")
    num_inference_steps: int | None = documented(
        None, "sampling steps in 1 … T for validation and evaluation (default: all T)"
    )
    num_eval_samples: int = documented(10_000, "samples for W2, MMD and support at the end")

    positive_fields = (*TrainingArguments.positive_fields, "num_train_timesteps", "num_eval_samples")
    choice_fields = {
        **TrainingArguments.choice_fields,
        "beta_schedule": BETA_SCHEDULES,
        "variance_type": VARIANCE_TYPES,
        "sampler": DDPM_SAMPLERS,
        "time_embedding": TIME_EMBEDDINGS,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_toy_name(self.dataset, "dataset")
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
            from hfgen.schedulers.constant_alpha_ddpm import alpha_for_final_alpha_bar  # torch: once the task is built

            return alpha_for_final_alpha_bar(self.num_train_timesteps, self.final_alpha_bar)
        return DEFAULT_ALPHA

    def noise_scheduler(self) -> Any:
        """The run's scheduler: ``ᾱ_t = α^t`` for ``t = 0 … T`` with the chosen sampler, or diffusers' DDPM (DDIM for
        ``sampler="ddim"``) scheduler with ``beta_schedule``; ``variance_type`` ``beta_tilde``/``beta`` is diffusers'
        ``fixed_small``/``fixed_large``."""
        from diffusers import DDIMScheduler, DDPMScheduler  # torch, imported when the run builds its task

        from hfgen.schedulers import ConstantAlphaDDPMScheduler

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
