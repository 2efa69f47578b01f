"""hfgen.training.density and training/train_density.py: recipes, refusals, EM and KDE steps against their maths and
scikit-learn, the CNF's maximum-likelihood loss against a closed form, exact resume, outputs and the card."""

import json
import math
import shutil
from dataclasses import replace

import pytest
import torch
from factories import reset_accelerate
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from training_runs import launch

from hfgen.data.images import TEST_BINARIZATION_SEED, binarize_test_images
from hfgen.methods.cnf import cnf_log_prob, cnf_nll_loss
from hfgen.methods.kde import select_bandwidth
from hfgen.methods.mixtures import e_step, m_step
from hfgen.models.kde import rule_bandwidth
from hfgen.models.mixture import GaussianMixture
from hfgen.pipelines.density import DensityPipeline
from hfgen.pipelines.flow_matching import FlowMatchingPipeline
from hfgen.training.density import DensityArguments, density_task
from hfgen.training.density_closed_form import initialize_gmm
from hfgen.training.trainer import Trainer, run
from hfgen.utils import batch_generator

TINY = {
    "gmm": {"num_components": 3, "num_train_points": 300, "em_iterations": 6, "num_inits": 2},
    "kde": {"num_train_points": 200, "bandwidth_grid_size": 4, "cv_folds": 2},
    "made": {"hidden_sizes": [8], "num_components": 2, "max_train_steps": 6, "train_batch_size": 32},
    "coupling": {"num_couplings": 2, "hidden_size": 8, "num_layers": 1, "max_train_steps": 6, "train_batch_size": 32},
    "cnf": {"hidden_size": 8, "num_layers": 1, "max_train_steps": 6, "train_batch_size": 16, "num_ode_steps": 2},
}
QUIET = {
    "report_to": "none",
    "lr_warmup_steps": 2,
    "checkpointing_steps": 3,
    "validation_steps": 0,
    "num_eval_samples": 50,
    "num_nll_samples": 20,
    "num_validation_samples": 50,
    "num_validation_nll_samples": 0,
    "num_inference_steps": 4,
}


def tiny(model: str, out, **overrides) -> DensityArguments:
    return DensityArguments(model=model, output_dir=str(out), **{**QUIET, **TINY[model], **overrides})


