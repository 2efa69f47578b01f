"""Constant-α DDPM: scheduler mathematics, equivalence with diffusers, the closed-form oracle, pipeline, plots."""

import json
import math
import re

import numpy as np
import pytest
import torch
from conformance import seeded
from diffusers import DDIMScheduler, DDPMScheduler
from factories import TWO_POINTS, oracle_pipeline, tiny_ddpm_pipeline, tiny_epsilon_network
from matplotlib.figure import Figure

from hfgen import ConstantAlphaDDPMScheduler, DDPMOracle, DDPMPointsPipeline, HfgenPipeline
from hfgen.plotting import plot_diffusion_forward, plot_diffusion_reverse
from hfgen.schedulers import alpha_for_final_alpha_bar


def fake_epsilon(x, t):
    """A smooth stand-in for a network output that depends on x and t."""
    return torch.tanh(x) + 0.01 * float(t)


# ----------------------------------------------------------------------------------------------- scheduler


def test_alpha_bar_is_alpha_to_the_t_and_the_helper_reaches_the_chosen_final_value():
    scheduler = ConstantAlphaDDPMScheduler(alpha=0.9, num_train_timesteps=7)
    torch.testing.assert_close(scheduler.alphas_cumprod, 0.9 ** torch.arange(8, dtype=torch.float64))
    torch.testing.assert_close(
        scheduler.alpha_bar(torch.tensor([0, 3])), torch.tensor([1.0, 0.729], dtype=torch.float64)
    )
    alpha = alpha_for_final_alpha_bar(250, 1e-3)
    assert alpha == pytest.approx(1e-3 ** (1 / 250)) and alpha**250 == pytest.approx(1e-3)
    built = ConstantAlphaDDPMScheduler.from_final_alpha_bar(40, 0.02, variance_type="beta")
    assert float(built.alpha_bar(40)) == pytest.approx(0.02) and built.config.variance_type == "beta"
    assert len(built) == 40


def test_iterated_one_step_kernel_has_the_closed_form_marginal():
    # x_t = √α x_{t−1} + √β z applied t times must give mean √ᾱ_t x_0 and variance 1 − ᾱ_t (ᾱ_t = α^t).
    scheduler = ConstantAlphaDDPMScheduler(alpha=0.8, num_train_timesteps=6)
    g = seeded()
    x0 = torch.tensor([[1.5, -2.0]]).double().expand(200_000, 2)
    x = x0
    for t in range(1, 7):
        x = scheduler.forward_transition(x, torch.randn(x.shape, generator=g, dtype=torch.float64), t - 1, t)
        a = 0.8**t
        se_mean, se_var = math.sqrt((1 - a) / x.shape[0]), (1 - a) * math.sqrt(2 / x.shape[0])
        assert (x.mean(0) - math.sqrt(a) * x0[0]).abs().max() < 5 * se_mean
        assert (x.var(0) - (1 - a)).abs().max() < 5 * se_var
    z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    direct = scheduler.add_noise(x0, z, 6)
    torch.testing.assert_close(direct, math.sqrt(0.8**6) * x0 + math.sqrt(1 - 0.8**6) * z)


@pytest.mark.parametrize(("t", "s"), [(1, 0), (5, 4), (9, 3), (9, 0)])
def test_posterior_coefficients_are_gaussian_conditioning(t, s):
    # Joint Gaussian (x_0, x_s, x_t) with x_0 ~ N(0, v): x_s = √ᾱ_s x_0 + ..., x_t = √(ᾱ_t/ᾱ_s) x_s + ...;
    # q(x_s | x_0, x_t) from the Schur complement must be N(c_0 x_0 + c_t x_t, β̃).
    scheduler = ConstantAlphaDDPMScheduler(alpha=0.85, num_train_timesteps=9)
    a_s, a_t, v = 0.85**s, 0.85**t, 2.3
    r = math.sqrt(a_t / a_s)
    cov_0s, var_s = math.sqrt(a_s) * v, a_s * v + (1 - a_s)
    cov = torch.tensor(
        [
            [v, cov_0s, r * cov_0s],
            [cov_0s, var_s, r * var_s],
            [r * cov_0s, r * var_s, r * r * var_s + (1 - a_t / a_s)],
        ],
        dtype=torch.float64,
    )
    given = [0, 2]
    gain = cov[1, given] @ torch.linalg.inv(cov[given][:, given])
    variance = cov[1, 1] - gain @ cov[given, 1]
    c_0, c_t, beta_tilde = scheduler.posterior(t, s)
    torch.testing.assert_close(gain, torch.tensor([c_0, c_t], dtype=torch.float64))
    assert beta_tilde == pytest.approx(float(variance), abs=1e-12)


