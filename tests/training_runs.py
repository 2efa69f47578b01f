"""Training runs as the tests make them: a repository script run as a user runs it (a subprocess from the repository
root, one thread a process), and a run resumed from a mid-run checkpoint checked against the uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from factories import assert_equal_tensors, checkpoint_file, reset_accelerate, resume_at

REPO = Path(__file__).resolve().parents[1]


def launch(script: str, *argv: str, processes: int = 1, succeed: bool = True) -> subprocess.CompletedProcess:
    """Runs ``training/<script> argv…`` and, where ``succeed``, asserts exit status 0 (showing the end of stderr).

    With ``processes`` > 1 the script runs under ``accelerate launch`` as real data parallelism on the CPU (gloo DDP;
    ``--cpu --num_processes 2`` would run one process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    path = str(REPO / "training" / script)
    if processes == 1:
        command = [sys.executable, path, *argv]
    else:
        env["ACCELERATE_USE_CPU"] = "true"
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", "0", path, *argv]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert result.returncode == 0 or not succeed, result.stderr[-3000:]
    return result


def file_run_args(
    arguments_class: type, tiny: dict[str, Any], output_dir: Path, data_files: Sequence[str], **overrides
) -> Any:
    """``arguments_class`` for a tiny run on parquet files (``data_files``: the train and test files, then any other
    path) writing to ``output_dir``: the options ``tiny`` updated by ``overrides``."""
    train, test = data_files[:2]
    options = {**tiny, **overrides}
    return arguments_class(output_dir=str(output_dir), train_data_files=train, test_data_files=test, **options)


def assert_resumed_run_is_exact(
    train: Callable[[Any], tuple[Any, Any]], args: Any, root: Path, network: str, another_seed: bool = False
) -> None:
    """``train(args)`` (a trainer and its result) for 6 steps, and resumed from a copy of its checkpoint-3
    (:func:`factories.resume_at`), end bit for bit alike: the pipeline's ``network`` (EMA weights), the raw weights of
    checkpoint-6 and the learning rate. The raw weights moved between steps 3 and 6, and with ``another_seed`` a run
    with seed 1 ends with other weights: either way the comparison can fail."""
    (full_trainer, full), (resumed_trainer, resumed) = resume_at(train, args, root)
    reset_accelerate()
    assert resumed.metrics["train_steps"] == 6
    weights = getattr(full.pipeline, network).state_dict()
    assert_equal_tensors(weights, getattr(resumed.pipeline, network).state_dict())
    full_raw, start = checkpoint_file(root / "full", 6), checkpoint_file(root / "full", 3)
    assert_equal_tensors(full_raw, checkpoint_file(root / "resumed", 6))
    assert full_trainer.lr_schedule.get_last_lr() == resumed_trainer.lr_schedule.get_last_lr()
    assert any(not torch.equal(start[key], full_raw[key]) for key in full_raw)
    if another_seed:
        _, other = train(replace(args, output_dir=str(root / "other"), seed=1, checkpointing_steps=0))
        other_weights = getattr(other.pipeline, network).state_dict()
        assert any(not torch.equal(value, other_weights[key]) for key, value in weights.items())