def test_unset_arguments_take_the_models_recipe_and_set_ones_are_kept():
    gmm = DensityArguments(model="gmm")
    assert (gmm.num_components, gmm.num_train_points, gmm.em_iterations) == (8, 10_000, 100)
    assert DensityArguments(model="gmm", num_components=5).num_components == 5
    made_points = DensityArguments(model="made")
    made_images = DensityArguments(model="made", dataset_name="ylecun/mnist")
    assert made_points.num_train_points == 0 and made_points.hidden_sizes != made_images.hidden_sizes
    assert DensityArguments(model="kde").bandwidth == "cv"
    assert DensityArguments(model="made", max_train_steps=7).max_train_steps == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "gmm", "num_train_points": 5, "num_components": 8}, "`num_train_points`=5 is fewer than `num_co"),
        ({"model": "kde", "bandwidth": "0"}, "`bandwidth` must be a finite number > 0, got '0'"),
        ({"model": "kde", "bandwidth": "-0.5"}, "`bandwidth` must be a finite number > 0"),
        ({"model": "kde", "bandwidth": "wide"}, "`bandwidth` must be a number > 0, 'cv' or one of"),
        ({"model": "gmm", "dataset_name": "ylecun/mnist"}, "image data .* needs `model`='made'"),
        ({"model": "flow"}, "`model` must be one of"),
        ({"model": "made", "dataset": "nope"}, "unknown toy distribution 'nope'"),
        ({"model": "cnf", "divergence": "trace"}, "`divergence` must be one of"),
        ({"model": "coupling", "coupling_type": "additive"}, "`coupling_type` must be one of"),
        ({"model": "coupling", "num_bins": 1}, "`num_bins` must be an int >= 2, got 1"),
        ({"model": "coupling", "tail_bound": 0.0}, "`tail_bound` must be a finite number > 0, got 0.0"),
        ({"model": "coupling", "activation": "swish"}, "`activation` must be one of .*got 'swish'"),
        ({"model": "coupling", "linear_parametrization": "qr"}, "`linear_parametrization` must be one of"),
        ({"model": "coupling", "num_position_frequencies": -1}, "`num_position_frequencies` must be an int >= 0"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DensityArguments(**kwargs)


def test_the_coupling_recipe_is_a_spline_flow_and_the_affine_flow_stays_available(tmp_path):
    recipe = DensityArguments(model="coupling")
    assert (recipe.coupling_type, recipe.num_couplings, recipe.max_train_steps) == ("spline", 8, 2_000)
    assert (recipe.activation, recipe.num_bins, recipe.num_layers, recipe.learning_rate) == ("relu", 16, 3, 2e-3)
    assert recipe.invertible_linear and recipe.linear_parametrization == "lu" and recipe.num_position_frequencies == 3
    assert not recipe.unconditional_splines
    assert DensityArguments(model="cnf").activation == "silu"  # each model's recipe fills the shared argument
    spline = density_task(tiny("coupling", tmp_path, num_bins=5, tail_bound=2.0)).build_model()
    config = spline.config
    assert (config.coupling_type, config.num_bins, config.tail_bound, config.activation) == ("spline", 5, 2.0, "relu")
    assert (config.linear_parametrization, config.num_position_frequencies) == ("lu", 3)
    assert {type(layer).__name__ for layer in spline.layers} == {"ActNorm", "LULinear", "SplineCoupling"}
    options = {"linear_parametrization": "dense", "activation": "silu", "unconditional_splines": True}
    affine = density_task(tiny("coupling", tmp_path, coupling_type="affine", **options)).build_model()
    assert (affine.config.coupling_type, affine.config.activation) == ("affine", "silu")
    assert not affine.config.unconditional_splines  # a spline option: the affine flow has none
    assert {type(layer).__name__ for layer in affine.layers} == {"ActNorm", "InvertibleLinear", "AffineCoupling"}


def test_bad_data_is_refused_naming_the_argument(tmp_path):
    with pytest.raises(ValueError, match="`train_points` have dimension 3, but dataset '8gaussians' has 2"):
        density_task(tiny("made", tmp_path), {"train": torch.zeros(10, 3)})
    nan = torch.zeros(10, 2)
    nan[4, 1] = float("nan")
    with pytest.raises(ValueError, match="`train_points` has 1 of 10 rows with NaN"):
        density_task(tiny("made", tmp_path), {"train": nan})
    with pytest.raises(ValueError, match="`train_points` has 2 points, fewer than `num_components`=3"):
        density_task(tiny("gmm", tmp_path), {"train": torch.randn(2, 2)})
    images = {"train": torch.rand(4, 1, 2, 2) * 1.5, "test": torch.rand(4, 1, 2, 2)}
    with pytest.raises(ValueError, match="`train_images` must lie in \\[0, 1\\], got range"):
        density_task(tiny("made", tmp_path, dataset_name="ylecun/mnist"), images)


def test_an_em_step_is_the_e_step_then_the_m_step_and_the_likelihood_never_decreases(tmp_path):
    task = density_task(tiny("gmm", tmp_path, reg_covar=0.1))  # a regularisation far from the default 1e-6
    model = task.build_model()
    reference = GaussianMixture(3, 2, "full").double()
    reference.load_state_dict(model.state_dict())
    data = task.train.double()
    before = task.update(model, task.batch(0, 0), torch.device("cpu"))
    log_resp, log_prob = e_step(reference, data)
    unregularised = GaussianMixture(3, 2, "full").double()
    unregularised.load_state_dict(reference.state_dict())
    m_step(reference, data, log_resp, 0.1)
    m_step(unregularised, data, log_resp, 0.0)
    assert before.item() == pytest.approx(-log_prob.mean().item(), abs=1e-12)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=1e-12)
    # the M-step adds 0.1 I to every covariance
    torch.testing.assert_close(
        model.covariances - unregularised.covariances, 0.1 * torch.eye(2).double().expand(3, 2, 2)
    )
    for _ in range(10):
        task.update(model, task.batch(0, 0), torch.device("cpu"))
    history = task.em_history
    assert all(b >= a - 1e-12 for a, b in zip(history, history[1:], strict=False))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol = 0: it runs all 200 steps
def test_the_fitted_gmm_matches_scikit_learn_from_the_same_start(tmp_path):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    task = density_task(tiny("gmm", tmp_path, em_iterations=200))
    model = task.build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(200):
        task.update(model, task.batch(0, 0), torch.device("cpu"))
    model.load_state_dict(start)
    sk = SkGaussianMixture(
        3, weights_init=model.weights.detach().numpy(), means_init=model.means.detach().numpy(),
        precisions_init=torch.linalg.inv(model.covariances).detach().numpy(), max_iter=200, tol=0.0, reg_covar=1e-6,
    ).fit(task.train.double().numpy())  # fmt: skip
    ours = density_task(tiny("gmm", tmp_path, em_iterations=200))
    fitted = ours.build_model()
    for _ in range(200):
        ours.update(fitted, ours.batch(0, 0), torch.device("cpu"))
    with torch.no_grad():
        mean_log_lik = fitted.log_prob(task.train.double()).mean().item()
    assert mean_log_lik == pytest.approx(sk.score(task.train.double().numpy()), abs=1e-6)


