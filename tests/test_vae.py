"""AutoEncoder, VAE and their pipelines: KL, ELBO and IWAE against closed forms, round trips, plots, metrics."""

import json
import math

import numpy as np
import pytest
import torch
from conformance import seeded
from factories import (
    LINEAR_B,
    LINEAR_S,
    LINEAR_W,
    linear_gaussian_elbo,
    linear_gaussian_log_px,
    linear_gaussian_posterior,
    linear_gaussian_vae,
    tiny_autoencoder,
    tiny_autoencoder_pipeline,
    tiny_vae,
    tiny_vae_pipeline,
)

from hfgen import VAE, AutoEncoder, AutoEncoderPipeline, HfgenPipeline, VAEPipeline
from hfgen.image_metrics import likelihood_bounds, reconstruction_metrics
from hfgen.methods.vae import autoencoder_loss, negative_elbo


def linear_gaussian_data(n, seed=0):
    g = seeded(seed)
    z = torch.randn(n, 2, dtype=torch.float64, generator=g)
    return (z @ LINEAR_W.T + LINEAR_B + LINEAR_S * torch.randn(n, 4, dtype=torch.float64, generator=g)).reshape(
        n, 1, 2, 2
    )


def binary_images(n, size=8, seed=0):
    return torch.rand(n, 1, size, size, generator=seeded(seed)).bernoulli(generator=seeded(seed + 1))


# --- KL, likelihoods, ELBO, IWAE ---------------------------------------------------------------------------


def test_kl_matches_a_monte_carlo_estimate():
    g = seeded()
    mean, log_std = torch.randn(3, 2, generator=g, dtype=torch.float64), 0.5 * torch.randn(3, 2, generator=g).double()
    closed = VAE.kl_divergence(mean, log_std)
    q = torch.distributions.Normal(mean, log_std.exp())
    z = q.sample((200_000,))
    log_ratio = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(-1)
    estimate, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    assert torch.all((closed - estimate).abs() < 5 * stderr)
    # The formula itself: ½ Σ (σ² + μ² − 1 − 2 log σ); zero exactly at the prior.
    torch.testing.assert_close(VAE.kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))
    expected = 0.5 * (math.exp(2 * 0.3) + 1.5**2 - 1 - 2 * 0.3)
    torch.testing.assert_close(
        VAE.kl_divergence(torch.tensor([[1.5]]), torch.tensor([[0.3]])), torch.tensor([expected])
    )


def test_log_likelihoods_match_torch_distributions():
    x = binary_images(5)
    logits = torch.randn(5, 1, 8, 8, generator=seeded(3))
    bernoulli = tiny_vae("bernoulli")
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(bernoulli.log_likelihood(x, logits), expected)
    gaussian = VAE(image_size=8, hidden_sizes=[4], likelihood="gaussian", observation_std=0.3)
    expected = torch.distributions.Normal(logits, 0.3).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(gaussian.log_likelihood(x, logits), expected)
    # Broadcasting over a leading sample axis, as in the IWAE bound.
    stacked = torch.stack([logits, -logits])
    torch.testing.assert_close(bernoulli.log_likelihood(x, stacked)[1], bernoulli.log_likelihood(x, -logits))


def test_linear_gaussian_encoder_is_the_exact_posterior_and_the_bounds_are_tight():
    vae = linear_gaussian_vae()
    x = linear_gaussian_data(100)
    mean, log_std = vae.encode(x, return_dict=False)
    exact_mean, exact_log_std = linear_gaussian_posterior(x)
    torch.testing.assert_close(mean, exact_mean)
    torch.testing.assert_close(log_std, exact_log_std)
    log_px = linear_gaussian_log_px(x)
    # With the exact posterior every importance weight equals p(x): L_K = log p(x) for every draw and every K.
    with torch.no_grad():
        for k, chunk in ((1, 1), (7, 3), (50, 50)):
            torch.testing.assert_close(vae.iwae_bound(x, k, seeded(k), chunk_size=chunk), log_px, rtol=0, atol=1e-10)
        torch.testing.assert_close(linear_gaussian_elbo(x, mean, log_std), log_px, rtol=0, atol=1e-10)


