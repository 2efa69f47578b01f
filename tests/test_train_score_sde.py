"""Score SDE training (hfgen.training.score_sde, training/train_score.py): arguments, the noised batch stream and the
denoising score matching loss against closed forms, a tiny run's outputs and card, exact resume, the script."""

import json
import math

import factories
import pytest
import torch
import yaml
from factories import ExactMixtureScore, train_task
from huggingface_hub import ModelCard
from training_runs import assert_resumed_run_is_exact, launch

from hfgen import ScoreSDEPipeline, VESDEScheduler, VPSDEScheduler
from hfgen.cli.parser import parse_arguments
from hfgen.data import get_toy_distribution
from hfgen.methods.flow_matching import sample_times
from hfgen.training.engine import HELD_OUT_SEED
from hfgen.training.score_sde import NoisedScoreBatches, ScoreSDEArguments, ScoreSDETask
from hfgen.training.trainer import run
from hfgen.utils import batch_generator


def tiny_args(output_dir, **overrides) -> ScoreSDEArguments:
    """The shared 6-step run (tests/factories.py) for a score SDE, with 5 sampler steps."""
    return factories.tiny_args(output_dir, ScoreSDEArguments, **{"num_inference_steps": 5, **overrides})


def train(args):
    return train_task(ScoreSDETask(args))


# ---------------------------------------------------------------------------------------------- arguments


