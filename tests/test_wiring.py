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

from hfgen.methods.cnf import cnf_nll_loss
from hfgen.methods.couplings import couple, sinkhorn_assignment
from hfgen.methods.flow_matching import BrownianBridgePath, VPPath, cfm_loss, sample_times
from hfgen.methods.schrodinger_bridge import mean_matching_loss, step_weights
from hfgen.models import TimeMLP
from hfgen.training import FlowMatchingArguments, FlowMatchingTask, Trainer
from hfgen.training.classifier import ClassifierArguments, ClassifierTask
from hfgen.training.ddpm_points import DDPMPointsArguments, DDPMPointsTask
from hfgen.training.density import DensityArguments, density_task
from hfgen.training.energy import EnergyArguments, EnergyTask
from hfgen.training.flow_matching import CoupledPairs
from hfgen.training.images import DDPMImageArguments, DDPMImageTask, FlowMatchingImageArguments, FlowMatchingImageTask
from hfgen.training.rbm import RBMArguments, RBMTask
from hfgen.training.schrodinger_bridge import SchrodingerBridgeArguments, SchrodingerBridgeTask
from hfgen.training.score_sde import NoisedScoreBatches, ScoreSDEArguments, ScoreSDETask
from hfgen.training.vae import VAEArguments, VAETask


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
#: the bridge counts its steps per half-iteration
SHORT_BRIDGE = ["--half_iteration_steps", *SHORT[1:]]


def short_flags(script: str) -> list[str]:
    """:data:`SHORT`, with the bridge's steps counted per half-iteration."""
    return SHORT_BRIDGE if script == "train_bridge.py" else SHORT


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
                             "--ais_num_betas", "20"]),
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
    """Make every Trainer record its networks' weights as built (when its first phase starts, before any step): one
    ``{"trainer": trainer, "weights": {"<model>.<tensor>": value}}`` a run."""
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


#: runs whose final figures (an animation, a density on a grid) take about 10 s on a busy machine (5 s idle)
SLOW_SEED_RUNS = {"flow-matching"}


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
            monkeypatch, script, [*short_flags(script), *flags, "--seed", str(seed), "--output_dir", str(folders[name])]
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


# ---- each architecture and sampler argument reaches the saved pipeline ------------------------------------------


def point_task(task_class, arguments_class):
    return lambda overrides, files: task_class(arguments_class(output_dir="unused", **overrides))


def image_task(task_class, arguments_class, size=8):
    """A task on the 8 × 8 images (``files``: the image_files fixture), with ``size`` × ``size`` data in memory."""

    def make(overrides, files):
        train, test = files[IMAGES][1], files[IMAGES][3]
        args = arguments_class(output_dir="unused", train_data_files=train, test_data_files=test, **overrides)
        data = {f"{split}_images": torch.rand(20, 1, size, size, generator=seeded()) for split in ("train", "test")}
        data |= {f"{split}_labels": torch.arange(20) % 10 for split in ("train", "test")}
        return task_class(args, data)

    return make


def classifier_task(overrides, files):
    train, test = files[MNIST_SIZED][1], files[MNIST_SIZED][3]
    return ClassifierTask(ClassifierArguments(output_dir="unused", train_data_files=train, test_data_files=test,
                                              **overrides))  # fmt: skip