def test_elbo_estimate_matches_its_closed_form_and_lies_below_log_px():
    vae = linear_gaussian_vae(mean_shift=0.3, log_std_shift=0.3)
    x = linear_gaussian_data(50)
    mean, log_std = vae.encode(x, return_dict=False)
    exact = linear_gaussian_elbo(x, mean, log_std)
    assert torch.all(exact < linear_gaussian_log_px(x))
    with torch.no_grad():
        draws = torch.stack([vae.elbo(x, 1, seeded(s)) for s in range(400)])
    stderr = draws.std(0) / math.sqrt(draws.shape[0])
    assert torch.all((draws.mean(0) - exact).abs() < 5 * stderr)
    # S samples: the mean of log p(x | z_s) over S successive draws z_s = μ + σ ε_s, minus the closed-form KL.
    g = seeded(9)
    log_lik = [vae.log_likelihood(x, vae.decode(VAE.reparameterize(mean, log_std, g)).sample) for _ in range(3)]
    expected = torch.stack(log_lik).mean(0) - VAE.kl_divergence(mean, log_std)
    torch.testing.assert_close(vae.elbo(x, 3, seeded(9)), expected)


def test_iwae_increases_with_k_towards_the_exact_log_likelihood():
    # An imperfect encoder: exact ELBO gap 0.8 nats/image. Means over 2,000 images and repeated draws; the margins
    # are > 8 standard errors (0.74 nats from K = 1 to 10 against an error of 0.02, 0.06 from K = 10 to 1,000
    # against 0.008), so the ordering is not left to chance.
    vae = linear_gaussian_vae(mean_shift=0.3, log_std_shift=0.3)
    x = linear_gaussian_data(2000, seed=1)
    log_px = linear_gaussian_log_px(x)
    with torch.no_grad():
        mean, log_std = vae.encode(x, return_dict=False)
    elbo_gap = float((log_px - linear_gaussian_elbo(x, mean, log_std)).mean())
    with torch.no_grad():
        gaps = {k: float((log_px - vae.iwae_bound(x, k, seeded(k))).mean()) for k in (1, 10, 1000)}
    assert abs(gaps[1] - elbo_gap) < 0.1  # E[L_1] is the ELBO (se of the mean ≈ 0.03)
    assert gaps[1] > gaps[10] + 0.4 > 0.4
    assert gaps[10] > gaps[1000] + 0.03
    assert abs(gaps[1000]) < 0.02  # L_K → log p(x)
    # likelihood_bounds reports the same quantities, with nll = −iwae.
    report = likelihood_bounds(vae, x[:200], num_importance_samples=500, generator=seeded(), batch_size=64)
    assert report["nll"] == -report["iwae"] and report["elbo"] < report["iwae"]
    assert abs(report["iwae"] - float(log_px[:200].mean())) < 4 * report["iwae_stderr"] + 0.02


def test_iwae_chunking_does_not_change_the_draws():
    vae = tiny_vae()
    x = binary_images(4)
    with torch.no_grad():
        a = vae.iwae_bound(x, 30, seeded(), chunk_size=30)
        b = vae.iwae_bound(x, 30, seeded(), chunk_size=7)
    assert a.shape == (4,)
    torch.testing.assert_close(vae.iwae_bound(x, 30, seeded(), chunk_size=7), b)
    # the chunks' log-sum-exps combine into the bound of all K draws at once: redraw the same noise chunk by chunk
    # (k = 7, 7, 7, 7, 2) and evaluate log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x) in one go
    generator, log_2pi = seeded(), math.log(2 * math.pi)
    with torch.no_grad():
        mean, log_std = vae.encode(x, return_dict=False)
        noise = torch.cat([torch.randn((k, *mean.shape), generator=generator) for k in (7, 7, 7, 7, 2)])
        z = mean + log_std.exp() * noise
        decoded = vae.decode(z.reshape(-1, 2)).sample.reshape(30, *x.shape)
        log_w = (
            vae.log_likelihood(x, decoded)
            - 0.5 * (z**2 + log_2pi).sum(-1)
            + 0.5 * (noise**2 + log_2pi).sum(-1)
            + log_std.sum(-1)
        )
        expected = torch.logsumexp(log_w, dim=0) - math.log(30)
    torch.testing.assert_close(b, expected, rtol=0, atol=1e-5)
    assert (a - b).abs().max() > 1e-3  # the other chunking draws other noise: the exact check above is needed


# --- models -----------------------------------------------------------------------------------------------