def test_the_sde_comes_from_the_arguments():
    vp = ScoreSDEArguments(beta_min=0.2, beta_max=8.0, sampling_eps=1e-2).noise_scheduler()
    assert isinstance(vp, VPSDEScheduler) and vp.config.beta_max == 8.0 and vp.config.sampling_eps == 1e-2
    ve = ScoreSDEArguments(sde="ve", sigma_max=5.0, prediction_type="score").noise_scheduler()
    assert isinstance(ve, VESDEScheduler) and ve.prior_std == 5.0 and ve.config.prediction_type == "score"
    assert "num_nll_samples" not in ScoreSDEArguments().trained_config()
    assert {"sde", "beta_max", "time_beta", "dataset"} <= set(ScoreSDEArguments().trained_config())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "spiral"], "spiral"),
        (["--sde", "subvp"], "`sde` must be one of"),
        (["--sampler", "ode"], "`sampler` must be one of"),
        (["--time_beta", "0"], "time_beta"),
        (["--prediction_type", "v"], "prediction_type"),
        (["--beta_max", "0.01"], "beta_max"),
        (["--sampling_eps", "1.5"], "sampling_eps"),
        (["--num_inference_steps", "0"], "num_inference_steps"),
        (["--num_nll_samples", "-1"], "num_nll_samples"),
        (["--time_embedding", "learned"], "time_embedding"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments(ScoreSDEArguments, argv)


# ------------------------------------------------------------------------------------- batches and loss


def test_batch_k_is_a_pure_function_of_seed_stream_and_k_and_follows_the_forward_marginal():
    target = get_toy_distribution("8gaussians")
    scheduler = VPSDEScheduler(sampling_eps=1e-2)
    stream = NoisedScoreBatches(target, scheduler, batch_size=64, time_beta=0.5, seed=5, stream=1)
    first = [next(stream) for _ in range(3)]
    resumed = next(NoisedScoreBatches(target, scheduler, batch_size=64, time_beta=0.5, seed=5, stream=1, start=2))
    assert all(torch.equal(a, b) for a, b in zip(first[2], resumed, strict=True))
    assert not torch.equal(first[0][0], first[1][0])
    # rebuild batch 1 by hand: x_0, then t = ε + (1 − ε)(1 − u) with u ~ Beta(1, b), then z, x_t = m_t x_0 + σ_t z
    g = batch_generator(5, 1, 1)
    x0 = target.sample(64, g)
    u = sample_times(64, g, 0.5, dtype=torch.float64)
    noisy, t, z = first[1]
    torch.testing.assert_close(t, (1e-2 + (1 - 1e-2) * (1 - u)).float())
    m, s = scheduler.marginal_coefficients(t)
    torch.testing.assert_close(noisy, m.float()[:, None] * x0 + s.float()[:, None] * z)


def test_time_law_is_uniform_for_b_one_and_favours_the_data_for_b_below_one():
    target, scheduler = get_toy_distribution("gaussian"), VPSDEScheduler()
    uniform = NoisedScoreBatches(target, scheduler, batch_size=40_000, time_beta=1.0).draw(0)[1].double()
    assert float(uniform.min()) >= 1e-3 and float(uniform.max()) <= 1.0
    assert float(uniform.mean()) == pytest.approx((1 + 1e-3) / 2, abs=5e-3)
    # b = 1/2: 1 − t ~ Beta(1, 1/2) (up to the affine map onto [ε, 1]), so E[1 − t] = 1/(1 + 1/2) · (1 − ε)
    near = NoisedScoreBatches(target, scheduler, batch_size=40_000, time_beta=0.5).draw(0)[1].double()
    assert float(1 - near.mean()) == pytest.approx((1 - 1e-3) * 2 / 3, abs=5e-3)


def test_the_loss_of_the_exact_noise_predictor_of_gaussian_data_is_d_times_the_mean_signal_fraction():
    # x_0 ~ N(0, I) under the VP SDE: x_t ~ N(0, I), ε*(x_t) = σ_t x_t and E‖ε* − z‖² = D (1 − σ_t²) = D m_t²,
    # so the task's loss averages D m_t² over the training times.
    args = ScoreSDEArguments(dataset="gaussian", time_beta=1.0, train_batch_size=20_000)
    task = ScoreSDETask(args)
    sde = {"beta_min": args.beta_min, "beta_max": args.beta_max}
    oracle = ExactMixtureScore([[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]], [1.0], sde_kwargs=sde).float()
    with task.batches(start=0, stream=0) as batches:
        losses = [task.loss(oracle, next(batches), torch.device("cpu")).item() for _ in range(5)]
    t = torch.linspace(1e-3, 1.0, 200_001, dtype=torch.float64)
    expected = 2 * torch.trapezoid(task.scheduler.marginal_coefficients(t)[0] ** 2, t) / (1 - 1e-3)
    assert sum(losses) / 5 == pytest.approx(float(expected), rel=0.02)


def test_the_score_and_epsilon_parametrisations_give_the_same_loss():
    # σ_t² ‖s + z/σ_t‖² with s = −ε̂/σ_t is ‖ε̂ − z‖²: the same network read both ways, same number.
    class Fixed(torch.nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, sample, timestep, return_dict=True):
            return (self.scale(timestep)[:, None].to(sample) * torch.tanh(sample),)

    task_eps = ScoreSDETask(ScoreSDEArguments(prediction_type="epsilon"))
    task_score = ScoreSDETask(ScoreSDEArguments(prediction_type="score"))
    batch = next(NoisedScoreBatches(task_eps.target, task_eps.scheduler, 256, seed=3))
    std = lambda t: task_eps.scheduler.marginal_coefficients(t)[1]  # noqa: E731
    as_eps = task_eps.loss(Fixed(lambda t: torch.ones_like(t)), batch, torch.device("cpu"))
    as_score = task_score.loss(Fixed(lambda t: -1 / std(t)), batch, torch.device("cpu"))
    noisy, _, noise = batch
    assert as_eps.item() == pytest.approx((torch.tanh(noisy) - noise).square().sum(1).mean().item(), rel=1e-6)
    assert as_score.item() == pytest.approx(as_eps.item(), rel=1e-5)


# ------------------------------------------------------------------------------------------------- runs


def test_a_tiny_run_writes_a_loadable_pipeline_plots_metrics_and_a_card_that_round_trips(tmp_path):
    args = tiny_args(tmp_path, dataset="8gaussians", num_nll_samples=20, num_validation_nll_samples=10)
    metrics = run(ScoreSDETask(args))
    for name in ("model_index.json", "score_model/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "README.md", "metrics.json", "samples.png", "trajectory.png",
                 "score_field.png", "density.png", "validation/step-0000003-samples.png",
                 "validation/step-0000006-trajectory.png"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["samples_w2"] == metrics["samples_w2"] and saved["train_steps"] == 6
    assert saved["entropy"] == pytest.approx(get_toy_distribution("8gaussians").entropy)
    assert saved["nll_minus_entropy"] == pytest.approx(saved["nll"] - saved["entropy"])
    assert [r["step"] for r in saved["validation"]] == [3, 6] and "nll" in saved["validation"][0]

    pipe = ScoreSDEPipeline.from_pretrained(tmp_path)
    assert isinstance(pipe.scheduler, VPSDEScheduler) and pipe.score_model.config.hidden_size == 8
    pipe.set_progress_bar_config(disable=True)
    assert pipe(num_samples=5, num_inference_steps=4, generator=torch.Generator().manual_seed(0)).samples.shape == (
        5,
        2,
    )

    card = ModelCard.load(tmp_path / "README.md")
    front_matter = (tmp_path / "README.md").read_text().split("---")[1]
    assert yaml.safe_load(front_matter)["library_name"] == "diffusers"
    assert "score-sde" in card.data.tags and card.data.target_distribution == "8gaussians"
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["wasserstein-2"] == pytest.approx(saved["samples_w2"], abs=1e-6)
    assert values["nll-minus-entropy"] == pytest.approx(saved["nll_minus_entropy"], abs=1e-6)
    text = card.text
    assert f'ScoreSDEPipeline.from_pretrained("{tmp_path.name}")' in text and "variance preserving" in text
    assert f"| NLL − entropy | {saved['nll_minus_entropy']:.4f} |" in text
    assert "Trained for 6 optimizer steps" in text and "| sde | vp |" in text


def test_a_run_resumed_at_step_k_ends_bit_for_bit_where_the_uninterrupted_run_ends(tmp_path):
    args = tiny_args(tmp_path / "full", validation_steps=0)
    assert_resumed_run_is_exact(train, args, tmp_path, "score_model", another_seed=True)


@pytest.mark.parametrize("sampler", ["predictor_corrector", "probability_flow"])
def test_validation_and_final_metrics_are_those_of_the_chosen_sampler(tmp_path, sampler):
    args = tiny_args(tmp_path, dataset="moons", sampler=sampler, validation_steps=6, checkpointing_steps=0)
    task = ScoreSDETask(args)
    metrics = run(task)
    pipe = ScoreSDEPipeline.from_pretrained(tmp_path)  # the EMA weights, which the step-6 validation scored too
    pipe.set_progress_bar_config(disable=True)

    def scores(num_samples, seed, which):
        """Metrics of the samples that ``which`` draws from ``seed`` (process 0's seed), as the run scores them."""
        generator = torch.Generator().manual_seed(seed)
        samples = pipe(num_samples, args.num_inference_steps, sampler=which, generator=generator).samples
        return task.score(samples, torch.Generator().manual_seed(HELD_OUT_SEED))

    final, validation = scores(args.num_eval_samples, 1, sampler), scores(args.num_validation_samples, 6, sampler)
    recorded = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["step"] for r in recorded["validation"]] == [6]
    for key, value in final.items():
        assert metrics[key] == recorded[key] == value, key
    for key, value in validation.items():
        assert recorded["validation"][0][key] == value, key
    # Euler–Maruyama from the same seeds gives other numbers: the check can tell the samplers apart
    assert scores(args.num_eval_samples, 1, "euler_maruyama")["samples_w2"] != final["samples_w2"]
    assert scores(args.num_validation_samples, 6, "euler_maruyama")["samples_w2"] != validation["samples_w2"]
    card = (tmp_path / "README.md").read_text()
    assert f"({sampler}, 5 steps)" in card and f'num_inference_steps=5, sampler="{sampler}",' in card  # usage draws so


@pytest.mark.parametrize("sampler", ["predictor_corrector", "probability_flow"])
def test_the_trajectory_figures_follow_the_chosen_sampler(monkeypatch, tmp_path, sampler):
    from hfgen import plotting

    drawn = []
    monkeypatch.setattr(plotting, "plot_trajectory", lambda trajectory, *args, **kwargs: drawn.append(trajectory))
    args = tiny_args(tmp_path, dataset="moons", sampler=sampler)
    task = ScoreSDETask(args)
    torch.manual_seed(0)
    pipe = task.pipeline(task.build_model())
    pipe.set_progress_bar_config(disable=True)
    figures = task.validation_figures(pipe, torch.zeros(10, 2))
    expected = pipe(500, 5, sampler=sampler, generator=torch.Generator().manual_seed(3), return_trajectory=True)
    assert "trajectory.png" in figures and len(drawn) == 1 and torch.equal(drawn[0], expected.trajectory)


def test_the_script_trains_and_evaluates_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = ["--output_dir", str(out), "--dataset", "moons", "--sde", "ve", "--max_train_steps", "10",
            "--hidden_size", "16", "--num_layers", "2", "--train_batch_size", "64", "--num_eval_samples", "100",
            "--num_inference_steps", "10", "--validation_steps", "5", "--num_validation_samples", "50",
            "--checkpointing_steps", "5", "--report_to", "none"]  # fmt: skip
    launch("train_score.py", *argv)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 10 and metrics["samples_seen"] == 640
    assert "nll" not in metrics  # moons is sample-only: no likelihood to score
    assert math.isfinite(metrics["samples_w2"]) and [r["step"] for r in metrics["validation"]] == [5, 10]
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "VESDEScheduler"
    assert ModelCard.load(out / "README.md").data.target_distribution == "moons"