#: (task from (overrides, image files), arguments, what the pipeline must hold: "component.key" → value,
#: "component.__class__" → class name, "pipeline.key" → the pipeline's own config). Each value differs from the
#: component's own default, so an argument left out of the constructor call fails here.
CONFIG_WIRING = {
    "flow-matching": (
        point_task(FlowMatchingTask, FlowMatchingArguments),
        {"hidden_size": 8, "num_layers": 2, "activation": "tanh", "time_embedding": "fourier",
         "num_position_frequencies": 2, "solver": "midpoint", "source": "8gaussians"},
        {"velocity.hidden_size": 8, "velocity.num_layers": 2, "velocity.activation": "tanh",
         "velocity.time_embedding": "fourier", "velocity.num_position_frequencies": 2,
         "scheduler.__class__": "FlowMatchMidpointScheduler", "pipeline.source": {"name": "8gaussians"}},
    ),
    "ddpm": (
        point_task(DDPMPointsTask, DDPMPointsArguments),
        {"hidden_size": 8, "num_layers": 2, "activation": "tanh", "time_embedding": "fourier",
         "num_position_frequencies": 2, "num_train_timesteps": 8, "alpha": 0.9, "variance_type": "beta",
         "sampler": "ddim", "eta": 0.5},
        {"model.hidden_size": 8, "model.num_layers": 2, "model.activation": "tanh", "model.time_embedding": "fourier",
         "model.num_position_frequencies": 2, "model.time_scale": 1 / 8, "scheduler.num_train_timesteps": 8,
         "scheduler.alpha": 0.9, "scheduler.variance_type": "beta", "scheduler.sampler": "ddim", "scheduler.eta": 0.5},
    ),
    "ddpm-diffusers-schedule": (
        point_task(DDPMPointsTask, DDPMPointsArguments),
        {"beta_schedule": "scaled_linear", "beta_start": 1e-3, "beta_end": 0.05, "variance_type": "beta",
         "num_train_timesteps": 8},
        {"scheduler.__class__": "DDPMScheduler", "scheduler.beta_schedule": "scaled_linear",
         "scheduler.beta_start": 1e-3, "scheduler.beta_end": 0.05, "scheduler.variance_type": "fixed_large",
         "scheduler.num_train_timesteps": 8},
    ),
    "score-sde-ve": (
        point_task(ScoreSDETask, ScoreSDEArguments),
        {"hidden_size": 8, "num_layers": 2, "activation": "tanh", "time_embedding": "fourier",
         "num_position_frequencies": 2, "sde": "ve", "sigma_min": 0.05, "sigma_max": 5.0, "sampling_eps": 0.01,
         "prediction_type": "score"},
        {"score_model.hidden_size": 8, "score_model.num_layers": 2, "score_model.activation": "tanh",
         "score_model.time_embedding": "fourier", "score_model.num_position_frequencies": 2,
         "scheduler.__class__": "VESDEScheduler", "scheduler.sigma_min": 0.05, "scheduler.sigma_max": 5.0,
         "scheduler.sampling_eps": 0.01, "scheduler.prediction_type": "score"},
    ),
    "score-sde-vp": (
        point_task(ScoreSDETask, ScoreSDEArguments),
        {"beta_min": 0.2, "beta_max": 8.0},
        {"scheduler.__class__": "VPSDEScheduler", "scheduler.beta_min": 0.2, "scheduler.beta_max": 8.0},
    ),
    "bridge": (
        point_task(SchrodingerBridgeTask, SchrodingerBridgeArguments),
        {"residual": False, "hidden_size": 8, "num_layers": 2, "num_steps": 6, "gamma": 0.05, "schedule": "constant",
         "final_step_noise": False},
        {"forward_model.__class__": "TimeMLP", "backward_model.__class__": "TimeMLP", "forward_model.hidden_size": 8,
         "backward_model.num_layers": 2, "scheduler.num_steps": 6, "scheduler.gamma": 0.05,
         "scheduler.schedule": "constant", "scheduler.final_step_noise": False},
    ),
    "bridge-symmetric": (
        point_task(SchrodingerBridgeTask, SchrodingerBridgeArguments),
        {"schedule_power": 2.0, "final_step_noise": True},
        {"forward_model.__class__": "ResidualMean", "scheduler.schedule_power": 2.0,
         "scheduler.final_step_noise": True},
    ),
    "density-gmm": (
        point_task(density_task, DensityArguments),
        {"model": "gmm", "num_components": 3, "covariance_type": "diag", "num_train_points": 50},
        {"model.__class__": "GaussianMixture", "model.num_components": 3, "model.covariance_type": "diag"},
    ),
    "density-made": (
        point_task(density_task, DensityArguments),
        {"model": "made", "hidden_sizes": [8], "num_components": 3, "num_masks": 2, "order": "random", "seed": 4},
        {"model.__class__": "MADE", "model.hidden_sizes": [8], "model.num_components": 3, "model.num_masks": 2,
         "model.order": "random", "model.seed": 4},
    ),
    "density-coupling": (
        point_task(density_task, DensityArguments),
        {"model": "coupling", "num_couplings": 3, "hidden_size": 8, "num_layers": 1, "invertible_linear": True,
         "num_bins": 5, "tail_bound": 2.5},
        {"model.__class__": "CouplingFlow", "model.num_couplings": 3, "model.hidden_size": 8,
         "model.num_hidden_layers": 1, "model.invertible_linear": True, "model.coupling_type": "spline",
         "model.num_bins": 5, "model.tail_bound": 2.5},
    ),
    "density-coupling-affine": (
        point_task(density_task, DensityArguments),
        {"model": "coupling", "coupling_type": "affine", "invertible_linear": False},
        {"model.coupling_type": "affine", "model.invertible_linear": False},
    ),
    "density-cnf": (
        point_task(density_task, DensityArguments),
        {"model": "cnf", "hidden_size": 8, "num_layers": 2, "activation": "tanh", "time_scale": 2.0},
        {"velocity.hidden_size": 8, "velocity.num_layers": 2, "velocity.activation": "tanh",
         "velocity.time_scale": 2.0},
    ),
    "energy": (
        point_task(EnergyTask, EnergyArguments),
        {"hidden_size": 8, "num_layers": 2, "activation": "tanh", "confinement": 0.5, "sample_sampler": "langevin",
         "sample_step_size": 0.02, "buffer_low": -5.0, "buffer_high": 4.5},
        {"model.hidden_size": 8, "model.num_layers": 2, "model.activation": "tanh", "model.confinement": 0.5,
         "scheduler.__class__": "LangevinScheduler", "scheduler.step_size": 0.02, "pipeline.start_low": -5.0,
         "pipeline.start_high": 4.5},
    ),
    "vae": (
        image_task(VAETask, VAEArguments),
        {"image_size": 8, "latent_dim": 3, "hidden_sizes": [16, 8], "activation": "tanh", "normalization": "layer",
         "likelihood": "gaussian", "observation_std": 0.5, "architecture": "conv", "conv_channels": [4, 8]},
        {"vae.image_size": 8, "vae.latent_dim": 3, "vae.hidden_sizes": [16, 8], "vae.activation": "tanh",
         "vae.normalization": "layer", "vae.likelihood": "gaussian", "vae.observation_std": 0.5,
         "vae.architecture": "conv", "vae.conv_channels": [4, 8]},
    ),
    "autoencoder": (
        image_task(VAETask, VAEArguments),
        {"model": "ae", "image_size": 8, "latent_dim": 3},
        {"autoencoder.__class__": "AutoEncoder", "autoencoder.latent_dim": 3},
    ),
    "rbm": (
        image_task(RBMTask, RBMArguments, size=4),
        {"image_size": 4, "num_hidden": 6, "weight_init_std": 0.5},
        {"model.num_hidden": 6, "model.num_visible": 16, "model.image_size": 4, "model.weight_init_std": 0.5},
    ),
    "image-flow-matching": (
        image_task(FlowMatchingImageTask, FlowMatchingImageArguments),
        {"image_size": 8, "block_out_channels": [8, 16], "layers_per_block": 3, "norm_num_groups": 4,
         "class_conditional": True, "num_classes": 10, "time_scale": 10.0, "solver": "heun"},
        {"unet.sample_size": 8, "unet.block_out_channels": [8, 16], "unet.layers_per_block": 3,
         "unet.norm_num_groups": 4, "unet.num_class_embeds": 11, "pipeline.time_scale": 10.0,
         "scheduler.__class__": "FlowMatchHeunScheduler"},
    ),
    "image-ddpm": (
        image_task(DDPMImageTask, DDPMImageArguments),
        {"image_size": 8, "block_out_channels": [8, 16], "norm_num_groups": 4, "num_train_timesteps": 10,
         "final_alpha_bar": 0.01, "variance_type": "beta", "sampler": "ddim", "eta": 0.5, "num_inference_steps": 4},
        {"unet.sample_size": 8, "scheduler.num_train_timesteps": 10, "scheduler.alpha": 0.01 ** (1 / 10),
         "scheduler.variance_type": "beta", "scheduler.sampler": "ddim", "scheduler.eta": 0.5},
    ),
    "classifier": (
        classifier_task,
        {"conv_channels": [4, 8], "hidden_size": 16, "dropout": 0.1},
        {"model.conv_channels": [4, 8], "model.hidden_size": 16, "model.dropout": 0.1, "model.image_size": 28},
    ),
}  # fmt: skip


