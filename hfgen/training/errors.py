"""The errors a training run reports to its user, and whether the run has started writing (without torch: the
scripts' front door, :mod:`hfgen.training.cli`, catches them before torch is imported)."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["CheckpointError", "TrainingDivergedError"]

#: set by :func:`~hfgen.training.engine.start_output_dir` when this process's run starts writing its output folder:
#: a user error raised before is a refusal of the command (nothing was written), one raised after is a failure of
#: the run
RUN_STARTED: ContextVar[bool] = ContextVar("hfgen_run_started", default=False)


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, corrupt or from a run with another configuration."""


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the checkpoints saved before stay as they were."""


class UploadError(RuntimeError):
    """The run is saved in its output folder, but its upload to the Hub failed."""
