"""training/train_ebm.py and hfgen.training.energy on a width-8 energy: arguments and bad input, the ML loss with the
replay buffer, exact resume with the buffer in the checkpoint, a diverging chain, a full run (pipeline, card,
figures, metrics) and the script in a subprocess."""

import json
import math
from dataclasses import replace

import pytest
import torch
from factories import assert_equal_tensors, reset_accelerate, resume_at
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from training_runs import launch

from hfgen.arguments.energy import support_extent
from hfgen.cli.errors import TrainingDivergedError
from hfgen.cli.parser import parse_arguments
from hfgen.methods.energy import ReplayBuffer, langevin_chain, maximum_likelihood_loss, quadrature_grid
from hfgen.pipelines.energy import EnergyPipeline
from hfgen.schedulers.langevin import LangevinScheduler, MALAScheduler
from hfgen.training.energy import EnergyArguments, EnergyTask
from hfgen.training.trainer import Trainer, run
from hfgen.utils import batch_generator

TINY = {
    "hidden_size": 8,
    "num_layers": 1,
    "train_batch_size": 16,
    "buffer_size": 40,
    "langevin_steps": 3,
    "max_train_steps": 6,
    "lr_warmup_steps": 2,
    "checkpointing_steps": 3,
    "validation_steps": 3,
    "logging_steps": 2,
    "num_validation_samples": 30,
    "num_validation_nll_samples": 20,
    "num_eval_samples": 40,
    "num_nll_samples": 30,
    "num_sample_steps": 4,
    "grid_size": 64,
    "report_to": "none",
}


def tiny_args(output_dir, **overrides) -> EnergyArguments:
    return EnergyArguments(output_dir=str(output_dir), **{**TINY, **overrides})


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"step_size": 0.0}, ValueError, "`step_size` must be a finite number > 0, got 0.0"),
        ({"sample_step_size": -1e-3}, ValueError, "`sample_step_size` must be a finite number > 0"),
        ({"grid_bound": 2.0}, ValueError, r"`grid_bound` 2.0 is too small for the support of '8gaussians'.*3\.\d\d"),
        ({"dataset": "checkerboard", "grid_bound": 1.5}, ValueError, "`grid_bound` 1.5 is too small"),
        (
            {"grid_size": 63},
            ValueError,
            r"`grid_size` must be an int >= 4 \(even: .*\), got 63",
        ),
        (
            {"grid_size": 2},
            ValueError,
            r"`grid_size` must be an int >= 4 \(even: .*\), got 2",
        ),
        ({"dataset": "moons"}, ValueError, "`dataset` must be a 2-D toy distribution with a density.*moons"),
        ({"dataset": "spiral"}, ValueError, "spiral"),
        ({"training_sampler": "hmc"}, ValueError, "`training_sampler` must be one of"),
        ({"activation": "relu"}, ValueError, "`activation` must be one of"),
        ({"buffer_size": 8}, ValueError, r"`buffer_size` must be >= train_batch_size \(16\), got 8"),
        ({"langevin_steps": 0}, ValueError, "`langevin_steps` must be an int >= 1, got 0"),
        ({"reinit_fraction": 1.5}, ValueError, r"`reinit_fraction` must be a finite number in \[0, 1\], got 1.5"),
        ({"buffer_low": 4.0}, ValueError, "`buffer_low` must be < `buffer_high`"),
        ({"regularization": -0.1}, ValueError, "`regularization` must be a finite number >= 0, got -0.1"),
        ({"num_nll_samples": 1}, ValueError, "`num_nll_samples` must be 0 or >= 2"),
        ({"learning_rate": 0.0}, ValueError, "`learning_rate`"),  # the shared checks still run
    ],
)
def test_bad_arguments_are_refused_with_the_argument_named_before_anything_is_written(
    tmp_path, overrides, error, message
):
    with pytest.raises(error, match=message):
        tiny_args(tmp_path / "out", **overrides)
    assert not (tmp_path / "out").exists()