def test_vae_loss_is_reconstruction_plus_beta_kl_with_one_reparametrised_sample():
    vae = tiny_vae()
    x = binary_images(6)
    out = negative_elbo(vae, x, generator=seeded(), beta=0.5)
    torch.testing.assert_close(out.loss, out.reconstruction + 0.5 * out.kl)
    mean, log_std = vae.encode(x, return_dict=False)
    z = VAE.reparameterize(mean, log_std, seeded())
    expected_rec = -vae.log_likelihood(x, vae.decode(z).sample).mean()
    torch.testing.assert_close(out.reconstruction, expected_rec)
    torch.testing.assert_close(out.kl, VAE.kl_divergence(mean, log_std).mean())
    out.loss.backward()
    assert all(p.grad is not None for p in vae.parameters())
    # Negative ELBO with β = 1, the same draw.
    torch.testing.assert_close(negative_elbo(vae, x, seeded()).loss, -vae.elbo(x, 1, seeded()).mean())


def test_reparameterize_is_mu_plus_sigma_eps_and_repeatable():
    mean, log_std = torch.tensor([[1.0, -2.0]]), torch.log(torch.tensor([[0.5, 2.0]]))
    eps = torch.randn(1, 2, generator=seeded(4))
    torch.testing.assert_close(VAE.reparameterize(mean, log_std, seeded(4)), mean + log_std.exp() * eps)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_shapes_and_forward(architecture):
    vae = tiny_vae(architecture=architecture)
    x = binary_images(3)
    with torch.no_grad():
        out = vae(x)
    assert out.sample.shape == x.shape and out.latents.shape == (3, 2)
    assert 0 <= float(out.sample.min()) and float(out.sample.max()) <= 1
    torch.testing.assert_close(out.latents, out.latent_mean)
    sampled = vae(x, sample_posterior=True, generator=seeded())
    assert not torch.equal(sampled.latents, out.latents)
    assert vae.decode(torch.zeros(5, 2)).sample.shape == (5, 1, 8, 8)


def test_autoencoder_loss_is_the_reconstruction_nll_and_is_deterministic():
    ae = tiny_autoencoder()
    x = binary_images(5)
    out = autoencoder_loss(ae, x)
    assert out.kl is None
    torch.testing.assert_close(out.loss, autoencoder_loss(ae, x).loss)
    z = ae.encode(x).latent_mean
    expected = torch.nn.functional.binary_cross_entropy_with_logits(ae.decode(z).sample, x, reduction="sum") / 5
    torch.testing.assert_close(out.loss, expected)
    metrics = reconstruction_metrics(ae, x)
    assert metrics["reconstruction_nll"] == pytest.approx(out.loss.detach().item(), rel=1e-6)
    mse = ((ae(x).sample.detach() - x) ** 2).mean().item()
    assert metrics["reconstruction_mse"] == pytest.approx(mse, rel=1e-6)
    assert ae.encoder.config.variational is False


def test_autoencoder_loss_with_neighbours_adds_lambda_times_the_neighbour_embedding_loss():
    from hfgen.methods.neighbor_embedding import neighbor_embedding_loss

    ae, x, neighbours = tiny_autoencoder(), binary_images(6), binary_images(6, seed=1)
    out = autoencoder_loss(ae, x, neighbor_images=neighbours, neighbor_weight=2.5, num_negatives=2)
    codes, neighbour_codes = ae.encode(x).latent_mean, ae.encode(neighbours).latent_mean
    expected_neighbor = neighbor_embedding_loss(codes, neighbour_codes, num_negatives=2)
    torch.testing.assert_close(out.neighbor, expected_neighbor)
    torch.testing.assert_close(out.reconstruction, autoencoder_loss(ae, x).loss)  # the reconstruction is of x only
    torch.testing.assert_close(out.loss, out.reconstruction + 2.5 * expected_neighbor)
    assert autoencoder_loss(ae, x).neighbor is None
    with pytest.raises(ValueError, match="one image per image, got 5 for 6"):
        autoencoder_loss(ae, x, neighbor_images=neighbours[:5])
    with pytest.raises(ValueError, match="neighbor_images"):
        autoencoder_loss(ae, x, neighbor_images=torch.rand(6, 1, 4, 4))


def test_a_few_steps_of_training_lower_the_negative_elbo():
    torch.manual_seed(0)
    vae = VAE(image_size=8, hidden_sizes=[16])
    prototypes = binary_images(2, seed=5)
    data = prototypes.repeat(32, 1, 1, 1)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    g = seeded()
    start = float(negative_elbo(vae, data, seeded()).loss)
    for _ in range(100):
        loss = negative_elbo(vae, data, g).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(negative_elbo(vae, data, seeded()).loss) < 0.5 * start