def test_ddim_with_eta_one_is_the_ancestral_step_with_beta_tilde():
    ancestral = ConstantAlphaDDPMScheduler(alpha=0.9, num_train_timesteps=12)
    ddim = ConstantAlphaDDPMScheduler(alpha=0.9, num_train_timesteps=12, sampler="ddim", eta=1.0)
    for scheduler in (ancestral, ddim):
        scheduler.set_timesteps(4)
    x = torch.randn(6, 2, generator=seeded(3), dtype=torch.float64)
    for t in ancestral.timesteps:
        a = ancestral.step(fake_epsilon(x, t), t, x, generator=seeded(int(t))).prev_sample
        b = ddim.step(fake_epsilon(x, t), t, x, generator=seeded(int(t))).prev_sample
        torch.testing.assert_close(a, b)
        x = a


def test_deterministic_ddim_uses_no_randomness():
    scheduler = ConstantAlphaDDPMScheduler(alpha=0.9, num_train_timesteps=10, sampler="ddim")
    g = seeded()
    state = g.get_state()
    x = torch.randn(4, 2)
    for t in scheduler.timesteps:
        x = scheduler.step(fake_epsilon(x, t), t, x, generator=g).prev_sample
    assert torch.equal(g.get_state(), state)


def test_sampling_grid():
    scheduler = ConstantAlphaDDPMScheduler(alpha=0.9, num_train_timesteps=10)
    assert scheduler.timesteps.tolist() == list(range(10, 0, -1))
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [10, 8, 5, 2]
    assert [scheduler.previous_timestep(t) for t in (10, 8, 5, 2)] == [8, 5, 2, 0]


def test_training_inputs_cover_every_step_and_follow_the_forward_process():
    scheduler = ConstantAlphaDDPMScheduler(alpha=0.7, num_train_timesteps=5)
    x0 = torch.randn(2000, 2, generator=seeded(1))
    xt, t, z = scheduler.sample_training_inputs(x0, seeded(2))
    assert t.dtype == torch.long and sorted(t.unique().tolist()) == [1, 2, 3, 4, 5]
    torch.testing.assert_close(xt, scheduler.add_noise(x0, z, t))
    torch.testing.assert_close(
        xt, (0.7 ** t[:, None].double()).sqrt().float() * x0 + (1 - 0.7 ** t[:, None].double()).sqrt().float() * z
    )
    again = scheduler.sample_training_inputs(x0, seeded(2))
    assert all(torch.equal(u, v) for u, v in zip((xt, t, z), again, strict=True))


def test_scheduler_config_round_trip(tmp_path):
    scheduler = ConstantAlphaDDPMScheduler(
        alpha=0.93, num_train_timesteps=17, variance_type="beta", sampler="ddim", eta=0.3
    )
    scheduler.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "scheduler_config.json").read_text())["alpha"] == 0.93
    loaded = ConstantAlphaDDPMScheduler.from_pretrained(tmp_path)  # config and timesteps: test_conformance.py
    torch.testing.assert_close(loaded.alphas_cumprod, scheduler.alphas_cumprod)


# ------------------------------------------------------------------------------------ diffusers equivalence


def _diffusers_ddpm(alpha, T, variance_type):
    return DDPMScheduler(
        num_train_timesteps=T,
        trained_betas=[1 - alpha] * T,
        clip_sample=False,
        prediction_type="epsilon",
        variance_type={"beta_tilde": "fixed_small", "beta": "fixed_large"}[variance_type],
        timestep_spacing="trailing",
    )


