"""The training scripts' front door: every refusal is one ``error:`` line (exit status 2) raised before the output
folder is touched, so a refused command never costs a finished run; checkpoints that do not fit are named."""

from __future__ import annotations

import hashlib
import runpy
import shutil
import subprocess
import sys
import weakref
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from factories import digit_parquet_files, reset_accelerate, tiny_args
from safetensors.torch import load_file, save_file
from training_runs import REPO, launch

from hfgen import HfgenPipeline
from hfgen.arguments.rbm import MIN_AIS_BETAS
from hfgen.training import DensityArguments, FlowMatchingTask, RBMArguments, list_checkpoints
from hfgen.training.trainer import Trainer, train_in_process

LOCK_FILE = ".hfgen-run.lock"
#: the smallest run of each family: 4 optimizer steps, a checkpoint after the last, no validation
QUIET = ["--report_to", "none", "--validation_steps", "0", "--checkpointing_steps", "4", "--max_train_steps", "4"]
POINT_NET = ["--hidden_size", "8", "--num_layers", "1"]


def image_files(folder: Path, size: int) -> list[str]:
    """``--train_data_files`` and ``--test_data_files`` of ``size × size`` grey images with the labels 0 … 9."""
    train, test = digit_parquet_files(folder, 40, size=size)
    return ["--train_data_files", train, "--test_data_files", test]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[int, list[str]]:
    """The data flags of 8 × 8 images (the generative families) and of 28 × 28 ones (the classifier, MNIST's size)."""
    return {size: image_files(tmp_path_factory.mktemp(f"digits-{size}"), size) for size in (8, 28)}


def family_flags(images: dict[int, list[str]]) -> dict[str, tuple[str, list[str]]]:
    """Each family's script and the flags of its smallest run."""
    small, mnist = images[8], images[28]
    unet = ["--image_size", "8", "--block_out_channels", "8", "16", "--norm_num_groups", "4", "--train_batch_size", "8"]
    return {
        "flow matching": ("train_fm.py", [*POINT_NET, "--num_eval_samples", "40", "--evaluation", "fast",
                                          "--num_nll_samples", "0"]),
        "image flow matching": ("train_fm.py", [*small, *unet, "--num_eval_samples", "4",
                                                "--num_inference_steps", "2"]),
        "ddpm": ("train_ddpm.py", [*POINT_NET, "--num_train_timesteps", "8", "--num_eval_samples", "40"]),
        "image ddpm": ("train_ddpm.py", [*small, *unet, "--num_train_timesteps", "4", "--num_inference_steps", "2",
                                         "--num_eval_samples", "4"]),
        "bridge": ("train_bridge.py", [*POINT_NET, "--num_steps", "4", "--ipf_iterations", "1",
                                       "--num_trajectories", "40", "--train_batch_size", "16",
                                       "--num_eval_samples", "40", "--plots", "false",
                                       "--checkpointing_steps", "1"]),  # counts half-iterations
        "vae": ("train_vae.py", [*small, "--image_size", "8", "--hidden_sizes", "16", "8", "--train_batch_size", "8",
                                 "--num_eval_images", "8", "--num_eval_samples", "8", "--num_nll_images", "4",
                                 "--num_importance_samples", "4", "--knn_neighbors", "3"]),
        "classifier": ("train_classifier.py", [*mnist, "--conv_channels", "4", "8", "--hidden_size", "8",
                                               "--train_batch_size", "8"]),
        "density": ("train_density.py", ["--model", "made", *small, "--image_size", "8", "--hidden_sizes", "8",
                                         "--train_batch_size", "8", "--num_eval_samples", "8",
                                         "--num_nll_samples", "4"]),
        "energy": ("train_ebm.py", [*POINT_NET, "--train_batch_size", "16", "--buffer_size", "40",
                                    "--langevin_steps", "2", "--num_eval_samples", "40", "--num_nll_samples", "20",
                                    "--num_sample_steps", "2", "--grid_size", "16"]),
        "rbm": ("train_rbm.py", [*small, "--image_size", "8", "--num_hidden", "6", "--num_chains", "5",
                                 "--train_batch_size", "8", "--num_sample_steps", "2", "--num_eval_images", "8",
                                 "--num_nll_images", "8", "--ais_num_chains", "8", "--ais_num_betas", "20",
                                 "--num_validation_samples", "4"]),
        "score": ("train_score.py", [*POINT_NET, "--num_eval_samples", "40", "--num_nll_samples", "0",
                                     "--num_inference_steps", "4"]),
    }  # fmt: skip


