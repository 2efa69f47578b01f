"""Arguments of ``training/train_fm.py`` on toy points: the checkerboard recipe, without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfgen.arguments.common import TrainingArguments, check_toy_name
from hfgen.checks import check_int, check_number
from hfgen.choices import FLOW_COUPLINGS, FLOW_MATCH_SOLVERS, PATH_NAMES, TOY_DISTRIBUTION_NAMES
from hfgen.cli.parser import documented, recipe

__all__ = ["FlowMatchingArguments"]


@dataclass
@recipe(max_train_steps=12_000)
class FlowMatchingArguments(TrainingArguments):
    """Arguments of ``training/train_fm.py``; the defaults are the built-in checkerboard recipe."""

    run_only_fields = TrainingArguments.run_only_fields | {"coupling_workers"}

    output_dir: str = documented("out/fm-checkerboard", "where the run writes its outputs")
    dataset: str = documented("checkerboard", f"target toy distribution at t = 1: {', '.join(TOY_DISTRIBUTION_NAMES)}")
    source: str = documented("gaussian", "source toy distribution at t = 0 (same names; may be sample-only)")
    path: str = documented("linear", f"probability path: {sorted(PATH_NAMES)}")
    sigma_min: float = documented(0.0, "σ_min of the linear path")
    sigma: float = documented(1.0, "σ of the brownian path and of the sinkhorn coupling (regularisation 2σ²)")
    coupling: str = documented(
        "independent", f"minibatch coupling {FLOW_COUPLINGS}; OT couples within each process's batch"
    )
    coupling_workers: int = documented(
        1,
        "worker processes (per training process) that solve the ot or sinkhorn coupling of the next batches side "
        "by side; 0: one thread of the training process. The batches are the same for any value",
    )
    hidden_size: int = 256
    num_layers: int = 4
    activation: str = "silu"
    time_embedding: str = "sinusoidal"
    num_position_frequencies: int = documented(
        6, "octave encodings sin/cos(2^k π x), k < L, of the input point (0: none)"
    )
    time_beta: float = documented(0.5, "train on t ~ Beta(1, b): b = 1 uniform, b < 1 favours the data end t = 1")
    solver: str = documented("euler", f"fixed-step sampler saved in the scheduler: {FLOW_MATCH_SOLVERS}")
    num_inference_steps: int = 100
    num_eval_samples: int = documented(10_000, "samples for W2, MMD and support at the end")
    num_nll_samples: int = documented(1_000, "held-out points for the final NLL (dopri5)")
    num_validation_nll_samples: int = documented(250, "held-out points for the NLL at each validation (0: none)")

    positive_fields = (*TrainingArguments.positive_fields, "num_inference_steps", "num_eval_samples")
    nonnegative_fields = (*TrainingArguments.nonnegative_fields, "num_nll_samples", "num_validation_nll_samples")
    choice_fields = {**TrainingArguments.choice_fields, "coupling": FLOW_COUPLINGS, "solver": FLOW_MATCH_SOLVERS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_toy_name(self.dataset, "dataset")
        check_toy_name(self.source, "source")
        if self.sigma_min and self.path != "linear":
            raise ValueError(
                f"`sigma_min` applies to the linear path only, got path={self.path!r}, sigma_min={self.sigma_min}"
            )
        check_number(self.sigma, "sigma", low=0.0, open_low=True)
        check_number(self.sigma_min, "sigma_min", low=0.0, high=1.0, open_high=True)
        check_number(self.time_beta, "time_beta", low=0.0, open_low=True)
        check_int(self.coupling_workers, "coupling_workers", low=0)
        if self.path not in PATH_NAMES:
            raise ValueError(f"unknown path {self.path!r}; expected one of {sorted(PATH_NAMES)}")

    def probability_path(self) -> Any:
        """The conditional path named by ``path`` (with ``sigma_min`` for the linear one, ``sigma`` for the
        Brownian bridge)."""
        from hfgen.methods.flow_matching import get_path  # torch, imported when the run builds its task

        options = {"linear": {"sigma_min": self.sigma_min}, "brownian": {"sigma": self.sigma}}
        return get_path(self.path, **options.get(self.path, {}))
