"""Arguments every training script shares, without torch (:mod:`hfgen.cli.parser` parses them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from hfgen.checks import check_int, check_number
from hfgen.choices import TOY_DISTRIBUTION_NAMES
from hfgen.cli.parser import documented
from hfgen.cli.parser import parse_arguments as parse_arguments  # exported by hfgen.training

__all__ = ["parse_arguments", "TrainingArguments"]

#: the learning-rate schedules of ``diffusers.optimization.get_scheduler`` (its ``SchedulerType`` but
#: ``piecewise_constant``, which needs a rule string), named here so that parsing does not import torch
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
MIXED_PRECISION = ("no", "fp16", "bf16")
#: network sizes that must be ints >= 1 wherever a family has them (checked before any network is built)
NETWORK_SIZE_FIELDS = ("hidden_size", "num_layers", "num_hidden")
#: ``--evaluation``: the final evaluation's sizes (see :meth:`TrainingArguments.fast_evaluation`)
EVALUATIONS = ("auto", "fast", "full")
#: ``--evaluation auto`` is fast for a run shorter than ``1 / QUICK_RUN_DIVISOR`` of its recipe's training steps
QUICK_RUN_DIVISOR = 6
REPORT_TO = ("auto", "none", "all", "tensorboard", "wandb", "comet_ml", "mlflow", "aim", "clearml", "dvclive")


@dataclass
class TrainingArguments:
    """What every hfgen training run shares: output, optimisation, EMA, checkpoints, validation and sharing.

    ``train_batch_size`` is per process and per micro-batch: one optimizer step sees
    ``train_batch_size × gradient_accumulation_steps × num_processes`` samples.
    """

    #: fields that may change when a run is resumed: they do not change the trained weights (the final evaluation's
    #: sizes and classifier wherever a family has them)
    run_only_fields: ClassVar[frozenset[str]] = frozenset(
        {
            *("num_eval_samples", "num_nll_samples", "num_validation_nll_samples", "num_eval_images"),
            *("num_nll_images", "classifier_path"),
            "output_dir",
            "overwrite_output_dir",
            "logging_steps",
            "report_to",
            "checkpointing_steps",
            "checkpoints_total_limit",
            "resume_from_checkpoint",
            "validation_steps",
            "num_validation_samples",
            "evaluation",
            "push_to_hub",
            "hub_model_id",
            "hub_private_repo",
        }
    )

    output_dir: str = documented("out/run", "where the run writes its pipeline, card, plots, metrics and checkpoints")
    overwrite_output_dir: bool = documented(False, "allow writing into a folder that holds another run")
    seed: int = documented(0, "seed of the weights and of every data batch")
    train_batch_size: int = documented(512, "samples per process and micro-batch")
    max_train_steps: int = documented(15_000, "optimizer steps")
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-3
    lr_scheduler: str = documented("cosine", f"learning-rate schedule: {LR_SCHEDULERS}")
    lr_warmup_steps: int = 200
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.0
    max_grad_norm: float = documented(0.0, "clip the gradient norm to this (0: no clipping)")
    mixed_precision: str = documented("no", f"Accelerate mixed precision: {MIXED_PRECISION}")
    ema_decay: float = documented(0.999, "EMA decay of the weights (diffusers EMAModel); 0: off")
    logging_steps: int = documented(100, "log the loss, learning rate and throughput every N steps")
    report_to: str = documented("auto", f"Accelerate trackers: {REPORT_TO} ('auto': tensorboard when installed)")
    checkpointing_steps: int = documented(5_000, "save the training state every N steps (0: never)")
    checkpoints_total_limit: int = documented(2, "keep only the newest N checkpoints (0: keep all)")
    resume_from_checkpoint: str | None = documented(None, "'latest' or a checkpoint folder to continue from")
    validation_steps: int = documented(5_000, "sample with the EMA weights, plot and score every N steps (0: never)")
    num_validation_samples: int = documented(2_000, "samples drawn at each validation")
    evaluation: str = documented(
        "auto",
        f"final evaluation {EVALUATIONS}: 'full' at the sizes the num_eval_* and num_nll_* arguments set; 'fast' at "
        f"the family's small sizes (seconds); 'auto' fast for a run under 1/{QUICK_RUN_DIVISOR} of its recipe's steps",
    )
    push_to_hub: bool = documented(False, "upload the output folder to the Hub at the end (needs `hf auth login`)")
    hub_model_id: str | None = documented(None, "Hub repo id 'user/name' for --push_to_hub")
    hub_private_repo: bool = documented(False, "create the Hub repo as private")

    #: fields that must be ints >= 1
    positive_fields: ClassVar[tuple[str, ...]] = (
        "train_batch_size",
        "max_train_steps",
        "gradient_accumulation_steps",
        "num_validation_samples",
    )

    #: fields that must be ints >= 0
    nonnegative_fields: ClassVar[tuple[str, ...]] = (
        "lr_warmup_steps",
        "logging_steps",
        "checkpointing_steps",
        "validation_steps",
        "checkpoints_total_limit",
    )
    #: fields that must be one of a few values
    choice_fields: ClassVar[dict[str, tuple[str, ...]]] = {
        "lr_scheduler": LR_SCHEDULERS,
        "mixed_precision": MIXED_PRECISION,
        "report_to": REPORT_TO,
        "evaluation": EVALUATIONS,
    }

    #: fields that count optimizer steps besides ``max_train_steps`` (a smoke run caps them all)
    step_fields: ClassVar[tuple[str, ...]] = ()

    #: fields a resumed run may change (with a warning): they steer the optimisation, not the network or the data
    adjustable_on_resume: ClassVar[frozenset[str]] = frozenset(
        {"learning_rate", "lr_scheduler", "lr_warmup_steps", "max_grad_norm", "max_train_steps"}
    )
    #: the largest learning rate accepted (larger ones only make an Adam step diverge)
    max_learning_rate: ClassVar[float] = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ValueError(f"`output_dir` must be a folder path (a non-empty string), got {self.output_dir!r}")
        check_int(self.seed, "seed", 0)
        for name in self.positive_fields:
            check_int(getattr(self, name), name)
        for name in NETWORK_SIZE_FIELDS:  # a family's width and depth, if it has them (None: its recipe)
            if getattr(self, name, None) is not None:
                check_int(getattr(self, name), name)
        for name in self.nonnegative_fields:
            check_int(getattr(self, name), name, 0)
        check_number(self.learning_rate, "learning_rate", low=0.0, high=self.max_learning_rate, open_low=True)
        check_number(self.max_grad_norm, "max_grad_norm", low=0.0, note="0 turns clipping off")
        check_number(self.adam_weight_decay, "adam_weight_decay", low=0.0)
        for name in ("adam_beta1", "adam_beta2", "ema_decay"):
            check_number(getattr(self, name), name, low=0.0, high=1.0, open_high=True)
        for name, allowed in self.choice_fields.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("`push_to_hub` needs `hub_model_id` ('user/name' of the Hub repo to upload to)")
        if self.hub_model_id is not None and self.hub_model_id.count("/") != 1:
            raise ValueError(f"`hub_model_id` must look like 'user/name', got {self.hub_model_id!r}")

    def run_length(self) -> tuple[int, int]:
        """``(training steps of this run, those of its family's recipe)``: ``max_train_steps`` and its default."""
        default = next(f.default for f in fields(self) if f.name == "max_train_steps")
        return self.max_train_steps, default

    def fast_evaluation(self) -> bool:
        """Whether the final evaluation is the fast one: ``--evaluation fast``, or ``auto`` for a quick run, one of
        fewer than ``1 / QUICK_RUN_DIVISOR`` of its recipe's training steps (:meth:`run_length`), whose full
        evaluation would cost several times its training."""
        if self.evaluation != "auto":
            return self.evaluation == "fast"
        steps, recipe = self.run_length()
        return steps * QUICK_RUN_DIVISOR < recipe

    def trained_config(self) -> dict[str, Any]:
        """The fields that decide the trained weights: a resumed run must agree with its checkpoint on these."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.run_only_fields}

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-serialisable (as written to ``args.json``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_image_data_source(arguments: Any, paths: tuple[str, ...] = ("train_data_files", "test_data_files")) -> None:
    """An image family's data: exactly one of ``dataset_name`` (a Hub id or folder) and ``train_data_files`` (a
    parquet file), ``test_data_files`` only beside the latter, and every local path in ``paths`` existing."""
    if (arguments.dataset_name is None) == (arguments.train_data_files is None):
        raise ValueError(
            "pass exactly one data source: `dataset_name` (a Hub id such as 'ylecun/mnist') or "
            f"`train_data_files` (a parquet file); got dataset_name={arguments.dataset_name!r}, "
            f"train_data_files={arguments.train_data_files!r}"
        )
    if arguments.test_data_files is not None and arguments.train_data_files is None:
        raise ValueError("`test_data_files` needs `train_data_files` (a Hub dataset brings its own test split)")
    for name in paths:
        path = getattr(arguments, name)
        if path is not None and not os.path.exists(path):
            raise FileNotFoundError(f"`{name}` {path!r} does not exist")


def check_toy_name(name: object, argument: str) -> str:
    """``name`` if it names a toy distribution of :mod:`hfgen.data` (whose registry checks its constructor arguments
    when the task builds it)."""
    if not isinstance(name, str) or name not in TOY_DISTRIBUTION_NAMES:
        raise ValueError(
            f"`{argument}`: unknown toy distribution {name!r}; available: {sorted(TOY_DISTRIBUTION_NAMES)}"
        )
    return name