def test_the_kde_step_stores_the_sample_and_picks_the_cross_validated_bandwidth(tmp_path):
    from sklearn.neighbors import KernelDensity as SkKernelDensity

    task = density_task(tiny("kde", tmp_path))
    model = task.build_model()
    score = task.update(model, task.batch(0, 0), torch.device("cpu"))
    assert torch.equal(model.data, task.train)
    scott = rule_bandwidth(task.train, "scott")
    grid = scott * torch.logspace(math.log10(0.1), math.log10(2.0), 4)
    selection = select_bandwidth(task.train, grid, 2, torch.Generator().manual_seed(0))
    expected = selection.bandwidth
    assert model.bandwidth == expected == task.state_dict()["bandwidth"].item()
    # the step returns minus the best 2-fold held-out score (5 folds, the default, score otherwise)
    assert score.item() == -selection.scores.max().item()
    five_folds = select_bandwidth(task.train, grid, 5, torch.Generator().manual_seed(0))
    assert abs(five_folds.scores.max().item() - selection.scores.max().item()) > 1e-6
    points = task.target.sample(30, torch.Generator().manual_seed(1)).double()
    sk = SkKernelDensity(bandwidth=expected).fit(task.train.double().numpy())
    model64 = density_task(tiny("kde", tmp_path, bandwidth=str(expected)), {"train": task.train.double()})
    kde64 = model64.build_model()
    model64.update(kde64, model64.batch(0, 0), torch.device("cpu"))
    expected = torch.from_numpy(sk.score_samples(points.numpy()))
    torch.testing.assert_close(kde64.log_prob(points), expected, rtol=0, atol=1e-6)


def test_the_gmm_starts_from_the_best_of_num_inits_k_means_plus_plus_seedings(tmp_path):
    task = density_task(tiny("gmm", tmp_path, num_inits=1, seed=5))
    model = task.build_model()
    for num_inits, same in ((1, True), (10, False)):  # the best of 10 seedings is another start here
        expected = GaussianMixture(3, 2, "full").double()
        initialize_gmm(expected, task.train.double(), num_inits, task.args.reg_covar, 5)
        assert torch.equal(model.means, expected.means) == same, num_inits


@pytest.mark.parametrize("binarize", ["dynamic", "threshold"])
def test_made_batches_on_images_follow_the_run_s_binarisation(tmp_path, binarize):
    generator = torch.Generator().manual_seed(0)
    grey = {"train": torch.rand(30, 1, 3, 3, generator=generator), "test": torch.rand(8, 1, 3, 3, generator=generator)}
    args = tiny("made", tmp_path, dataset_name="ylecun/mnist", image_size=3, binarize=binarize, train_batch_size=8)
    points, _ = density_task(args, grey).batch(3, 0)
    # rows drawn with replacement from batch 3's generator, then (dynamic) x ~ Bernoulli(p) from the same generator
    g = batch_generator(args.seed, 0, 3)
    rows = torch.randint(30, (8,), generator=g)
    expected = torch.bernoulli(grey["train"][rows], generator=g) if binarize == "dynamic" else grey["train"][rows] > 0.5
    assert torch.equal(points, expected.float())


def test_dynamic_binarisation_draws_afresh_with_the_grey_means_and_fixes_one_test_draw_for_every_seed(tmp_path):
    generator = torch.Generator().manual_seed(1)
    grey = {"train": torch.rand(30, 1, 3, 3, generator=generator), "test": torch.rand(50, 1, 3, 3, generator=generator)}
    args = tiny("made", tmp_path, dataset_name="ylecun/mnist", image_size=3, binarize="dynamic", train_batch_size=8)
    task = density_task(args, grey)
    draws, means = [], []
    for k in range(400):
        points, _ = task.batch(k, 0)
        rows = torch.randint(30, (8,), generator=batch_generator(args.seed, 0, k))  # the batch's rows
        draws.append(points)
        means.append(grey["train"][rows])
    draws, means = torch.stack(draws), torch.stack(means)
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    # E[x] = p: 28,800 Bernoulli draws, standard error ≤ 0.5 / √28,800 ≈ 0.003
    assert abs(float(draws.mean() - means.mean())) < 0.012
    # a fresh draw at every batch: batches that picked the same image disagree on some pixels
    first, second = task.batch(0, 0)[0], task.batch(1, 0)[0]
    assert not torch.equal(first, second)
    # the test set: one draw, binarize_test_images' (seed TEST_BINARIZATION_SEED, also the RBM's), for every run seed
    expected = binarize_test_images(grey["test"])
    for seed in (0, 5):
        assert torch.equal(density_task(replace(args, seed=seed), grey).test, expected), seed
    assert torch.equal(expected, binarize_test_images(grey["test"], TEST_BINARIZATION_SEED))
    assert not torch.equal(expected, binarize_test_images(grey["test"], TEST_BINARIZATION_SEED + 1))
    card = density_task(replace(args, seed=5), grey).model_card({}, None)
    assert f"binarize_test_images` with seed {TEST_BINARIZATION_SEED}" in str(card)


