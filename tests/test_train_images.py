"""Image flow matching and DDPM training (hfgen.training.images, train_fm.py / train_ddpm.py on images): the batch
stream, the losses, arguments, a tiny scripted run with classifier scores and card, exact resume, a 2-process
launch."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch
from factories import digit_parquet_files, train_task
from huggingface_hub import ModelCard
from training_runs import assert_resumed_run_is_exact, file_run_args, launch

from hfgen.cli.scripts import is_image_run
from hfgen.model_cards.image_diffusion import flow_matching_math
from hfgen.models.classifier import MnistClassifier, MnistClassifierConfig
from hfgen.pipelines.image_ddpm import DDPMImagePipeline
from hfgen.pipelines.image_flow_matching import FlowMatchingImagePipeline
from hfgen.training.image_data import PERMUTATION_STREAM
from hfgen.training.images import (
    DDPMImageArguments,
    DDPMImageTask,
    FlowMatchingImageArguments,
    FlowMatchingImageTask,
    grid_labels,
)
from hfgen.utils import batch_generator

TINY = {
    "image_size": 8,
    "block_out_channels": [8, 16],
    "norm_num_groups": 4,
    "train_batch_size": 8,
    "max_train_steps": 6,
    "checkpointing_steps": 3,
    "validation_steps": 3,
    "num_eval_samples": 20,
    "num_inference_steps": 2,
    "report_to": "none",
}


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    train, test = digit_parquet_files(folder, 48)
    classifier = folder / "classifier"
    torch.manual_seed(0)
    MnistClassifier(MnistClassifierConfig(image_size=8, conv_channels=[4, 8], hidden_size=16)).save_pretrained(
        classifier, safe_serialization=True
    )
    return str(train), str(test), str(classifier)


fm_args = partial(file_run_args, FlowMatchingImageArguments, TINY)
ddpm_args = partial(file_run_args, DDPMImageArguments, {"num_train_timesteps": 10, "final_alpha_bar": 1e-2, **TINY})


def test_the_scripts_train_on_images_when_given_image_data(tmp_path):
    assert is_image_run(["--dataset_name", "ylecun/mnist"]) and is_image_run(["--train_data_files=a.parquet"])
    assert not is_image_run(["--dataset", "moons"]) and not is_image_run([])
    config = tmp_path / "run.yaml"
    config.write_text("dataset_name: ylecun/mnist\n")
    assert is_image_run(["--config", str(config)]) and is_image_run([str(config)])
    config.write_text("dataset: moons\n")
    assert not is_image_run(["--config", str(config)])


def test_argument_errors_name_the_argument(data_files, tmp_path):
    train, test, _ = data_files
    cases = [
        ({}, "data source"),
        ({"train_data_files": train, "dataset_name": "ylecun/mnist"}, "data source"),
        ({"train_data_files": train, "cond_drop_prob": 1.0}, "cond_drop_prob"),
        ({"train_data_files": train, "guidance_scale": 2.0}, "guidance_scale"),
        ({"train_data_files": train, "block_out_channels": [8, 12], "norm_num_groups": 8}, "norm_num_groups"),
        ({"train_data_files": train, "block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4}, "image_size"),
        ({"train_data_files": train, "solver": "rk45"}, "solver"),
        ({"train_data_files": train, "time_scale": 0.0}, "time_scale"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            FlowMatchingImageArguments(output_dir=str(tmp_path), **kwargs)
    with pytest.raises(ValueError, match="num_inference_steps"):
        DDPMImageArguments(train_data_files=train, num_train_timesteps=10, num_inference_steps=20)
    with pytest.raises(ValueError, match="final_alpha_bar"):
        DDPMImageArguments(train_data_files=train, final_alpha_bar=1.0)
    with pytest.raises(FileNotFoundError, match="classifier_path"):
        FlowMatchingImageArguments(train_data_files=train, classifier_path=str(tmp_path / "missing"))


def test_the_batch_stream_is_a_pure_function_of_its_index_with_label_dropout(data_files, tmp_path):
    args = fm_args(tmp_path, data_files, class_conditional=True, cond_drop_prob=0.5)
    task = FlowMatchingImageTask(args)
    first = task.batch(7, 1, 2)
    again = FlowMatchingImageTask(args).batch(7, 1, 2)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    images, noise, t, labels = first
    assert images.shape == (8, 1, 8, 8) and float(images.min()) >= -1 and float(images.max()) <= 1
    assert noise.shape == images.shape and t.shape == (8,) and bool(((t >= 0) & (t < 1)).all())
    assert set(labels.tolist()) <= set(range(11)) and (labels == 10).any() and (labels < 10).any()
    # one epoch of 2 processes: 48 images, 24 per process, 3 batches of 8 each, every image once
    task = FlowMatchingImageTask(fm_args(tmp_path, data_files))
    seen = torch.cat([task.draw(k, s, 2)[0] for s in (0, 1) for k in range(3)])
    expected = task.train_images * 2 - 1
    assert seen.shape[0] == 48
    assert sorted(map(tuple, seen.flatten(1).tolist())) == sorted(map(tuple, expected.flatten(1).tolist()))
    assert len(FlowMatchingImageTask(fm_args(tmp_path, data_files)).batch(0, 0, 1)) == 3  # unconditional


def test_the_flow_matching_batches_draw_their_times_from_the_run_s_law(data_files, tmp_path):
    uniform = FlowMatchingImageTask(fm_args(tmp_path, data_files))
    logit = FlowMatchingImageTask(
        fm_args(tmp_path, data_files, time_law="logit_normal", logit_normal_mean=0.5, logit_normal_std=0.3)
    )
    images, noise, t = uniform.batch(5, 0, 1)
    _, _, generator = uniform.draw(5, 0, 1)
    torch.randn(images.shape, generator=generator)  # the noise, drawn before the times
    assert torch.equal(t, torch.rand(8, generator=generator))  # the default is U[0, 1], as before the option
    _, _, generator = logit.draw(5, 0, 1)
    torch.randn(images.shape, generator=generator)
    expected = torch.sigmoid(0.5 + 0.3 * torch.randn(8, generator=generator))
    assert torch.equal(logit.batch(5, 0, 1)[2], expected)
    assert "`t ~ U[0, 1]`" in flow_matching_math(uniform.args)  # the card states the law
    assert "`t = σ(0.5 + 0.3 z)`" in flow_matching_math(logit.args)
    with pytest.raises(ValueError, match="time_law"):
        fm_args(tmp_path, data_files, time_law="beta")
    with pytest.raises(ValueError, match="logit_normal_std"):
        fm_args(tmp_path, data_files, time_law="logit_normal", logit_normal_std=0.0)


@pytest.mark.parametrize("family", ["fm", "ddpm"])
def test_label_dropout_turns_a_label_into_the_null_class_with_probability_cond_drop_prob(data_files, tmp_path, family):
    make_args, make_task = (fm_args, FlowMatchingImageTask) if family == "fm" else (ddpm_args, DDPMImageTask)
    task = make_task(make_args(tmp_path, data_files, class_conditional=True, cond_drop_prob=0.1))
    train_labels = torch.tensor([i % 10 for i in range(48)])
    for index in range(12):  # two epochs of six batches of 8
        epoch, position = divmod(index, 6)
        rows = torch.randperm(48, generator=batch_generator(task.args.seed, PERMUTATION_STREAM, epoch))
        rows = rows[position * 8 : (position + 1) * 8]
        # the batch's generator draws u ~ U[0, 1) per label first; the label becomes the null class 10 when u < 0.1
        u = torch.rand(8, generator=batch_generator(task.args.seed, 0, index))
        expected = torch.where(u < 0.1, 10, train_labels[rows])
        assert torch.equal(task.batch(index, 0, 1)[-1], expected), index
    dropped = torch.cat([task.draw(index, 0, 1)[1] for index in range(1_200)]) == 10
    # 9,600 labels: the dropped fraction is 0.1 ± 0.003 (one standard deviation)
    assert abs(float(dropped.double().mean()) - 0.1) < 0.015


def test_the_losses_are_the_flow_matching_and_epsilon_regressions(data_files, tmp_path):
    fm = FlowMatchingImageTask(fm_args(tmp_path, data_files, class_conditional=True))
    model = fm.build_model().eval()
    y1, y0, t, labels = fm.batch(0, 0, 1)
    tt = t.view(-1, 1, 1, 1)
    with torch.no_grad():
        prediction = model((1 - tt) * y0 + tt * y1, t * fm.args.time_scale, class_labels=labels, return_dict=False)[0]
        expected = (prediction - (y1 - y0)).square().mean()
        assert torch.equal(fm.loss(model, (y1, y0, t, labels), torch.device("cpu")), expected)
    ddpm = DDPMImageTask(ddpm_args(tmp_path, data_files))
    model = ddpm.build_model().eval()
    noisy, timesteps, noise = ddpm.batch(0, 0, 1)
    images = ddpm.draw(0, 0, 1)[0]
    alpha_bar = ddpm.scheduler.alpha_bar(timesteps).float().view(-1, 1, 1, 1)
    torch.testing.assert_close(noisy, alpha_bar.sqrt() * images + (1 - alpha_bar).sqrt() * noise)
    assert timesteps.min() >= 1 and timesteps.max() <= 10
    with torch.no_grad():
        expected = (model(noisy, timesteps, return_dict=False)[0] - noise).square().mean()
        assert torch.equal(ddpm.loss(model, (noisy, timesteps, noise), torch.device("cpu")), expected)


def test_the_figures_draw_one_row_per_class_with_the_run_s_guidance_and_steps(data_files, tmp_path):
    args = fm_args(tmp_path, data_files, class_conditional=True, guidance_scale=2.0, num_inference_steps=3)
    task = FlowMatchingImageTask(args)
    torch.manual_seed(0)
    pipeline = task.pipeline(task.build_model())
    pipeline.set_progress_bar_config(disable=True)
    images, title = task.grid(pipeline)
    labels = grid_labels(100, 10)
    expected = pipeline(100, 3, generator=torch.Generator().manual_seed(3), class_labels=labels, guidance_scale=2.0)
    assert torch.equal(images, expected.images) and "guidance w = 2" in title
    states = task.trajectory(pipeline, grid_labels(10, 10))
    expected = pipeline(10, 3, generator=torch.Generator().manual_seed(3), class_labels=grid_labels(10, 10),
                        guidance_scale=2.0, return_trajectory=True)  # fmt: skip
    assert torch.equal(states, expected.trajectory)  # 3 steps: all 4 states are kept
    unguided = pipeline(10, 3, generator=torch.Generator().manual_seed(3), class_labels=grid_labels(10, 10),
                        return_trajectory=True)  # fmt: skip
    assert not torch.equal(states, unguided.trajectory)  # the guidance shows


def test_grid_labels_give_one_row_per_class():
    assert grid_labels(100, 10).view(10, 10).tolist() == [[c] * 10 for c in range(10)]


def test_a_tiny_conditional_flow_matching_run_writes_pipeline_grids_scores_and_card(data_files, tmp_path):
    from hfgen.training import run

    out = tmp_path / "fm"
    args = fm_args(out, data_files, class_conditional=True, guidance_scale=2.0, classifier_path=data_files[2])
    metrics = run(FlowMatchingImageTask(args))
    for name in ("model_index.json", "README.md", "metrics.json", "samples.png", "trajectory.png",
                 "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "validation/step-0000003-samples.png", "checkpoints/checkpoint-6/model.safetensors"):  # fmt: skip
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("frechet_distance", "confidence", "label_entropy", "label_accuracy"):
        assert f"samples_{key}" in metrics and f"real_{key}" in metrics
    assert saved["samples_frechet_distance"] == pytest.approx(metrics["samples_frechet_distance"])
    assert [record["step"] for record in saved["validation"]] == [3, 6]
    assert 0 <= metrics["samples_label_entropy"] <= np.log(10) + 1e-9
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "diffusers" and "class-conditional" in card.data.tags
    fd = next(r for r in card.data.eval_results if r.metric_type == "frechet-distance")
    assert fd.metric_value == pytest.approx(metrics["samples_frechet_distance"], abs=1e-6)
    assert "![samples](samples.png)" in card.text and "guidance_scale=2.0" in card.text
    pipe = FlowMatchingImagePipeline.from_pretrained(out)
    assert pipe.num_classes == 10 and pipe.unet.config.sample_size == 8
    images = pipe(num_inference_steps=2, class_labels=[3, 4], guidance_scale=2.0, output_type="np").images
    assert images.shape == (2, 8, 8, 1)


@pytest.mark.parametrize("family", ["fm", "ddpm"])
def test_a_run_resumed_at_step_3_ends_bit_for_bit_where_the_uninterrupted_run_ends(data_files, tmp_path, family):
    make_args, make_task = (fm_args, FlowMatchingImageTask) if family == "fm" else (ddpm_args, DDPMImageTask)
    args = make_args(tmp_path / "full", data_files, validation_steps=0, class_conditional=True, train_batch_size=16)
    # 3-batch epochs: the resumed run crosses an epoch boundary
    assert_resumed_run_is_exact(lambda a: train_task(make_task(a)), args, tmp_path, "unet")


def script_flags(data_files, **overrides) -> list[str]:
    train, test, classifier = data_files
    flags = ["--train_data_files", train, "--test_data_files", test, "--classifier_path", classifier]
    for key, value in {**TINY, **overrides}.items():
        flags += [f"--{key}", *map(str, value)] if isinstance(value, list) else [f"--{key}", str(value)]
    return flags


@pytest.mark.slow
def test_train_ddpm_script_trains_an_image_ddpm_and_refuses_guidance_without_labels(data_files, tmp_path):
    out = tmp_path / "ddpm"
    launch("train_ddpm.py", *script_flags(data_files, num_train_timesteps=10), "--output_dir", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert "samples_frechet_distance" in metrics and "samples_label_accuracy" not in metrics
    pipe = DDPMImagePipeline.from_pretrained(out)
    assert pipe.num_classes is None and pipe.scheduler.config.num_train_timesteps == 10
    result = launch("train_ddpm.py", *script_flags(data_files), "--guidance_scale", "2",
                    "--output_dir", str(tmp_path / "refused"), succeed=False)  # fmt: skip
    assert result.returncode == 2 and "guidance_scale" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_processes_train_data_parallel_and_gather_their_samples(data_files, tmp_path):
    out = tmp_path / "ddp"
    flags = script_flags(data_files, class_conditional="", num_eval_samples=21)
    flags.remove("")  # --class_conditional is a flag without a value
    launch("train_fm.py", *flags, "--output_dir", str(out), processes=2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["samples_seen"] == 2 * 6 * 8
    assert "samples_label_accuracy" in metrics and "samples_frechet_distance" in metrics
    assert FlowMatchingImagePipeline.from_pretrained(out).num_classes == 10
