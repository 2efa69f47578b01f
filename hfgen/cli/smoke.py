"""Smoke runs: with ``HFGEN_SMOKE_STEPS`` set, every training run trains a few steps on small sizes (without
torch)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import fields
from typing import Any, TypeVar

ArgumentsT = TypeVar("ArgumentsT")

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
