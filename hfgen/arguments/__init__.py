"""The arguments of every training script, without torch.

:mod:`~hfgen.arguments.common` holds what every run shares (output, optimisation, EMA, checkpoints,
evaluation, sharing; :mod:`hfgen.cli` parses them from the command line, YAML or JSON); each family has its own
module. A script imports its family's arguments, parses the command line and only then imports the task
(``hfgen.training.<family>``) and torch, so that ``--help`` and a mistyped flag answer at once. Methods that build a
run's torch objects (its scheduler, network or data) import them when called; the component that owns a value keeps
its rule, and ``__post_init__`` calls it.
"""

from hfgen.arguments.common import LR_SCHEDULERS, TrainingArguments

__all__ = ["LR_SCHEDULERS", "TrainingArguments"]
