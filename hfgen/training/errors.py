"""The errors of a training run that :mod:`hfgen.training` exports (defined beside the scripts' front door)."""

from hfgen.cli.errors import CheckpointError, TrainingDivergedError

__all__ = ["CheckpointError", "TrainingDivergedError"]