def test_the_support_extent_is_where_the_data_reaches():
    assert support_extent("checkerboard") == pytest.approx(2.0, abs=1e-3)  # the board is [−2, 2)²
    # 8 Gaussians: radius 2 plus about 4.4 standard deviations (0.25) of the largest of 10⁵ draws
    assert 2.0 + 3.5 * 0.25 < support_extent("8gaussians") < 2.0 + 5.5 * 0.25
    args = EnergyArguments()
    assert args.bounds == ((-args.grid_bound, args.grid_bound),) * 2 and args.grid_bound > support_extent("8gaussians")


@pytest.mark.parametrize("sampler", ["mala", "langevin"])
def test_the_loss_runs_buffer_chains_and_is_the_maximum_likelihood_loss(tmp_path, sampler):
    # every setting away from its default, so that one left out of the task's calls shows
    args = tiny_args(tmp_path, training_sampler=sampler, regularization=0.1, step_size=0.02, reinit_fraction=0.3,
                     buffer_low=-3.0, buffer_high=5.0)  # fmt: skip
    task = EnergyTask(args)
    torch.manual_seed(0)
    model = task.build_model()
    with task.batches(start=2, stream=0) as batches:
        batch = next(batches)
    data, generator, index = batch
    assert index == 2 and data.shape == (16, 2)
    before = task.buffer.chains.clone()
    # the buffer starts uniform on [buffer_low, buffer_high]² from the buffer stream of process 0
    expected_buffer = ReplayBuffer(40, 2, -3.0, 5.0, 0.3, generator=batch_generator(0, -1, 0))
    assert torch.equal(before, expected_buffer.chains)
    loss = task.loss(model, batch, torch.device("cpu"))

    g = batch_generator(0, 0, 2)
    assert torch.equal(task.target.sample(16, g), data)
    starts = expected_buffer.sample(16, g)
    scheduler = (MALAScheduler if sampler == "mala" else LangevinScheduler)(step_size=0.02)
    chains = langevin_chain(model, starts.samples, scheduler, 3, g).sample
    expected = maximum_likelihood_loss(model, data, chains, regularization=0.1)
    torch.testing.assert_close(loss, expected.loss)
    torch.testing.assert_close(task.buffer.chains[starts.indices], chains)
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[starts.indices] = False
    assert torch.equal(task.buffer.chains[untouched], before[untouched])


def test_the_held_out_log_density_normalises_on_the_run_s_quadrature_grid(tmp_path):
    task = EnergyTask(tiny_args(tmp_path, grid_size=16, grid_bound=7.0))
    torch.manual_seed(0)
    pipeline = task.pipeline(task.build_model())
    points = task.log_likelihood_points(5, torch.Generator().manual_seed(1))
    log_prob = task.log_likelihood(pipeline, points)
    assert torch.equal(log_prob, pipeline.log_prob(points, ((-7.0, 7.0), (-7.0, 7.0)), 16))
    assert not torch.equal(log_prob, pipeline.log_prob(points))  # the pipeline's default grid gives another log Z


def test_a_run_resumed_at_step_3_ends_bit_for_bit_where_the_uninterrupted_run_ends(tmp_path):
    def train(args):
        task = EnergyTask(args)
        trainer = Trainer(task)
        result = trainer.train()
        trainer.end()
        reset_accelerate()
        return task, result

    args = tiny_args(tmp_path / "full", validation_steps=0)
    (full_task, full), (resumed_task, resumed) = resume_at(train, args, tmp_path)

    assert resumed.metrics["train_steps"] == 6
    assert_equal_tensors(full.pipeline.model.state_dict(), resumed.pipeline.model.state_dict())
    assert torch.equal(resumed_task.buffer.chains, full_task.buffer.chains)
    saved = load_file(str(tmp_path / "full" / "checkpoints" / "checkpoint-3" / "task_state.safetensors"))
    assert saved["buffer"].shape == (40, 2) and not torch.equal(saved["buffer"], full_task.buffer.chains)
    reset_accelerate()
    # a checkpoint whose buffer has another size is refused with the shapes named
    with pytest.raises(ValueError, match=r"replay buffer must have shape \(50, 2\), got \(40, 2\)"):
        EnergyTask(replace(args, buffer_size=50)).load_state_dict(saved)