def saved_settings(pipeline: Any) -> dict[str, Any]:
    """``"component.key"`` → value of every config entry of ``pipeline`` (a pipeline's own entries under
    ``pipeline.``, each component's class under ``component.__class__``); a bare model is the component ``model``."""
    components = pipeline.components if hasattr(pipeline, "components") else {"model": pipeline}
    settings = {}
    if hasattr(pipeline, "components"):
        settings |= {f"pipeline.{key}": value for key, value in pipeline.config.items() if not key.startswith("_")}
    for name, component in components.items():
        config = component.config.to_dict() if hasattr(component.config, "to_dict") else dict(component.config)
        settings[f"{name}.__class__"] = type(component).__name__
        settings |= {f"{name}.{key}": value for key, value in config.items()}
    return settings


def same_setting(saved: Any, expected: Any) -> bool:
    if isinstance(expected, float):
        return math.isclose(float(saved), expected, rel_tol=1e-12)
    if isinstance(expected, list):
        return list(saved) == expected
    if isinstance(expected, dict):  # a sub-dictionary of the saved one
        return all(saved.get(key) == value for key, value in expected.items())
    return saved == expected


@pytest.mark.parametrize("family", list(CONFIG_WIRING))
def test_the_architecture_and_sampler_arguments_are_what_the_pipeline_saves(image_files, family):
    make_task, overrides, expected = CONFIG_WIRING[family]
    task = make_task(overrides, image_files)
    torch.manual_seed(0)
    settings = saved_settings(task.pipeline(**task.build_models()))
    wrong = {key: (settings.get(key, "<missing>"), value) for key, value in expected.items()
             if key not in settings or not same_setting(settings[key], value)}  # fmt: skip
    assert not wrong, f"saved vs asked: {wrong}"


