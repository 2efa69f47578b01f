"""Arguments of ``training/train_score.py``: the VP recipe on toy points, without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfgen.arguments.common import TrainingArguments, check_toy_name
from hfgen.choices import PREDICTION_TYPES, SCORE_SDE_SAMPLERS, TIME_EMBEDDINGS
from hfgen.cli.parser import documented, recipe

__all__ = ["ScoreSDEArguments"]

SDES = ("vp", "ve")


@dataclass
@recipe(max_train_steps=12_000, validation_steps=4_000, checkpointing_steps=4_000)
class ScoreSDEArguments(TrainingArguments):
    """Arguments of ``training/train_score.py``; the defaults are the built-in VP recipe (checkerboard target)."""

    output_dir: str = documented("out/score-checkerboard", "where the run writes its outputs")
    dataset: str = documented("checkerboard", "data distribution x_0 (hfgen.data toy name)")
    sde: str = documented("vp", f"forward SDE {SDES}: variance preserving or exploding")
    beta_min: float = documented(0.1, "VP: β(0)")
    beta_max: float = documented(10.0, "VP: β(1); 10 leaves m_1 ≈ 0.08 of the data at t = 1")
    sigma_min: float = documented(0.01, "VE: σ(0)")
    sigma_max: float = documented(10.0, "VE: σ(1), the prior's standard deviation")
    sampling_eps: float = documented(1e-3, "smallest time ε: training times and sampling end")
    prediction_type: str = documented("epsilon", f"network output {PREDICTION_TYPES}: ε̂ = −σ_t s, or the score s")
    hidden_size: int = 256
    num_layers: int = 4
    activation: str = "silu"
    time_embedding: str = documented("sinusoidal", f"{TIME_EMBEDDINGS} embedding of t ∈ [ε, 1]")
    num_position_frequencies: int = documented(
        3, "octave encodings sin/cos(2^k π x), k < L, of the input point (0: none)"
    )
    time_beta: float = documented(
        1.0, "train on t = ε + (1 − ε)(1 − u), u ~ Beta(1, b): b = 1 uniform, b < 1 favours t near ε"
    )
    sampler: str = documented("euler_maruyama", f"sampler for validation and evaluation {SCORE_SDE_SAMPLERS}")
    num_inference_steps: int = documented(500, "sampler steps from t = 1 to ε")
    num_eval_samples: int = documented(10_000, "samples for W2, MMD and support at the end")
    num_nll_samples: int = documented(1_000, "held-out points for the final probability-flow NLL (dopri5)")
    num_validation_nll_samples: int = documented(250, "held-out points for the NLL at each validation (0: none)")

    positive_fields = (*TrainingArguments.positive_fields, "num_inference_steps", "num_eval_samples")
    nonnegative_fields = (*TrainingArguments.nonnegative_fields, "num_nll_samples", "num_validation_nll_samples")
    choice_fields = {
        **TrainingArguments.choice_fields,
        "sde": SDES,
        "sampler": SCORE_SDE_SAMPLERS,
        "time_embedding": TIME_EMBEDDINGS,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_toy_name(self.dataset, "dataset")
        if self.time_beta <= 0:
            raise ValueError(f"`time_beta` must be > 0, got {self.time_beta}")
        self.noise_scheduler()  # the scheduler checks β, σ, ε and the prediction type

    def noise_scheduler(self) -> Any:
        """The run's SDE: :class:`VPSDEScheduler` (``β_min, β_max``) or :class:`VESDEScheduler` (``σ_min, σ_max``)."""
        from hfgen.schedulers.score_sde import VESDEScheduler, VPSDEScheduler  # torch: the scheduler owns its checks

        common = {"sampling_eps": self.sampling_eps, "prediction_type": self.prediction_type}
        if self.sde == "vp":
            return VPSDEScheduler(beta_min=self.beta_min, beta_max=self.beta_max, **common)
        return VESDEScheduler(sigma_min=self.sigma_min, sigma_max=self.sigma_max, **common)
