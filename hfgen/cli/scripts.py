"""What every ``training/train_*.py`` script does: parse its arguments (without torch), run, print the metrics, and
report the user's mistakes (a bad argument, data that do not fit the task, a folder in use or holding another run, a
checkpoint that does not fit, a diverged loss) as one line on stderr with exit status 2 instead of a traceback."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hfgen.cli.errors import RUN_STARTED, CheckpointError, TrainingDivergedError, UploadError
from hfgen.cli.parser import build_parser, parse_arguments, read_config_file, take_config_flag
from hfgen.cli.smoke import ArgumentsT

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
    except (*USER_ERRORS, UploadError) as error:
        if RUN_STARTED.get() and not isinstance(error, (*RUN_REFUSALS, UploadError)):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1 if isinstance(error, UploadError) else 2
    finally:
        RUN_STARTED.reset(started)
    if metrics:
        # the numbers only: lists (the validation history, EM's log-likelihood per iteration) stay in metrics.json
        printable = {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))}
        print(json.dumps(printable, indent=2))
    return 0


#: the flags that make ``train_fm.py`` / ``train_ddpm.py`` train on images
IMAGE_DATA_FLAGS = ("--dataset_name", "--train_data_files")


def is_image_run(argv: Sequence[str]) -> bool:
    """Whether a training script's command line asks for images: ``--dataset_name``/``--train_data_files`` among the
    flags, or in the ``--config`` file."""
    if any(item.split("=", 1)[0] in IMAGE_DATA_FLAGS for item in argv):
        return True
    try:
        path, _ = take_config_flag(list(argv))
    except ValueError:
        return False
    if path is None or not os.path.isfile(path):
        return False
    values = read_config_file(path)
    return any(values.get(flag.removeprefix("--")) is not None for flag in IMAGE_DATA_FLAGS)


#: the flags that ask for ``--help``
HELP_FLAGS = ("-h", "--help")


def run_points_or_images(
    points: tuple[type[ArgumentsT], Callable[[ArgumentsT], dict[str, Any]]],
    images: tuple[type[Any], Callable[[Any], dict[str, Any]]],
    description: str | None = None,
    argv: list[str] | None = None,
) -> int:
    """:func:`run_script` of a script that trains on toy points (``points``: arguments class and training function)
    or, when the command line (or its ``--config`` file) names image data, on images (``images``). ``--help`` of a
    points command line also lists the options only an image run has."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_image_run(argv):
        return run_script(*images, description, argv)
    if any(item in HELP_FLAGS for item in argv):
        print(help_with_image_options(points[0], images[0], description), end="")
        return 0
    return run_script(*points, description, argv)


def help_with_image_options(points_class: type, images_class: type, description: str | None = None) -> str:
    """The ``--help`` of ``points_class`` followed by a group of the options only ``images_class`` has."""
    parser = build_parser(points_class, description)
    known = {action.dest for action in parser._actions}
    group = parser.add_argument_group(
        f"image options (an image run: {' or '.join(IMAGE_DATA_FLAGS)}; add --help to it for the image defaults "
        "of the options above)"
    )
    for action in build_parser(images_class)._actions:
        if action.dest not in known:
            group._add_action(action)
    return parser.format_help()