def test_model_save_and_load(tmp_path):
    vae = tiny_vae(architecture="conv", likelihood="gaussian")
    vae.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = VAE.from_pretrained(tmp_path)
    x = binary_images(2)
    torch.testing.assert_close(loaded(x).sample, vae(x).sample)
    assert loaded.config.likelihood == "gaussian" and list(loaded.config.conv_channels) == [4, 8]


def test_layer_norm_encoder_is_invariant_to_the_scale_of_its_first_layer_and_round_trips(tmp_path):
    """LN(c (W x + b)) = LN(W x + b) for c > 0 (exactly with LayerNorm's ε = 0): scaling the first linear layer
    of a ``normalization="layer"`` encoder leaves the codes unchanged; the decoder has no LayerNorm."""
    torch.manual_seed(0)
    ae = AutoEncoder(image_size=8, hidden_sizes=[16, 8], normalization="layer").double()
    norms = [m for m in ae.encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2
    for norm in norms:
        norm.eps = 0.0
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in ae.decoder.modules())
    x = binary_images(4).double()
    codes = ae.encode(x).latent_mean
    first = next(m for m in ae.encoder.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        first.weight.mul_(7.0)
        first.bias.mul_(7.0)
    torch.testing.assert_close(ae.encode(x).latent_mean, codes)
    plain = AutoEncoder(image_size=8, hidden_sizes=[16, 8]).double()  # without LayerNorm the scale shows
    before = plain.encode(x).latent_mean
    plain_first = next(m for m in plain.encoder.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        plain_first.weight.mul_(7.0)
        plain_first.bias.mul_(7.0)
    assert not torch.allclose(plain.encode(x).latent_mean, before)
    ae.save_pretrained(tmp_path)
    loaded = AutoEncoder.from_pretrained(tmp_path).double()
    assert loaded.config.normalization == "layer"
    for norm in (m for m in loaded.encoder.modules() if isinstance(m, torch.nn.LayerNorm)):
        norm.eps = 0.0
    torch.testing.assert_close(loaded.encode(x).latent_mean, ae.encode(x).latent_mean)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"architecture": "resnet"}, "architecture"),
        ({"activation": "swish2"}, "activation"),
        ({"architecture": "conv", "image_size": 30, "conv_channels": [4, 8]}, "divisible"),
        ({"hidden_sizes": [16, 0]}, "hidden_sizes"),
        ({"observation_std": 0.0}, "observation_std"),
        ({"normalization": "batch"}, "normalization"),
    ],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE(**kwargs)


def test_bad_images_and_latents():
    vae = tiny_vae()
    with pytest.raises(ValueError, match=r"images.*\(N, 1, 8, 8\)"):
        negative_elbo(vae, torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="channels"):
        vae.encode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(TypeError, match="images"):
        negative_elbo(vae, np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="finite"):
        vae.elbo(torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match=r"latents.*\(N, 2\)"):
        vae.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="num_samples"):
        vae.iwae_bound(binary_images(1), num_samples=0)


# --- pipelines --------------------------------------------------------------------------------------------


def test_prior_samples_shape_range_and_repeatability():
    pipe = tiny_vae_pipeline()
    a = pipe(num_samples=7, generator=seeded())
    b = pipe(num_samples=7, generator=seeded())
    c = pipe(num_samples=7, generator=seeded(1))
    assert a.images.shape == (7, 1, 8, 8) and a.latents.shape == (7, 2)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    torch.testing.assert_close(a.latents, torch.randn(7, 2, generator=seeded()))
    torch.testing.assert_close(a.images, torch.sigmoid(pipe.vae.decode(a.latents).sample))
    assert 0 <= float(a.images.min()) and float(a.images.max()) <= 1


