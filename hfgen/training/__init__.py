"""What every training script shares: the one Trainer, checkpoints, evaluation and outputs, and each model family's
task.

A script under ``training/`` parses its arguments dataclass (:mod:`hfgen.arguments`, without torch: command
line, YAML or JSON), then builds its :class:`TrainingTask` and calls :func:`run`. The public names are those its
modules and those of :mod:`hfgen.arguments` list in their ``__all__``, imported on first use (PEP 562), so that
``from hfgen.training import FlowMatchingArguments`` does not import the tasks.
"""

from __future__ import annotations

from hfgen.lazy import declared_exports, lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, lambda: declared_exports("hfgen.arguments") | declared_exports(__name__))
