"""The repository's training scripts run as a user runs them: a subprocess from the repository root, one thread a
process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