# ---- the samples that validation and evaluation score are drawn with the run's sampling settings ----------------

SMALL = {"hidden_size": 8, "num_layers": 1}
#: (task from (overrides, image files), arguments, the draw the run must make: (pipeline, n, generator) → samples)
SAMPLING_WIRING = {
    "flow-matching": (
        point_task(FlowMatchingTask, FlowMatchingArguments),
        {**SMALL, "num_inference_steps": 3},
        lambda pipe, n, g: pipe(n, 3, generator=g).samples,
    ),
    "ddpm": (
        point_task(DDPMPointsTask, DDPMPointsArguments),
        {**SMALL, "num_train_timesteps": 8, "num_inference_steps": 3},
        lambda pipe, n, g: pipe(n, 3, generator=g).samples,
    ),
    "score-sde": (
        point_task(ScoreSDETask, ScoreSDEArguments),
        {**SMALL, "num_inference_steps": 3, "sampler": "predictor_corrector"},
        lambda pipe, n, g: pipe(n, 3, sampler="predictor_corrector", generator=g).samples,
    ),
    "density-cnf": (
        point_task(density_task, DensityArguments),
        {**SMALL, "model": "cnf", "num_inference_steps": 3},
        lambda pipe, n, g: pipe(n, 3, generator=g).samples,
    ),
    "energy": (
        point_task(EnergyTask, EnergyArguments),
        {**SMALL, "num_sample_steps": 3},
        lambda pipe, n, g: pipe(n, 3, generator=g).samples,
    ),
    "rbm": (
        image_task(RBMTask, RBMArguments, size=4),
        {"image_size": 4, "num_hidden": 6, "num_sample_steps": 3},
        lambda pipe, n, g: pipe(n, 3, generator=g).images,
    ),
    "image-flow-matching": (
        image_task(FlowMatchingImageTask, FlowMatchingImageArguments),
        {"image_size": 8, "block_out_channels": [8, 16], "norm_num_groups": 4, "num_inference_steps": 3,
         "class_conditional": True, "guidance_scale": 2.0},
        lambda pipe, n, g: pipe(n, 3, generator=g, class_labels=torch.arange(n) % 10, guidance_scale=2.0).images,
    ),
    "image-ddpm": (
        image_task(DDPMImageTask, DDPMImageArguments),
        {"image_size": 8, "block_out_channels": [8, 16], "norm_num_groups": 4, "num_train_timesteps": 10,
         "num_inference_steps": 3},
        lambda pipe, n, g: pipe(n, 3, generator=g).images,
    ),
}  # fmt: skip


@pytest.mark.parametrize("family", list(SAMPLING_WIRING))
def test_validation_and_evaluation_samples_are_drawn_with_the_run_s_sampling_settings(image_files, family):
    make_task, overrides, draw = SAMPLING_WIRING[family]
    task = make_task(overrides, image_files)
    torch.manual_seed(0)
    pipeline = task.pipeline(**task.build_models())
    pipeline.set_progress_bar_config(disable=True)
    samples = task.sample(pipeline, 4, seeded(5))
    assert torch.equal(samples, draw(pipeline, 4, seeded(5)).cpu())
    # the pipeline's own defaults give other samples: the settings matter
    assert not torch.equal(samples, pipeline(4, generator=seeded(5))[0].cpu())


