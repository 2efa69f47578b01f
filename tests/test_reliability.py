"""Output folders that cannot be lost and inputs that cannot slip through: each case failed before its fix."""

import json
import math
import multiprocessing
import os
from dataclasses import replace

import pytest
import torch
from factories import reset_accelerate, tiny_args, train_task

from hfgen import FlowMatchingPipeline
from hfgen.training import CheckpointError, FlowMatchingArguments, FlowMatchingTask, Trainer, parse_arguments, run
from hfgen.training.engine import LOCK_FILE, OutputFolderLock


def train(args):
    return train_task(FlowMatchingTask(args))


# --- the output folder -------------------------------------------------------------------------------------------


def _hold_lock(folder, ready, done):
    lock = OutputFolderLock(folder)
    ready.set()
    done.wait(30)
    lock.release()


def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_other_process(tmp_path):
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    other = context.Process(target=_hold_lock, args=(str(tmp_path), ready, done))
    other.start()
    try:
        assert ready.wait(30)
        with pytest.raises(FileExistsError, match=f"in use by another training run \\(process {other.pid}\\)"):
            Trainer(FlowMatchingTask(tiny_args(tmp_path)))
        assert not (tmp_path / "args.json").exists()  # refused before writing anything
    finally:
        done.set()
        other.join(30)
    # the lock died with its process: the folder is free again, and the lock file names the new holder
    trainer = Trainer(FlowMatchingTask(tiny_args(tmp_path)))
    assert (tmp_path / LOCK_FILE).read_text().strip().isdigit()
    trainer.end()


def test_a_finished_or_refused_run_leaves_no_lock_file_in_its_folder(tmp_path):
    args = tiny_args(tmp_path, max_train_steps=3, checkpointing_steps=0, validation_steps=0, num_eval_samples=20)
    run(FlowMatchingTask(args))
    assert (tmp_path / "model_index.json").is_file() and not (tmp_path / LOCK_FILE).exists()
    reset_accelerate()
    with pytest.raises(FileExistsError, match="holds another run"):
        Trainer(FlowMatchingTask(args))  # a new run over the finished one, not asked to overwrite
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_taken_on_a_file_its_holder_removed_is_taken_again_on_the_new_file(tmp_path, monkeypatch):
    """The race of two runs starting while a third releases: the second opened the old file, which the third
    unlinked before the second locked it. Holding a lock on a removed file must not count as holding the folder."""
    import fcntl

    real_flock, calls = fcntl.flock, []

    def flock_after_the_holder_released(handle, operation):
        if not calls:  # the first attempt: the holder removes the file between our open and our lock
            (tmp_path / LOCK_FILE).unlink()
        calls.append(operation)
        return real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_released)
    lock = OutputFolderLock(tmp_path)
    assert len(calls) == 2  # locked the removed file, saw it, and locked the one at the path
    held, at_path = os.fstat(lock._file.fileno()), (tmp_path / LOCK_FILE).stat()
    assert (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)
    monkeypatch.setattr(fcntl, "flock", real_flock)
    with pytest.raises(FileExistsError, match="in use by another training run"):
        OutputFolderLock(tmp_path)  # the file at the path is the one held
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_resuming_latest_never_starts_afresh_over_a_finished_run(tmp_path):
    args = tiny_args(tmp_path, max_train_steps=3, checkpointing_steps=0, validation_steps=0, num_eval_samples=20)
    run(FlowMatchingTask(args))
    weights = (tmp_path / "velocity" / "diffusion_pytorch_model.safetensors").read_bytes()
    reset_accelerate()
    again = replace(args, seed=7, hidden_size=32, resume_from_checkpoint="latest")
    with pytest.raises(FileExistsError, match="holds a finished run and no checkpoint"):
        Trainer(FlowMatchingTask(again)).train()
    assert (tmp_path / "velocity" / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    assert json.loads((tmp_path / "args.json").read_text())["seed"] == 0


def test_resuming_latest_with_other_arguments_and_no_checkpoint_is_refused(tmp_path):
    (tmp_path / "args.json").write_text(json.dumps(tiny_args(tmp_path).to_dict()))  # a run that died early
    args = tiny_args(tmp_path, hidden_size=32, resume_from_checkpoint="latest")
    with pytest.raises(FileExistsError, match="hidden_size: folder 8 vs now 32"):
        Trainer(FlowMatchingTask(args)).train()


def test_a_run_that_fails_after_overwriting_leaves_a_folder_that_does_not_load(tmp_path):
    args = tiny_args(tmp_path, max_train_steps=3, checkpointing_steps=0, validation_steps=0, num_eval_samples=20)
    run(FlowMatchingTask(args))
    FlowMatchingPipeline.from_pretrained(tmp_path)  # a finished run loads
    reset_accelerate()

    class Fails(FlowMatchingTask):
        def loss(self, model, batch, device):
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        Trainer(Fails(replace(args, overwrite_output_dir=True, hidden_size=32))).train()
    # the old pipeline files sit beside the new args.json: loading refuses the mix
    with pytest.raises(ValueError, match="holds a training run that has not finished"):
        FlowMatchingPipeline.from_pretrained(tmp_path)


def test_bad_model_arguments_fail_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="hidden_size"):
        Trainer(FlowMatchingTask(tiny_args(tmp_path, hidden_size=0))).train()
    assert not (tmp_path / "args.json").exists()


