"""hfgen.training: exact resume, atomic and rotated checkpoints, EMA weights, validation, faults, arguments."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from factories import assert_equal_tensors, checkpoint_file, reset_accelerate, resume_at, tiny_args, train_task
from safetensors.torch import load_file

from hfgen.training import (
    CheckpointError,
    FlowMatchingArguments,
    FlowMatchingTask,
    Phase,
    Trainer,
    TrainingDivergedError,
    list_checkpoints,
    parse_arguments,
    run,
)


def train(args):
    return train_task(FlowMatchingTask(args))


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("coupling", "path", "accumulation"),
    [("independent", "linear", 1), ("ot", "linear", 2), ("sinkhorn", "brownian", 1)],
    ids=["independent", "ot-accumulate-2", "sb-cfm"],
)
def test_a_run_resumed_at_step_k_ends_bit_for_bit_where_the_uninterrupted_run_ends(
    tmp_path, coupling, path, accumulation
):
    args = tiny_args(tmp_path / "full", coupling=coupling, path=path, gradient_accumulation_steps=accumulation)
    # the second run only has the state after step 3 (as if killed right after saving it)
    (full_trainer, full), (resumed_trainer, resumed) = resume_at(train, args, tmp_path)

    assert resumed.metrics["train_steps"] == 6
    assert_equal_tensors(weights(full.pipeline.velocity), weights(resumed.pipeline.velocity))  # EMA weights
    # raw weights (data stream, optimizer and LR schedule all restored)
    assert_equal_tensors(checkpoint_file(tmp_path / "full", 6), checkpoint_file(tmp_path / "resumed", 6))
    assert full_trainer.lr_schedule.get_last_lr() == resumed_trainer.lr_schedule.get_last_lr()
    assert (
        full_trainer.optimizer.state_dict()["state"][0]["step"]
        == resumed_trainer.optimizer.state_dict()["state"][0]["step"]
    )
    # the validation history of the first half travels in the checkpoint
    assert [r["step"] for r in resumed_trainer.history] == [3, 6]
    assert resumed_trainer.history[0] == full_trainer.history[0]


def test_saved_pipeline_holds_the_ema_weights_and_validation_writes_plots_and_metrics(tmp_path):
    trainer, result = train(tiny_args(tmp_path, ema_decay=0.9))
    ema = trainer.ema.shadow_params
    assert all(torch.equal(p, s) for p, s in zip(result.pipeline.velocity.parameters(), ema, strict=True))
    raw = load_file(str(tmp_path / "checkpoints" / "checkpoint-6" / "weights-model.safetensors"))
    assert any(not torch.equal(raw[k], v) for k, v in weights(result.pipeline.velocity).items())
    # diffusers' EMAModel: θ̄_s = d_s θ̄_{s−1} + (1 − d_s) θ_s with d_s = min(decay, s/(9 + s)) at update s
    assert trainer.ema.optimization_step == 6
    assert trainer.ema.get_decay(6) == pytest.approx(min(0.9, 6 / 15))
    assert [r["step"] for r in trainer.history] == [3, 6]
    assert all(r["samples_w2"] > 0 and r["samples_w2_floor"] > 0 for r in trainer.history)
    # every validation compares against the same held-out reference, so the floor is the same number
    assert trainer.history[0]["samples_w2_floor"] == trainer.history[1]["samples_w2_floor"]
    for step in (3, 6):
        for name in ("samples.png", "trajectory.png"):
            assert (tmp_path / "validation" / f"step-{step:07d}-{name}").is_file()


def test_the_ema_follows_diffusers_recurrence_and_the_optimizer_is_fused_adamw(tmp_path):
    from diffusers.training_utils import EMAModel

    from hfgen.training.optimization import ListEMA, fused_adamw

    # θ̄_s = θ̄_{s−1} + (1 − d_s)(θ_s − θ̄_{s−1}): the one-rounding interpolation agrees with diffusers' EMAModel
    generator = torch.Generator().manual_seed(0)
    parameters = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in ((7, 3), (5,))]
    ours, theirs = ListEMA(parameters, decay=0.99), EMAModel(parameters, decay=0.99, foreach=True)
    for _ in range(50):
        with torch.no_grad():
            for parameter in parameters:
                parameter.add_(torch.randn(parameter.shape, generator=generator))
        ours.step(parameters)
        theirs.step(parameters)
    assert ours.optimization_step == theirs.optimization_step == 50
    for mine, reference, parameter in zip(ours.shadow_params, theirs.shadow_params, parameters, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-6)
        assert (mine - parameter).abs().max() > 0.1  # the average lags the moving weights
    # the trainer steps with torch's fused AdamW on the CPU, the multi-tensor update where no fused kernel applies
    trainer, _ = train(tiny_args(tmp_path, max_train_steps=2, validation_steps=0, checkpointing_steps=0))
    assert trainer.optimizer.optimizer.param_groups[0]["fused"] is True
    frozen_counter = torch.nn.Module()
    frozen_counter.count = torch.nn.Parameter(torch.zeros((), dtype=torch.long), requires_grad=False)
    frozen_counter.weight = torch.nn.Parameter(torch.zeros(3))
    group = fused_adamw(frozen_counter, torch.device("cpu"), lr=1e-3).param_groups[0]
    assert group["foreach"] is True and not group["fused"]


def test_checkpoints_rotate_and_an_interrupted_save_is_ignored(tmp_path):
    args = tiny_args(tmp_path, max_train_steps=9, checkpoints_total_limit=2, validation_steps=0)
    train(args)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [6, 9]
    # a save killed half-way leaves a temporary folder, or a folder without trainer_state.json: never "latest"
    (tmp_path / "checkpoints" / ".tmp-checkpoint-12").mkdir()
    partial = tmp_path / "checkpoints" / "checkpoint-15"
    shutil.copytree(tmp_path / "checkpoints" / "checkpoint-9", partial)
    (partial / "trainer_state.json").unlink()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [6, 9]
    reset_accelerate()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        train(replace(args, resume_from_checkpoint=str(partial)))


def test_resume_latest_without_checkpoints_starts_a_new_run(tmp_path):
    _, result = train(tiny_args(tmp_path, resume_from_checkpoint="latest", checkpointing_steps=0))
    assert result.metrics["train_steps"] == 6


def test_missing_corrupt_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    args = tiny_args(tmp_path, max_train_steps=3, validation_steps=0)
    train(args)
    reset_accelerate()
    with pytest.raises(CheckpointError, match="does not exist.*checkpoint-3"):
        train(replace(args, resume_from_checkpoint="checkpoint-99"))
    reset_accelerate()
    with pytest.raises(CheckpointError, match="hidden_size: checkpoint 8 vs now 16"):
        train(replace(args, hidden_size=16, resume_from_checkpoint="latest"))
    reset_accelerate()
    model_file = tmp_path / "checkpoints" / "checkpoint-3" / "weights-model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        train(replace(args, resume_from_checkpoint="latest"))


class NaNAfterStep4(FlowMatchingTask):
    def __init__(self, args):
        super().__init__(args)
        self.calls = 0

    def loss(self, model, batch, device):
        self.calls += 1
        loss = super().loss(model, batch, device)
        return loss * float("nan") if self.calls > 4 else loss


def test_a_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    args = tiny_args(tmp_path, validation_steps=0)
    trainer = Trainer(NaNAfterStep4(args))
    with pytest.raises(TrainingDivergedError, match=r"became nan at optimizer step 5.*checkpoint-3"):
        trainer.train()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [3]
    weights_at_3 = load_file(str(tmp_path / "checkpoints" / "checkpoint-3" / "weights-model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights_at_3.values())
    reset_accelerate()
    _, resumed = train(replace(args, resume_from_checkpoint="latest"))
    assert all(torch.isfinite(p).all() for p in resumed.pipeline.velocity.parameters())


def test_an_output_dir_holding_another_run_is_refused_unless_overwritten(tmp_path):
    args = tiny_args(tmp_path, max_train_steps=3, validation_steps=0)
    train(args)
    reset_accelerate()
    with pytest.raises(FileExistsError, match="holds another run.*--overwrite_output_dir"):
        Trainer(FlowMatchingTask(replace(args, seed=1)))
    reset_accelerate()
    train(replace(args, seed=1, overwrite_output_dir=True, checkpointing_steps=0))
    assert list_checkpoints(tmp_path) == []  # the replaced run's checkpoints are gone with it
    assert json.loads((tmp_path / "args.json").read_text())["seed"] == 1


def test_run_writes_metrics_with_the_validation_history_and_a_card(tmp_path):
    metrics = run(FlowMatchingTask(tiny_args(tmp_path)))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["samples_w2"] == metrics["samples_w2"] and saved["train_steps"] == 6
    assert [r["step"] for r in saved["validation"]] == [3, 6]
    assert "W2 / floor" in (tmp_path / "README.md").read_text()


def test_arguments_from_yaml_json_and_flags_with_flags_winning(tmp_path):
    (tmp_path / "run.yaml").write_text("dataset: 8gaussians\nhidden_size: 32\ncoupling: ot\n")
    args = parse_arguments(FlowMatchingArguments, ["--config", str(tmp_path / "run.yaml"), "--hidden_size", "64"])
    assert (args.dataset, args.hidden_size, args.coupling) == ("8gaussians", 64, "ot")
    (tmp_path / "run.json").write_text(json.dumps({"max_train_steps": 7, "push_to_hub": False}))
    assert parse_arguments(FlowMatchingArguments, [str(tmp_path / "run.json")]).max_train_steps == 7
    shipped = parse_arguments(FlowMatchingArguments, ["--config", "training/configs/fm_checkerboard.yaml"])
    assert shipped.trained_config() == FlowMatchingArguments().trained_config()


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["--config", "missing.yaml"], FileNotFoundError, "missing.yaml"),
        (["--no_such_flag", "1"], ValueError, "unknown command-line arguments"),
        (["--lr_scheduler", "sawtooth"], ValueError, "lr_scheduler"),
        (["--push_to_hub"], ValueError, "hub_model_id"),
        (["--hub_model_id", "no-slash"], ValueError, "user/name"),
        (["--mixed_precision", "fp8"], ValueError, "mixed_precision"),
        (["--ema_decay", "1.0"], ValueError, "ema_decay"),
        (["--gradient_accumulation_steps", "0"], ValueError, "gradient_accumulation_steps"),
        (["--dataset", "spiral"], ValueError, "spiral"),
        (["--checkpoints_total_limit", "-1"], ValueError, "checkpoints_total_limit"),
        (["--coupling", "bogus"], ValueError, "coupling"),
        (["--coupling_workers", "-1"], ValueError, "`coupling_workers` must be an int >= 0, got -1"),
        (["--time_beta", "0"], ValueError, "time_beta"),
        (["--path", "vp", "--sigma_min", "0.1"], ValueError, "sigma_min"),
        (["--sigma", "0"], ValueError, "sigma"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(tmp_path, argv, error, message):
    with pytest.raises(error, match=message):
        parse_arguments(FlowMatchingArguments, argv)


def test_unknown_keys_in_a_config_file_are_named(tmp_path):
    (tmp_path / "run.yaml").write_text("datset: moons\n")
    with pytest.raises(ValueError, match=r"unknown arguments \['datset'\]"):
        parse_arguments(FlowMatchingArguments, ["--config", str(tmp_path / "run.yaml")])


class ChainTask(FlowMatchingTask):
    """Flow matching plus what the energy and density families need: a persistent Markov chain kept as task state
    (x ← 0.5 x + ε from each batch's generator) and a second, closed-form phase (the velocity's last bias moved
    halfway to the chain mean, EM-like)."""

    def __init__(self, args):
        super().__init__(args)
        self.chain = torch.zeros(4, 2)

    def phases(self):
        return [Phase("model", 4), Phase("model", 2, "closed form", optimize=False)]

    def loss(self, model, batch, device):
        *_, generator = batch
        self.chain = 0.5 * self.chain + torch.randn(self.chain.shape, generator=generator)
        return super().loss(model, batch, device)

    def update(self, model, batch, device):
        bias = list(model.parameters())[-1]
        bias.copy_(0.5 * (bias + self.chain.mean(0)))
        return bias.square().sum()

    def state_dict(self):
        return {"chain": self.chain}

    def load_state_dict(self, state):
        self.chain = state["chain"].clone()


def test_task_state_and_closed_form_phases_resume_exactly(tmp_path):
    args = tiny_args(tmp_path / "full", checkpointing_steps=1, checkpoints_total_limit=0, validation_steps=0)
    full_task = ChainTask(args)
    full = Trainer(full_task).train()
    reset_accelerate()
    for step in (2, 4, 5):  # inside the gradient phase, at its end, inside the closed-form phase
        resumed_dir = tmp_path / f"resumed-{step}"
        checkpoint = f"checkpoint-{step}"
        shutil.copytree(tmp_path / "full" / "checkpoints" / checkpoint, resumed_dir / "checkpoints" / checkpoint)
        task = ChainTask(replace(args, output_dir=str(resumed_dir), resume_from_checkpoint="latest"))
        resumed = Trainer(task).train()
        reset_accelerate()
        assert torch.equal(task.chain, full_task.chain), step
        for key, value in full.pipeline.velocity.state_dict().items():
            assert torch.equal(value, resumed.pipeline.velocity.state_dict()[key]), (step, key)
    saved = load_file(str(tmp_path / "full" / "checkpoints" / "checkpoint-3" / "task_state.safetensors"))
    assert saved["chain"].shape == (4, 2) and not torch.equal(saved["chain"], full_task.chain)
