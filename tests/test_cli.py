"""The training scripts' command line: every flag documented with its default, the script's docstring on top, and
the user's mistakes reported as one line (exit status 2) instead of a traceback."""

import argparse
import ast
import runpy
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from factories import tiny_args
from transformers import HfArgumentParser

from hfgen.cli.parser import _document, build_parser
from hfgen.cli.scripts import run_script
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
from hfgen.training.classifier import ClassifierArguments

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


SCRIPTS = sorted((Path(__file__).parent.parent / "training").glob("train_*.py"))


@pytest.mark.parametrize(
    ("script", "own_flag"), [("train_fm.py", "--coupling"), ("train_ddpm.py", "--num_train_timesteps")]
)
def test_the_help_of_a_points_or_images_script_lists_the_image_options(script, own_flag, monkeypatch, capsys):
    path = Path(__file__).parent.parent / "training" / script
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(path), run_name="__main__")
    text = capsys.readouterr().out
    assert stopped.value.code == 0 and own_flag in text
    image_part = text[text.index("image options") :]
    for flag in ("--dataset_name", "--train_data_files", "--test_data_files", "--class_conditional", "--image_size"):
        assert f"\n  {flag} " in image_part, flag


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.name)
def test_a_script_docstring_reads_as_written_so_no_example_loses_its_line_break(path):
    """A backslash at the end of an example line (a shell continuation) must reach --help as written: a plain
    string literal would join the two lines."""
    literal = ast.parse(path.read_text(encoding="utf-8")).body[0].value
    written = ast.get_source_segment(path.read_text(encoding="utf-8"), literal)
    assert literal.value == written[written.index('"""') + 3 : -3]


def test_the_density_help_shows_each_models_recipe_values():
    from hfgen.training.density import DENSITY_TASKS

    text = " ".join(build_parser(DensityArguments).format_help().split())
    assert "None: the recipe" not in text and "(default: None)" not in text
    made, cnf = DENSITY_TASKS["made"], DENSITY_TASKS["cnf"]
    steps = made.recipe["max_train_steps"], made.image_recipe["max_train_steps"], cnf.recipe["max_train_steps"]
    assert f"made {steps[0]} (on images {steps[1]})" in text and f"cnf {steps[2]}" in text
    assert f"gmm {DENSITY_TASKS['gmm'].recipe['em_iterations']}" in text
    assert f"coupling {DENSITY_TASKS['coupling'].recipe['activation']}, cnf {cnf.recipe['activation']}" in text