def test_a_made_ensemble_trains_one_mask_per_batch_drawn_uniformly_from_the_batch_generator(tmp_path):
    # order-agnostic training (Germain et al. 2015, §4.2): batch k's loss is −mean log p_m(x) for one mask m drawn
    # uniformly from batch k's generator, not the ensemble's −mean logmeanexp_m log p_m(x)
    generator = torch.Generator().manual_seed(2)
    grey = {"train": torch.rand(30, 1, 3, 3, generator=generator), "test": torch.rand(8, 1, 3, 3, generator=generator)}
    args = tiny(
        "made", tmp_path, dataset_name="ylecun/mnist", image_size=3, binarize="dynamic", train_batch_size=8,
        num_masks=3, order="random",
    )  # fmt: skip
    task = density_task(args, grey)
    model = task.build_model()
    drawn = []
    for k in range(300):
        points, batch_gen = task.batch(k, 0)
        replay = torch.Generator()
        replay.set_state(batch_gen.get_state())
        mask = int(torch.randint(3, (1,), generator=replay))
        loss = task.loss(model, (points, batch_gen), torch.device("cpu"))
        with torch.no_grad():
            per_mask = [-model.log_prob(points, mask_index=m).mean() for m in range(3)]
            ensemble = -model.log_prob(points).mean()
        torch.testing.assert_close(loss.detach(), per_mask[mask], rtol=0, atol=0)
        assert not torch.isclose(loss.detach(), ensemble, rtol=0, atol=1e-6), k
        drawn.append(mask)
    counts = torch.bincount(torch.tensor(drawn), minlength=3)
    # Binomial(300, 1/3): mean 100, standard deviation 8.2; 4.3 standard deviations either side
    assert ((counts - 100).abs() <= 35).all(), counts
    # the card says how the ensemble was trained and is evaluated; a single mask's card says the plain fit
    card = str(task.model_card({}, None))
    assert "**Ensemble**: 3 masks (random orders" in card and "logmeanexp_m log p_m(x)" in card
    single = str(density_task(replace(args, num_masks=1, order="natural"), grey).model_card({}, None))
    assert "**Ensemble**" not in single and "**Fit**: AdamW on `−(1/B) Σ_b log p(x_b)`" in single


def test_the_cnf_likelihood_and_its_gradient_equal_the_closed_form_of_a_linear_field():
    # v(x, t) = a x: z(1) = x gives z(0) = e^{−a} x, and log p_1(x) = log N(e^{−a} x; 0, I) − D a.
    a = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def normal(z):
        return -0.5 * z.square().sum(1) - math.log(2 * math.pi)

    got = cnf_log_prob(lambda z, t: a * z, x, normal, solver="rk4", num_steps=20)
    squares = x.square().sum(1)
    expected = -0.5 * squares * math.exp(-0.6) - math.log(2 * math.pi) - 2 * 0.3
    torch.testing.assert_close(got.detach(), expected, rtol=0, atol=1e-8)
    cnf_nll_loss(lambda z, t: a * z, x, normal, solver="rk4", num_steps=20).backward()
    # d/da of −mean log p_1 = −mean(‖x‖² e^{−2a} − D)
    assert a.grad.item() == pytest.approx(-(squares * math.exp(-0.6) - 2).mean().item(), abs=1e-7)
    hutchinson = cnf_log_prob(
        lambda z, t: a * z, x, normal, num_steps=20, divergence_method="hutchinson", generator=torch.Generator()
    )
    torch.testing.assert_close(hutchinson.detach(), expected, rtol=0, atol=1e-8)  # εᵀ(aI)ε = a·D exactly


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("gmm", {}),
        ("made", {}),
        ("coupling", {}),
        ("coupling", {"coupling_type": "affine"}),
        ("cnf", {}),
        ("cnf", {"divergence": "hutchinson"}),
    ],
)
def test_a_run_resumed_from_a_mid_run_checkpoint_ends_with_bit_identical_weights(tmp_path, model, options):
    full_args = tiny(model, tmp_path / "full", **options)
    full = Trainer(density_task(full_args)).train()
    reset_accelerate()
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "checkpoint-3", resumed_dir / "checkpoints" / "checkpoint-3")
    task = density_task(replace(full_args, output_dir=str(resumed_dir), resume_from_checkpoint="latest"))
    resumed = Trainer(task).train()
    reset_accelerate()
    network = "velocity" if model == "cnf" else "model"
    ours, theirs = getattr(full.pipeline, network), getattr(resumed.pipeline, network)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[key]), key
    saved = load_file(str(resumed_dir / "checkpoints" / "checkpoint-6" / "weights-model.safetensors"))
    assert saved.keys()
    if model == "gmm":
        assert len(task.em_history) == 6


