"""Wiring: each setting reaches the code it is meant to change (a setting silently ignored fails here), and
closed forms pin values that a loose check would let through."""

import math
import runpy
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from factories import reset_accelerate, tiny_args, write_image_parquet
from safetensors.torch import load_file

from hfgen.methods.couplings import couple, sinkhorn_assignment
from hfgen.methods.flow_matching import BrownianBridgePath, VPPath, cfm_loss, sample_times
from hfgen.models import TimeMLP
from hfgen.training import FlowMatchingTask, Trainer


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_the_flow_matching_loss_uses_the_batch_times_drawn_from_beta_1_b(tmp_path):
    args = replace(tiny_args(tmp_path), time_beta=0.3)
    task = FlowMatchingTask(args)
    torch.manual_seed(0)
    model = TimeMLP(dim=2, hidden_size=8, num_layers=1)
    with task.batches(start=0, stream=0) as batches:
        x0, x1, t, generator = next(batches)
    # the times are Beta(1, b) draws of the batch's generator: t = 1 − (1 − u)^{1/b}
    u = torch.rand(args.train_batch_size, generator=seeded_like_batch(task))
    torch.testing.assert_close(t, 1 - (1 - u) ** (1 / 0.3))
    loss = task.loss(model, (x0, x1, t, seeded(1)), torch.device("cpu"))
    torch.testing.assert_close(loss, cfm_loss(model, x0, x1, task.path, t=t, generator=seeded(1)))
    uniform = cfm_loss(model, x0, x1, task.path, t=None, generator=seeded(2))
    assert not torch.isclose(loss, uniform)


def seeded_like_batch(task):
    """The generator of batch 0 advanced past its target and source draws and coupling: what draws the times."""
    from hfgen.utils import batch_generator

    generator = batch_generator(task.args.seed, 0, 0)
    x1 = task.target.sample(task.args.train_batch_size, generator)
    x0 = task.source.sample(task.args.train_batch_size, generator)
    couple(x0, x1, task.args.coupling, generator=generator, sigma=task.args.sigma)
    return generator


def test_sample_times_is_beta_1_b_by_inversion():
    u = torch.rand(5, generator=seeded(3))
    torch.testing.assert_close(sample_times(5, seeded(3), 0.5), 1 - (1 - u) ** 2)
    torch.testing.assert_close(sample_times(5, seeded(3), 1.0), u)


def test_the_sinkhorn_coupling_uses_regularisation_two_sigma_squared():
    # at σ = 0.7 the entropic plan is far from a permutation, so σ² and 2σ² give different draws
    x0, x1 = torch.randn(32, 2, generator=seeded(4)), torch.randn(32, 2, generator=seeded(5))
    _, got = couple(x0, x1, "sinkhorn", generator=seeded(6), sigma=0.7)
    paired, _ = couple(x0, x1, "sinkhorn", generator=seeded(6), sigma=0.7)
    expected = x0[sinkhorn_assignment(x0, x1, 2 * 0.7**2, seeded(6))]
    wrong = x0[sinkhorn_assignment(x0, x1, 0.7**2, seeded(6))]
    assert torch.equal(paired, expected) and torch.equal(got, x1)
    assert not torch.equal(expected, wrong)