def test_output_types():
    pipe = tiny_vae_pipeline()
    as_np = pipe(num_samples=3, generator=seeded(), output_type="np").images
    as_pil = pipe(num_samples=3, generator=seeded(), output_type="pil").images
    as_pt = pipe(num_samples=3, generator=seeded()).images
    assert isinstance(as_np, np.ndarray) and as_np.shape == (3, 8, 8, 1)
    np.testing.assert_allclose(as_np[..., 0], as_pt[:, 0].numpy(), rtol=1e-6)
    assert len(as_pil) == 3 and as_pil[0].mode == "L" and as_pil[0].size == (8, 8)
    np.testing.assert_allclose(np.asarray(as_pil[0]), np.round(as_np[0, ..., 0] * 255), atol=1)
    # PIL images are accepted as input and read as k/255.
    torch.testing.assert_close(
        pipe.encode(as_pil),
        pipe.encode(torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32)[None] / 255 for im in as_pil]))),
    )
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_samples=2, output_type="latent")


def test_encode_decode_match_the_model():
    pipe = tiny_vae_pipeline()
    x = binary_images(4)
    codes = pipe.encode(x, batch_size=3)
    torch.testing.assert_close(codes, pipe.vae.encode(x).latent_mean.detach())
    decoded = pipe.decode(codes, batch_size=3)
    torch.testing.assert_close(decoded, torch.sigmoid(pipe.vae.decode(codes).sample.detach()))


def test_vae_latent_grid_follows_gaussian_quantiles_top_row_first():
    pipe = tiny_vae_pipeline()
    out = pipe.latent_grid(n=5, quantile_range=(0.1, 0.9))
    # Φ⁻¹ at the levels 0.1, 0.3, 0.5, 0.7, 0.9.
    q = torch.tensor([-1.2815515655446004, -0.5244005127080407, 0.0, 0.5244005127080407, 1.2815515655446004])
    torch.testing.assert_close(out.x, q.double())
    torch.testing.assert_close(out.y, q.double())
    assert out.images.shape == (25, 1, 8, 8) and out.latents.shape == (25, 2)
    # Row-major from the top-left: the first row has the largest z_2, z_1 increases along a row.
    torch.testing.assert_close(out.latents[0], torch.tensor([q[0], q[4]]))
    torch.testing.assert_close(out.latents[4], torch.tensor([q[4], q[4]]))
    torch.testing.assert_close(out.latents[20], torch.tensor([q[0], q[0]]))
    torch.testing.assert_close(out.images, pipe.decode(out.latents))
    assert pipe.latent_grid(n=1).latents.abs().max() == 0  # the median of N(0, 1)


