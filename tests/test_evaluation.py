"""The final evaluation every training script shares: ``--evaluation {auto,fast,full}`` with one rule for ``auto``,
each family's full and fast sizes, and a line on stderr for each stage of it."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from factories import reset_accelerate

from hfgen.cli.scripts import run_script
from hfgen.training import DDPMPointsArguments, DensityArguments, SchrodingerBridgeArguments, ScoreSDEArguments

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--report_to", "none", "--validation_steps", "0", "--checkpointing_steps", "0"]


def run_training_script(script: str, arguments_class: type, argv: list[str]) -> tuple[int, dict]:
    """Run ``training/<script>``'s ``train`` through :func:`run_script` (what its ``__main__`` does); returns the
    exit status and the run's ``metrics.json``."""
    reset_accelerate()
    train = runpy.run_path(str(REPO / "training" / script))["train"]
    status = run_script(arguments_class, train, argv=argv)
    out = Path(argv[argv.index("--output_dir") + 1])
    return status, json.loads((out / "metrics.json").read_text())


def test_auto_is_fast_under_a_sixth_of_the_recipe_in_every_family():
    # DDPM and score SDEs: 12,000 optimizer steps; the mixture: 100 EM iterations; the bridge: 5,000 steps a half
    assert DDPMPointsArguments(max_train_steps=1_999).fast_evaluation()
    assert not DDPMPointsArguments(max_train_steps=2_000).fast_evaluation()
    assert ScoreSDEArguments(max_train_steps=1_999).fast_evaluation()
    assert DensityArguments(model="gmm", em_iterations=16).fast_evaluation()
    assert not DensityArguments(model="gmm", em_iterations=17).fast_evaluation()
    assert not DensityArguments(model="gmm", max_train_steps=1).fast_evaluation()  # EM iterations count, not steps
    assert DensityArguments(model="cnf", max_train_steps=499).fast_evaluation()  # the CNF's recipe: 3,000 steps
    assert SchrodingerBridgeArguments(half_iteration_steps=833).fast_evaluation()
    assert not SchrodingerBridgeArguments(half_iteration_steps=834).fast_evaluation()
    assert not DDPMPointsArguments(max_train_steps=10, evaluation="full").fast_evaluation()
    assert DDPMPointsArguments(evaluation="fast").fast_evaluation()
    with pytest.raises(ValueError, match="`evaluation` must be one of \\('auto', 'fast', 'full'\\), got 'quick'"):
        DensityArguments(model="gmm", evaluation="quick")


@pytest.mark.parametrize("evaluation", [None, "full"])
def test_a_short_ddpm_run_evaluates_fast_unless_full_is_asked(tmp_path, evaluation):
    net = ["--hidden_size", "8", "--num_layers", "1", "--num_train_timesteps", "8", "--max_train_steps", "3"]
    chosen = ["--evaluation", evaluation] if evaluation else []
    argv = [*QUIET, *net, "--num_eval_samples", "2100", *chosen, "--output_dir", str(tmp_path)]
    status, metrics = run_training_script("train_ddpm.py", DDPMPointsArguments, argv)
    assert status == 0
    expected = ("full", 2_100) if evaluation == "full" else ("fast", 2_000)  # fast: at most 2,000 samples
    assert (metrics["evaluation"], metrics["evaluation_samples"], metrics["evaluation_likelihood_points"]) == (
        *expected,
        0,
    )


@pytest.mark.parametrize("evaluation", [None, "full"])
def test_a_short_em_fit_evaluates_fast_unless_full_is_asked_and_says_what_it_does(tmp_path, evaluation, capsys):
    fit = ["--model", "gmm", "--em_iterations", "3", "--num_train_points", "400"]
    chosen = ["--evaluation", evaluation] if evaluation else []
    sizes = ["--num_eval_samples", "2100", "--num_nll_samples", "300"]
    argv = [*QUIET, *fit, *sizes, *chosen, "--output_dir", str(tmp_path)]
    status, metrics = run_training_script("train_density.py", DensityArguments, argv)
    out, err = capsys.readouterr()
    assert status == 0
    kind, samples, points = ("full", 2_100, 300) if evaluation == "full" else ("fast", 2_000, 200)
    assert (metrics["evaluation"], metrics["evaluation_samples"], metrics["evaluation_likelihood_points"]) == (
        kind,
        samples,
        points,
    )
    assert metrics["num_nll_samples"] == points
    # the EM fit's progress bar, then a line for each stage of the evaluation and of the outputs
    assert "train density: 100%" in err and "3/3" in err
    for line in (
        f"[hfgen] {kind} evaluation: {samples:,} samples and {points:,} held-out log-likelihoods …",
        f"[hfgen] drawing {samples:,} samples …",
        f"[hfgen] scoring the {samples:,} samples against held-out data …",
        f"[hfgen] log-likelihood of {points:,} held-out points …",
        "[hfgen] writing metrics.json and the model card …",
        "[hfgen] drawing the final figures …",
        "[hfgen] saving figure 1/2: samples.png",
    ):
        assert line in err.splitlines()
    # the printout: numbers only (EM's log-likelihood per iteration stays in metrics.json), and no EMA in an EM fit
    printed = json.loads(out)
    assert "em_log_likelihood" not in printed and len(metrics["em_log_likelihood"]) == 4
    assert printed["ema"] is False and metrics["ema"] is False


def test_the_kde_bandwidth_search_shows_its_progress(tmp_path, capsys):
    fit = ["--model", "kde", "--num_train_points", "200", "--bandwidth_grid_size", "3", "--cv_folds", "2"]
    argv = [*QUIET, *fit, "--num_eval_samples", "50", "--num_nll_samples", "20", "--output_dir", str(tmp_path)]
    status, metrics = run_training_script("train_density.py", DensityArguments, argv)
    err = capsys.readouterr().err
    assert status == 0 and metrics["evaluation"] == "full"  # one closed-form step: the recipe's length
    assert "kde: 2-fold bandwidth search: 100%" in err and "6/6" in err