def test_add_noise_matches_diffusers_with_index_offset():
    alpha, T = 0.9, 20
    ours, theirs = ConstantAlphaDDPMScheduler(alpha=alpha, num_train_timesteps=T), _diffusers_ddpm(alpha, T, "beta")
    x0, z = torch.randn(8, 2, generator=seeded(1)), torch.randn(8, 2, generator=seeded(2))
    t = torch.tensor([1, 2, 5, 9, 13, 17, 19, 20])
    torch.testing.assert_close(ours.add_noise(x0, z, t), theirs.add_noise(x0, z, t - 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variance_type", ["beta_tilde", "beta"])
def test_full_ancestral_trajectory_matches_diffusers_ddpm(variance_type):
    alpha, T = 0.9, 15
    ours = ConstantAlphaDDPMScheduler(alpha=alpha, num_train_timesteps=T, variance_type=variance_type)
    theirs = _diffusers_ddpm(alpha, T, variance_type)
    g_ours, g_theirs = assert_strided_steps_match(ours, theirs, T)
    assert torch.equal(g_ours.get_state(), g_theirs.get_state())


def test_strided_ancestral_steps_match_diffusers_ddpm():
    alpha, T, S = 0.95, 40, 8
    ours = ConstantAlphaDDPMScheduler(alpha=alpha, num_train_timesteps=T)
    theirs = _diffusers_ddpm(alpha, T, "beta_tilde")
    # diffusers also draws noise on the last ancestral step, with variance β̃ = 0 (clamped to 1e-20): no visible effect
    assert_strided_steps_match(ours, theirs, S)


def assert_strided_steps_match(ours, theirs, num_steps, **their_options) -> tuple[torch.Generator, torch.Generator]:
    """On ``num_steps`` strided steps ours (steps 1 … T) and diffusers' (0 … T − 1) visit the same levels and, from
    the same start and noise stream, give the same predicted x̂_0 and states at every step. Returns the two noise
    generators after the last step."""
    ours.set_timesteps(num_steps)
    theirs.set_timesteps(num_steps)
    assert (ours.timesteps - 1).tolist() == theirs.timesteps.tolist()
    x = torch.randn(32, 2, generator=seeded(0))
    y = x.clone()
    g_ours, g_theirs = seeded(7), seeded(7)
    for t, tau in zip(ours.timesteps, theirs.timesteps, strict=True):
        a = ours.step(fake_epsilon(x, t), t, x, generator=g_ours)
        b = theirs.step(fake_epsilon(y, tau + 1), tau, y, generator=g_theirs, **their_options)
        torch.testing.assert_close(a.pred_original_sample, b.pred_original_sample, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a.prev_sample, b.prev_sample, rtol=1e-4, atol=1e-4)
        x, y = a.prev_sample, b.prev_sample
    return g_ours, g_theirs


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_strided_ddim_matches_diffusers_ddim(eta):
    alpha, T, S = 0.95, 40, 5
    ours = ConstantAlphaDDPMScheduler(alpha=alpha, num_train_timesteps=T, sampler="ddim", eta=eta)
    theirs = DDIMScheduler(
        num_train_timesteps=T,
        trained_betas=[1 - alpha] * T,
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )
    assert_strided_steps_match(ours, theirs, S, eta=eta)


# ------------------------------------------------------------------------------------------------ oracle


def _mixture_log_density(x, data, a):
    """log p_t(x) for x_0 uniform on ``data``: a mixture of N(√ᾱ x_0^(i), (1 − ᾱ) I)."""
    components = torch.distributions.Independent(
        torch.distributions.Normal(math.sqrt(a) * data, math.sqrt(1 - a) * torch.ones_like(data)), 1
    )
    mixture = torch.distributions.Categorical(logits=torch.zeros(data.shape[0], dtype=data.dtype))
    return torch.distributions.MixtureSameFamily(mixture, components).log_prob(x)


@pytest.mark.parametrize("t", [1, 4, 15, 40])
def test_oracle_is_tweedies_score_of_the_noisy_mixture(t):
    # Independent route: E[z | x_t] = −√(1 − ᾱ_t) ∇ log p_t(x_t), the gradient taken by autograd.
    data = [[1.0, 0.0], [0.0, 1.0], [-0.75, -0.375]]  # exact in float32, the buffer's dtype
    oracle = DDPMOracle(data_points=data, alpha=0.9, num_train_timesteps=40)
    x = (2 * torch.randn(64, 2, generator=seeded(t), dtype=torch.float64)).requires_grad_(True)
    a = 0.9**t
    (score,) = torch.autograd.grad(_mixture_log_density(x, torch.tensor(data, dtype=torch.float64), a).sum(), x)
    torch.testing.assert_close(oracle(x.detach(), t).sample, -math.sqrt(1 - a) * score, rtol=1e-9, atol=1e-9)


def test_oracle_equals_the_monte_carlo_posterior_mean_of_the_noise():
    # Tower property: E[z | x_t ∈ B] = E[ε*(x_t) | x_t ∈ B] for every bin B; compare per bin by Monte Carlo.
    data = torch.tensor([[-1.0], [0.5], [2.0]])
    t, alpha = 3, 0.8
    oracle = DDPMOracle(data_points=data.tolist(), alpha=alpha, num_train_timesteps=10)
    g = seeded(11)
    n = 400_000
    x0 = data[torch.randint(0, 3, (n,), generator=g)].double()
    z = torch.randn(n, 1, generator=g, dtype=torch.float64)
    xt = math.sqrt(alpha**t) * x0 + math.sqrt(1 - alpha**t) * z
    eps_star = oracle(xt, t).sample
    bins = torch.floor(xt[:, 0] / 0.1).long()
    checked = 0
    for b in bins.unique():
        mask = bins == b
        if mask.sum() < 2000:
            continue
        residual = z[mask, 0] - eps_star[mask, 0]
        assert residual.mean().abs() < 4.5 * residual.std() / math.sqrt(mask.sum()), f"bin {int(b)}"
        checked += 1
    assert checked >= 25
    # The oracle is not the trivial E[z] = 0: it explains a large part of the noise at this t.
    assert (z - eps_star).square().mean() < 0.7 * z.square().mean()


def test_oracle_tends_to_the_input_as_alpha_bar_vanishes():
    oracle = DDPMOracle(data_points=TWO_POINTS, alpha=0.8, num_train_timesteps=300)
    x = 3 * torch.randn(50, 2, generator=seeded(), dtype=torch.float64)
    gaps = [(oracle(x, t).sample - x).abs().max().item() for t in (2, 10, 40, 100, 300)]
    assert all(b < a for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[0] > 0.3 and gaps[-1] < 1e-12  # ᾱ_300 = 0.8^300 ≈ 1e-29


def test_oracle_attains_the_lowest_denoising_loss():
    # For any field h, E‖z − ε* − δh‖² = E‖z − ε*‖² + δ² E‖h‖²: the cross term vanishes because ε* = E[z | x_t].
    scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(50, 1e-3)
    oracle = DDPMOracle(data_points=TWO_POINTS, alpha=scheduler.config.alpha, num_train_timesteps=50)
    g = seeded(5)
    x0 = torch.tensor(TWO_POINTS, dtype=torch.float64)[torch.randint(0, 2, (200_000,), generator=g)]
    xt, t, z = scheduler.sample_training_inputs(x0, g)
    eps = oracle(xt, t).sample
    base = (z - eps).square().sum(1).mean()
    perturbations = {
        "shift": torch.tensor([0.3, -0.2], dtype=torch.float64).expand_as(eps),
        "scale": 0.2 * eps,
        "field": 0.3 * torch.sin(2 * xt) * (t[:, None] / 50),
    }
    for name, h in perturbations.items():
        for sign in (1.0, -1.0):
            loss = (z - eps - sign * h).square().sum(1).mean()
            assert loss > base, name
            assert float(loss - base) == pytest.approx(float(h.square().sum(1).mean()), rel=0.1), name


def test_a_trained_network_approaches_the_oracle_at_every_t():
    T = 20
    scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(T, 1e-3)
    oracle = DDPMOracle(data_points=TWO_POINTS, alpha=scheduler.config.alpha, num_train_timesteps=T)
    data = torch.tensor(TWO_POINTS)
    net = tiny_epsilon_network(0)

    def gap_by_quarter():
        g = seeded(123)
        x0 = data[torch.randint(0, 2, (4000,), generator=g)]
        xt, t, _ = scheduler.sample_training_inputs(x0, g)
        with torch.no_grad():
            sq = (net(xt, t).sample - oracle(xt, t).sample).square().sum(1)
        return torch.stack([sq[(t - 1) * 4 // T == q].mean() for q in range(4)])

    untrained = gap_by_quarter()
    g = seeded(1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        xt, t, z = scheduler.sample_training_inputs(data[torch.randint(0, 2, (256,), generator=g)], g)
        loss = (net(xt, t).sample - z).square().sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = gap_by_quarter()
    assert (trained < 0.1 * untrained).all(), (trained, untrained)
    assert trained.mean() < 0.05


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_sampling_with_the_oracle_returns_the_data_points(sampler):
    pipe = oracle_pipeline(num_train_timesteps=1000, sampler=sampler)
    x = pipe(num_samples=500, generator=seeded()).samples
    distances = torch.cdist(x, torch.tensor(TWO_POINTS))
    assert distances.min(1).values.max() < 1e-3
    assert 0.4 < (distances.argmin(1) == 0).float().mean() < 0.6


def test_strided_ddim_with_the_oracle_lands_mostly_on_the_data_points():
    pipe = oracle_pipeline(num_train_timesteps=1000, sampler="ddim")
    x = pipe(num_samples=500, num_inference_steps=100, generator=seeded()).samples
    assert (torch.cdist(x, torch.tensor(TWO_POINTS)).min(1).values < 0.01).float().mean() > 0.85


def test_oracle_bad_inputs():
    with pytest.raises(ValueError, match="data_points"):
        DDPMOracle(data_points=[])
    with pytest.raises(ValueError, match="alpha"):
        DDPMOracle(alpha=1.0)
    with pytest.raises(ValueError, match="num_train_timesteps"):
        DDPMOracle(num_train_timesteps=0)
    oracle = DDPMOracle(num_train_timesteps=10)
    with pytest.raises(ValueError, match="timestep"):
        oracle(torch.zeros(3, 2), 0)
    with pytest.raises(ValueError, match="timestep"):
        oracle(torch.zeros(3, 2), 11)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        oracle(torch.zeros(3, 5), 2)


# ---------------------------------------------------------------------------------------------- pipeline


def test_samples_shape_and_trajectory():
    # Repeatability, output types, save/load and Hub-id round trips: tests/test_conformance.py.
    pipe = tiny_ddpm_pipeline()
    a = pipe(num_samples=13, generator=seeded(), return_trajectory=True)
    assert a.samples.shape == (13, 2) and a.samples.dtype == torch.float32
    assert a.trajectory.shape == (11, 13, 2) and a.timesteps == list(range(10, -1, -1)) and a.nfe == 10
    torch.testing.assert_close(a.trajectory[0], torch.randn(13, 2, generator=seeded()))
    assert torch.equal(a.trajectory[-1], a.samples)


def test_pipeline_runs_the_scheduler_loop_with_the_integer_step():
    pipe = tiny_ddpm_pipeline(sampler="ddim")
    out = pipe(num_samples=6, num_inference_steps=4, generator=seeded(), return_trajectory=True)
    assert out.timesteps == [10, 8, 5, 2, 0] and out.trajectory.shape == (5, 6, 2)
    x = torch.randn(6, 2, generator=seeded())
    scheduler = ConstantAlphaDDPMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(4)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(pipe.model(x, float(t)).sample, t, x).prev_sample
    torch.testing.assert_close(out.samples, x)


def test_saved_folder_layout(tmp_path):
    pipe = tiny_ddpm_pipeline(variance_type="beta")
    pipe.save_pretrained(tmp_path)
    names = ["model", "model_index.json", "pipeline_ddpm_points.py", "scheduler", "weights_sha256.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert (tmp_path / "model" / "diffusion_pytorch_model.safetensors").is_file()
    for loader in (DDPMPointsPipeline, HfgenPipeline):
        assert loader.from_pretrained(tmp_path).scheduler.config.variance_type == "beta"


def test_oracle_pipeline_saves_and_loads(tmp_path):
    pipe = oracle_pipeline(data_points=[[0.5, 0.5], [-1.0, 2.0], [3.0, 0.0]], num_train_timesteps=30)
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "model" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = DDPMPointsPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.model, DDPMOracle) and loaded.model.config.data_points == pipe.model.config.data_points
    torch.testing.assert_close(
        loaded(num_samples=20, generator=seeded()).samples, pipe(num_samples=20, generator=seeded()).samples
    )


def test_forward_trajectory_is_one_markov_path_with_the_right_marginals():
    pipe = tiny_ddpm_pipeline(num_train_timesteps=10)
    alpha = pipe.scheduler.config.alpha
    x0 = torch.tensor([[1.0, -1.0]]).expand(100_000, 2)
    steps = [0, 2, 5, 10]
    path = pipe.forward_trajectory(x0, steps, generator=seeded())
    assert path.shape == (4, 100_000, 2) and torch.equal(path[0], x0)
    se = 5 / math.sqrt(x0.shape[0])
    for k, t in enumerate(steps):
        a = alpha**t
        assert (path[k].mean(0) - math.sqrt(a) * x0[0]).abs().max() < se
        assert (path[k].var(0) - (1 - a)).abs().max() < 2 * se
    # Consecutive states of one path: Cov(x_s, x_t) = √(ᾱ_t/ᾱ_s) (1 − ᾱ_s) (independent marginals would give 0).
    for (i, s), (j, t) in [((1, 2), (2, 5)), ((2, 5), (3, 10))]:
        cov = ((path[i] - path[i].mean(0)) * (path[j] - path[j].mean(0))).mean(0)
        expected = math.sqrt(alpha**t / alpha**s) * (1 - alpha**s)
        assert (cov - expected).abs().max() < 2 * se
    assert torch.equal(
        pipe.forward_trajectory(x0[:5], steps, seeded(1)), pipe.forward_trajectory(x0[:5], steps, seeded(1))
    )


# ------------------------------------------------------------------------------------------------- plots


def test_forward_and_reverse_plots_show_the_steps_and_alpha_bar():
    pipe = tiny_ddpm_pipeline(num_train_timesteps=10)
    alpha = pipe.scheduler.config.alpha
    path = pipe.forward_trajectory(torch.randn(50, 2, generator=seeded()), [0, 1, 5, 10], seeded())
    fig = plot_diffusion_forward(path, [0, 1, 5, 10], alpha)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == [f"t = {t}, ᾱ_t = {alpha**t:.3g}" for t in (0, 1, 5, 10)]
    np.testing.assert_allclose(fig.axes[2].collections[0].get_offsets(), path[2].numpy(), rtol=1e-6)

    out = pipe(num_samples=30, generator=seeded(), return_trajectory=True)
    fig = plot_diffusion_reverse(out.trajectory, out.timesteps, alpha, num_snapshots=6, bounds=(-4, 4))
    assert [ax.get_title().split(",")[0] for ax in fig.axes] == [f"t = {t}" for t in (10, 8, 6, 4, 2, 0)]
    np.testing.assert_allclose(fig.axes[-1].collections[0].get_offsets(), out.samples.numpy(), rtol=1e-6)
    assert fig.axes[0].get_xlim() == (-4, 4)


def test_plot_bad_inputs():
    path = torch.zeros(3, 5, 2)
    with pytest.raises(ValueError, match="timesteps"):
        plot_diffusion_forward(path, [0, 1], 0.9)
    with pytest.raises(ValueError, match="alpha"):
        plot_diffusion_forward(path, [0, 1, 2], 1.0)
    with pytest.raises(ValueError, match=r"\(K, N, 2\)"):
        plot_diffusion_reverse(torch.zeros(3, 5, 3), [2, 1, 0], 0.9)
    with pytest.raises(ValueError, match="num_snapshots"):
        plot_diffusion_reverse(path, [2, 1, 0], 0.9, num_snapshots=1)


# ------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.2])
def test_alpha_outside_the_open_unit_interval_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        ConstantAlphaDDPMScheduler(alpha=alpha)


def test_bad_scheduler_arguments():
    with pytest.raises(TypeError, match="alpha"):
        ConstantAlphaDDPMScheduler(alpha=True)
    with pytest.raises(ValueError, match="num_train_timesteps"):
        ConstantAlphaDDPMScheduler(num_train_timesteps=0)
    with pytest.raises(TypeError, match="num_train_timesteps"):
        ConstantAlphaDDPMScheduler(num_train_timesteps=2.5)
    with pytest.raises(ValueError, match="variance_type"):
        ConstantAlphaDDPMScheduler(variance_type="fixed_small")
    with pytest.raises(ValueError, match="sampler"):
        ConstantAlphaDDPMScheduler(sampler="euler")
    with pytest.raises(ValueError, match="eta"):
        ConstantAlphaDDPMScheduler(eta=1.5)
    with pytest.raises(ValueError, match="final_alpha_bar"):
        alpha_for_final_alpha_bar(10, 0.0)
    with pytest.raises(ValueError, match="num_train_timesteps"):
        alpha_for_final_alpha_bar(0, 0.01)


def test_bad_timesteps_and_shapes():
    scheduler = ConstantAlphaDDPMScheduler(alpha=0.9, num_train_timesteps=10)
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"0 … 10"):
        scheduler.add_noise(x, x, 11)
    with pytest.raises(ValueError, match=r"0 … 10"):
        scheduler.add_noise(x, x, torch.tensor([1, 2, -1, 3]))
    with pytest.raises(TypeError, match="integer"):
        scheduler.add_noise(x, x, torch.tensor(0.5))
    with pytest.raises(ValueError, match="one entry per sample"):
        scheduler.add_noise(x, x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="noise"):
        scheduler.add_noise(x, torch.zeros(4, 3), 2)
    with pytest.raises(ValueError, match="from_timesteps"):
        scheduler.forward_transition(x, x, 5, 2)
    scheduler.set_timesteps(4)
    with pytest.raises(ValueError, match="not on the sampling grid"):
        scheduler.step(x, 9, x)
    with pytest.raises(ValueError, match="model_output"):
        scheduler.step(torch.zeros(4, 3), 10, x)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(11)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(0)
    with pytest.raises(TypeError, match="num_inference_steps"):
        scheduler.set_timesteps(2.0)


def test_bad_pipeline_inputs():
    pipe = tiny_ddpm_pipeline()
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(num_samples=2, num_inference_steps=20)
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_samples=2, output_type="pil")
    with pytest.raises(TypeError, match="scheduler"):
        DDPMPointsPipeline(pipe.model, DDPMScheduler())
    with pytest.raises(ValueError, match="original_samples"):
        pipe.forward_trajectory(torch.zeros(3, 4), [1, 2])
    with pytest.raises(ValueError, match="increasing"):
        pipe.forward_trajectory(torch.zeros(3, 2), [3, 1])
    with pytest.raises(ValueError, match="timesteps"):
        pipe.forward_trajectory(torch.zeros(3, 2), [1, 11])


@pytest.mark.parametrize(
    ("timesteps", "reason"),
    [
        ([0.5, 1.7], "0.5 is not an integer step"),  # was truncated to [0, 1] silently
        ([1, 2.5], "2.5 is not an integer step"),
        ([True, 2], "True is not an integer step"),
        ([1, float("nan")], "nan is not an integer step"),
        ([1, float("inf")], "inf is not an integer step"),
        ([-1, 2], "-1 is out of range"),
        ([1, 11], "11 is out of range"),
    ],
)
def test_forward_trajectory_refuses_steps_that_are_not_integers_in_0_to_T(timesteps, reason):
    expected = "`timesteps` must be a non-empty sequence of integer steps in 0 … 10 (num_train_timesteps)"
    with pytest.raises(ValueError, match=re.escape(expected) + ".*" + re.escape(reason)):
        tiny_ddpm_pipeline().forward_trajectory(torch.zeros(3, 2), timesteps)


def test_forward_trajectory_takes_integral_floats_ranges_and_integer_tensors_alike():
    pipe, x0 = tiny_ddpm_pipeline(), torch.randn(4, 2, generator=seeded())
    reference = pipe.forward_trajectory(x0, [1, 4, 10], generator=seeded(1))
    for steps in ([1.0, 4.0, 10.0], torch.tensor([1, 4, 10]), (1, 4, 10)):
        assert torch.equal(pipe.forward_trajectory(x0, steps, generator=seeded(1)), reference)
    assert pipe.forward_trajectory(x0, range(0, 11, 5), generator=seeded(1)).shape == (3, 4, 2)
    for bad in ([], "12", torch.zeros(2, 2), 5):
        with pytest.raises(ValueError, match="`timesteps` must be a non-empty sequence"):
            pipe.forward_trajectory(x0, bad)


# --------------------------------------------------------------------------- general β schedules (diffusers)


class _ShiftedOracle(DDPMOracle):
    """The oracle reading diffusers' index τ as our level t = τ + 1 (ConstantAlphaDDPMScheduler's docstring)."""

    def forward(self, sample, timestep, return_dict=True):
        return super().forward(sample, timestep + 1, return_dict=return_dict)


def _gaussian_oracle_pipeline(scheduler, mean=(0.5, -1.0), var=(0.25, 2.0)):
    from factories import GaussianEpsilonOracle

    diffusers_scheduler = not isinstance(scheduler, ConstantAlphaDDPMScheduler)
    table = (
        torch.cat([torch.zeros(1, dtype=torch.float64), scheduler.alphas_cumprod.double().log()])
        if diffusers_scheduler
        else scheduler.alphas_cumprod.log()
    )
    oracle = GaussianEpsilonOracle(list(mean), list(var), table.tolist(), level_offset=int(diffusers_scheduler))
    pipeline = DDPMPointsPipeline(oracle, scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_diffusers_ddpm_scheduler_with_the_oracle_reproduces_the_constant_alpha_samples():
    # DDPMScheduler(trained_betas=[1 − α] * T) is the constant-α chain with τ = t − 1: same generator, same samples.
    T = 40
    ours = oracle_pipeline(data_points=[[1.0, 0.0], [-1.0, 1.0], [0.0, -1.5]], num_train_timesteps=T)
    shifted = _ShiftedOracle(**{k: v for k, v in ours.model.config.items() if not k.startswith("_")})
    theirs = DDPMPointsPipeline(shifted, _diffusers_ddpm(ours.scheduler.config.alpha, T, "beta_tilde"))
    theirs.set_progress_bar_config(disable=True)
    a = ours(num_samples=64, generator=seeded(3), return_trajectory=True)
    b = theirs(num_samples=64, generator=seeded(3), return_trajectory=True)
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-4, atol=1e-4)
    assert a.timesteps == b.timesteps == list(range(T, -1, -1))


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_diffusers_schedules_have_the_closed_form_forward_marginals_and_sample_the_oracles_gaussian(schedule):
    T = 200
    kwargs = {"beta_end": 0.1} if schedule != "squaredcos_cap_v2" else {}
    scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule=schedule, clip_sample=False, **kwargs)
    pipe = _gaussian_oracle_pipeline(scheduler)
    # forward: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z with ᾱ_t = alphas_cumprod[t − 1]
    x0 = torch.tensor([[1.0, -1.0]]).expand(50_000, 2)
    levels = [1, 50, 120, T]
    path = pipe.forward_trajectory(x0, levels, generator=seeded())
    se = 5 / math.sqrt(x0.shape[0])
    for k, t in enumerate(levels):
        a = float(scheduler.alphas_cumprod[t - 1])
        assert (path[k].mean(0) - math.sqrt(a) * x0[0]).abs().max() < se
        assert (path[k].var(0) - (1 - a)).abs().max() < 2 * se
    # reverse: ancestral sampling with the exact ε of N(μ, diag v) returns N(μ, diag v) (up to O(1/T))
    samples = pipe(num_samples=20_000, generator=seeded(1)).samples.double()
    torch.testing.assert_close(samples.mean(0), torch.tensor([0.5, -1.0], dtype=torch.float64), atol=0.04, rtol=0)
    torch.testing.assert_close(samples.var(0), torch.tensor([0.25, 2.0], dtype=torch.float64), atol=0, rtol=0.06)


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, DDIMScheduler])
def test_pipeline_with_a_diffusers_scheduler_saves_and_loads(tmp_path, scheduler_class):
    scheduler = scheduler_class(num_train_timesteps=10, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    pipe = DDPMPointsPipeline(tiny_epsilon_network(), scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", scheduler_class.__name__]
    loaded = DDPMPointsPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is scheduler_class
    assert loaded.scheduler.config.beta_schedule == "squaredcos_cap_v2" and not loaded.scheduler.config.clip_sample
    torch.testing.assert_close(
        loaded(num_samples=8, generator=seeded()).samples, pipe(num_samples=8, generator=seeded()).samples
    )


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        (DDPMScheduler(num_train_timesteps=10), "clip_sample=False"),
        (DDPMScheduler(num_train_timesteps=10, clip_sample=False, prediction_type="v_prediction"), "epsilon"),
        (DDPMScheduler(num_train_timesteps=10, clip_sample=False, variance_type="learned"), "variance_type"),
        (DDIMScheduler(num_train_timesteps=10, clip_sample=False, thresholding=True), "threshold"),
    ],
)
def test_a_scheduler_that_does_not_fit_is_refused_naming_the_argument(scheduler, message):
    with pytest.raises(TypeError, match=f"`scheduler`.*{message}"):
        DDPMPointsPipeline(tiny_epsilon_network(), scheduler)
    pipe = tiny_ddpm_pipeline()
    with pytest.raises(TypeError, match="`scheduler`"):
        pipe.scheduler = scheduler


# --------------------------------------------------------------------------- likelihood (continuous limit)


@pytest.mark.parametrize("kind", ["constant_alpha", "linear"])
def test_log_prob_of_the_gaussian_oracle_is_the_exact_density_of_the_first_level(kind):
    # With the exact ε of N(μ, diag v) the probability-flow ODE of the continuous limit transports the exact level
    # marginals N(√ᾱ_t μ, ᾱ_t v + 1 − ᾱ_t), so log_prob at level t_s is their log-density, up to the solver's
    # tolerance and the O(√ᾱ_T |μ|) error of taking p_T = N(0, I) (ᾱ_T = 1e-6 gives 7e-4 here, 1e-10 gives 7e-6).
    if kind == "constant_alpha":
        scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(100, 1e-10)
    else:
        # a steep linear schedule (ᾱ_T ≈ 1e-11): log ᾱ between the integer levels is interpolated by both the
        # pipeline and the oracle, so the continuous limit is exact for the oracle's marginals too
        scheduler = DDPMScheduler(num_train_timesteps=100, beta_end=0.5, clip_sample=False)
    pipe = _gaussian_oracle_pipeline(scheduler, mean=(0.2, -0.3), var=(0.5, 1.5))
    x = torch.randn(6, 2, generator=seeded(2), dtype=torch.float64) + torch.tensor([0.2, -0.3])
    for level in (1.0, 0.25, 30.0) if kind == "constant_alpha" else (1.0, 30.0):
        mean, var = pipe.model.marginal(level)
        exact = torch.distributions.Normal(mean, var.sqrt()).log_prob(x).sum(1)
        estimate = pipe.log_prob(x, start_level=level, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(estimate, exact, atol=3e-5, rtol=0)


def test_log_prob_bad_inputs():
    pipe = tiny_ddpm_pipeline()
    with pytest.raises(ValueError, match="start_level"):
        pipe.log_prob(torch.zeros(2, 2), start_level=0.0)
    with pytest.raises(ValueError, match="start_level"):
        pipe.log_prob(torch.zeros(2, 2), start_level=10)
    with pytest.raises(ValueError, match="`x`.*NaN"):
        pipe.log_prob(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match="`x`"):
        pipe.log_prob(torch.zeros(2, 3))
