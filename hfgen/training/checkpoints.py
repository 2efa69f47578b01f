"""Checkpoints of a training run: written atomically, rotated, and resumed exactly.

A checkpoint is the folder ``<output_dir>/checkpoints/checkpoint-<step>`` holding Accelerate's
``save_state`` (the weights of the model being optimised as safetensors; optimizer, learning-rate schedule and
random states through ``torch.save``, read back with ``weights_only=True``), every model of the task as
``weights-<name>.safetensors`` (a task may train several, one phase each), the EMA weights as ``ema.safetensors``,
the task's own tensors (persistent chains, replay buffers …) as ``task_state.safetensors`` and
``trainer_state.json``. It is first written to ``.tmp-checkpoint-<step>`` and renamed when complete, so a run
killed during a save never leaves a folder that looks like a checkpoint. Checkpoints are for resuming one's
own runs: they are never uploaded to the Hub.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hfgen.cli.errors import CheckpointError

__all__ = ["list_checkpoints"]

logger = logging.getLogger(__name__)

CHECKPOINTS_FOLDER = "checkpoints"
STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"
TASK_STATE_FILE = "task_state.safetensors"
_NAME = re.compile(r"^checkpoint-(\d+)$")


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


def _saved_torch_generator_state(path: Path) -> torch.Tensor | None:
    """The torch generator state in Accelerate's random-states file ``path``, read as Accelerate reads it
    (``accelerate.utils.load``: ``weights_only=True``, never a full unpickling), or ``None`` when the file is missing
    or cannot be read."""
    if not path.is_file():
        return None
    from accelerate.utils import load

    try:
        states = load(path)
    except Exception:  # noqa: BLE001 (Accelerate itself gives up on any error here)
        return None
    state = states.get("torch_manual_seed") if isinstance(states, dict) else None
    return state if isinstance(state, torch.Tensor) else None


def _weights_file(name: str) -> str:
    return f"weights-{name}.safetensors"


def _remove_leftovers(root: Path) -> None:
    """Remove what interrupted saves and deletions left in ``root``: ``.tmp-*`` and ``.delete-*`` folders and
    checkpoint folders without their ``trainer_state.json``."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        leftover = entry.name.startswith((".tmp-", ".delete-"))
        incomplete = _NAME.match(entry.name) is not None and not (entry / STATE_FILE).is_file()
        if entry.is_dir() and (leftover or incomplete):
            shutil.rmtree(entry, ignore_errors=True)


def save_checkpoint(
    accelerator: Any,
    output_dir: str | os.PathLike,
    step: int,
    ema: Any | None,
    trained_config: dict[str, Any],
    extra_state: dict[str, Any],
    total_limit: int = 0,
    models: dict[str, torch.nn.Module] | None = None,
    task_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save the full training state after ``step`` optimizer steps and keep the newest ``total_limit``
    checkpoints (all when 0): Accelerate's state, every model in ``models``, the EMA, the task's tensors
    ``task_state`` and the JSON ``extra_state``. Every process must call this; the main process writes and
    renames."""
    root = checkpoints_root(output_dir)
    final, tmp = root / f"checkpoint-{step}", root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        _remove_leftovers(root)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for name, model in (models or {}).items():
            weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(weights, str(tmp / _weights_file(name)))
        if task_state:
            save_file({k: v.detach().cpu().contiguous() for k, v in task_state.items()}, str(tmp / TASK_STATE_FILE))
        state = {"step": step, "trained_config": trained_config, **extra_state}
        if ema is not None:
            state["ema"] = _save_ema(ema, tmp)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit:
            for _, old in list_checkpoints(output_dir)[:-total_limit]:
                # renamed first: a run killed while deleting leaves a hidden leftover, never a broken checkpoint
                doomed = old.with_name(f".delete-{old.name}")
                os.replace(old, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(
    folder: Path, trained_config: dict[str, Any], adjustable: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The ``trainer_state.json`` of ``folder``, refused when it was written with other weight-deciding arguments
    (``trained_config``) than this run's; a change of an ``adjustable`` one (the learning rate, say, to recover
    from a divergence) is allowed with a warning."""
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        state["step"] = int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{folder / STATE_FILE} is missing or corrupt: {error}") from error
    if state["step"] < 1:
        raise CheckpointError(f"{folder / STATE_FILE} is corrupt: step {state['step']} (a checkpoint has step >= 1)")
    saved = state.get("trained_config", {})
    changed = {k: (saved.get(k), v) for k, v in trained_config.items() if saved.get(k) != v}
    adjusted = {k: change for k, change in changed.items() if k in adjustable}
    if adjusted:
        listed = ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in sorted(adjusted.items()))
        logger.warning("resuming %s with changed optimisation arguments (%s)", folder, listed)
    differences = {k: change for k, change in changed.items() if k not in adjustable}
    if differences:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(differences.items()))
        raise CheckpointError(
            f"cannot resume from {folder}: it was trained with other arguments ({listed}). Resume with the "
            "checkpoint's arguments (see args.json) or start a new run in another output_dir"
        )
    return state


def load_checkpoint(
    accelerator: Any,
    folder: Path,
    state: dict[str, Any],
    ema: Any | None,
    models: dict[str, torch.nn.Module],
) -> dict[str, torch.Tensor]:
    """Restore every model, then Accelerate's state (the model being optimised, its optimizer and schedule, the
    random states) and the EMA from ``folder``, whose trainer state is ``state`` (:func:`read_trainer_state`).
    Returns the task's tensors (empty when it saved none)."""
    if (ema is None) != ("ema" not in state):
        raise CheckpointError(f"{folder} {'has no' if ema is not None else 'has'} EMA weights, unlike this run")
    random_states = folder / f"random_states_{accelerator.process_index}.pkl"
    saved_generator = _saved_torch_generator_state(random_states)
    try:
        for name, model in models.items():
            model.load_state_dict(load_file(str(folder / _weights_file(name))))
        accelerator.load_state(str(folder))
        if saved_generator is None or not torch.equal(torch.get_rng_state(), saved_generator):
            # Accelerate only logs (at INFO) the random states it could not restore, and carries on
            logger.warning("%s: %s: the random states are not restored (the file is missing or cannot be read), so "
                           "the resumed run is not exact", folder, random_states.name)  # fmt: skip
        if ema is not None:
            _load_ema(ema, folder, state["ema"])
        task_file = folder / TASK_STATE_FILE
        return load_file(str(task_file)) if task_file.is_file() else {}
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError, EOFError, pickle.UnpicklingError) as error:
        # torch's own message for a file it cannot read safely suggests weights_only=False: never pass that on
        reason = "it cannot be read safely" if isinstance(error, pickle.UnpicklingError) else str(error)
        raise CheckpointError(
            f"checkpoint {folder} is corrupt or incomplete ({type(error).__name__}: {reason}); resume from another "
            f"checkpoint (available: {[p.name for _, p in list_checkpoints(folder.parent.parent)]})"
        ) from error
