"""training/train_rbm.py and hfgen.training.rbm on tiny 4 × 4 binary images: arguments and bad input, the batch
stream, the CD/PCD loss, exact resume with the persistent chains in the checkpoint, AIS against exact enumeration,
a full run (pipeline, card, figures, metrics) and the script in a subprocess."""

import json
import math
from functools import partial

import numpy as np
import pytest
import torch
from factories import assert_equal_tensors, reset_accelerate, resume_at, write_image_parquet
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from training_runs import file_run_args, launch

from hfgen.data.images import binarize_test_images
from hfgen.methods.rbm import (
    ais_log_likelihood,
    contrastive_divergence,
    exact_log_partition,
    filter_images,
    pseudo_log_likelihood,
    reconstruction_error,
)
from hfgen.models.rbm import RBMModel
from hfgen.pipelines.rbm import RBMPipeline
from hfgen.training.rbm import RBMArguments, RBMTask
from hfgen.training.trainer import Trainer, run

TINY = {
    "image_size": 4,
    "num_hidden": 6,
    "num_chains": 5,
    "train_batch_size": 8,
    "max_train_steps": 6,
    "learning_rate": 0.05,
    "checkpointing_steps": 3,
    "validation_steps": 3,
    "logging_steps": 2,
    "num_validation_samples": 9,
    "num_sample_steps": 5,
    "num_validation_nll_samples": 10,
    "num_eval_images": 20,
    "num_nll_images": 20,
    "ais_num_chains": 50,
    "ais_num_betas": 200,
    "validation_ais_num_betas": 20,
    "report_to": "none",
}


def grey_images(n: int, seed: int) -> torch.Tensor:
    """``(n, 1, 4, 4)`` grey images: a bright bar in one of four rows (position ``i mod 4``) on faint noise."""
    g = torch.Generator().manual_seed(seed)
    images = 0.15 * torch.rand(n, 1, 4, 4, generator=g)
    for i in range(n):
        images[i, 0, i % 4] = 0.9
    return images


@pytest.fixture(scope="module")
def data():
    return {"train_images": grey_images(48, 0), "test_images": grey_images(20, 1)}


