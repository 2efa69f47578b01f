"""The training scripts' command line: every flag documented with its default, the script's docstring on top, and
the user's mistakes reported as one line (exit status 2) instead of a traceback."""

import argparse
from dataclasses import fields

import pytest
from factories import tiny_args
from transformers import HfArgumentParser

from hfgen.training import (
    DDPMPointsArguments,
    DensityArguments,
    EnergyArguments,
    FlowMatchingArguments,
    FlowMatchingTask,
    RBMArguments,
    SchrodingerBridgeArguments,
    ScoreSDEArguments,
    VAEArguments,
    run,
)
from hfgen.training.arguments import _document
from hfgen.training.classifier import ClassifierArguments
from hfgen.training.cli import run_script

ARGUMENTS = [
    FlowMatchingArguments,
    SchrodingerBridgeArguments,
    DDPMPointsArguments,
    VAEArguments,
    ClassifierArguments,
    DensityArguments,
    RBMArguments,
    EnergyArguments,
    ScoreSDEArguments,
]


@pytest.mark.parametrize("arguments_class", ARGUMENTS, ids=lambda cls: cls.__name__)
def test_every_flag_has_help_text_and_shows_its_default(arguments_class):
    parser = HfArgumentParser(arguments_class)
    _document(parser, arguments_class)
    flags = {action.dest: action for action in parser._actions if action.dest != "help"}
    assert set(flags) == {f.name for f in fields(arguments_class) if f.init}  # a derived field is no flag
    undocumented = sorted(name for name, action in flags.items() if not action.help)
    assert undocumented == []
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)


def test_help_lists_the_toy_distributions_and_the_script_docstring(capsys):
    with pytest.raises(SystemExit):
        run_script(FlowMatchingArguments, lambda args: {}, "Train a model.\n\npython train.py --x 1", ["--help"])
    text = capsys.readouterr().out
    assert "Train a model.\n\npython train.py --x 1" in text
    assert "checkerboard, 8gaussians, moons" in text and "(default: checkerboard)" in text


def test_a_bad_argument_is_one_line_with_exit_status_2(capsys):
    assert run_script(FlowMatchingArguments, lambda args: {}, argv=["--learning_rate", "1e39"]) == 2
    err = capsys.readouterr().err
    assert err == "error: `learning_rate` must be a finite number in (0, 10], got 1e+39\n"


@pytest.mark.parametrize(
    "arguments_class", [FlowMatchingArguments, DDPMPointsArguments, ScoreSDEArguments, EnergyArguments]
)
def test_a_network_size_of_zero_is_an_argument_error_before_any_network_is_built(arguments_class, capsys):
    assert run_script(arguments_class, lambda args: {}, argv=["--hidden_size", "0"]) == 2
    assert capsys.readouterr().err == "error: `hidden_size` must be an int >= 1, got 0\n"


def test_a_folder_holding_another_run_is_one_line_with_exit_status_2(tmp_path, capsys):
    args = tiny_args(tmp_path, max_train_steps=2, checkpointing_steps=0, validation_steps=0, num_eval_samples=20)
    run(FlowMatchingTask(args))
    capsys.readouterr()  # the first run's progress bars
    argv = ["--output_dir", str(tmp_path), "--max_train_steps", "2", "--report_to", "none"]
    status = run_script(FlowMatchingArguments, lambda a: run(FlowMatchingTask(a)), argv=argv)
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: output_dir") and "holds another run" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("arguments_class", ARGUMENTS, ids=lambda cls: cls.__name__)
def test_help_renders_for_every_script(arguments_class, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_script(arguments_class, lambda args: {}, "A script.", ["--help"])
    assert stopped.value.code == 0 and "(default:" in capsys.readouterr().out