class ExplodingAfterStep4(EnergyTask):
    """From the fifth micro-batch on, the training chains run on ``E(x) = −‖x‖⁴`` with a step that diverges."""

    def loss(self, model, batch, device):
        if batch[2] >= 4:
            model = ExplodingEnergy()
        return super().loss(model, batch, device)


class ExplodingEnergy(torch.nn.Module):
    def forward(self, x, return_dict=False):
        return (-(x.square().sum(-1) ** 2),)


def test_a_diverging_chain_stops_with_the_step_and_the_last_good_checkpoint(tmp_path):
    args = tiny_args(tmp_path, validation_steps=0, training_sampler="langevin", step_size=0.5, langevin_steps=30)
    with pytest.raises(TrainingDivergedError, match=r"diverged at optimizer step 5 .*checkpoint-3.*step_size"):
        Trainer(ExplodingAfterStep4(args)).train()
    saved = load_file(str(tmp_path / "checkpoints" / "checkpoint-3" / "task_state.safetensors"))
    assert torch.isfinite(saved["buffer"]).all()


def test_a_tiny_run_writes_pipeline_card_figures_and_a_normalised_density(tmp_path):
    out = tmp_path / "ebm"
    args = tiny_args(out, dataset="checkerboard")
    returned = run(EnergyTask(args))

    for name in ["model_index.json", "model/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "README.md", "metrics.json", "energy.png", "samples.png", "chains.png", "replay_buffer.png",
                 "checkpoints/checkpoint-6/task_state.safetensors", "validation/step-0000003-energy.png"]:  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 6 and [r["step"] for r in metrics["validation"]] == [3, 6]
    assert metrics["entropy"] == pytest.approx(math.log(8)) and returned["nll"] == pytest.approx(metrics["nll"])
    assert metrics["nll_minus_entropy"] == pytest.approx(metrics["nll"] - math.log(8))

    pipe = EnergyPipeline.from_pretrained(out)
    assert isinstance(pipe.scheduler, MALAScheduler) and pipe.scheduler.config.step_size == args.sample_step_size
    assert (pipe.config.start_low, pipe.config.start_high) == (args.buffer_low, args.buffer_high)
    # the saved log-density integrates to one on the grid, and the saved NLL is that of held-out points under it
    points, area = quadrature_grid(args.bounds, 256)
    mass = float(pipe.log_prob(points.float(), args.bounds, args.grid_size).exp().sum() * area)
    assert mass == pytest.approx(1.0, abs=2e-3)

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "diffusers" and "energy-based-model" in card.data.tags
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["nll"] == pytest.approx(metrics["nll"], abs=1e-6)
    assert values["wasserstein-2"] == pytest.approx(metrics["samples_w2"], abs=1e-6)
    assert "mean E_θ(x⁺) − mean E_θ(x⁻) + α (mean E_θ(x⁺)² + mean E_θ(x⁻)²)" in card.text
    assert "MALA" in card.text and "![energy](energy.png)" in card.text
    assert f'EnergyPipeline.from_pretrained("{out.name}")' in card.text and str(out) not in card.text


def test_the_script_trains_on_8_gaussians_with_unadjusted_langevin(tmp_path):
    out = tmp_path / "script"
    flags = [f"--{k}={v}" for k, v in TINY.items()]
    result = launch("train_ebm.py", "--dataset", "8gaussians", "--output_dir", str(out),
                    "--training_sampler", "langevin", "--sample_sampler", "langevin", *flags)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(result.stdout[result.stdout.index("{") :])["nll"] == metrics["nll"]
    assert isinstance(EnergyPipeline.from_pretrained(out).scheduler, LangevinScheduler)
    with pytest.raises(ValueError, match="`step_size` must be a finite number > 0, got -1.0"):
        parse_arguments(EnergyArguments, ["--step_size", "-1", "--output_dir", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