def test_interrupted_checkpoint_saves_and_deletions_leave_nothing_behind(tmp_path):
    root = tmp_path / "checkpoints"
    for name in ("checkpoint-100", ".tmp-checkpoint-5", ".delete-checkpoint-2"):
        (root / name).mkdir(parents=True)
    args = tiny_args(tmp_path, overwrite_output_dir=True, checkpointing_steps=3, validation_steps=0)
    train(args)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-3", "checkpoint-6"]


def test_a_checkpoint_with_a_negative_step_is_refused(tmp_path):
    args = tiny_args(tmp_path, validation_steps=0)
    train(args)
    reset_accelerate()
    state = tmp_path / "checkpoints" / "checkpoint-6" / "trainer_state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "step": -3}))
    with pytest.raises(CheckpointError, match="step -3"):
        train(replace(args, resume_from_checkpoint="checkpoint-6"))


def test_a_resume_may_lower_the_learning_rate_but_not_change_the_network(tmp_path):
    args = tiny_args(tmp_path, validation_steps=0, checkpoints_total_limit=0)
    train(args)
    reset_accelerate()
    _, resumed = train(replace(args, resume_from_checkpoint="checkpoint-3", learning_rate=1e-4, max_grad_norm=1.0))
    assert resumed.metrics["train_steps"] == 6
    reset_accelerate()
    with pytest.raises(CheckpointError, match="num_layers: checkpoint 1 vs now 2"):
        train(replace(args, resume_from_checkpoint="checkpoint-3", num_layers=2))


# --- arguments ---------------------------------------------------------------------------------------------------


def test_config_given_with_an_equals_sign_is_read_and_a_second_config_is_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("max_train_steps: 7\n")
    assert parse_arguments(FlowMatchingArguments, [f"--config={config}"]).max_train_steps == 7
    assert parse_arguments(FlowMatchingArguments, [f"--config={config}", "--max_train_steps", "9"]).max_train_steps == 9
    with pytest.raises(ValueError, match="`--config` was given 2 times"):
        parse_arguments(FlowMatchingArguments, [f"--config={config}", "--config", str(config)])
    with pytest.raises(ValueError, match="`--config=` needs a file path"):
        parse_arguments(FlowMatchingArguments, ["--config="])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("checkpointing_steps", 2.5, "`checkpointing_steps` must be an int >= 0, got 2.5"),
        ("lr_warmup_steps", 2.5, "`lr_warmup_steps` must be an int >= 0"),
        ("max_grad_norm", math.nan, r"`max_grad_norm` must be a finite number >= 0 \(0 turns clipping off"),
        ("time_beta", math.inf, "`time_beta` must be a finite number > 0, got inf"),
        ("seed", 1.5, "`seed` must be an int >= 0, got 1.5"),
        ("output_dir", 123, "`output_dir` must be a folder path"),
        ("learning_rate", 1e39, "`learning_rate` must be a finite number in \\(0, 10\\], got 1e\\+39"),
        ("adam_beta1", 2.0, "`adam_beta1` must be a finite number in \\[0, 1\\), got 2.0"),
        ("ema_decay", True, "`ema_decay` must be a finite number"),
        ("num_eval_samples", 0, "`num_eval_samples` must be an int >= 1"),
    ],
)
def test_every_argument_is_type_and_range_checked_with_its_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        FlowMatchingArguments(**{field: value})


def test_the_arguments_are_checked_before_the_folder_is_touched(tmp_path):
    with pytest.raises(ValueError, match="learning_rate"):
        Trainer(FlowMatchingTask(replace(tiny_args(tmp_path), learning_rate=float("nan"))))
    assert not any(tmp_path.iterdir())


def test_a_finished_run_records_the_sha256_of_its_weights(tmp_path):
    args = tiny_args(tmp_path, max_train_steps=3, checkpointing_steps=0, validation_steps=0, num_eval_samples=20)
    run(FlowMatchingTask(args))
    sums = json.loads((tmp_path / "weights_sha256.json").read_text())
    assert list(sums) == ["velocity/diffusion_pytorch_model.safetensors"]
    pipe = FlowMatchingPipeline.from_pretrained(tmp_path, verify=True)
    assert torch.isfinite(pipe(num_samples=3, num_inference_steps=2).samples).all()


