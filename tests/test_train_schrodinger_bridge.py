"""Schrödinger-bridge training (hfgen.training.schrodinger_bridge, training/train_bridge.py): arguments, the
residual mean network, the first half-iteration against the exact Gaussian time reversal, a tiny IPF run's outputs
and card, resume at half-iteration granularity, and the script end to end."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
import yaml
from factories import reset_accelerate, train_task
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from training_runs import launch

from hfgen import ResidualMean, SchrodingerBridgePipeline
from hfgen.data import Shifted, TwoBalls
from hfgen.training import (
    CheckpointError,
    SchrodingerBridgeArguments,
    SchrodingerBridgeTask,
    Trainer,
    parse_arguments,
    run_bridge,
)

TINY_RUN = {
    "num_steps": 4,
    "ipf_iterations": 2,
    "half_iteration_steps": 5,
    "hidden_size": 8,
    "num_layers": 1,
    "train_batch_size": 32,
    "num_trajectories": 50,
    "refresh_every": 3,
    "lr_warmup_steps": 1,
    "num_validation_samples": 40,
    "num_eval_samples": 40,
    "report_to": "none",
}


def tiny_args(output_dir, **overrides) -> SchrodingerBridgeArguments:
    """Arguments of a 2-iteration IPF run (4 half-iterations of 5 steps) on a 4-step chain."""
    return replace(SchrodingerBridgeArguments(output_dir=str(output_dir)), **{**TINY_RUN, **overrides})


def train(args):
    return train_task(SchrodingerBridgeTask(args))


# ---------------------------------------------------------------------------------------------- arguments


def test_defaults_are_the_course_bridge_two_balls_to_the_same_shifted_with_n_20_and_gamma_two_over_n():
    args = SchrodingerBridgeArguments()
    assert args.output_dir == "out/bridge-two-balls" and args.stage == "ipf"
    source, target = args.marginals()
    assert isinstance(source, TwoBalls) and isinstance(target, Shifted) and isinstance(target.base, TwoBalls)
    scheduler = args.noise_scheduler()
    assert scheduler.num_steps == 20
    assert float(scheduler.gammas.mean()) == pytest.approx(2 / 20) and scheduler.total_time == pytest.approx(2.0)
    assert args.half_iterations()[:3] == [("backward", "reference"), ("forward", "backward"), ("backward", "forward")]
    assert len(args.half_iterations()) == 2 * args.ipf_iterations
    assert SchrodingerBridgeArguments(stage="diffusion").half_iterations() == [
        ("forward", "noise"),
        ("backward", "noise"),
    ]
    assert "num_eval_samples" not in args.trained_config() and "ipf_iterations" in args.trained_config()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num_steps", "0"], r"`num_steps` must be an int >= 1, got 0"),
        (["--gamma", "0"], r"`gamma` must be a finite number > 0.*got 0.0"),
        (["--gamma", "-0.1"], r"`gamma` must be a finite number > 0"),
        (["--stage", "flow"], r"`stage` must be one of \('diffusion', 'ipf'\), got 'flow'"),
        (["--target_shift", "0", "1", "2"], r"`target_shift` \[0.0, 1.0, 2.0\] has length 3 .* dimension 2"),
        (["--schedule", "cosine"], "schedule"),
        (["--stage", "diffusion", "--num_steps", "4"], r"needs every γ_k < 1/2, got max γ_k = 0.6667"),
        (["--ipf_iterations", "0"], "ipf_iterations"),
        (["--loss_weighting", "snr"], r"`loss_weighting` must be one of \('none', 'inverse_gamma'\), got 'snr'"),
        (["--schedule", "constant", "--schedule_power", "2"], "the 'constant' schedule takes none"),
        (["--dataset", "spiral"], "spiral"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments(SchrodingerBridgeArguments, argv)


# ------------------------------------------------------------------------------------------------- network


def test_residual_mean_starts_at_the_brownian_reference_and_round_trips(tmp_path):
    model = ResidualMean(dim=2, hidden_size=8, num_layers=2)
    x = torch.randn(5, 2)
    assert torch.equal(model(x, torch.full((5,), 3.0)).sample, x)  # m_k(x) = x + 0 before training
    with torch.no_grad():
        model.net.body[-1].bias.fill_(0.5)
    torch.testing.assert_close(model(x, 2, return_dict=False)[0], x + 0.5)
    model.save_pretrained(tmp_path)
    loaded = ResidualMean.from_pretrained(tmp_path)
    assert loaded.config.hidden_size == 8 and torch.equal(loaded(x, 1).sample, model(x, 1).sample)


def test_the_first_half_iteration_learns_the_exact_time_reversal_of_the_brownian_chain(tmp_path):
    # X_0 ~ N(0, I) run forward with f_k(x) = x: X_k ~ N(0, V_k I), V_k = 1 + 2 t_k, and the exact backward mean is
    # E[X_k | X_{k+1} = y] = (V_k / V_{k+1}) y, which mean matching recovers (DSB Prop. 3, exact for this chain).
    args = replace(
        SchrodingerBridgeArguments(output_dir=str(tmp_path), dataset="gaussian", num_steps=4, schedule="constant"),
        half_iteration_steps=300, hidden_size=16, num_layers=2, train_batch_size=512, num_trajectories=1000,
        refresh_every=50,
        learning_rate=1e-2, lr_warmup_steps=10, report_to="none",
    )  # fmt: skip
    args = replace(args, ipf_iterations=1, validation_steps=0, checkpointing_steps=0)
    task = SchrodingerBridgeTask(args)
    task.phases = lambda: SchrodingerBridgeTask.phases(task)[
        :1
    ]  # the first half-iteration only: b against the reference
    trainer = Trainer(task)
    trainer.train()
    times = task.scheduler.times
    y = torch.stack([torch.linspace(-1.5, 1.5, 9), torch.linspace(1, -1, 9)], dim=1)  # within ~1 std of X_{k+1}
    with torch.no_grad():
        for k in range(4):
            factor = float((1 + 2 * times[k]) / (1 + 2 * times[k + 1]))
            predicted = task.models["backward"](y, torch.full((9,), float(k + 1))).sample
            # regression of noisy targets (variance 2γ_k = 1) with 300 Adam steps: errors up to about 0.04
            torch.testing.assert_close(predicted, factor * y, atol=0.08, rtol=0)
    assert torch.equal(task.models["forward"](y, 0).sample, y)  # the other network is untouched
    trainer.end()


# ------------------------------------------------------------------------------------------------- runs


def test_a_tiny_ipf_run_writes_a_loadable_pipeline_plots_metrics_and_a_card_that_round_trips(tmp_path):
    args = tiny_args(tmp_path)
    metrics = run_bridge(args)
    for name in ("model_index.json", "forward_model/diffusion_pytorch_model.safetensors",
                 "backward_model/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "README.md", "metrics.json", "args.json", "forward.png", "backward.png",
                 "validation/step-0000010-forward.png", "validation/step-0000020-backward.png",
                 "checkpoints/checkpoint-20/weights-forward.safetensors"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["train_steps"] == 4 * 5 and json.loads((tmp_path / "args.json").read_text())["stage"] == "ipf"
    assert [record["step"] for record in saved["validation"]] == [10, 20]  # after each IPF iteration
    for direction in ("forward", "backward"):
        assert saved[f"{direction}_w2"] == metrics[f"{direction}_w2"] > 0
        assert saved[f"{direction}_w2_ratio"] == pytest.approx(
            saved[f"{direction}_w2"] / saved[f"{direction}_w2_floor"]
        )
        assert all(
            f"{direction}_loss" in record and f"{direction}_w2_floor" in record for record in saved["validation"]
        )

    pipe = SchrodingerBridgePipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.forward_model, ResidualMean) and isinstance(pipe.target_distribution, Shifted)
    assert pipe.target_distribution.shift == (0.0, 3.0) and pipe.scheduler.num_steps == 4
    assert pipe.scheduler.config.schedule == "symmetric" and pipe.scheduler.config.final_step_noise is False
    moved = pipe.transport(torch.zeros(3, 2), "backward", generator=torch.Generator().manual_seed(0))
    assert moved.shape == (3, 2) and torch.isfinite(moved).all()

    card = ModelCard.load(tmp_path / "README.md")
    front_matter = (tmp_path / "README.md").read_text().split("---")[1]
    assert yaml.safe_load(front_matter)["library_name"] == "diffusers"
    assert "schrodinger-bridge" in card.data.tags and card.data.target_distribution == "two_balls shifted by (0, 3)"
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    for direction in ("forward", "backward"):
        assert values[f"{direction}-wasserstein-2"] == pytest.approx(saved[f"{direction}_w2"], abs=1e-6)
        assert values[f"{direction}-wasserstein-2-floor"] == pytest.approx(saved[f"{direction}_w2_floor"], abs=1e-6)
    text = card.text
    assert f'SchrodingerBridgePipeline.from_pretrained("{tmp_path.name}")' in text and str(tmp_path) not in text
    assert "X_{k+1} = f_k(X_k) + √(2γ_k) Z" in text and "N = 4 steps" in text
    assert "Loss weighting\n  `inverse_gamma`: each pair is weighted by `γ̄ / γ_k`" in text
    last = saved["validation"][1]
    history_row = f"| 2 | {last['forward_w2']:.4f} | {last['forward_w2_floor']:.4f} |"
    assert history_row in text and "| ipf_iterations | 2 |" in text


def test_a_second_run_in_the_same_folder_is_refused_without_overwrite(tmp_path):
    run_bridge(tiny_args(tmp_path, ipf_iterations=1, half_iteration_steps=2, plots=False))
    reset_accelerate()
    with pytest.raises(FileExistsError, match="holds another run"):
        Trainer(SchrodingerBridgeTask(tiny_args(tmp_path, ipf_iterations=1)))


def test_a_run_resumed_after_a_half_iteration_ends_with_the_weights_of_the_uninterrupted_run(tmp_path):
    args = tiny_args(tmp_path / "full", validation_steps=0, plots=False)
    _, full = train(args)
    full_weights = load_file(str(tmp_path / "full" / "checkpoints" / "checkpoint-20" / "weights-forward.safetensors"))
    reset_accelerate()

    resumed_dir = tmp_path / "resumed"  # only the state after half-iteration 1 (the first backward fit)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "checkpoint-5", resumed_dir / "checkpoints" / "checkpoint-5")
    resumed_trainer, resumed = train(replace(args, output_dir=str(resumed_dir), resume_from_checkpoint="latest"))
    assert sorted(p.name for p in (resumed_dir / "checkpoints").iterdir()) == sorted(
        f"checkpoint-{k}" for k in (5, 10, 15, 20)
    )
    for direction in ("forward_model", "backward_model"):
        expected, got = (
            getattr(full.pipeline, direction).state_dict(),
            getattr(resumed.pipeline, direction).state_dict(),
        )
        for key, value in expected.items():
            assert torch.equal(value, got[key]), (direction, key)
    assert all(torch.equal(v, full.pipeline.forward_model.state_dict()[k]) for k, v in full_weights.items())

    reset_accelerate()  # a different seed gives different weights: the comparison above can fail
    _, other = train(replace(args, output_dir=str(tmp_path / "other"), seed=1, checkpointing_steps=0))
    other_weights = other.pipeline.forward_model.state_dict()
    assert any(not torch.equal(v, other_weights[k]) for k, v in full.pipeline.forward_model.state_dict().items())

    reset_accelerate()  # a checkpoint of a run with other weight-deciding arguments is refused
    with pytest.raises(CheckpointError, match="half_iteration_steps: checkpoint 5 vs now 6"):
        train(replace(args, output_dir=str(resumed_dir), resume_from_checkpoint="latest", half_iteration_steps=6))
    del resumed_trainer


def test_the_script_trains_the_diffusion_stage_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = ["--output_dir", str(out), "--stage", "diffusion", "--num_steps", "8", "--half_iteration_steps", "4",
            "--hidden_size", "8", "--num_layers", "1", "--train_batch_size", "32", "--num_trajectories", "40",
            "--num_eval_samples", "30", "--num_validation_samples", "30", "--report_to", "none",
            "--plots", "false"]  # fmt: skip
    result = launch("train_bridge.py", *argv)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 2 * 4 and len(metrics["validation"]) == 1
    assert json.loads(result.stdout)["forward_w2"] == metrics["forward_w2"]
    assert json.loads((out / "args.json").read_text())["stage"] == "diffusion"
    assert (out / "checkpoints" / "checkpoint-8").is_dir() and not (out / "validation").exists()  # --plots false
    card = ModelCard.load(out / "README.md")
    assert "stage `diffusion`" in card.text and card.data.source_distribution == "two_balls"
