"""What every training run needs around its loop: the Accelerator, the output folder, trackers, figures, atomic
writes and the upload.

The loop itself is :class:`~hfgen.training.trainer.Trainer`; checkpoints are :mod:`hfgen.training.checkpoints`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hfgen.arguments import TrainingArguments
from hfgen.cli.errors import RUN_STARTED, UploadError
from hfgen.pipelines.base import RUN_IN_PROGRESS_FILE
from hfgen.training.checkpoints import CHECKPOINTS_FOLDER
from hfgen.utils import write_atomic

ARGS_FILE = "args.json"
METRICS_FILE = "metrics.json"
VALIDATION_FOLDER = "validation"
HELD_OUT_SEED = 20_231_123  # seeds the held-out data every evaluation compares against
LOCK_FILE = ".hfgen-run.lock"


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


class OutputFolderLock:
    """An exclusive lock on a run's output folder for the life of the run: ``.hfgen-run.lock`` in the folder,
    holding the process id, locked with ``fcntl.flock``. The operating system releases it when the process ends,
    however it ends, so a lock left by a dead run never blocks the next one; a run that ends normally removes the
    file, so a finished folder holds only the run's outputs."""

    def __init__(self, output_dir: str | os.PathLike):
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_FILE
        while True:
            self._file = self._try_lock(folder)
            if self._holds_the_file_at_path():
                break
            self._file.close()  # the holder removed the file between our open and our lock: lock the new one
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def _try_lock(self, folder: Path) -> Any:
        """The lock file, opened (created if need be) and locked, or ``FileExistsError`` naming its holder."""
        import fcntl

        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held open for the run's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            other = handle.read().strip() or "unknown"
            handle.close()
            raise FileExistsError(
                f"output_dir {str(folder)!r} is in use by another training run (process {other}); wait for it to "
                "end or pass another --output_dir"
            ) from error
        return handle

    def _holds_the_file_at_path(self) -> bool:
        """Whether the locked file is still the one at :attr:`path` (a releasing holder unlinks it while locked)."""
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self._file.fileno())
        return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)

    def release(self) -> None:
        """Remove the lock file, then unlock (the operating system unlocks when the process ends)."""
        if not self._file.closed:
            if self._holds_the_file_at_path():
                self.path.unlink()
            self._file.close()


def holds_run(output_dir: str | os.PathLike) -> bool:
    """Whether ``output_dir`` holds a run: its ``args.json``, a saved pipeline or checkpoints."""
    out = Path(output_dir)
    return (out / ARGS_FILE).is_file() or (out / "model_index.json").is_file() or (out / CHECKPOINTS_FOLDER).is_dir()


def check_output_dir(args: TrainingArguments) -> None:
    """Refuse to start a new run in a folder that holds another run, unless asked to overwrite it.

    Resuming checks instead, when it loads a checkpoint, that it agrees on every weight-deciding argument."""
    if args.resume_from_checkpoint is not None or not holds_run(args.output_dir):
        return
    if not args.overwrite_output_dir:
        raise FileExistsError(
            f"output_dir {args.output_dir!r} holds another run (args.json, model_index.json or checkpoints/). Pass "
            "--resume_from_checkpoint latest to continue it, --overwrite_output_dir to replace it, or another "
            "--output_dir"
        )


def check_fresh_start_allowed(args: TrainingArguments) -> None:
    """``--resume_from_checkpoint latest`` found no checkpoint: start afresh only where no run would be lost —
    an empty folder, or one whose run died before its first checkpoint with the same arguments."""
    out = Path(args.output_dir)
    if (out / "model_index.json").is_file() and not (out / RUN_IN_PROGRESS_FILE).is_file():
        raise FileExistsError(
            f"output_dir {args.output_dir!r} holds a finished run and no checkpoint to resume from; starting afresh "
            "would overwrite it. Pass --overwrite_output_dir to replace it, or another --output_dir"
        )
    previous = out / ARGS_FILE
    if previous.is_file():
        saved = json.loads(previous.read_text(encoding="utf-8"))
        now = args.trained_config()
        differences = sorted(k for k in now if k in saved and saved[k] != now[k])
        if differences:
            listed = ", ".join(f"{k}: folder {saved[k]!r} vs now {now[k]!r}" for k in differences)
            raise FileExistsError(
                f"output_dir {args.output_dir!r} holds a run with other arguments ({listed}) and no checkpoint; "
                "pass --overwrite_output_dir to replace it, or another --output_dir"
            )


def start_output_dir(accelerator: Any, args: TrainingArguments) -> None:
    """Mark ``output_dir`` as holding a run in progress (a pipeline is not loaded from it until the run has saved)
    and write ``args.json`` (main process); a fresh ``--overwrite_output_dir`` run first removes the previous
    run's checkpoints and validation figures."""
    out = Path(args.output_dir)
    RUN_STARTED.set(True)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_IN_PROGRESS_FILE).write_text(f"{os.getpid()}\n", encoding="utf-8")
        if args.overwrite_output_dir and args.resume_from_checkpoint is None:
            shutil.rmtree(out / CHECKPOINTS_FOLDER, ignore_errors=True)
            shutil.rmtree(out / VALIDATION_FOLDER, ignore_errors=True)
        write_atomic(out / ARGS_FILE, json.dumps(args.to_dict(), indent=2))
    accelerator.wait_for_everyone()


def finish_output_dir(args: TrainingArguments) -> None:
    """The run has saved everything: its folder loads as a pipeline again."""
    (Path(args.output_dir) / RUN_IN_PROGRESS_FILE).unlink(missing_ok=True)


def status(accelerator: Any, message: str) -> None:
    """One line on stderr for a stage of the run that takes more than a moment (main process only)."""
    if accelerator.is_main_process:
        print(f"[hfgen] {message}", file=sys.stderr, flush=True)


def progress_bar(total: int, description: str) -> Any:
    """A tqdm bar on stderr over ``total`` steps of a stage (main process only, redrawn at most once a second)."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=not PartialState().is_main_process, mininterval=1.0)


def scalar_config(config: dict[str, Any]) -> dict[str, Any]:
    """The entries a tracker can record as hyper-parameters (numbers, strings, booleans)."""
    return {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def save_figure(figure: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG (or an animation as GIF) and free it."""
    import matplotlib.pyplot as plt

    if hasattr(figure, "save"):  # an hfgen.plotting.Animation: a GIF
        figure.save(path)
        return
    figure.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(figure)


def push_outputs(args: TrainingArguments) -> None:
    """Upload the run's output folder to ``--hub_model_id`` (with ``--push_to_hub``); a failed upload (the Hub
    unreachable, a login missing …) raises :class:`UploadError`, which says how to push the saved run later."""
    from hfgen.hub import push_folder_to_hub

    try:
        push_folder_to_hub(args.output_dir, args.hub_model_id, private=args.hub_private_repo)
    except Exception as error:  # whatever the upload met, the run itself is saved
        folder = str(Path(args.output_dir).resolve())
        private = ", private=True" if args.hub_private_repo else ""
        later = f"push_folder_to_hub({folder!r}, {args.hub_model_id!r}{private})"
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line, however the Hub worded it
        raise UploadError(
            f"the run is saved in {folder}, but uploading it to {args.hub_model_id} failed ({reason}). "
            f'Push it later with: python -c "from hfgen.hub import push_folder_to_hub; {later}"'
        ) from error