def with_steps_flag(name: str, argv: tuple[str, ...]) -> list[str]:
    """``argv`` for ``training/<name>``: the bridge counts its optimizer steps per half-iteration."""
    if name != "train_bridge.py":
        return list(argv)
    return ["--half_iteration_steps" if item == "--max_train_steps" else item for item in argv]


def script(name: str, *argv: str, capsys: pytest.CaptureFixture) -> tuple[int | str, str]:
    """Run ``training/<name>`` in this process as the shell would (``__main__``, ``sys.argv``): its exit status, or
    ``"traceback"`` when an exception escaped, and what it printed on stderr."""
    path = REPO / "training" / name
    saved = sys.argv
    sys.argv = [str(path), *with_steps_flag(name, argv)]
    status: int | str
    try:
        runpy.run_path(str(path), run_name="__main__")
        status = 0
    except SystemExit as end:
        status = end.code or 0
    except Exception:  # noqa: BLE001 (what a user would see as a traceback)
        status = "traceback"
    finally:
        sys.argv = saved
        reset_accelerate()
    return status, capsys.readouterr().err


def refused(status: int | str, err: str, *words: str) -> bool:
    """One ``error:`` line naming ``words``, exit status 2, no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    return status == 2 and len(lines) == 1 and "Traceback" not in err and all(w in lines[0] for w in words)


def folder_digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of every file of ``folder`` but the lock file (which holds the last
    process id)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != LOCK_FILE):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# ---- a refused resume never costs the finished run (issue 23, item 3) -----------------------------------------------


@pytest.mark.parametrize(
    "family",
    [
        "flow matching",
        "classifier",
        "energy",
        "rbm",
        *(
            pytest.param(family, marks=pytest.mark.slow)  # the same Trainer: the families above cover it in a hurry
            for family in ("image flow matching", "ddpm", "image ddpm", "bridge", "vae", "density", "score")
        ),
    ],
)
def test_a_refused_resume_leaves_the_finished_run_byte_identical_and_loadable(family, images, tmp_path, capsys):
    name, flags = family_flags(images)[family]
    out = tmp_path / "run"
    status, err = script(name, *QUIET, *flags, "--output_dir", str(out), capsys=capsys)
    assert status == 0, err[-3000:]
    latest = list_checkpoints(out)[-1][1].name  # checkpoint-4 (checkpoint-8 for the bridge's two half-iterations)
    before = folder_digest(out)
    # the plan now ends before the checkpoint (the bridge's plan cannot change: its arguments are refused)
    shorter = ["--max_train_steps", "2", "--resume_from_checkpoint", "latest", "--output_dir", str(out)]
    status, err = script(name, *QUIET, *flags, *shorter, capsys=capsys)
    assert refused(status, err, latest), err[-3000:]
    assert folder_digest(out) == before
    if family != "classifier":  # a transformers model, not a pipeline
        HfgenPipeline.from_pretrained(out)


def tamper_task_state(folder: Path, name: str, change) -> None:
    """Rewrite the tensor ``name`` of a checkpoint's ``task_state.safetensors`` as ``change(tensor)``."""
    state = load_file(str(folder / "task_state.safetensors"))
    state[name] = change(state[name])
    save_file(state, str(folder / "task_state.safetensors"))


def garble(folder: Path, file: str) -> None:
    (folder / file).write_bytes(b"\x80\x04\x95garbage")


@pytest.mark.parametrize(
    ("family", "tamper", "words"),
    [
        ("rbm", lambda c: tamper_task_state(c, "chains", lambda x: x[:3]), ["chains", "(5, 64)", "got (3, 64)"]),
        ("rbm", lambda c: tamper_task_state(c, "chains", lambda x: 0.5 * x), ["chains", "binary"]),
        ("energy", lambda c: tamper_task_state(c, "buffer", lambda x: x * float("nan")), ["replay buffer", "NaN"]),
        ("flow matching", lambda c: garble(c, "optimizer.bin"), ["corrupt"]),
    ],
    ids=["rbm-chains-of-another-shape", "rbm-chains-not-binary", "energy-buffer-of-nan", "corrupt-optimizer"],
)
def test_a_checkpoint_that_does_not_fit_is_refused_naming_it_before_the_run_is_touched(
    family, tamper, words, images, tmp_path, capsys
):
    name, flags = family_flags(images)[family]
    out = tmp_path / "run"
    status, err = script(name, *QUIET, *flags, "--output_dir", str(out), capsys=capsys)
    assert status == 0, err[-3000:]
    tamper(out / "checkpoints" / "checkpoint-4")
    before = folder_digest(out)
    # resumed with the run's own arguments at its last step, it would write the run again
    status, err = script(name, *QUIET, *flags, "--resume_from_checkpoint", "latest", "--output_dir", str(out),
                         capsys=capsys)  # fmt: skip
    task_state = ["task_state.safetensors"] if family != "flow matching" else []
    assert refused(status, err, "checkpoint-4", *task_state, *words), err[-3000:]
    assert folder_digest(out) == before
    HfgenPipeline.from_pretrained(out)


