"""Arguments every training script shares, parsed with transformers' ``HfArgumentParser`` (without torch).

A script accepts its dataclass on the command line, from a YAML or JSON file (``--config run.yaml``, or the
file as the only argument), or both: the file sets the values and command-line flags override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hfgen.checks import check_int, check_number
from hfgen.choices import TOY_DISTRIBUTION_NAMES

__all__ = ["parse_arguments", "TrainingArguments"]

#: the learning-rate schedules of ``diffusers.optimization.get_scheduler`` (its ``SchedulerType`` but
#: ``piecewise_constant``, which needs a rule string), named here so that parsing does not import torch
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
MIXED_PRECISION = ("no", "fp16", "bf16")
#: environment variable that turns every training run into a smoke run of at most that many optimizer steps
SMOKE_STEPS_VARIABLE = "HFGEN_SMOKE_STEPS"
#: in a smoke run, the cap of each size a family may have (fields a family lacks are skipped, unset ones are set)
SMOKE_CAPS: dict[str, int] = {
    "train_batch_size": 64,
    "num_train_points": 2_000,
    "ipf_iterations": 1,
    "num_trajectories": 256,
    "num_inference_steps": 20,
    "num_sample_steps": 20,
    "num_validation_samples": 64,
    "num_validation_nll_samples": 16,
    "num_eval_samples": 256,
    "num_eval_images": 256,
    "num_nll_samples": 32,
    "num_nll_images": 32,
    "num_importance_samples": 16,
    "quadrature_grid_size": 16,
    "ais_num_chains": 8,
    "ais_num_betas": 100,
    "validation_ais_num_betas": 50,
    "buffer_size": 256,
    "grid_size": 64,
}
#: network sizes that must be ints >= 1 wherever a family has them (checked before any network is built)
NETWORK_SIZE_FIELDS = ("hidden_size", "num_layers", "num_hidden")
#: ``--evaluation``: the final evaluation's sizes (see :meth:`TrainingArguments.fast_evaluation`)
EVALUATIONS = ("auto", "fast", "full")
#: ``--evaluation auto`` is fast for a run shorter than ``1 / QUICK_RUN_DIVISOR`` of its recipe's training steps
QUICK_RUN_DIVISOR = 6
REPORT_TO = ("auto", "none", "all", "tensorboard", "wandb", "comet_ml", "mlflow", "aim", "clearml", "dvclive")


def documented(default: Any, help: str) -> Any:
    """A dataclass field with a ``--help`` text."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainingArguments:
    """What every hfgen training run shares: output, optimisation, EMA, checkpoints, validation and sharing.

    ``train_batch_size`` is per process and per micro-batch: one optimizer step sees
    ``train_batch_size × gradient_accumulation_steps × num_processes`` samples.
    """

    #: fields that may change when a run is resumed: they do not change the trained weights
    run_only_fields: ClassVar[frozenset[str]] = frozenset(
        {
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
    seed: int = field(default=0, metadata={"help": "seed of the weights and of every data batch"})
    train_batch_size: int = field(default=512, metadata={"help": "samples per process and micro-batch"})
    max_train_steps: int = field(default=15_000, metadata={"help": "optimizer steps"})
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-3
    lr_scheduler: str = field(default="cosine", metadata={"help": f"learning-rate schedule: {LR_SCHEDULERS}"})
    lr_warmup_steps: int = 200
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.0
    max_grad_norm: float = field(default=0.0, metadata={"help": "clip the gradient norm to this (0: no clipping)"})
    mixed_precision: str = field(default="no", metadata={"help": f"Accelerate mixed precision: {MIXED_PRECISION}"})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the weights (diffusers EMAModel); 0: off"})
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


ArgumentsT = TypeVar("ArgumentsT", bound=TrainingArguments)


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


def _read_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {path!r} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text)
    elif file.suffix == ".json":
        values = json.loads(text)
    else:
        raise ValueError(f"config file {path!r} must end in .yaml, .yml or .json")
    if not isinstance(values, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of argument names to values")
    return values


#: help of the arguments the families declare with their own defaults (a redeclared field loses its metadata)
SHARED_HELP = {
    "gradient_accumulation_steps": "micro-batches per optimizer step",
    "learning_rate": "AdamW learning rate (peak, after the warm-up)",
    "lr_warmup_steps": "optimizer steps of linear learning-rate warm-up",
    "adam_beta1": "AdamW β1",
    "adam_beta2": "AdamW β2",
    "adam_weight_decay": "AdamW decoupled weight decay",
    "hidden_size": "width of the network's hidden layers",
    "num_layers": "number of hidden layers",
    "activation": "activation of the hidden layers",
    "time_embedding": "embedding of the time input",
    "num_inference_steps": "steps of the sampler used for validation and evaluation",
    "image_column": "column of the data set holding the images",
    "label_column": "column of the data set holding the labels",
    "image_size": "height and width of the (square) images",
    "num_channels": "image channels",
    "latent_dim": "dimension of the latent codes",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the script's docstring as written (its example command lines) and shows every default but
    ``None`` (an unset argument: its help says what unset means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def _document(parser: Any, arguments_class: type) -> None:
    """Give every flag a help text: its own, the one of the field it redeclares in a base class, or
    :data:`SHARED_HELP`; the parser's formatter then also shows its default."""
    inherited: dict[str, str] = {}
    for cls in reversed(arguments_class.__mro__):
        if is_dataclass(cls):
            inherited |= {f.name: f.metadata["help"] for f in fields(cls) if f.metadata.get("help")}
    for action in parser._actions:
        if not action.help:
            action.help = inherited.get(action.dest) or SHARED_HELP.get(action.dest)
        if action.help and "%(" not in action.help:  # argparse %-formats help texts: "10%" must read "10%%"
            action.help = action.help.replace("%", "%%")
        if action.choices and action.help and "choices" not in action.help:
            action.help += f" (choices: {', '.join(map(str, action.choices))})"


def _take_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """The file of ``--config FILE`` or ``--config=FILE`` (at most one) and the other arguments."""
    paths, rest, index = [], [], 0
    while index < len(argv):
        item = argv[index]
        if item == "--config":
            if index + 1 >= len(argv) or argv[index + 1].startswith("--"):
                raise ValueError("`--config` needs a file path: --config run.yaml or --config=run.yaml")
            paths.append(argv[index + 1])
            index += 2
            continue
        if item.startswith("--config="):
            if not item.removeprefix("--config="):
                raise ValueError("`--config=` needs a file path: --config=run.yaml")
            paths.append(item.removeprefix("--config="))
        else:
            rest.append(item)
        index += 1
    if len(paths) > 1:
        raise ValueError(f"`--config` was given {len(paths)} times ({paths}); pass one file, and flags to override it")
    return (paths[0] if paths else None), rest


def build_parser(arguments_class: type, description: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser of ``arguments_class`` (``HfArgumentParser``, every flag documented, ``--config``);
    ``description`` (a script's docstring) heads its ``--help``."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(arguments_class, description=description, formatter_class=_HelpFormatter)
    parser.add_argument("--config", default=None, help="YAML or JSON file of argument values")
    _document(parser, arguments_class)
    return parser


def parse_arguments(
    arguments_class: type[ArgumentsT], argv: list[str] | None = None, description: str | None = None
) -> ArgumentsT:
    """Parse ``arguments_class`` from ``argv`` (default ``sys.argv[1:]``): flags, ``--config FILE`` (YAML or
    JSON; flags given beside it override the file), or a lone ``FILE.yaml``/``FILE.json``. ``description`` (a
    script's docstring) heads ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = ["--config", argv[0]]
    parser = build_parser(arguments_class, description)
    config_path, argv = _take_config_flag(argv)
    if config_path is not None:
        values = _read_config_file(config_path)
        known = {f.name for f in fields(arguments_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config file {config_path!r} has unknown arguments {unknown}; known: {sorted(known)}")
        parser.set_defaults(**values)
    namespace, remaining = parser.parse_known_args(argv)
    if remaining:
        raise ValueError(f"unknown command-line arguments {remaining}")
    values = {k: v for k, v in vars(namespace).items() if k != "config"}
    return smoke_capped(arguments_class(**values))


def smoke_steps() -> int | None:
    """The step cap of a smoke run: the value of ``HFGEN_SMOKE_STEPS`` (an int >= 1), or ``None`` when unset."""
    text = os.environ.get(SMOKE_STEPS_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"environment variable {SMOKE_STEPS_VARIABLE} must be an int >= 1 (or unset), got {text!r}")
    return int(text)


def smoke_capped(args: ArgumentsT) -> ArgumentsT:
    """``args`` unchanged when ``HFGEN_SMOKE_STEPS`` is unset. Else a copy that trains at most that many steps on the
    sizes of :data:`SMOKE_CAPS`, checkpoints at half of them (so that a resume finds a checkpoint) and validates only
    at the end, so that any run finishes in seconds (the README's test runs every training line this way). The
    copy's arguments are checked again; the changes are printed on stderr."""
    steps = smoke_steps()
    if steps is None:
        return args
    present = {f.name for f in fields(args) if f.init}
    caps = {name: cap for name, cap in SMOKE_CAPS.items() if name in present}
    counted = {name: steps for name in ("max_train_steps", *args.step_fields) if name in present}
    caps |= {**counted, "lr_warmup_steps": steps, "checkpointing_steps": max(1, steps // 2)}
    changes: dict[str, Any] = {}
    for name, cap in caps.items():
        value = getattr(args, name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > cap):
            changes[name] = cap
    if args.validation_steps:
        changes["validation_steps"] = 0
    print(f"{SMOKE_STEPS_VARIABLE}={steps}: a smoke run, with {changes}", file=sys.stderr)
    return dataclasses.replace(args, **changes)


def check_toy_name(name: object, argument: str) -> str:
    """``name`` if it names a toy distribution of :mod:`hfgen.data` (whose registry checks its constructor arguments
    when the task builds it)."""
    if not isinstance(name, str) or name not in TOY_DISTRIBUTION_NAMES:
        raise ValueError(
            f"`{argument}`: unknown toy distribution {name!r}; available: {sorted(TOY_DISTRIBUTION_NAMES)}"
        )
    return name