# ---- each training setting reaches the batches and the loss -------------------------------------------------------


def test_the_flow_matching_batches_use_the_run_s_coupling_sigma_and_time_law(tmp_path):
    args = replace(tiny_args(tmp_path), coupling="sinkhorn", sigma=0.7, path="brownian", time_beta=0.4, seed=3)
    task = FlowMatchingTask(args)
    with task.batches(start=2, stream=1) as batches:
        x0, x1, t, _ = next(batches)

    def pairs(coupling="sinkhorn", sigma=0.7, time_beta=0.4):
        stream = CoupledPairs(
            task.source, task.target, 32, coupling, seed=3, time_beta=time_beta, stream=1, sigma=sigma
        )
        return stream.draw(2)[:3]

    for got, expected in zip((x0, x1, t), pairs(), strict=True):
        assert torch.equal(got, expected)
    # σ = 1, independent pairs or uniform times give other batches: each setting is seen
    assert not torch.equal(x0, pairs(sigma=1.0)[0]) and not torch.equal(x0, pairs(coupling="independent")[0])
    assert not torch.equal(t, pairs(time_beta=1.0)[2])
    # the loss is the CFM loss on the Brownian bridge of the run's σ
    model = TimeMLP(dim=2, hidden_size=8, num_layers=1)
    loss = task.loss(model, (x0, x1, t, seeded(1)), torch.device("cpu"))
    assert torch.equal(loss, cfm_loss(model, x0, x1, BrownianBridgePath(sigma=0.7), t=t, generator=seeded(1)))
    assert not torch.equal(loss, cfm_loss(model, x0, x1, BrownianBridgePath(sigma=1.0), t=t, generator=seeded(1)))


def test_the_score_batches_draw_their_times_from_the_run_s_time_law():
    args = ScoreSDEArguments(output_dir="unused", time_beta=0.4, sampling_eps=0.01, train_batch_size=16, seed=3)
    task = ScoreSDETask(args)
    with task.batches(start=2, stream=1) as batches:
        batch = next(batches)

    def draw(time_beta):
        return NoisedScoreBatches(task.target, task.scheduler, 16, time_beta=time_beta, seed=3, stream=1).draw(2)

    for got, expected in zip(batch, draw(0.4), strict=True):
        assert torch.equal(got, expected)
    assert not torch.equal(batch[1], draw(1.0)[1])


@pytest.mark.parametrize("weighting", ["inverse_gamma", "none"])
def test_the_bridge_regresses_on_num_trajectories_chains_with_the_run_s_weighting(weighting):
    args = SchrodingerBridgeArguments(output_dir="unused", num_steps=4, num_trajectories=30, loss_weighting=weighting,
                           train_batch_size=8, hidden_size=8, num_layers=1)  # fmt: skip
    task = SchrodingerBridgeTask(args)
    models = task.build_models()
    with task.batches(start=0, stream=0, phase=0) as batches:
        batch = next(batches)
    inputs, timesteps = batches.cache[:2]
    assert inputs.shape == (4 * 30, 2)  # N steps of the 30 chains of the cache
    if weighting == "inverse_gamma":
        assert len(batch) == 4
        assert torch.equal(batches.cache[3], step_weights(task.scheduler, timesteps, batches.direction))
    else:
        assert len(batch) == 3
    model = models[batches.direction]
    assert torch.equal(task.loss(model, batch, torch.device("cpu")), mean_matching_loss(model, *batch))


#: the CNF training settings as ``cnf_nll_loss`` takes them, and their defaults there
CNF_OPTIONS = {
    "solver": ("solver", "rk4"),
    "num_ode_steps": ("num_steps", 8),
    "divergence": ("divergence_method", "exact"),
}