def test_autoencoder_latent_grid_spans_the_encoded_data():
    pipe = tiny_autoencoder_pipeline()
    x = binary_images(20)
    codes = pipe.encode(x)
    out = pipe.latent_grid(n=3, images=x, quantile_range=(0.0, 1.0))  # min to max
    torch.testing.assert_close(out.x, torch.linspace(float(codes[:, 0].min()), float(codes[:, 0].max()), 3).double())
    torch.testing.assert_close(out.y, torch.linspace(float(codes[:, 1].min()), float(codes[:, 1].max()), 3).double())
    # by default the 5% and 95% quantiles: one far-out code does not stretch the grid
    far = torch.cat([torch.randn(199, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([[100.0, -100.0]])])
    central = pipe.latent_grid(n=2, codes=far)
    expected = np.quantile(far.numpy().astype(np.float64), [0.05, 0.95], axis=0)
    torch.testing.assert_close(central.x, torch.tensor(expected[:, 0]))
    torch.testing.assert_close(central.y, torch.tensor(expected[:, 1]))
    bounds = pipe.latent_grid(n=2, bounds=((-1, 1), (0, 2)))
    torch.testing.assert_close(bounds.latents, torch.tensor([[-1.0, 2.0], [1.0, 2.0], [-1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="no prior"):
        pipe.latent_grid(n=3)
    recon = pipe(x[:3])
    torch.testing.assert_close(recon.images, pipe.autoencoder(x[:3]).sample.detach())


@pytest.mark.parametrize("n", [0, -2, 2.5, True])
def test_latent_grid_needs_n_at_least_one(n):
    with pytest.raises(ValueError, match="`n` must be an int >= 1"):
        tiny_vae_pipeline().latent_grid(n=n)


def test_pipeline_bad_inputs():
    pipe = tiny_vae_pipeline()
    with pytest.raises(ValueError, match="quantile_range"):
        pipe.latent_grid(n=3, quantile_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="bounds"):
        pipe.latent_grid(n=3, bounds=((1, 0), (0, 1)))
    with pytest.raises(ValueError, match=r"images.*\(N, 1, 8, 8\)"):
        pipe.encode(torch.zeros(2, 1, 28, 28))
    with pytest.raises((ValueError, TypeError), match="num_samples"):
        pipe(num_samples=0)
    with pytest.raises(TypeError, match="AutoEncoderPipeline"):
        VAEPipeline(tiny_autoencoder())
    with pytest.raises(TypeError, match="AutoEncoder"):
        AutoEncoderPipeline(tiny_vae())
    wide = VAEPipeline(VAE(image_size=8, hidden_sizes=[8], latent_dim=3))
    with pytest.raises(ValueError, match="2-D latent"):
        wide.latent_grid(n=3)


def test_save_and_load_round_trip(tmp_path):
    pipe = tiny_vae_pipeline(seed=3, architecture="conv")
    pipe.save_pretrained(tmp_path / "vae")
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == [
        "model_index.json",
        "pipeline_vae.py",
        "vae",
        "weights_sha256.json",
    ]
    assert (tmp_path / "vae" / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(tmp_path.rglob("*.bin"))
    assert json.loads((tmp_path / "vae" / "model_index.json").read_text())["vae"] == ["modeling_vae", "VAE"]
    for loader in (VAEPipeline, HfgenPipeline):
        loaded = loader.from_pretrained(tmp_path / "vae")
        loaded.set_progress_bar_config(disable=True)
        assert isinstance(loaded, VAEPipeline) and loaded.vae.config.architecture == "conv"
        torch.testing.assert_close(
            loaded(num_samples=5, generator=seeded()).images, pipe(num_samples=5, generator=seeded()).images
        )
    ae = tiny_autoencoder_pipeline(seed=4)
    ae.save_pretrained(tmp_path / "ae")
    loaded = HfgenPipeline.from_pretrained(tmp_path / "ae")
    assert isinstance(loaded, AutoEncoderPipeline) and isinstance(loaded.autoencoder, AutoEncoder)
    x = binary_images(3)
    torch.testing.assert_close(loaded.encode(x), ae.encode(x))


# --- plots ------------------------------------------------------------------------------------------------


def test_plots(no_pyplot_figures_left):
    from hfgen.plotting import plot_image_grid, plot_latent_grid, plot_latent_scatter, plot_reconstructions

    pipe = tiny_vae_pipeline()
    x = binary_images(30)
    codes, labels = pipe.encode(x), torch.arange(30) % 3
    fig = plot_latent_scatter(codes, labels, class_names=["zero", "one", "two"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]
    np.testing.assert_allclose(ax.collections[1].get_offsets(), codes[labels == 1].numpy(), rtol=1e-6)

    grid = pipe.latent_grid(n=3, quantile_range=(0.2, 0.8))
    fig = plot_latent_grid(grid.images, grid.x, grid.y, codes=codes, labels=labels)
    images = fig.axes[0].get_images()
    assert len(images) == 9
    # The top-left image sits around (x[0], y[2]); cells end at the midpoints between grid points.
    left, right, bottom, top = images[0].get_extent()
    gx, gy = grid.x.numpy(), grid.y.numpy()
    assert left < gx[0] < right == pytest.approx((gx[0] + gx[1]) / 2) and bottom < gy[2] < top
    np.testing.assert_allclose(images[0].get_array(), grid.images[0, 0].numpy(), rtol=1e-6)

    fig = plot_reconstructions(x, pipe.vae(x).sample.detach(), num_images=4)
    assert len(fig.axes) == 8
    fig = plot_image_grid(pipe(num_samples=6, generator=seeded()).images, ncols=3)
    assert fig.axes[0].get_images()[0].get_array().shape == (16, 24)
    with pytest.raises(ValueError, match="labels"):
        plot_latent_scatter(codes, labels[:5])
    with pytest.raises(ValueError, match="len"):
        plot_latent_grid(grid.images[:4], grid.x, grid.y)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plot_image_grid(torch.zeros(2, 2, 8, 8))


def test_bernoulli_models_refuse_images_outside_the_unit_interval():
    vae, ae = tiny_vae(), tiny_autoencoder()
    x = binary_images(3)
    for bad in (x * 255, x - 0.5):
        with pytest.raises(ValueError, match=r"`images` must hold values in \[0, 1\] for the Bernoulli likelihood"):
            vae.elbo(bad)
        with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
            ae.encode(bad)
    assert torch.isfinite(vae.elbo(x, generator=seeded())).all()  # the unit interval itself is accepted