def test_a_tiny_cnf_run_saves_a_flow_matching_pipeline_with_metrics_figures_and_card(tmp_path):
    args = tiny("cnf", tmp_path / "cnf", validation_steps=3, num_validation_nll_samples=10)
    metrics = run(density_task(args))
    reset_accelerate()
    out = tmp_path / "cnf"
    names = ("model_index.json", "README.md", "metrics.json", "samples.png", "density.png",
             "validation/step-0000003-density.png", "checkpoints/checkpoint-6/weights-model.safetensors")  # fmt: skip
    for name in names:
        assert (out / name).is_file(), name
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["nll_minus_entropy"] == pytest.approx(stored["nll"] - stored["entropy"])
    assert [r["step"] for r in stored["validation"]] == [3, 6] and metrics["num_nll_samples"] == 20
    pipe = FlowMatchingPipeline.from_pretrained(out)
    points = torch.randn(4, 2)
    torch.testing.assert_close(pipe.log_prob(points), density_task(args).log_likelihood(pipe, points))
    card = ModelCard.load(out / "README.md")
    nll = next(r for r in card.data.eval_results if r.metric_type == "nll")
    assert nll.metric_value == pytest.approx(stored["nll"], abs=1e-6)
    assert "FFJORD" in card.text and "FlowMatchingPipeline.from_pretrained" in card.text


def test_made_on_tiny_binary_images_reports_the_test_nll_in_nats_and_a_sample_grid(tmp_path):
    generator = torch.Generator().manual_seed(0)
    grey = {"train": torch.rand(64, 1, 3, 3, generator=generator), "test": torch.rand(16, 1, 3, 3, generator=generator)}
    args = tiny("made", tmp_path / "made", dataset_name="ylecun/mnist", image_size=3, num_nll_samples=16)
    task = density_task(args, grey)
    assert torch.equal(task.test, (grey["test"] > 0.5).float())  # binarised at 0.5
    metrics = run(task)
    reset_accelerate()
    pipe = DensityPipeline.from_pretrained(tmp_path / "made")
    nll = -pipe.log_prob(task.test).double().mean().item()
    assert metrics["nll"] == pytest.approx(nll, abs=1e-5) and "entropy" not in metrics
    assert (tmp_path / "made" / "samples.png").is_file() and not (tmp_path / "made" / "density.png").exists()
    assert "binarised at 0.5" in (tmp_path / "made" / "README.md").read_text()


@pytest.mark.slow
def test_the_script_fits_the_gmm_recipe_and_writes_a_loadable_pipeline_and_card(tmp_path):
    out = tmp_path / "gmm"
    argv = ["--model", "gmm", "--num_train_points", "400", "--num_eval_samples", "100", "--num_nll_samples", "50",
            "--em_iterations", "20", "--report_to", "none", "--output_dir", str(out)]  # fmt: skip
    launch("train_density.py", *argv)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["em_monotone"] and len(metrics["em_log_likelihood"]) == 21
    assert json.loads((out / "args.json").read_text())["num_components"] == 8  # the 8gaussians recipe
    pipe = DensityPipeline.from_pretrained(out)
    assert pipe.model.config.num_components == 8
    card = (out / "README.md").read_text()
    assert "Dempster, Laird" in card and "never decreased" in card


def test_the_help_of_every_argument_renders():
    from transformers import HfArgumentParser

    text = HfArgumentParser(DensityArguments).format_help()
    assert "--bandwidth" in text and "ylecun/mnist" in text and "../shared" not in text
