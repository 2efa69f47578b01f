"""Checkpoints of a training run: written atomically, rotated, and resumed exactly.

A checkpoint is the folder ``<output_dir>/checkpoints/checkpoint-<step>`` holding Accelerate's
``save_state`` (model weights as safetensors; optimizer, learning-rate schedule and random states through
``torch.save``, read back with ``weights_only=True``), the EMA weights as ``ema.safetensors`` and
``trainer_state.json``. It is first written to ``.tmp-checkpoint-<step>`` and renamed when complete, so a run
killed during a save never leaves a folder that looks like a checkpoint. Checkpoints are for resuming one's
own runs: they are never uploaded to the Hub.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CHECKPOINTS_FOLDER = "checkpoints"
STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"
_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, corrupt or from a run with another configuration."""


def checkpoints_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / CHECKPOINTS_FOLDER


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as ``(step, folder)``."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = [
        (int(match.group(1)), entry)
        for entry in root.iterdir()
        if (match := _NAME.match(entry.name)) and (entry / STATE_FILE).is_file()
    ]
    return sorted(found)


def resolve_checkpoint(output_dir: str | os.PathLike, which: str) -> Path | None:
    """The folder named by ``--resume_from_checkpoint``: ``"latest"`` (``None`` when the run has none yet) or a
    path (absolute, relative to the working directory, or a checkpoint name inside ``<output_dir>/checkpoints``)."""
    if which == "latest":
        found = list_checkpoints(output_dir)
        return found[-1][1] if found else None
    for candidate in (Path(which), checkpoints_root(output_dir) / which):
        if candidate.is_dir():
            if not (candidate / STATE_FILE).is_file():
                raise CheckpointError(
                    f"{candidate} is not a complete checkpoint (no {STATE_FILE}); it may be from an interrupted save. "
                    "Pass another checkpoint or 'latest'"
                )
            return candidate
    raise CheckpointError(
        f"checkpoint {which!r} does not exist (looked for it as a path and in {checkpoints_root(output_dir)}); "
        f"available: {[p.name for _, p in list_checkpoints(output_dir)] or 'none'}"
    )


def _save_ema(ema: Any, folder: Path) -> dict[str, Any]:
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    save_file({str(i): p.detach().cpu().contiguous() for i, p in enumerate(shadow)}, str(folder / EMA_FILE))
    return state


def _load_ema(ema: Any, folder: Path, scalars: dict[str, Any]) -> None:
    tensors = load_file(str(folder / EMA_FILE))
    if len(tensors) != len(ema.shadow_params):
        raise CheckpointError(
            f"{folder / EMA_FILE} holds {len(tensors)} EMA tensors but the model has {len(ema.shadow_params)}"
        )
    ema.load_state_dict({**scalars, "shadow_params": [tensors[str(i)] for i in range(len(tensors))]})


def save_checkpoint(
    accelerator: Any,
    output_dir: str | os.PathLike,
    step: int,
    ema: Any | None,
    trained_config: dict[str, Any],
    extra_state: dict[str, Any],
    total_limit: int = 0,
) -> Path:
    """Save the full training state after ``step`` optimizer steps and keep the newest ``total_limit``
    checkpoints (all when 0). Every process must call this; the main process writes and renames."""
    root = checkpoints_root(output_dir)
    final, tmp = root / f"checkpoint-{step}", root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"step": step, "trained_config": trained_config, **extra_state}
        if ema is not None:
            state["ema"] = _save_ema(ema, tmp)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit:
            for _, old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, folder: Path, ema: Any | None, trained_config: dict[str, Any]) -> dict[str, Any]:
    """Restore model, optimizer, schedule, random states and EMA from ``folder``; returns its trainer state.

    Refuses a checkpoint written with other weight-deciding arguments (``trained_config``) than this run's.
    """
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        step = int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{folder / STATE_FILE} is missing or corrupt: {error}") from error
    saved = state.get("trained_config", {})
    differences = {k: (saved.get(k), v) for k, v in trained_config.items() if saved.get(k) != v}
    if differences:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(differences.items()))
        raise CheckpointError(
            f"cannot resume from {folder}: it was trained with other arguments ({listed}). Resume with the "
            "checkpoint's arguments (see args.json) or start a new run in another output_dir"
        )
    if (ema is None) != ("ema" not in state):
        raise CheckpointError(f"{folder} {'has no' if ema is not None else 'has'} EMA weights, unlike this run")
    try:
        accelerator.load_state(str(folder))
        if ema is not None:
            _load_ema(ema, folder, state["ema"])
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError, EOFError) as error:
        raise CheckpointError(
            f"checkpoint {folder} is corrupt or incomplete ({type(error).__name__}: {error}); resume from another "
            f"checkpoint (available: {[p.name for _, p in list_checkpoints(folder.parent.parent)]})"
        ) from error
    state["step"] = step
    return state
