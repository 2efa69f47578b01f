"""training/train_fm.py end to end on a tiny budget: outputs, checkpoints, a YAML config, a 2-process launch."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from training_runs import launch

from hfgen import FlowMatchingPipeline
from hfgen.training import FlowMatchingArguments, FlowMatchingTask
from hfgen.training.engine import HELD_OUT_SEED
from hfgen.training.flow_matching import DENSITY_GRID_SIZES

TINY = ["--max_train_steps", "30", "--hidden_size", "16", "--num_layers", "2", "--num_eval_samples", "100",
        "--num_nll_samples", "20", "--num_inference_steps", "10", "--train_batch_size", "64",
        "--checkpointing_steps", "15", "--validation_steps", "15", "--num_validation_samples", "50",
        "--num_validation_nll_samples", "10", "--report_to", "none"]  # fmt: skip


def test_tiny_run_from_a_yaml_config_writes_a_loadable_pipeline_card_plots_metrics_and_checkpoints(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: checkerboard\nhidden_size: 32\nmax_train_steps: 1000\n")
    out = tmp_path / "run"
    launch("train_fm.py", "--config", str(config), *TINY, "--output_dir", str(out))  # the flags override the file
    expected = ["model_index.json", "README.md", "metrics.json", "args.json", "samples.png", "trajectory.png",
                "trajectory.gif", "velocity_over_time.png",
                "velocity_field.png", "density.png", "velocity/diffusion_pytorch_model.safetensors",
                "scheduler/scheduler_config.json", "checkpoints/checkpoint-15/model.safetensors",
                "checkpoints/checkpoint-30/ema.safetensors", "validation/step-0000015-samples.png"]  # fmt: skip
    for name in expected:
        assert (out / name).is_file(), name
    args = json.loads((out / "args.json").read_text())
    assert (args["dataset"], args["hidden_size"], args["max_train_steps"]) == ("checkerboard", 16, 30)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 30 and metrics["num_processes"] == 1 and metrics["samples_seen"] == 30 * 64
    assert metrics["entropy"] == pytest.approx(torch.log(torch.tensor(8.0)).item())
    assert metrics["samples_w2"] > 0 and metrics["samples_w2_floor"] > 0
    assert [r["step"] for r in metrics["validation"]] == [15, 30] and "nll" in metrics["validation"][0]
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "diffusers"
    w2 = next(r for r in card.data.eval_results if r.metric_type == "wasserstein-2")
    assert w2.metric_value == pytest.approx(metrics["samples_w2"], abs=1e-6)
    pipe = FlowMatchingPipeline.from_pretrained(out)
    assert pipe.velocity.config.hidden_size == 16
    assert pipe(num_samples=3, num_inference_steps=2).samples.shape == (3, 2)
    # the recorded W2 is the saved pipeline's: its samples (seed 1) against the held-out reference reproduce it
    task = FlowMatchingTask(FlowMatchingArguments(**{**args, "output_dir": str(tmp_path / "unused")}))
    pipe.set_progress_bar_config(disable=True)
    samples = task.sample(pipe, args["num_eval_samples"], torch.Generator().manual_seed(1))
    again = task.score(samples, torch.Generator().manual_seed(HELD_OUT_SEED))
    assert again["samples_w2"] == pytest.approx(metrics["samples_w2"], rel=1e-6)
    assert again["samples_w2_floor"] == pytest.approx(metrics["samples_w2_floor"], rel=1e-6)


@pytest.mark.slow
def test_two_processes_train_data_parallel_and_gather_their_samples(tmp_path):
    out = tmp_path / "ddp"
    launch("train_fm.py", *TINY, "--output_dir", str(out), "--coupling", "ot", processes=2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["samples_seen"] == 2 * 30 * 64
    assert metrics["samples_w2"] > 0 and "nll" in metrics
    assert [r["step"] for r in metrics["validation"]] == [15, 30]
    for rank in (0, 1):  # each process's random state is checkpointed
        assert (out / "checkpoints" / "checkpoint-30" / f"random_states_{rank}.pkl").is_file()
    assert FlowMatchingPipeline.from_pretrained(out)(num_samples=4).samples.shape == (4, 2)


def test_short_runs_evaluate_fast_and_long_runs_in_full():
    def sizes(**overrides):
        task = FlowMatchingTask(FlowMatchingArguments(**overrides))
        return *task.evaluation_sizes(), DENSITY_GRID_SIZES[task.args.fast_evaluation()]

    assert sizes(max_train_steps=1_999) == (2_000, 200, 30)  # under a sixth of the 12,000-step recipe
    assert sizes(max_train_steps=2_000) == sizes() == (10_000, 1_000, 60)
    assert sizes(max_train_steps=300, evaluation="full") == (10_000, 1_000, 60)
    assert sizes(evaluation="fast", num_eval_samples=500) == (500, 200, 30)
    with pytest.raises(ValueError, match="`evaluation` must be one of \\('auto', 'fast', 'full'\\), got 'quick'"):
        FlowMatchingArguments(evaluation="quick")