@pytest.fixture(scope="module")
def data_files(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("bars")
    files = []
    for split in ("train", "test"):
        pixels = (data[f"{split}_images"][:, 0] * 255).round().to(torch.uint8).numpy()
        files.append(str(write_image_parquet(folder / f"{split}.parquet", np.ascontiguousarray(pixels))))
    return files


tiny_args = partial(file_run_args, RBMArguments, TINY)


def test_arguments_name_the_argument_and_the_value(data_files):
    train, _ = data_files  # the data-source checks: tests/test_image_data.py
    for name, value in (("binarize", "otsu"), ("method", "fpcd")):
        with pytest.raises(ValueError, match=f"`{name}` must be one of .*{value}"):
            RBMArguments(train_data_files=train, **{name: value})
    for name in ("num_hidden", "gibbs_steps", "num_chains", "ais_num_betas", "ais_num_chains", "num_sample_steps"):
        with pytest.raises(ValueError, match=f"`{name}` must be an int >= 1, got 0"):
            RBMArguments(train_data_files=train, **{name: 0})
    with pytest.raises(ValueError, match="`weight_init_std` must be >= 0, got -1"):
        RBMArguments(train_data_files=train, weight_init_std=-1.0)
    with pytest.raises(ValueError, match="`learning_rate`"):  # the shared checks still run
        RBMArguments(train_data_files=train, learning_rate=0.0)
    args = RBMArguments(dataset_name="ylecun/mnist")
    recipe = (args.num_hidden, args.method, args.gibbs_steps, args.train_batch_size, args.binarize)
    assert recipe == (500, "pcd", 1, 100, "dynamic") and args.output_dir == "out/rbm-mnist"
    assert "ais_num_betas" in args.run_only_fields and "gibbs_steps" not in args.run_only_fields


def test_images_outside_the_unit_interval_or_of_the_wrong_shape_are_refused_before_anything_is_written(
    data, data_files, tmp_path
):
    args = tiny_args(tmp_path / "out", data_files)
    with pytest.raises(ValueError, match=r"`train_images` must lie in \[0, 1\], got range \[0.[0-9]+, 229.5\]"):
        RBMTask(args, {**data, "train_images": data["train_images"] * 255})
    with pytest.raises(ValueError, match=r"`test_images` must lie in \[0, 1\]"):
        RBMTask(args, {**data, "test_images": data["test_images"] - 1})
    with pytest.raises(ValueError, match=r"`train_images` must have shape \(N, 1, 4, 4\), got \(48, 1, 5, 5\)"):
        RBMTask(args, {**data, "train_images": torch.rand(48, 1, 5, 5)})
    with pytest.raises(TypeError, match="`test_images` must be a float tensor"):
        RBMTask(args, {**data, "test_images": (data["test_images"] * 255).to(torch.uint8)})
    assert not (tmp_path / "out").exists()
    # the likelihood is only defined for binary images
    model = RBMModel(num_visible=16, num_hidden=3)
    with pytest.raises(ValueError, match="`images` must be binary"):
        ais_log_likelihood(model, torch.full((2, 16), 0.5), torch.zeros(16), 10, 10)


def test_binarisations_give_binary_images_and_the_held_out_draw_is_fixed(data, data_files, tmp_path):
    for mode in ("dynamic", "fixed", "threshold"):
        task = RBMTask(tiny_args(tmp_path, data_files, binarize=mode), data)
        assert set(task.test_images.unique().tolist()) <= {0.0, 1.0}, mode
        again = RBMTask(tiny_args(tmp_path, data_files, binarize=mode), data)
        assert torch.equal(task.test_images, again.test_images), mode
        images, _ = task.batch(0, 0, 1)
        assert set(images.unique().tolist()) <= {0.0, 1.0} and images.shape == (8, 16), mode
    # the held-out draw is binarize_test_images' (seed TEST_BINARIZATION_SEED, also MADE's), whatever the run's seed
    for mode in ("dynamic", "fixed"):
        for seed in (0, 3):
            task = RBMTask(tiny_args(tmp_path, data_files, binarize=mode, seed=seed), data)
            assert torch.equal(task.test_images, binarize_test_images(data["test_images"])), (mode, seed)
    threshold = RBMTask(tiny_args(tmp_path, data_files, binarize="threshold"), data)
    assert torch.equal(threshold.train_images, (data["train_images"] > 0.5).float())
    # dynamic: the training images stay grey and each batch draws Bernoulli(pixel) afresh
    dynamic = RBMTask(tiny_args(tmp_path, data_files), data)
    assert torch.equal(dynamic.train_images, data["train_images"])
    draws = torch.stack([dynamic.batch(6 * k, 0, 1)[0] for k in range(400)])  # the first batch of each epoch
    means = torch.stack([dynamic.train_images[dynamic.rows(6 * k, 0, 1)].flatten(1) for k in range(400)])
    assert abs(float(draws.mean() - means.mean())) < 0.01


def test_the_batch_stream_is_a_pure_function_of_its_index_and_shards_each_epoch(data, data_files, tmp_path):
    task = RBMTask(tiny_args(tmp_path, data_files, binarize="threshold"), data)
    first, again = task.batch(5, 1, 2), task.batch(5, 1, 2)
    assert torch.equal(first[0], again[0])
    assert torch.equal(torch.rand(3, generator=first[1]), torch.rand(3, generator=again[1]))
    per_epoch = 48 // 2 // 8  # two processes: 24 images each, 3 batches of 8
    rows = torch.cat([task.rows(k, s, 2) for s in (0, 1) for k in range(per_epoch)])
    assert sorted(rows.tolist()) == list(range(48))  # one epoch visits every training image once
    second = torch.cat([task.rows(per_epoch + k, s, 2) for s in (0, 1) for k in range(per_epoch)])
    assert sorted(second.tolist()) == list(range(48)) and not torch.equal(rows, second)


@pytest.mark.parametrize("method", ["pcd", "cd"])
def test_the_loss_is_contrastive_divergence_and_pcd_carries_its_chains(data, data_files, tmp_path, method):
    task = RBMTask(tiny_args(tmp_path, data_files, method=method, gibbs_steps=2), data)
    torch.manual_seed(0)
    model = task.build_model()
    # the visible biases start at the (smoothed) base rate log p̄ / (1 − p̄) of the training images
    p = (data["train_images"].flatten(1).sum(0) + 1) / (48 + 2)
    torch.testing.assert_close(model.visible_bias.detach(), torch.log(p / (1 - p)))
    with task.batches(start=4, stream=0) as batches:
        images, generator = next(batches)
    start = task.chains.clone() if method == "pcd" else None
    loss = task.loss(model, (images, generator), torch.device("cpu"))
    images_again, generator_again = task.batch(4, 0, 1)
    expected = contrastive_divergence(model, images_again, 2, generator_again, chains=start)
    torch.testing.assert_close(loss, expected.loss)
    if method == "pcd":
        assert torch.equal(task.chains, expected.negative_samples) and not torch.equal(task.chains, start)
        assert task.state_dict()["chains"].shape == (5, 16)
    else:
        assert task.chains is None and task.state_dict() == {}


class ChainRecordingTask(RBMTask):
    """An :class:`RBMTask` that records the persistent chains each update starts from."""

    def __init__(self, args, data):
        super().__init__(args, data)
        self.chains_in: list[torch.Tensor] = []

    def loss(self, model, batch, device):
        if self.persistent:
            self.chains_in.append(self.chains.clone())
        return super().loss(model, batch, device)


@pytest.mark.parametrize("method", ["pcd", "cd"])
def test_a_run_resumed_at_step_3_ends_bit_for_bit_where_the_uninterrupted_run_ends(data, data_files, tmp_path, method):
    def train(args):
        task = ChainRecordingTask(args, data)
        trainer = Trainer(task)
        result = trainer.train()
        trainer.end()
        reset_accelerate()
        return task, result

    # W ~ N(0, 1): p(h | v) depends on v, so chains started elsewhere do not meet within a few sweeps (at the default
    # s = 0.01 every chain forgets its start after one sweep, and a resume that restarted them would go unseen)
    args = tiny_args(tmp_path / "full", data_files, method=method, validation_steps=0, weight_init_std=1.0)
    (full_task, full), (resumed_task, resumed) = resume_at(train, args, tmp_path)

    assert resumed.metrics["train_steps"] == 6
    assert_equal_tensors(full.pipeline.model.state_dict(), resumed.pipeline.model.state_dict())
    full_raw = load_file(str(tmp_path / "full" / "checkpoints" / "checkpoint-6" / "weights-model.safetensors"))
    start = load_file(str(tmp_path / "full" / "checkpoints" / "checkpoint-3" / "weights-model.safetensors"))
    assert any(not torch.equal(start[key], full_raw[key]) for key in full_raw)  # the weights did move
    if method == "pcd":
        # updates 4, 5, 6 of the resumed run start from the chains the uninterrupted run had there: the saved ones
        saved = load_file(str(tmp_path / "full" / "checkpoints" / "checkpoint-3" / "task_state.safetensors"))
        assert len(full_task.chains_in) == 6 and len(resumed_task.chains_in) == 3
        assert torch.equal(resumed_task.chains_in[0], saved["chains"])
        for step, (straight, again) in enumerate(zip(full_task.chains_in[3:], resumed_task.chains_in, strict=True)):
            assert torch.equal(straight, again), f"chains entering update {step + 4}"
        assert torch.equal(resumed_task.chains, full_task.chains)
        # the test can see a restart: the saved chains are not where chains start, nor where the run ends
        assert not torch.equal(saved["chains"], resumed_task.initial_chains(0))
        assert saved["chains"].shape == (5, 16) and not torch.equal(saved["chains"], full_task.chains)
    else:
        assert not (tmp_path / "full" / "checkpoints" / "checkpoint-3" / "task_state.safetensors").exists()


def test_the_held_out_scores_use_the_first_num_eval_images_test_images(data, data_files, tmp_path):
    task = RBMTask(tiny_args(tmp_path, data_files, num_eval_images=7, weight_init_std=0.5), data)
    torch.manual_seed(0)
    pipeline = task.pipeline(task.build_model())
    task.sample(pipeline, 2, torch.Generator().manual_seed(0))
    metrics = task.score(torch.zeros(2, 1, 4, 4), torch.Generator().manual_seed(1))
    images = task.test_images[:7].flatten(1)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        errors = reconstruction_error(pipeline.model, images, generator).double()
        pseudo = pseudo_log_likelihood(pipeline.model, images, generator=generator).double()
    assert metrics["num_eval_images"] == 7
    assert metrics["reconstruction_error"] == float(errors.mean())
    assert metrics["pseudo_log_likelihood"] == float(pseudo.mean())


def test_ais_log_likelihood_agrees_with_exact_enumeration():
    torch.manual_seed(0)
    model = RBMModel(num_visible=16, num_hidden=8, weight_init_std=0.5)
    images = (torch.rand(30, 16, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    base = torch.full((16,), -0.8)
    report = ais_log_likelihood(model, images, base, num_chains=200, num_betas=500)
    with torch.no_grad():
        exact = float((-model.free_energy(images).double() - exact_log_partition(model.double())).mean())
    model.float()
    assert report["log_likelihood"] == pytest.approx(exact, abs=max(4 * report["log_partition_stderr"], 0.02))
    assert report["nll"] == -report["log_likelihood"] and report["num_nll_images"] == 30
    assert report["log_likelihood_stderr"] > report["log_partition_stderr"] > 0
    assert (report["ais_num_chains"], report["ais_num_betas"]) == (200, 500)
    assert report["ais_seed"] == 0 and 1 <= report["ais_effective_sample_size"] <= 200
    # another seed: an independent AIS estimate, which agrees within the standard errors
    again = ais_log_likelihood(model, images, base, num_chains=200, num_betas=500, seed=1)
    assert again["ais_seed"] == 1 and again["log_partition"] != report["log_partition"]
    bound = 4 * math.hypot(report["log_partition_stderr"], again["log_partition_stderr"])
    assert again["log_partition"] == pytest.approx(report["log_partition"], abs=max(bound, 0.02))


def test_filters_are_the_columns_of_w_scaled_to_the_unit_interval():
    torch.manual_seed(0)
    model = RBMModel(num_visible=16, num_hidden=5, image_size=4, weight_init_std=1.0)
    filters = filter_images(model, 3)
    assert filters.shape == (3, 1, 4, 4)
    column = model.weight.detach()[:, 1]
    torch.testing.assert_close(filters[1].flatten(), (column - column.min()) / (column.max() - column.min()))


def test_a_tiny_run_writes_pipeline_card_figures_and_metrics(data, data_files, tmp_path):
    out = tmp_path / "rbm"
    args = tiny_args(out, data_files)
    task = RBMTask(args)
    returned = run(task)

    for name in ["model_index.json", "model/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "README.md", "metrics.json", "samples.png", "filters.png", "chains.png",
                 "checkpoints/checkpoint-6/task_state.safetensors", "validation/step-0000003-filters.png",
                 "validation/step-0000006-samples.png"]:  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 6 and metrics["num_nll_images"] == 20
    # a 6-step run evaluates fast: AIS with the validation's schedule (validation_ais_num_betas) instead of 200 betas
    assert metrics["evaluation"] == "fast" and metrics["ais_num_betas"] == 20
    assert [r["ais_num_betas"] for r in metrics["validation"]] == [20, 20]  # the cheaper AIS while training
    assert [r["num_nll_images"] for r in metrics["validation"]] == [10, 10]
    assert returned["log_likelihood"] == pytest.approx(metrics["log_likelihood"])
    assert metrics["pseudo_log_likelihood"] < 0 and metrics["reconstruction_error"] > 0

    pipe = RBMPipeline.from_pretrained(out)
    model = pipe.model.double()
    # with 6 hidden units the exact log-likelihood is at hand: AIS must agree with it
    test = task.test_images[:20].flatten(1).double()
    with torch.no_grad():
        exact = float((-model.free_energy(test) - exact_log_partition(model)).mean())
    assert metrics["log_likelihood"] == pytest.approx(exact, abs=max(4 * metrics["log_partition_stderr"], 0.02))
    assert pipe(num_samples=2, num_inference_steps=3).images.shape == (2, 1, 4, 4)

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "diffusers" and "restricted-boltzmann-machine" in card.data.tags
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["log-likelihood"] == pytest.approx(metrics["log_likelihood"], abs=1e-6)
    assert values["pseudo-log-likelihood"] == pytest.approx(metrics["pseudo_log_likelihood"], abs=1e-6)
    assert "E(v, h) = −vᵀWh − bᵀv − cᵀh" in card.text and "F(v) = −bᵀv − Σ_j softplus" in card.text
    assert "PCD-1 (Tieleman 2008)" in card.text and "20 equally spaced" in card.text and "50 runs" in card.text
    assert "![filters](filters.png)" in card.text and f'RBMPipeline.from_pretrained("{out.name}")' in card.text


def test_the_script_trains_cd_k_from_parquet_files(data_files, tmp_path):
    train, test = data_files
    out = tmp_path / "script"
    flags = [f"--{k}={v}" for k, v in TINY.items()]
    result = launch("train_rbm.py", "--train_data_files", train, "--test_data_files", test, "--output_dir", str(out),
                    "--method", "cd", "--gibbs_steps", "3", "--binarize", "fixed", *flags)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(result.stdout[result.stdout.index("{") :])["log_likelihood"] == metrics["log_likelihood"]
    assert not (out / "chains.png").exists() and (out / "filters.png").is_file()
    card = ModelCard.load(out / "README.md")
    assert "CD-3 (Hinton 2002)" in card.text and "binarised once per image" in card.text
