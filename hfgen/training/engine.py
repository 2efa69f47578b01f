"""What every training run needs around its loop: the Accelerator, the output folder, trackers, figures, atomic
writes and the upload.

The loop itself is :class:`~hfgen.training.trainer.Trainer`; checkpoints are :mod:`hfgen.training.checkpoints`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from hfgen.training.arguments import TrainingArguments
from hfgen.training.checkpoints import CHECKPOINTS_FOLDER

ARGS_FILE = "args.json"
METRICS_FILE = "metrics.json"
VALIDATION_FOLDER = "validation"
HELD_OUT_SEED = 20_231_123  # seeds the held-out data every evaluation compares against


def report_to(choice: str) -> str | None:
    """The Accelerate tracker of ``--report_to`` (``auto``: tensorboard when installed; ``none``: no tracker)."""
    if choice == "auto":
        from accelerate.utils import is_tensorboard_available

        return "tensorboard" if is_tensorboard_available() else None
    return None if choice == "none" else choice


def make_accelerator(args: TrainingArguments) -> Any:
    """An ``accelerate.Accelerator`` for ``args`` (mixed precision, gradient accumulation, tracker, project folder),
    with every random generator seeded by ``args.seed``."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=report_to(args.report_to),
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=args.output_dir),
    )
    set_seed(args.seed)
    return accelerator


def check_output_dir(args: TrainingArguments) -> None:
    """Refuse to start a new run in a folder that holds another run, unless asked to overwrite it.

    Resuming checks instead, when it loads a checkpoint, that it agrees on every weight-deciding argument."""
    out = Path(args.output_dir)
    holds_run = (
        (out / ARGS_FILE).is_file() or (out / "model_index.json").is_file() or (out / CHECKPOINTS_FOLDER).is_dir()
    )
    if args.resume_from_checkpoint is not None or not holds_run:
        return
    if not args.overwrite_output_dir:
        raise FileExistsError(
            f"output_dir {str(out)!r} holds another run (args.json, model_index.json or checkpoints/). Pass "
            "--resume_from_checkpoint latest to continue it, --overwrite_output_dir to replace it, or another "
            "--output_dir"
        )


def start_output_dir(accelerator: Any, args: TrainingArguments) -> None:
    """Create ``output_dir`` and write ``args.json`` (main process); a fresh ``--overwrite_output_dir`` run first
    removes the previous run's checkpoints and validation figures."""
    out = Path(args.output_dir)
    if accelerator.is_main_process:
        if args.overwrite_output_dir and args.resume_from_checkpoint is None:
            shutil.rmtree(out / CHECKPOINTS_FOLDER, ignore_errors=True)
            shutil.rmtree(out / VALIDATION_FOLDER, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / ARGS_FILE).write_text(json.dumps(args.to_dict(), indent=2), encoding="utf-8")
    accelerator.wait_for_everyone()


def scalar_config(config: dict[str, Any]) -> dict[str, Any]:
    """The entries a tracker can record as hyper-parameters (numbers, strings, booleans)."""
    return {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def save_figure(figure: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG and free it."""
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def push_outputs(args: TrainingArguments) -> None:
    """Upload the run's output folder to ``--hub_model_id`` (with ``--push_to_hub``)."""
    from hfgen.hub import push_folder_to_hub

    push_folder_to_hub(args.output_dir, args.hub_model_id, private=args.hub_private_repo)
