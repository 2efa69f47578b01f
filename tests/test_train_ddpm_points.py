"""Constant-α DDPM training (hfgen.training.ddpm_points, training/train_ddpm.py): arguments, the ε-prediction
batches and loss, a tiny run's outputs and card, exact resume, and the script end to end."""

import json
import math

import factories
import pytest
import torch
import yaml
from factories import train_task
from huggingface_hub import ModelCard
from training_runs import assert_resumed_run_is_exact, launch

from hfgen import DDPMPointsPipeline
from hfgen.arguments.ddpm_points import DEFAULT_ALPHA
from hfgen.data import get_toy_distribution
from hfgen.methods.ddpm import epsilon_loss
from hfgen.training import DDPMPointsArguments, DDPMPointsTask, parse_arguments, run
from hfgen.training.ddpm_points import NoisedBatches
from hfgen.utils import batch_generator


def tiny_args(output_dir, **overrides) -> DDPMPointsArguments:
    """Arguments of a 6-step run (T = 8, every step sampled) with checkpoints and validation every 3 steps."""
    return factories.tiny_args(
        output_dir, DDPMPointsArguments, **{"num_train_timesteps": 8, "num_inference_steps": None, **overrides}
    )


def train(args):
    return train_task(DDPMPointsTask(args))


# ---------------------------------------------------------------------------------------------- arguments


def test_the_schedule_comes_from_alpha_or_from_the_final_alpha_bar():
    assert DDPMPointsArguments().schedule_alpha() == DEFAULT_ALPHA
    assert DDPMPointsArguments(alpha=0.9).noise_scheduler().config.alpha == 0.9
    args = DDPMPointsArguments(num_train_timesteps=50, final_alpha_bar=1e-3)
    assert args.schedule_alpha() ** 50 == pytest.approx(1e-3)
    scheduler = args.noise_scheduler()
    assert float(scheduler.alpha_bar(50)) == pytest.approx(1e-3) and len(scheduler) == 50


