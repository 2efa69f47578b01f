"""VAEPipeline.log_prob: the exact 2-D-latent likelihood by quadrature against a linear-Gaussian closed form, the
IWAE bound beside it, and the Bernoulli matrix form against the model's own log p(x | z)."""

import math

import pytest
import torch
from factories import linear_gaussian_log_px, linear_gaussian_vae, tiny_vae, tiny_vae_pipeline

from hfgen import VAE, VAEPipeline


def linear_pipeline(**shifts) -> VAEPipeline:
    pipe = VAEPipeline(linear_gaussian_vae(**shifts))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def linear_points(n: int = 12) -> torch.Tensor:
    return torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_quadrature_equals_the_linear_gaussian_marginal_and_converges_in_the_grid_size():
    pipe, x = linear_pipeline(), linear_points()
    exact = linear_gaussian_log_px(x)
    errors = {g: (pipe.log_prob(x, grid_size=g) - exact).abs().max().item() for g in (8, 16, 200)}
    assert errors[200] < 1e-9  # midpoint rule on a smooth Gaussian integrand over ±6σ: exact to rounding
    assert errors[8] > errors[16] > errors[200]


def test_a_grid_too_narrow_misses_prior_mass_by_the_gaussian_tail():
    # With the decoder ignoring z (W = 0), p(x) = N(x; b, s² I) and quadrature over [−L, L]² gives p(x) times the
    # prior mass of the square, (1 − 2Φ(−L))², up to the midpoint error.
    vae = linear_gaussian_vae()
    with torch.no_grad():
        vae.decoder.body[0].weight.zero_()
    pipe, x = VAEPipeline(vae), linear_points(4)
    exact = torch.distributions.Normal(vae.decoder.body[0].bias, 0.5).log_prob(x.flatten(1)).sum(1)
    mass = (1 - 2 * torch.distributions.Normal(0.0, 1.0).cdf(torch.tensor(-1.0, dtype=torch.float64))) ** 2
    got = pipe.log_prob(x, grid_size=400, grid_limit=1.0)
    torch.testing.assert_close(got, exact + torch.log(mass), rtol=0, atol=1e-5)


def test_iwae_is_exact_with_the_true_posterior_and_a_lower_bound_that_rises_with_k_otherwise():
    x = linear_points(50)
    exact = linear_gaussian_log_px(x)
    exact_q = linear_pipeline().log_prob(x, method="iwae", num_importance_samples=3)
    torch.testing.assert_close(exact_q, exact, rtol=0, atol=1e-10)  # p(x, z) / q(z | x) = p(x) for every z
    pipe = linear_pipeline(mean_shift=0.7, log_std_shift=-0.4)
    bounds = [
        pipe.log_prob(x, method="iwae", num_importance_samples=k, generator=torch.Generator().manual_seed(1)).mean()
        for k in (1, 10, 1000)
    ]
    quadrature = pipe.log_prob(x).mean()
    assert bounds[0] < bounds[1] < bounds[2] < quadrature
    assert quadrature.item() == pytest.approx(exact.mean().item(), abs=1e-9)  # the encoder plays no part


def test_bernoulli_matrix_form_equals_the_models_log_likelihood_summed_over_the_grid():
    pipe = tiny_vae_pipeline()
    images = torch.bernoulli(torch.full((3, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(2))
    got = pipe.log_prob(images, grid_size=10, grid_limit=3.0)
    step = 0.6
    axis = -3.0 + (torch.arange(10) + 0.5) * step
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    with torch.no_grad():
        decoded = pipe.vae.decode(grid).sample  # (100, 1, 8, 8)
        terms = torch.stack([pipe.vae.log_likelihood(image.expand_as(decoded), decoded) for image in images])
    log_prior = -0.5 * grid.square().sum(1) - math.log(2 * math.pi)
    expected = torch.logsumexp(terms + log_prior, dim=1) + 2 * math.log(step)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_bad_arguments_are_refused_with_the_argument_named():
    pipe, x = linear_pipeline(), linear_points(2)
    with pytest.raises(ValueError, match="`method` must be one of"):
        pipe.log_prob(x, method="exact")
    with pytest.raises(ValueError, match="`grid_limit` must be a finite number > 0"):
        pipe.log_prob(x, grid_limit=0.0)
    with pytest.raises(ValueError, match="`images` must have shape"):
        pipe.log_prob(torch.zeros(2, 1, 3, 3, dtype=torch.float64))
    torch.manual_seed(0)
    wide = VAEPipeline(VAE(image_size=2, hidden_sizes=[], latent_dim=3, likelihood="gaussian").double())
    with pytest.raises(ValueError, match="needs a 2-D latent space, but latent_dim = 3"):
        wide.log_prob(x)
    assert tiny_vae().config.latent_dim == 2


def test_the_vae_task_reports_the_exact_value_beside_the_iwae_bound_and_the_card_shows_it(tmp_path):
    from hfgen.model_cards.vae import vae_card
    from hfgen.training.vae import VAEArguments, VAETask

    generator = torch.Generator().manual_seed(3)
    images = torch.bernoulli(torch.full((24, 1, 8, 8), 0.3), generator=generator)
    data = {
        "train_images": images,
        "train_labels": torch.zeros(24),
        "test_images": images,
        "test_labels": torch.zeros(24),
    }
    args = VAEArguments(
        dataset_name="ylecun/mnist",
        output_dir=str(tmp_path),
        image_size=8,
        hidden_sizes=[16, 8],
        quadrature_grid_size=60,
        num_importance_samples=200,
    )
    task = VAETask(args, data)
    pipe = tiny_vae_pipeline()
    iwae = task.log_likelihood(pipe, images)
    metrics = task.score_log_likelihood(iwae)
    exact = pipe.log_prob(images, grid_size=60)
    assert metrics["quadrature_nll"] == pytest.approx(-exact.double().mean().item(), abs=1e-9)
    coarse = pipe.log_prob(images, grid_size=30)
    assert metrics["quadrature_grid_change"] == pytest.approx((exact - coarse).abs().max().item(), abs=1e-9)
    assert metrics["quadrature_nll"] <= metrics["nll"] + 3 * metrics["iwae_stderr"]  # IWAE ≤ log p on average
    assert metrics["num_quadrature_images"] == 24
    card = str(vae_card(args, {**metrics, "elbo": -50.0, "elbo_stderr": 0.1}))
    assert "−log p(x) (nats, exact)" in card and "60 × 60 grid" in card
