"""training/train_fm.py end to end on a tiny budget: outputs, metrics and a loadable pipeline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from hfgen import FlowMatchingPipeline
from hfgen.training import FlowMatchingArguments

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_fm.py"
TINY = ["--max_train_steps", "30", "--hidden_size", "16", "--num_layers", "2", "--num_eval_samples", "100",
        "--num_nll_samples", "20", "--num_inference_steps", "10", "--train_batch_size", "64"]  # fmt: skip


def test_tiny_run_writes_a_loadable_pipeline_plots_and_metrics(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--output_dir", str(out)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = [
        "model_index.json",
        "README.md",
        "metrics.json",
        "samples.png",
        "trajectory.png",
        "velocity_field.png",
        "density.png",
        "velocity/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    ]
    for name in expected:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 30
    assert metrics["entropy"] == pytest.approx(torch.log(torch.tensor(8.0)).item())
    assert metrics["samples_w2"] > 0 and metrics["samples_w2_floor"] > 0
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "hfgen"
    w2 = next(r for r in card.data.eval_results if r.metric_type == "wasserstein-2")
    assert w2.metric_value == pytest.approx(metrics["samples_w2"], abs=1e-6)
    pipe = FlowMatchingPipeline.from_pretrained(out)
    assert pipe.velocity.config.hidden_size == 16
    assert pipe(num_samples=3, num_inference_steps=2).samples.shape == (3, 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dataset": "spiral"}, "spiral"),
        ({"coupling": "sinkhorn"}, "coupling"),
        ({"max_train_steps": 0}, "max_train_steps"),
        ({"time_beta": 0.0}, "time_beta"),
        ({"path": "vp", "sigma_min": 0.1}, "sigma_min"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message):
        FlowMatchingArguments(**overrides)