def test_the_vp_path_has_the_exact_alpha_at_both_ends():
    path = VPPath(beta_min=0.1, beta_max=20.0)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    big_t = 0.1 + 0.5 * (20.0 - 0.1)  # T(1) = β_min + ½ (β_max − β_min)
    half = 0.1 * 0.5 + 0.5 * (20.0 - 0.1) * 0.25  # T(½)
    expected = torch.tensor([math.exp(-0.5 * big_t), math.exp(-0.5 * half), 1.0], dtype=torch.float64)
    torch.testing.assert_close(path.alpha(t), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(path.sigma(t) ** 2 + path.alpha(t) ** 2, torch.ones(3, dtype=torch.float64))


def test_the_brownian_bridge_velocity_at_the_ends_uses_the_1e8_floor():
    path = BrownianBridgePath(sigma=1.0)
    x0, x1, noise = torch.zeros(2, 2), torch.ones(2, 2), torch.ones(2, 2)
    velocity = path.target_velocity(x0, x1, torch.tensor([0.0, 1.0]), noise=noise)
    # u = x1 − x0 + σ (1 − 2t) / (2 √(t (1 − t))) ε with t (1 − t) floored at 1e-8: ±1 / (2e-4) = ±5000
    torch.testing.assert_close(velocity[:, 0], torch.tensor([1 + 5000.0, 1 - 5000.0]))


def test_validation_scores_the_ema_weights(tmp_path):
    args = replace(tiny_args(tmp_path), ema_decay=0.9, validation_steps=6, checkpointing_steps=0)
    task = FlowMatchingTask(args)
    trainer = Trainer(task)
    result = trainer.train()
    # the last validation (step 6) ran with the EMA weights, which are the final pipeline's: same metrics
    metrics, _ = trainer.evaluate_pipeline(result.pipeline, args.num_validation_samples, 0, args.seed + 6)
    recorded = trainer.history[-1]
    assert recorded["step"] == 6 and recorded["samples_w2"] == metrics["samples_w2"]
    trainer.end()


# ---- --seed: two runs from scratch with one seed give the same model, another seed another ---------------------

SCRIPTS = Path(__file__).resolve().parents[1] / "training"
#: every run: two optimizer steps, no checkpoint, no validation, no tracker
SHORT = ["--max_train_steps", "2", "--lr_warmup_steps", "0", "--checkpointing_steps", "0", "--validation_steps", "0",
         "--report_to", "none"]  # fmt: skip
SMALL_MLP = ["--hidden_size", "8", "--num_layers", "1", "--train_batch_size", "16"]
#: a family's script and its flags for a tiny run (``IMAGES`` stands for the flags of 8 × 8 image data, ``MNIST_SIZED``
#: for those of 28 × 28 images, the classifier's size)
IMAGES, MNIST_SIZED = "<8 x 8 images>", "<28 x 28 images>"
SEED_RUNS = {
    "flow-matching": ("train_fm.py", [*SMALL_MLP, "--num_eval_samples", "32", "--num_nll_samples", "0",
                                      "--num_inference_steps", "2", "--dataset", "moons"]),
    "ddpm": ("train_ddpm.py", [*SMALL_MLP, "--num_train_timesteps", "8", "--num_eval_samples", "32",
                               "--dataset", "moons"]),
    "score-sde": ("train_score.py", [*SMALL_MLP, "--num_eval_samples", "32", "--num_nll_samples", "0",
                                     "--num_inference_steps", "2", "--dataset", "moons"]),
    "bridge": ("train_bridge.py", [*SMALL_MLP, "--num_steps", "4", "--ipf_iterations", "1", "--num_trajectories", "32",
                                   "--num_eval_samples", "32", "--num_validation_samples", "32", "--plots", "False"]),
    "density-gmm": ("train_density.py", ["--model", "gmm", "--num_components", "2", "--num_train_points", "100",
                                         "--num_inits", "1", "--num_eval_samples", "32", "--num_nll_samples", "8"]),
    "density-made": ("train_density.py", ["--model", "made", "--hidden_sizes", "8", "--num_components", "2",
                                          "--train_batch_size", "16", "--num_eval_samples", "32",
                                          "--num_nll_samples", "8"]),
    "density-coupling": ("train_density.py", ["--model", "coupling", "--num_couplings", "2", *SMALL_MLP,
                                              "--num_eval_samples", "32", "--num_nll_samples", "8"]),
    "density-cnf": ("train_density.py", ["--model", "cnf", *SMALL_MLP, "--num_ode_steps", "2",
                                         "--num_inference_steps", "2", "--num_eval_samples", "32",
                                         "--num_nll_samples", "8"]),
    "energy": ("train_ebm.py", [*SMALL_MLP, "--buffer_size", "32", "--langevin_steps", "2", "--num_sample_steps", "2",
                                "--num_eval_samples", "32", "--num_nll_samples", "8", "--grid_size", "16"]),
    "rbm": ("train_rbm.py", [IMAGES, "--image_size", "8", "--num_hidden", "6", "--num_chains", "4",
                             "--train_batch_size", "8", "--num_sample_steps", "2", "--num_validation_samples", "4",
                             "--num_eval_images", "8", "--num_nll_images", "0", "--ais_num_chains", "4",
                             "--ais_num_betas", "10"]),
    "vae": ("train_vae.py", [IMAGES, "--image_size", "8", "--hidden_sizes", "16", "8", "--train_batch_size", "16",
                             "--num_validation_samples", "4", "--num_eval_images", "8", "--num_eval_samples", "8",
                             "--num_nll_images", "0", "--knn_neighbors", "1"]),
    "classifier": ("train_classifier.py", [MNIST_SIZED, "--conv_channels", "4", "8", "--hidden_size", "16",
                                           "--train_batch_size", "16"]),
    "image-flow-matching": ("train_fm.py", [IMAGES, "--image_size", "8", "--block_out_channels", "8", "16",
                                            "--norm_num_groups", "4", "--train_batch_size", "8",
                                            "--num_eval_samples", "4", "--num_inference_steps", "2",
                                            "--class_conditional"]),
    "image-ddpm": ("train_ddpm.py", [IMAGES, "--image_size", "8", "--block_out_channels", "8", "16",
                                     "--norm_num_groups", "4", "--train_batch_size", "8", "--num_eval_samples", "4",
                                     "--num_train_timesteps", "10", "--num_inference_steps", "2"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """``{placeholder: [--train_data_files, train, --test_data_files, test]}`` for labelled 8 × 8 and 28 × 28 images
    (a bright block whose place is the label, on faint noise)."""
    folder = tmp_path_factory.mktemp("blocks")
    flags = {}
    for placeholder, size in ((IMAGES, 8), (MNIST_SIZED, 28)):
        flags[placeholder] = []
        for split, count in (("train", 48), ("test", 16)):
            labels = [i % 10 for i in range(count)]
            pixels = np.random.default_rng(count).integers(0, 40, size=(count, size, size)).astype(np.uint8)
            for image, label in zip(pixels, labels, strict=True):
                row, col = divmod(label, 4)
                image[2 * row : 2 * row + 3, 2 * col : 2 * col + 3] = 230
            path = write_image_parquet(folder / f"{split}-{size}.parquet", pixels, labels)
            flags[placeholder] += [f"--{split}_data_files", str(path)]
    return flags


def train_with_script(monkeypatch, script: str, argv: list[str]) -> None:
    """Run ``training/<script>`` as ``python <script> <argv>`` would, in this process (so that nothing but ``--seed``
    can make two runs start alike: the global generators carry on from the run before)."""
    path = SCRIPTS / script
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(path), run_name="__main__")
    reset_accelerate()
    assert exit_status.value.code == 0


def record_initial_weights(monkeypatch) -> list[dict[str, Any]]:
    """Make every Trainer record its networks' weights as built (when its first phase starts, before any step):
    one ``{"<model>.<tensor>": value}`` a run."""
    records = []
    prepare = Trainer._prepare_phase

    def record_and_prepare(trainer: Trainer, phase: Any) -> None:
        if not records or records[-1]["trainer"] is not trainer:
            weights = {f"{name}.{key}": value.detach().clone() for name, model in trainer.models.items()
                       for key, value in model.state_dict().items()}  # fmt: skip
            records.append({"trainer": trainer, "weights": weights})
        prepare(trainer, phase)

    monkeypatch.setattr(Trainer, "_prepare_phase", record_and_prepare)
    return records


def saved_weights(folder: Path) -> dict[str, bytes]:
    """The bytes of every safetensors file of the saved pipeline or model (checkpoints aside)."""
    files = [p for p in folder.rglob("*.safetensors") if "checkpoints" not in p.relative_to(folder).parts]
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(files)}


#: runs whose final figures (animations, densities on grids) take more than a few seconds
SLOW_SEED_RUNS = {"flow-matching", "ddpm", "vae", "energy"}


@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=[pytest.mark.slow] if f in SLOW_SEED_RUNS else []) for f in SEED_RUNS]
)
def test_two_runs_with_one_seed_save_the_same_weights_and_another_seed_other_weights(
    monkeypatch, tmp_path, image_files, family
):
    script, flags = SEED_RUNS[family]
    flags = [item for flag in flags for item in image_files.get(flag, [flag])]
    built = record_initial_weights(monkeypatch)
    folders = {}
    for name, seed in (("first", 0), ("again", 0), ("other", 1)):
        folders[name] = tmp_path / name
        train_with_script(
            monkeypatch, script, [*SHORT, *flags, "--seed", str(seed), "--output_dir", str(folders[name])]
        )
    first = saved_weights(folders["first"])
    assert first, "the run saved no safetensors"
    assert saved_weights(folders["again"]) == first
    other = saved_weights(folders["other"])
    assert other.keys() == first.keys()
    tensors = {name: load_file(str(folders["first"] / name)) for name in first}
    assert any(
        not torch.equal(tensor, load_file(str(folders["other"] / name))[key])
        for name, loaded in tensors.items()
        for key, tensor in loaded.items()
    ), "seed 1 saved the weights of seed 0"
    # the networks as built: the same for one seed, others for another seed (not only the batches differ)
    assert len(built) == 3
    as_built = {name: record["weights"] for name, record in zip(folders, built, strict=True)}
    assert all(torch.equal(value, as_built["again"][key]) for key, value in as_built["first"].items())
    assert any(not torch.equal(value, as_built["other"][key]) for key, value in as_built["first"].items()), (
        "seed 1 built the networks of seed 0"
    )