@pytest.mark.parametrize(
    "settings",
    [{"solver": "euler", "num_ode_steps": 3, "divergence": "hutchinson"}, {"solver": "dopri5", "ode_tolerance": 1e-2}],
)
def test_the_cnf_loss_integrates_with_the_run_s_solver_steps_tolerance_and_divergence(settings):
    args = DensityArguments(output_dir="unused", model="cnf", hidden_size=8, num_layers=1, train_batch_size=16,
                            **settings)  # fmt: skip
    task = density_task(args)
    torch.manual_seed(0)
    model = task.build_model()
    with torch.no_grad():  # a velocity with curvature, so that every solver setting changes the integral
        for parameter in model.parameters():
            parameter.mul_(3)
    loss = task.loss(model, task.batch(0, 0), torch.device("cpu")).detach()

    def nll(**options):
        points, generator = task.batch(0, 0)
        velocity = lambda x, t: model(x, t, return_dict=False)[0]  # noqa: E731
        normal = lambda z: -0.5 * z.square().sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)  # noqa: E731
        return cnf_nll_loss(velocity, points, normal, generator=generator, **options).detach()

    asked = {CNF_OPTIONS[name][0]: getattr(args, name) for name in CNF_OPTIONS}
    asked |= {"rtol": args.ode_tolerance, "atol": args.ode_tolerance}
    torch.testing.assert_close(loss, nll(**asked))
    for name in settings:  # each setting, put back to its default, gives another loss
        default = {"rtol": 1e-5, "atol": 1e-5} if name == "ode_tolerance" else dict([CNF_OPTIONS[name]])
        assert abs(float(loss - nll(**(asked | default)))) > 1e-3, name


# ---- the optimisation arguments reach the optimizer, the schedule, the EMA, the clipping and the accumulation ----


def test_the_optimisation_arguments_reach_the_optimizer_schedule_ema_clipping_and_accumulation(tmp_path):
    args = replace(tiny_args(tmp_path), learning_rate=3e-3, adam_beta1=0.8, adam_beta2=0.95, adam_weight_decay=0.1,
                   lr_scheduler="linear", lr_warmup_steps=2, max_train_steps=6, ema_decay=0.7, max_grad_norm=0.5,
                   gradient_accumulation_steps=2, validation_steps=0, checkpointing_steps=0)  # fmt: skip
    task = FlowMatchingTask(args)
    trainer = Trainer(task)
    clipped, micro_batches = [], []
    clip, loss = trainer.accelerator.clip_grad_norm_, task.loss

    def clip_and_record(parameters, max_norm):
        clipped.append(max_norm)
        return clip(parameters, max_norm)

    def count_and_loss(*inputs):
        micro_batches.append(inputs[1])
        return loss(*inputs)

    trainer.accelerator.clip_grad_norm_, task.loss = clip_and_record, count_and_loss
    trainer.train()
    trainer.end()
    group = trainer.optimizer.optimizer.param_groups[0]
    assert group["initial_lr"] == 3e-3 and group["betas"] == (0.8, 0.95) and group["weight_decay"] == 0.1
    # linear warm-up over 2 steps, then linear decay to 0 at step 6
    factors = [trainer.lr_schedule.scheduler.lr_lambdas[0](k) for k in range(7)]
    assert factors == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert trainer.ema.decay == 0.7
    # 6 optimizer steps of 2 micro-batches each, the gradient clipped to norm 0.5 at each step
    assert len(micro_batches) == 12 and clipped == [0.5] * 6
    assert all(int(state["step"]) == 6 for state in trainer.optimizer.optimizer.state.values())


# ---- the scripts evaluate with the sample sizes they are given ----------------------------------------------------

#: family → flags beside its SEED_RUNS ones (the last of a repeated flag wins), and the sizes of the final evaluation
EVALUATION_RUNS = {
    "ddpm": ([], (32, 0)),
    "score-sde": (["--num_nll_samples", "4"], (32, 4)),
    "density-gmm": ([], (32, 8)),
    "vae": (["--num_nll_images", "4", "--num_importance_samples", "2", "--quadrature_grid_size", "0"], (8, 4)),
    "image-flow-matching": ([], (4, 0)),
    "image-ddpm": ([], (4, 0)),
}


@pytest.mark.parametrize("family", list(EVALUATION_RUNS))
def test_the_scripts_evaluate_with_the_sample_sizes_they_are_given(monkeypatch, tmp_path, image_files, family):
    script, flags = SEED_RUNS[family]
    extra, expected = EVALUATION_RUNS[family]
    flags = [item for flag in [*flags, *extra] for item in image_files.get(flag, [flag])]
    sizes = []
    evaluate = Trainer.evaluate_pipeline

    def record_and_evaluate(trainer, pipeline, num_samples, num_likelihood_points, seed):
        sizes.append((num_samples, num_likelihood_points, seed))
        return evaluate(trainer, pipeline, num_samples, num_likelihood_points, seed)

    monkeypatch.setattr(Trainer, "evaluate_pipeline", record_and_evaluate)
    train_with_script(monkeypatch, script, [*short_flags(script), *flags, "--output_dir", str(tmp_path / "run")])
    assert sizes == [(*expected, 1)]  # no validation in these runs: the one evaluation is the final one, seed 1