@pytest.mark.parametrize("garbage", [b"\x80\x04\x95garbage", b"not a zip archive at all"])
def test_a_corrupt_optimizer_file_gives_a_checkpoint_error_without_unsafe_advice(tmp_path, garbage):
    args = tiny_args(tmp_path, validation_steps=0)
    train(args)
    reset_accelerate()
    (tmp_path / "checkpoints" / "checkpoint-6" / "optimizer.bin").write_bytes(garbage)
    with pytest.raises(CheckpointError, match="checkpoint-6 is corrupt or incomplete") as error:
        train(replace(args, resume_from_checkpoint="checkpoint-6"))
    assert "weights_only" not in str(error.value)


def test_a_missing_random_state_file_is_reported(tmp_path, caplog):
    args = tiny_args(tmp_path, validation_steps=0, checkpoints_total_limit=0)
    train(args)
    reset_accelerate()
    (tmp_path / "checkpoints" / "checkpoint-3" / "random_states_0.pkl").unlink()
    with caplog.at_level("WARNING"):
        train(replace(args, resume_from_checkpoint="checkpoint-3"))
    assert "random_states_0.pkl: the random states are not restored" in caplog.text


def test_an_evaluation_error_after_training_never_loses_the_trained_model(tmp_path):
    class EvaluationFails(FlowMatchingTask):
        def score(self, samples, generator):
            raise ValueError("labels must be >= 0")

    args = tiny_args(tmp_path, max_train_steps=3, checkpointing_steps=0, validation_steps=0, num_eval_samples=20)
    with pytest.raises(ValueError, match="labels must be >= 0"):
        run(EvaluationFails(args))
    pipe = FlowMatchingPipeline.from_pretrained(tmp_path, verify=True)  # saved, complete, loadable
    assert torch.isfinite(pipe(num_samples=2, num_inference_steps=2).samples).all()


# --- inputs of the library -----------------------------------------------------------------------------------------


def test_one_generator_check_everywhere():
    from factories import tiny_bridge_pipeline, tiny_vae

    from hfgen.methods.continuous_flows import log_prob

    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        tiny_bridge_pipeline().transport(torch.zeros(2, 2), generator=0)
    vae = tiny_vae()
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got str"):
        vae.elbo(torch.zeros(2, 1, 8, 8), generator="seed")
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        vae.iwae_bound(torch.zeros(2, 1, 8, 8), 4, generator=3)
    velocity = lambda x, t: -x  # noqa: E731
    standard = lambda z: -0.5 * (z**2).sum(1)  # noqa: E731
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got list"):
        log_prob(velocity, torch.zeros(2, 2), standard, divergence_method="hutchinson", generator=[1])
    with pytest.raises(ValueError, match="`rtol` and `atol` must be finite numbers > 0, got rtol=-1"):
        log_prob(velocity, torch.zeros(2, 2), standard, rtol=-1, atol=-1)


def test_a_component_config_that_is_not_an_object_is_named(tmp_path):
    from factories import tiny_flow_matching_pipeline

    tiny_flow_matching_pipeline().save_pretrained(tmp_path)
    (tmp_path / "velocity" / "config.json").write_text("[]")
    with pytest.raises(ValueError, match="velocity/config.json must hold a JSON object"):
        FlowMatchingPipeline.from_pretrained(tmp_path)


# --- sampling sizes and generators of every pipeline ----------------------------------------------------------------


def _pipelines_that_sample():
    """(name, pipeline, call with num_samples and generator) for every pipeline that draws ``num_samples``."""
    from conformance import tiny_pipelines
    from factories import gaussian_mixture

    from hfgen import DensityPipeline

    def draw(p, n, g):
        return p(num_samples=n, generator=g)

    def draw_in_two_steps(p, n, g):
        return p(num_samples=n, num_inference_steps=2, generator=g)

    calls = {"flow_matching": draw_in_two_steps, "ddpm": draw, "bridge": draw, "score_sde": draw_in_two_steps,
             "energy": draw_in_two_steps, "rbm": draw_in_two_steps, "vae": draw}  # fmt: skip
    mixture = gaussian_mixture([[0.0, 0.0], [2.0, 1.0]], [torch.eye(2).tolist()] * 2, [0.5, 0.5])
    tiny = tiny_pipelines()
    return [(kind, tiny[kind](), call) for kind, call in calls.items()] + [("density", DensityPipeline(mixture), draw)]


PIPELINES = _pipelines_that_sample()