def data_file_of_text(folder: Path) -> str:
    path = folder / "notes.txt"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return str(path)


@pytest.mark.parametrize(
    ("script_name", "flags", "words"),
    [
        ("train_density.py", ["--model", "made", "--image_size", "8"], ["8x8", "28x28"]),
        ("train_rbm.py", ["--image_size", "8"], ["8x8", "28x28"]),
        ("train_fm.py", ["--image_size", "8"], ["8x8", "28x28"]),
        ("train_fm.py", ["--num_channels", "3"], ["3 channel", "mode 'L'"]),
        ("train_rbm.py", ["--num_channels", "3"], ["3 channel", "mode 'L'"]),
        ("train_fm.py", ["--image_column", "nosuch"], ["nosuch", "image_column"]),
        ("train_classifier.py", ["--image_column", "nosuch"], ["nosuch", "image_column"]),
        ("train_fm.py", ["--label_column", "nosuch"], ["nosuch", "label_column"]),
        ("train_classifier.py", ["--label_column", "nosuch"], ["nosuch", "label_column"]),
        ("train_fm.py", ["--class_conditional", "--num_classes", "5"], ["num_classes", "9"]),
        ("train_ddpm.py", ["--class_conditional", "--num_classes", "5"], ["num_classes", "9"]),
        ("train_fm.py", ["--train_batch_size", "64"], ["train_batch_size", "64", "40 training images"]),
        ("train_rbm.py", ["--train_batch_size", "64"], ["train_batch_size", "64", "40 training images"]),
    ],
)
def test_data_that_do_not_fit_the_task_are_a_one_line_refusal_before_the_folder_exists(
    script_name, flags, words, images, tmp_path, capsys
):
    out = tmp_path / "never"
    argv = [*images[28], *flags, "--max_train_steps", "1", "--report_to", "none", "--output_dir", str(out)]
    status, err = script(script_name, *argv, capsys=capsys)
    assert refused(status, err, *words), err[-3000:]
    assert not out.exists()


@pytest.mark.parametrize("script_name", ["train_fm.py", "train_rbm.py", "train_classifier.py"])
def test_a_training_file_that_is_not_parquet_is_a_one_line_refusal(script_name, tmp_path, capsys):
    out = tmp_path / "never"
    argv = ["--train_data_files", data_file_of_text(tmp_path), "--report_to", "none", "--output_dir", str(out)]
    status, err = script(script_name, *argv, capsys=capsys)
    assert refused(status, err, "notes.txt", "parquet"), err[-3000:]
    assert not out.exists()


def test_an_unknown_cnf_solver_is_refused_with_the_arguments(tmp_path, capsys):
    out = tmp_path / "never"
    status, err = script("train_density.py", "--model", "cnf", "--solver", "foo", "--output_dir", str(out),
                         capsys=capsys)  # fmt: skip
    assert refused(status, err, "`solver`", "'foo'", "dopri5", "rk4"), err
    assert not out.exists()
    with pytest.raises(ValueError, match="solver"):
        DensityArguments(model="cnf", solver="heun3")  # a torchdiffeq method whose step size the run would not set


def test_an_ais_from_one_distribution_is_refused(images, tmp_path, capsys):
    for flag in ("--ais_num_betas", "--validation_ais_num_betas"):
        status, err = script("train_rbm.py", *images[8], "--image_size", "8", flag, "1", "--output_dir",
                             str(tmp_path / "never"), capsys=capsys)  # fmt: skip
        assert refused(status, err, flag[2:], f">= {MIN_AIS_BETAS}", "got 1"), err
    assert RBMArguments(train_data_files=images[8][1], ais_num_betas=MIN_AIS_BETAS).ais_num_betas == MIN_AIS_BETAS


