"""What every ``training/train_*.py`` script does: parse its arguments, run, print the metrics, and report the
user's mistakes (a bad argument, data that do not fit the task, a folder in use or holding another run, a checkpoint
that does not fit, a diverged loss) as one line on stderr with exit status 2 instead of a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from hfgen.training.arguments import ArgumentsT, parse_arguments
from hfgen.training.checkpoints import CheckpointError
from hfgen.training.engine import RUN_STARTED, UploadError
from hfgen.training.task import TrainingDivergedError

#: errors that describe something the user can fix by changing the command line
USER_ERRORS = (ValueError, TypeError, FileExistsError, FileNotFoundError, CheckpointError, TrainingDivergedError)
#: the run's own refusals, whenever they come: a folder in use or holding another run, a checkpoint, a divergence
RUN_REFUSALS = (FileExistsError, CheckpointError, TrainingDivergedError)


def run_script(
    arguments_class: type[ArgumentsT],
    train: Callable[[ArgumentsT], dict[str, Any]],
    description: str | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse ``arguments_class`` (``--help`` shows ``description``), call ``train(args)`` and print its metrics as
    JSON; returns the exit status. Argument errors of any kind, the :data:`USER_ERRORS` raised while the run is set
    up (its data, networks and checkpoint, before its output folder is written) and the :data:`RUN_REFUSALS` print
    ``error: …`` only, with status 2; a failed upload of the saved run prints how to push it later, with status 1.
    A user error raised once the run writes its folder is a failure of the run: its traceback is kept."""
    try:
        args = parse_arguments(arguments_class, argv, description)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = RUN_STARTED.set(False)
    try:
        metrics = train(args)
    except RUN_REFUSALS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except USER_ERRORS as error:
        if RUN_STARTED.get():
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except UploadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        RUN_STARTED.reset(started)
    if metrics:
        # the numbers only: lists (the validation history, EM's log-likelihood per iteration) stay in metrics.json
        printable = {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))}
        print(json.dumps(printable, indent=2))
    return 0