@pytest.mark.parametrize(("name", "pipeline", "call"), PIPELINES, ids=[p[0] for p in PIPELINES])
def test_a_sample_count_that_cannot_fit_in_memory_is_refused_before_allocating(name, pipeline, call):
    pipeline.set_progress_bar_config(disable=True)
    with pytest.raises(
        ValueError, match=r"`num_samples`=1,000,000,000,000 needs at least [\d,.]+ GiB .*sample in batches"
    ):
        call(pipeline, 10**12, None)
    assert call(pipeline, 3, torch.Generator().manual_seed(0)) is not None  # small requests still sample


@pytest.mark.parametrize(("name", "pipeline", "call"), PIPELINES, ids=[p[0] for p in PIPELINES])
def test_every_sampling_pipeline_refuses_a_generator_that_is_not_one(name, pipeline, call):
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        call(pipeline, 3, 0)


def test_the_memory_estimate_counts_samples_values_bytes_and_copies(monkeypatch):
    import hfgen.utils
    from hfgen.utils import SAMPLING_WORKING_COPIES, available_memory, check_sampling_memory

    free = available_memory()
    assert free is None or free > 0
    monkeypatch.setattr(hfgen.utils, "available_memory", lambda device=None: 2**30)
    per_sample = 3 * 4 * SAMPLING_WORKING_COPIES  # (N, 3) float32 points, 4 copies: 48 bytes
    assert check_sampling_memory(2**30 // per_sample, 3) == 2**30 // per_sample
    with pytest.raises(
        ValueError,
        match=r"needs at least 1\.0 GiB .*but 1\.0 GiB is available on cpu: sample in "
        r"batches of at most 22,369,621",
    ):
        check_sampling_memory(2**30 // per_sample + 1, 3)
    with pytest.raises(ValueError, match=r"× 2 bytes"):
        check_sampling_memory(2**30, 3, dtype=torch.float16)
    # the states a trajectory keeps count too
    assert check_sampling_memory(1000, 3, copies=SAMPLING_WORKING_COPIES + 101) == 1000
    with pytest.raises(ValueError, match="1,000,000 needs"):
        check_sampling_memory(10**6, 3, copies=SAMPLING_WORKING_COPIES + 101)


def test_a_trajectory_request_counts_its_states(monkeypatch):
    from factories import tiny_flow_matching_pipeline

    import hfgen.utils

    monkeypatch.setattr(hfgen.utils, "available_memory", lambda device=None: 10**6)
    pipeline = tiny_flow_matching_pipeline()
    pipeline(num_samples=5000, num_inference_steps=2)  # 5000 × 2 × 4 bytes × 4 copies = 160 kB
    with pytest.raises(ValueError, match=r"needs at least 4.0 MiB .*105 copies .*but 976.6 KiB is available"):
        pipeline(num_samples=5000, num_inference_steps=100, return_trajectory=True)


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_log_prob_refuses_what_sampling_refuses(divergence):
    from factories import tiny_ddpm_pipeline, tiny_flow_matching_pipeline, tiny_score_sde_pipeline

    x = torch.zeros(3, 2)
    flow = tiny_flow_matching_pipeline()
    with pytest.raises(ValueError, match="`rtol` and `atol` must be finite numbers > 0, got rtol=-1, atol=-1"):
        flow.log_prob(x, rtol=-1, atol=-1, divergence=divergence)
    with pytest.raises(ValueError, match="`rtol` and `atol` must be finite numbers > 0, got rtol=-1, atol=-1"):
        flow(num_samples=3, ode_solver="dopri5", rtol=-1, atol=-1)
    with pytest.raises(ValueError, match="`rtol` and `atol` must be finite numbers > 0, got rtol=0.0"):
        tiny_ddpm_pipeline().log_prob(x, rtol=0.0, atol=1e-5)
    with pytest.raises(ValueError, match="`rtol` and `atol` must be finite numbers > 0"):
        tiny_score_sde_pipeline().log_prob(x, rtol=-1, atol=-1, divergence=divergence)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        flow.log_prob(x, divergence=divergence, generator=1)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        tiny_score_sde_pipeline().log_prob(x, divergence=divergence, generator=1)


def test_the_other_generator_entry_points_check_it():
    from factories import tiny_ddpm_pipeline, tiny_flow_matching_pipeline, tiny_vae_pipeline

    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        tiny_ddpm_pipeline().forward_trajectory(torch.zeros(3, 2), [1, 2], generator=3)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got str"):
        tiny_flow_matching_pipeline()(strength=0.5, start_samples=torch.zeros(3, 2), generator="0")
    vae = tiny_vae_pipeline()
    images = torch.zeros(2, 1, 8, 8)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        vae.log_prob(images, method="iwae", num_importance_samples=2, generator=0)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got int"):
        vae.log_prob(images, method="quadrature", grid_size=4, generator=0)