def test_the_network_reads_the_integer_step_or_t_over_T_for_fourier_features():
    small = {"num_train_timesteps": 50, "hidden_size": 8, "num_layers": 1}
    assert DDPMPointsTask(DDPMPointsArguments(**small)).build_model().config.time_scale == 1.0
    fourier = DDPMPointsTask(DDPMPointsArguments(time_embedding="fourier", **small)).build_model()
    assert fourier.config.time_scale == pytest.approx(1 / 50)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "spiral"], "spiral"),
        (["--alpha", "1.0"], r"`alpha` must be in the open interval \(0, 1\), got 1.0"),
        (["--final_alpha_bar", "0"], "final_alpha_bar"),
        (["--alpha", "0.9", "--final_alpha_bar", "0.01"], "not both"),
        (["--num_train_timesteps", "0"], "num_train_timesteps"),
        (["--variance_type", "fixed_large"], "variance_type"),
        (["--sampler", "euler"], "sampler"),
        (["--eta", "0.5"], "sampler='ddim' only"),
        (["--sampler", "ddim", "--eta", "2"], "eta"),
        (["--num_train_timesteps", "10", "--num_inference_steps", "11"], r"num_inference_steps.*1 … 10"),
        (["--time_embedding", "learned"], "time_embedding"),
        (["--num_eval_samples", "0"], "num_eval_samples"),
        (["--push_to_hub"], "hub_model_id"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments(DDPMPointsArguments, argv)


def test_evaluation_size_is_run_only_and_the_schedule_decides_the_weights():
    args = DDPMPointsArguments()
    assert "num_eval_samples" not in args.trained_config()
    assert {"alpha", "final_alpha_bar", "num_train_timesteps", "dataset"} <= set(args.trained_config())


# ------------------------------------------------------------------------------------- batches and loss


def test_batch_k_is_a_pure_function_of_seed_stream_and_k_and_follows_the_forward_process():
    target = get_toy_distribution("8gaussians")
    scheduler = DDPMPointsArguments(num_train_timesteps=12, alpha=0.8).noise_scheduler()
    stream = NoisedBatches(target, scheduler, batch_size=64, seed=5, stream=1)
    first = [next(stream) for _ in range(3)]
    resumed = next(NoisedBatches(target, scheduler, batch_size=64, seed=5, stream=1, start=2))
    assert all(torch.equal(a, b) for a, b in zip(first[2], resumed, strict=True))
    assert not torch.equal(first[0][0], first[1][0])
    # rebuild batch 1 by hand: x_0 from the batch generator, then t ~ U{1 … T}, z ~ N(0, I)
    g = batch_generator(5, 1, 1)
    x0 = target.sample(64, g)
    noisy, t, z = first[1]
    assert t.dtype == torch.long and int(t.min()) >= 1 and int(t.max()) <= 12
    a = (0.8 ** t.double()).float()[:, None]
    torch.testing.assert_close(noisy, a.sqrt() * x0 + (1 - a).sqrt() * z)


def test_the_loss_is_the_mean_squared_norm_of_the_noise_error_and_zero_for_the_exact_noise():
    class Echo(torch.nn.Module):  # predicts ε̂ = x_t + t, so the loss has a closed form
        def forward(self, sample, timestep, return_dict=True):
            return (sample + timestep[:, None].to(sample.dtype),)

    noisy = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    t = torch.tensor([1, 3])
    noise = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # errors: (1 + 1 − 1, 2 + 1 − 1) = (1, 2) and (3, 2): mean of 5 and 13
    assert epsilon_loss(Echo(), noisy, t, noise).item() == pytest.approx(9.0)
    assert epsilon_loss(Echo(), noisy, t, noisy + t[:, None]).item() == 0.0


def test_training_drives_the_loss_below_that_of_the_best_constant_predictor():
    # Var z = 1 per coordinate, so predicting the constant E z = 0 costs E‖z‖² = 2; a network that uses x_t does better.
    args = tiny_args("unused", num_train_timesteps=20, alpha=0.8, hidden_size=16, num_layers=2)
    task = DDPMPointsTask(args)
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = NoisedBatches(task.target, task.scheduler, 256)
    for _ in range(200):
        loss = task.loss(model, next(batches), torch.device("cpu"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = [task.loss(model, next(batches), torch.device("cpu")).item() for _ in range(5)]
    assert sum(held_out) / 5 < 1.6


# ------------------------------------------------------------------------------------------------- runs


def test_a_tiny_run_writes_a_loadable_pipeline_plots_metrics_and_a_card_that_round_trips(tmp_path):
    args = tiny_args(tmp_path, final_alpha_bar=0.05)
    metrics = run(DDPMPointsTask(args))
    for name in ("model_index.json", "model/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "README.md", "metrics.json", "args.json", "samples.png", "forward.png", "reverse.png",
                 "validation/step-0000003-samples.png", "validation/step-0000006-reverse.png"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["samples_w2"] == metrics["samples_w2"] and saved["train_steps"] == 6
    assert saved["samples_w2_ratio"] == pytest.approx(saved["samples_w2"] / saved["samples_w2_floor"])
    assert [r["step"] for r in saved["validation"]] == [3, 6]

    pipe = DDPMPointsPipeline.from_pretrained(tmp_path)
    assert pipe.scheduler.config.alpha == pytest.approx(0.05 ** (1 / 8))
    assert pipe.model.config.hidden_size == 8 and pipe.model.config.time_scale == 1.0
    pipe.set_progress_bar_config(disable=True)
    assert pipe(num_samples=5, generator=torch.Generator().manual_seed(0)).samples.shape == (5, 2)

    card = ModelCard.load(tmp_path / "README.md")
    front_matter = (tmp_path / "README.md").read_text().split("---")[1]
    assert yaml.safe_load(front_matter)["library_name"] == "diffusers"
    assert card.data.library_name == "diffusers" and "ddpm" in card.data.tags
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["wasserstein-2"] == pytest.approx(saved["samples_w2"], abs=1e-6)
    assert values["wasserstein-2-floor"] == pytest.approx(saved["samples_w2_floor"], abs=1e-6)
    assert values["wasserstein-2-over-floor"] == pytest.approx(saved["samples_w2_ratio"], abs=1e-6)
    assert values["fraction-in-support"] == pytest.approx(saved["samples_fraction_in_support"], abs=1e-6)
    text = card.text
    assert f'DDPMPointsPipeline.from_pretrained("{tmp_path.name}")' in text and str(tmp_path) not in text
    assert "ᾱ_t = α^t" in text and "T = 8 steps" in text and "ᾱ_T = 0.05" in text
    assert f"| W2 / floor | {saved['samples_w2_ratio']:.2f} |" in text
    assert "Trained for 6 optimizer steps" in text and "| final_alpha_bar | 0.05 |" in text


def test_a_run_resumed_at_step_k_ends_bit_for_bit_where_the_uninterrupted_run_ends(tmp_path):
    args = tiny_args(tmp_path / "full", validation_steps=0)
    assert_resumed_run_is_exact(train, args, tmp_path, "model", another_seed=True)


def test_the_script_trains_and_evaluates_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = ["--output_dir", str(out), "--dataset", "moons", "--max_train_steps", "10", "--num_train_timesteps", "10",
            "--hidden_size", "16", "--num_layers", "2", "--train_batch_size", "64", "--num_eval_samples", "100",
            "--validation_steps", "5", "--num_validation_samples", "50", "--checkpointing_steps", "5",
            "--report_to", "none"]  # fmt: skip
    launch("train_ddpm.py", *argv)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 10 and metrics["samples_seen"] == 640
    assert "samples_fraction_in_support" not in metrics  # moons has no bounded support
    assert math.isfinite(metrics["samples_w2"]) and [r["step"] for r in metrics["validation"]] == [5, 10]
    assert (out / "checkpoints" / "checkpoint-10" / "ema.safetensors").is_file()
    assert json.loads((out / "args.json").read_text())["dataset"] == "moons"
    assert ModelCard.load(out / "README.md").data.target_distribution == "moons"


# ------------------------------------------------------------------------------- general β schedules


def test_the_default_schedule_is_the_constant_alpha_one_and_others_are_diffusers_schedulers():
    from diffusers import DDIMScheduler, DDPMScheduler

    from hfgen import ConstantAlphaDDPMScheduler

    assert DDPMPointsArguments().beta_schedule == "constant_alpha"
    assert isinstance(DDPMPointsArguments().noise_scheduler(), ConstantAlphaDDPMScheduler)
    linear = DDPMPointsArguments(beta_schedule="linear", num_train_timesteps=50, beta_end=0.05).noise_scheduler()
    assert isinstance(linear, DDPMScheduler) and linear.config.variance_type == "fixed_small"
    assert not linear.config.clip_sample and linear.config.prediction_type == "epsilon"
    torch.testing.assert_close(linear.betas, torch.linspace(1e-4, 0.05, 50))
    large = DDPMPointsArguments(beta_schedule="scaled_linear", variance_type="beta").noise_scheduler()
    assert large.config.variance_type == "fixed_large" and large.config.beta_schedule == "scaled_linear"
    ddim = DDPMPointsArguments(beta_schedule="squaredcos_cap_v2", sampler="ddim").noise_scheduler()
    assert isinstance(ddim, DDIMScheduler) and ddim.config.beta_schedule == "squaredcos_cap_v2"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--beta_schedule", "sigmoid"], "beta_schedule"),
        (["--beta_schedule", "linear", "--alpha", "0.9"], "`alpha` applies to beta_schedule='constant_alpha'"),
        (["--beta_schedule", "linear", "--final_alpha_bar", "0.01"], "final_alpha_bar"),
        (["--beta_schedule", "linear", "--sampler", "ddim", "--eta", "0.5"], "`eta` applies"),
        (["--beta_schedule", "linear", "--beta_start", "0.1", "--beta_end", "0.01"], "beta_start"),
    ],
)
def test_bad_schedule_arguments_are_refused(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments(DDPMPointsArguments, argv)


def test_batches_with_a_diffusers_schedule_follow_its_forward_process():
    target = get_toy_distribution("8gaussians")
    scheduler = DDPMPointsArguments(beta_schedule="squaredcos_cap_v2", num_train_timesteps=12).noise_scheduler()
    noisy, tau, z = NoisedBatches(target, scheduler, batch_size=4_000, seed=2).draw(0)
    x0 = target.sample(4_000, batch_generator(2, 0, 0))
    assert tau.dtype == torch.long and int(tau.min()) == 0 and int(tau.max()) == 11  # diffusers' index τ = t − 1
    a = scheduler.alphas_cumprod[tau][:, None]
    torch.testing.assert_close(noisy, a.sqrt() * x0 + (1 - a).sqrt() * z)


def test_a_tiny_run_with_a_cosine_schedule_saves_a_diffusers_scheduler(tmp_path):
    from diffusers import DDPMScheduler

    args = tiny_args(tmp_path, beta_schedule="squaredcos_cap_v2", validation_steps=0, checkpointing_steps=0)
    run(DDPMPointsTask(args))
    for name in ("samples.png", "forward.png", "reverse.png", "README.md"):
        assert (tmp_path / name).is_file(), name
    pipe = DDPMPointsPipeline.from_pretrained(tmp_path)
    assert isinstance(pipe.scheduler, DDPMScheduler) and pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    pipe.set_progress_bar_config(disable=True)
    out = pipe(num_samples=5, generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert out.samples.shape == (5, 2) and out.timesteps == list(range(8, -1, -1))
    text = ModelCard.load(tmp_path / "README.md").text
    assert "squaredcos_cap_v2" in text and "| beta_schedule | squaredcos_cap_v2 |" in text
