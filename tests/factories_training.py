"""Tiny training runs for the tests of ``hfgen.training`` (a few steps of a width-8 network)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from accelerate.state import AcceleratorState, GradientState

from hfgen.training import FlowMatchingArguments

TINY_RUN = {
    "max_train_steps": 6,
    "hidden_size": 8,
    "num_layers": 1,
    "num_position_frequencies": 0,
    "train_batch_size": 32,
    "lr_warmup_steps": 2,
    "checkpointing_steps": 3,
    "validation_steps": 3,
    "num_validation_samples": 40,
    "num_validation_nll_samples": 0,
    "num_eval_samples": 40,
    "num_nll_samples": 0,
    "num_inference_steps": 4,
    "logging_steps": 2,
    "report_to": "none",
}


def tiny_args(output_dir, **overrides) -> FlowMatchingArguments:
    """Arguments of a 6-step run with checkpoints and validation every 3 steps."""
    return replace(FlowMatchingArguments(output_dir=str(output_dir)), **{**TINY_RUN, **overrides})


def reset_accelerate() -> None:
    """Forget Accelerate's process-wide state, so the next in-process run starts clean."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each in-process run starts from a clean Accelerate state (it is a process-wide singleton)."""
    yield
    reset_accelerate()