def test_an_upload_that_fails_says_the_run_is_saved_and_how_to_push_it(images, tmp_path, capsys):
    name, flags = family_flags(images)["flow matching"]
    out = tmp_path / "run"
    # the Hub is unreachable: HF_HUB_OFFLINE=1 (tests/conftest.py) makes every request fail
    argv = [*QUIET, *flags, "--push_to_hub", "--hub_model_id", "someone/tiny", "--output_dir", str(out)]
    status, err = script(name, *argv, capsys=capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 1 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert f"saved in {out.resolve()}" in lines[0] and "someone/tiny" in lines[0]
    assert f"push_folder_to_hub('{out.resolve()}', 'someone/tiny')" in lines[0]
    HfgenPipeline.from_pretrained(out)


@pytest.mark.parametrize("damage", ["intact", "corrupt", "missing"])
def test_a_resume_whose_random_states_cannot_be_restored_warns_that_it_is_not_exact(damage, tmp_path, caplog):
    args = tiny_args(tmp_path / "full", validation_steps=0)
    train_in_process(FlowMatchingTask(args))
    reset_accelerate()
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "checkpoint-3", resumed / "checkpoints" / "checkpoint-3")
    random_states = resumed / "checkpoints" / "checkpoint-3" / "random_states_0.pkl"
    if damage == "corrupt":  # Accelerate only logs this at INFO level and carries on
        random_states.write_bytes(random_states.read_bytes()[:50])
    elif damage == "missing":
        random_states.unlink()
    caplog.clear()
    train_in_process(FlowMatchingTask(replace(args, output_dir=str(resumed), resume_from_checkpoint="latest")))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "not exact" in r.getMessage()]
    if damage == "intact":
        assert warnings == []
    else:
        assert len(warnings) == 1 and "checkpoint-3" in warnings[0] and "random_states_0.pkl" in warnings[0]


# ---- exact resume with several processes (issue 23, item 10) --------------------------------------------------------


def launch_two_processes(name: str, *argv: str, succeed: bool = True) -> subprocess.CompletedProcess:
    """``training/<name>`` under a real 2-process launch on the CPU (gloo DDP)."""
    return launch(name, *with_steps_flag(name, argv), processes=2, succeed=succeed)


def saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file under ``folder``, keyed by file and name."""
    return {
        f"{path.relative_to(folder)}:{key}": value
        for path in sorted(folder.rglob("*.safetensors"))
        for key, value in load_file(str(path)).items()
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "resume_at"),
    [("rbm", "checkpoint-2"), ("energy", "checkpoint-2"), ("bridge", "checkpoint-4")],
)
def test_two_processes_resumed_after_a_checkpoint_end_with_the_straight_runs_safetensors(
    family, resume_at, images, tmp_path
):
    name, flags = family_flags(images)[family]
    every = "1" if family == "bridge" else "2"  # the bridge counts half-iterations of 4 steps
    run = [*QUIET, *flags, "--checkpointing_steps", every, "--checkpoints_total_limit", "0"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    launch_two_processes(name, *run, "--output_dir", str(straight))
    # a second run that has only the state after the first checkpoint (as if killed right after saving it)
    shutil.copytree(straight / "checkpoints" / resume_at, resumed / "checkpoints" / resume_at)
    launch_two_processes(name, *run, "--resume_from_checkpoint", "latest", "--output_dir", str(resumed))

    expected, got = saved_tensors(straight), saved_tensors(resumed)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key
    start = load_file(str(straight / "checkpoints" / resume_at / "task_state.safetensors"))
    end = load_file(str(list_checkpoints(straight)[-1][1] / "task_state.safetensors"))
    assert start.keys() != end.keys() or any(not torch.equal(v, end[k]) for k, v in start.items())  # it moved


@pytest.mark.slow
def test_two_processes_refused_by_the_main_process_stop_together_with_its_message(images, tmp_path):
    name, flags = family_flags(images)["flow matching"]
    out = tmp_path / "run"
    launch_two_processes(name, *QUIET, *flags, "--output_dir", str(out))
    before = folder_digest(out)
    # only the main process looks at the folder: the other must not go on alone into the first collective operation
    result = launch_two_processes(name, *QUIET, *flags, "--output_dir", str(out), succeed=False)
    errors = {line for line in result.stderr.splitlines() if line.startswith("error:")}
    assert result.returncode != 0 and len(errors) == 1 and "holds another run" in errors.pop(), result.stderr[-3000:]
    assert "[rank1]" not in result.stderr and "Connection closed" not in result.stderr, result.stderr[-3000:]
    assert folder_digest(out) == before


def test_the_prepared_modules_are_freed_before_the_process_group_is_destroyed(tmp_path, monkeypatch):
    # a DDP reducer alive when end_training destroys the process group frees gloo's group later, holding the GIL
    # while it joins gloo's threads: an occasional deadlock at the exit of a 2-process run
    trainer = Trainer(FlowMatchingTask(tiny_args(tmp_path, validation_steps=0, checkpointing_steps=0)))
    trainer.train()
    prepared = weakref.ref(trainer.loss_module)
    alive_at_destroy = []
    end_training = trainer.accelerator.end_training
    monkeypatch.setattr(trainer.accelerator, "end_training", lambda: alive_at_destroy.append(prepared() is not None))
    trainer.end()
    end_training()
    assert alive_at_destroy == [False]
