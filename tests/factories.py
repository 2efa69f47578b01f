"""Tiny components for fast tests (as diffusers' ``get_dummy_components``), analytic models with closed forms,
and small data sets the tests write: one module for every family."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
from accelerate.state import AcceleratorState, GradientState
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from hfgen import (
    VAE,
    AutoEncoder,
    AutoEncoderPipeline,
    BridgeScheduler,
    ConstantAlphaDDPMScheduler,
    DDPMOracle,
    DDPMPointsPipeline,
    FlowMatchingPipeline,
    GaussianMixture,
    GibbsScheduler,
    RBMModel,
    RBMPipeline,
    SchrodingerBridgePipeline,
    ScoreSDEPipeline,
    TimeMLP,
    VAEPipeline,
    VESDEScheduler,
    VPSDEScheduler,
    flow_match_scheduler,
)
from hfgen.methods.score_matching import diffused_mixture_score
from hfgen.training import FlowMatchingArguments

# ---- flow matching ------------------------------------------------------------


AFFINE_A = [[3 / 5, 2 / 5], [1 / 5, 4 / 5]]


def tiny_flow_matching_pipeline(solver: str = "euler", source=None, seed: int = 0) -> FlowMatchingPipeline:
    """A random-weight pipeline with a width-16 velocity network."""
    torch.manual_seed(seed)
    velocity = TimeMLP(dim=2, hidden_size=16, num_layers=2, time_embedding_dim=8)
    pipeline = FlowMatchingPipeline(velocity, flow_match_scheduler(solver), source=source)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


class StraightLineAffineVelocity(ModelMixin, ConfigMixin):
    r"""Velocity of the straight-line flow ``x(t) = ((1 − t) I + t A) z`` that maps ``z`` to ``A z`` at ``t = 1``:
    ``v(x, t) = (A − I) ((1 − t) I + t A)^{-1} x``. With ``z ~ N(0, I)``, ``x(1) ~ N(0, A Aᵀ)``."""

    @register_to_config
    def __init__(self, matrix: list[list[float]] = AFFINE_A, dim: int = 2):
        super().__init__()
        self.register_buffer("A", torch.tensor(matrix, dtype=torch.float64))
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a parameter so diffusers can infer device/dtype

    def forward(self, sample, timestep, return_dict=True):
        t = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1)[0]
        eye = torch.eye(self.config.dim, dtype=torch.float64)
        m = (1 - t) * eye + t * self.A
        velocity = (sample.double() @ torch.linalg.inv(m).T @ (self.A - eye).T).to(sample.dtype)
        return {"sample": velocity} if return_dict else (velocity,)


def publish_to_local_hub_cache(folder: str | os.PathLike, repo_id: str) -> None:
    """Lay out ``folder`` in the huggingface_hub cache as revision ``main`` of model repo ``repo_id``."""
    cache = Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (cache / "refs").mkdir(parents=True, exist_ok=True)
    (cache / "refs" / "main").write_text(revision)
    shutil.copytree(folder, cache / "snapshots" / revision, dirs_exist_ok=True)


# ---- bridge ---------------------------------------------------------------------------------------------------------


MEAN0 = [0.0, 0.0]
COV0 = [[1.0, 0.3], [0.3, 0.5]]
MEAN1 = [2.0, 1.0]
COV1 = [[0.6, -0.2], [-0.2, 1.2]]


def tiny_bridge_pipeline(source=None, target=None, num_steps: int = 4, seed: int = 0) -> SchrodingerBridgePipeline:
    """A random-weight pipeline with two width-16 mean networks over a ``num_steps``-step chain."""
    torch.manual_seed(seed)
    networks = [TimeMLP(dim=2, hidden_size=16, num_layers=2, time_embedding_dim=8, time_scale=1.0) for _ in "fb"]
    pipeline = SchrodingerBridgePipeline(*networks, BridgeScheduler(num_steps=num_steps), source=source, target=target)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def gaussian_sampler(mean, cov):
    """``sampler(n, generator)`` of ``N(mean, cov)`` in float32."""
    mean, chol = torch.tensor(mean), torch.linalg.cholesky(torch.tensor(cov))
    return lambda n, generator=None: mean + torch.randn(n, len(mean), generator=generator) @ chol.T


def population_dsb_ipf(mean0, cov0, mean1, cov1, gammas, num_ipf_iterations):
    r"""DSB's IPF with affine means solved on exact Gaussian moments (infinitely many trajectories, exact
    least squares): returns ``(mean, cov, cross)`` of ``X_N`` and ``Cov(X_0, X_N)`` for the final forward chain.

    A chain ``X' = W X + d + √(2γ) Z`` moves the moments ``μ' = W μ + d``, ``V' = W V Wᵀ + 2γ I`` and
    ``Cov(X', X) = W V``. Mean matching regresses ``T = (I − M) Y + M Y_other`` (``M`` the other direction's
    linear part, ``Y`` the input state) on ``Y``: ``W = Cov(T, Y) V_Y^{-1}``, ``d = E T − W E Y``.
    """
    mean0, mean1 = torch.tensor(mean0, dtype=torch.float64), torch.tensor(mean1, dtype=torch.float64)
    cov0, cov1 = torch.tensor(cov0, dtype=torch.float64), torch.tensor(cov1, dtype=torch.float64)
    gammas = torch.as_tensor(gammas, dtype=torch.float64)
    n, eye = len(gammas), torch.eye(len(mean0), dtype=torch.float64)

    def run(maps, mean, cov, order):
        moments = {order[0]: (mean, cov)}
        for k in order[:-1]:
            w, d = maps[k]
            nxt = k + 1 if order[0] == 0 else k - 1
            step = min(k, nxt)
            mean, cov = w @ mean + d, w @ cov @ w.T + 2 * gammas[step] * eye
            moments[nxt] = (mean, cov)
        return moments

    def fit(maps, moments, order):
        fitted = {}
        for k in order[:-1]:  # k: state read by the fitted map, j: the other end of the step
            j = k + 1 if order[0] == 0 else k - 1
            w_other, _ = maps[j]
            (mean_k, cov_k), (mean_j, cov_j) = moments[k], moments[j]
            cross_jk = w_other @ cov_j  # Cov(X_k, X_j) = W_j V_j: X_k was produced from X_j
            target_cov = (eye - w_other) @ cov_k + w_other @ cross_jk.T  # Cov(T, X_k), T = (I − M) X_k + M X_j
            target_mean = (eye - w_other) @ mean_k + w_other @ mean_j
            w = target_cov @ torch.linalg.inv(cov_k)
            fitted[k] = (w, target_mean - w @ mean_k)
        return fitted

    forward = {k: (eye, torch.zeros_like(mean0)) for k in range(n)}  # Brownian reference
    for _ in range(num_ipf_iterations):
        # backward maps read X_{k+1}; trajectories forward from X_0; the regression pairs X_{k+1} with X_k
        moments = run(forward, mean0, cov0, list(range(n + 1)))
        backward = fit(forward, moments, list(range(n, -1, -1)))
        moments = run(backward, mean1, cov1, list(range(n, -1, -1)))
        forward = fit(backward, moments, list(range(n + 1)))
    mean, cov, cross = mean0, cov0, cov0
    for k in range(n):
        w, d = forward[k]
        mean, cov, cross = w @ mean + d, w @ cov @ w.T + 2 * gammas[k] * eye, cross @ w.T
    return mean, cov, cross


# ---- ddpm -----------------------------------------------------------------------------------------------------------


TWO_POINTS = [[1.0, 0.0], [0.0, 1.0]]


def tiny_epsilon_network(seed: int = 0) -> TimeMLP:
    """A width-16 ε-network taking the integer step ``t`` (``time_scale=1``)."""
    torch.manual_seed(seed)
    return TimeMLP(dim=2, hidden_size=16, num_layers=2, time_embedding_dim=8, time_scale=1.0)


def tiny_ddpm_pipeline(num_train_timesteps: int = 10, seed: int = 0, **scheduler_kwargs) -> DDPMPointsPipeline:
    """A random-weight pipeline; ``ᾱ_T = 0.01``."""
    scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(num_train_timesteps, 0.01, **scheduler_kwargs)
    pipeline = DDPMPointsPipeline(tiny_epsilon_network(seed), scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def oracle_pipeline(
    data_points=TWO_POINTS, num_train_timesteps: int = 100, final_alpha_bar: float = 1e-3, **scheduler_kwargs
) -> DDPMPointsPipeline:
    """The closed-form optimal ε-predictor of ``data_points`` in a pipeline."""
    scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(
        num_train_timesteps, final_alpha_bar, **scheduler_kwargs
    )
    oracle = DDPMOracle(data_points=data_points, alpha=scheduler.config.alpha, num_train_timesteps=num_train_timesteps)
    pipeline = DDPMPointsPipeline(oracle, scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# ---- rbm ------------------------------------------------------------------------------------------------------------


def random_rbm(
    num_visible: int = 10, num_hidden: int = 6, weight_std: float = 1.0, bias_std: float = 0.5, seed: int = 0
) -> RBMModel:
    """A float64 RBM with ``W ~ N(0, weight_std²)`` and biases ``~ N(0, bias_std²)``: small enough to enumerate."""
    torch.manual_seed(seed)
    model = RBMModel(num_visible=num_visible, num_hidden=num_hidden, weight_init_std=weight_std).double()
    with torch.no_grad():
        model.visible_bias.normal_(0.0, bias_std)
        model.hidden_bias.normal_(0.0, bias_std)
    return model


def binary_data(n: int, num_visible: int, seed: int = 0) -> torch.Tensor:
    """``n`` float64 binary vectors, each bit Bernoulli(½)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, num_visible, generator=g, dtype=torch.float64) < 0.5).double()


def tiny_rbm_pipeline(seed: int = 0) -> RBMPipeline:
    """An RBM over 1×4×4 binary images with 8 hidden units and visibly non-uniform weights."""
    torch.manual_seed(seed)
    model = RBMModel(num_visible=16, num_hidden=8, image_size=4, in_channels=1, weight_init_std=1.0)
    pipeline = RBMPipeline(model, GibbsScheduler())
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# ---- score_sde ------------------------------------------------------------------------------------------------------


SDES = {"vp": VPSDEScheduler, "ve": VESDEScheduler}
MEAN = [0.6, -0.4]
COV = [[0.5, 0.2], [0.2, 0.3]]


def tiny_score_network(seed: int = 0, dim: int = 2) -> TimeMLP:
    """A width-16 score/ε network taking the SDE time ``t ∈ [ε, 1]``."""
    torch.manual_seed(seed)
    return TimeMLP(dim=dim, hidden_size=16, num_layers=2, time_embedding_dim=8, time_scale=100.0)


def tiny_score_sde_pipeline(sde: str = "vp", seed: int = 0, **scheduler_kwargs) -> ScoreSDEPipeline:
    """A random-weight pipeline."""
    pipeline = ScoreSDEPipeline(tiny_score_network(seed), SDES[sde](**scheduler_kwargs))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def gaussian_mixture(means, covariances, weights) -> GaussianMixture:
    """A full-covariance float64 :class:`GaussianMixture` with the given parameters (no gradients)."""
    mixture = GaussianMixture(num_components=len(weights), dim=len(means[0])).double().requires_grad_(False)
    mixture.set_parameters(*(torch.tensor(v, dtype=torch.float64) for v in (weights, means, covariances)))
    return mixture


class ExactMixtureScore(ModelMixin, ConfigMixin):
    r"""The exact score of ``p_t`` when the data follow a Gaussian mixture and ``x_t = m_t x_0 + σ_t z``:
    ``∇ log Σ_k w_k N(x; m_t μ_k, m_t² Σ_k + σ_t² I)``, output as the score or as ``ε = −σ_t s``, as the SDE's
    ``prediction_type`` says. Float64 parameters, so a pipeline built on it runs in float64."""

    @register_to_config
    def __init__(
        self,
        means: list[list[float]] = (MEAN,),
        covariances: list[list[list[float]]] = (COV,),
        weights: list[float] = (1.0,),
        sde: str = "vp",
        sde_kwargs: dict | None = None,
        dim: int | None = None,
    ):
        super().__init__()
        self.sde = SDES[sde](**(sde_kwargs or {}))
        self.mixture = gaussian_mixture(means, covariances, weights)
        self.register_to_config(dim=len(means[0]))

    def forward(self, sample, timestep, return_dict=True):
        mean_coefficient, std = self.sde.marginal_coefficients(timestep)
        score = diffused_mixture_score(sample, self.mixture, mean_coefficient, std)
        if self.sde.config.prediction_type == "epsilon":
            score = -std.to(score) * score if std.ndim == 0 else -std.to(score)[:, None] * score
        return {"sample": score} if return_dict else (score,)


def exact_score_pipeline(
    sde: str = "vp", means=(MEAN,), covariances=(COV,), weights=(1.0,), **scheduler_kwargs
) -> ScoreSDEPipeline:
    """A pipeline whose model is the exact score of the mixture under the SDE's marginals (float64)."""
    model = ExactMixtureScore(means, covariances, weights, sde=sde, sde_kwargs=scheduler_kwargs)
    pipeline = ScoreSDEPipeline(model, SDES[sde](**scheduler_kwargs))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# ---- sdedit ---------------------------------------------------------------------------------------------------------


def interpolated_log_alpha_bar(log_alpha_bars: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """``log ᾱ(t)`` at real levels ``t ∈ [0, T]``, linear between the integer levels of the table ``(T + 1,)``."""
    T = log_alpha_bars.shape[0] - 1
    t = level.to(torch.float64).clamp(0.0, float(T))
    k = t.ceil().clamp(1, T).long()
    return log_alpha_bars[k - 1] + (t - (k - 1)) * (log_alpha_bars[k] - log_alpha_bars[k - 1])


class GaussianEpsilonOracle(ModelMixin, ConfigMixin):
    r"""``ε*(x, t) = E[z | x_t = x] = √(1 − ᾱ_t) (x − √ᾱ_t μ) / (ᾱ_t v + 1 − ᾱ_t)`` (per coordinate) for data
    ``N(μ, diag v)`` and ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z``; the model input ``τ`` is the level ``t = τ + offset``
    (``offset = 1`` for diffusers' schedulers), ``log ᾱ`` is interpolated linearly between integer levels."""

    @register_to_config
    def __init__(
        self,
        mean: list[float],
        var: list[float],
        log_alpha_bars: list[float],
        level_offset: int = 0,
        dim: int | None = None,
    ):
        super().__init__()
        self.register_buffer("data_mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("data_var", torch.tensor(var, dtype=torch.float64))
        self.register_buffer("table", torch.tensor(log_alpha_bars, dtype=torch.float64))
        self.register_to_config(dim=len(mean))

    def forward(self, sample, timestep, return_dict=True):
        level = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1, 1) + self.config.level_offset
        a = interpolated_log_alpha_bar(self.table, level).exp()
        x = sample.to(torch.float64)
        eps = (1 - a).sqrt() * (x - a.sqrt() * self.data_mean) / (a * self.data_var + 1 - a)
        eps = eps.to(sample.dtype)
        return {"sample": eps} if return_dict else (eps,)

    def marginal(self, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``x_t`` at level ``t``: ``√ᾱ_t μ`` and ``ᾱ_t v + 1 − ᾱ_t``."""
        a = interpolated_log_alpha_bar(self.table, torch.tensor(float(level))).exp()
        return a.sqrt() * self.data_mean, a * self.data_var + 1 - a


class GaussianVelocity(ModelMixin, ConfigMixin):
    r"""The flow-matching minimiser for ``x_0 ~ N(0, I)``, ``x_1 ~ N(μ, diag v)`` independent on the linear path:
    ``v(x, t) = E[x_1 − x_0 | x_t = x] = μ + (t v − (1 − t)) (x − t μ) / ((1 − t)² + t² v)`` per coordinate."""

    @register_to_config
    def __init__(self, mean: list[float], var: list[float], dim: int | None = None):
        super().__init__()
        self.register_buffer("data_mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("data_var", torch.tensor(var, dtype=torch.float64))
        self.register_to_config(dim=len(mean))

    def forward(self, sample, timestep, return_dict=True):
        t = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1, 1)
        x = sample.to(torch.float64)
        v = self.data_mean + (t * self.data_var - (1 - t)) * (x - t * self.data_mean) / (
            (1 - t) ** 2 + t**2 * self.data_var
        )
        v = v.to(sample.dtype)
        return {"sample": v} if return_dict else (v,)


# ---- training -------------------------------------------------------------------------------------------------------


TINY_RUN = {
    "max_train_steps": 6,
    "hidden_size": 8,
    "num_layers": 1,
    "num_position_frequencies": 0,
    "train_batch_size": 32,
    "lr_warmup_steps": 2,
    "checkpointing_steps": 3,
    "validation_steps": 3,
    "num_validation_samples": 40,
    "num_validation_nll_samples": 0,
    "num_eval_samples": 40,
    "num_nll_samples": 0,
    "num_inference_steps": 4,
    "logging_steps": 2,
    "report_to": "none",
}


def tiny_args(output_dir, arguments_class=FlowMatchingArguments, **overrides):
    """Arguments of a 6-step point-data run (flow matching by default; any family of toy points: score SDEs, DDPM)
    with checkpoints and validation every 3 steps; the sizes a family lacks (DDPM's NLL) are left out."""
    present = {f.name for f in fields(arguments_class)}
    tiny = {name: value for name, value in TINY_RUN.items() if name in present}
    return replace(arguments_class(output_dir=str(output_dir)), **{**tiny, **overrides})


def reset_accelerate() -> None:
    """Forget Accelerate's process-wide state, so the next in-process run starts clean."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


# ---- vae ------------------------------------------------------------------------------------------------------------


LINEAR_W = torch.tensor([[0.8, 0.5], [0.8, -0.5], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
LINEAR_B = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=torch.float64)
LINEAR_S = 0.5


def tiny_vae(likelihood: str = "bernoulli", architecture: str = "mlp", image_size: int = 8, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(
        image_size=image_size,
        hidden_sizes=[16, 8],
        conv_channels=[4, 8],
        architecture=architecture,
        likelihood=likelihood,
    )


def tiny_autoencoder(seed: int = 0) -> AutoEncoder:
    torch.manual_seed(seed)
    return AutoEncoder(image_size=8, hidden_sizes=[16, 8])


def tiny_vae_pipeline(seed: int = 0, **kwargs) -> VAEPipeline:
    pipe = VAEPipeline(tiny_vae(seed=seed, **kwargs))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_autoencoder_pipeline(seed: int = 0) -> AutoEncoderPipeline:
    pipe = AutoEncoderPipeline(tiny_autoencoder(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def linear_gaussian_posterior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior of the linear-Gaussian model: N(Σ Wᵀ(x − b)/s², Σ), Σ = (I + WᵀW/s²)⁻¹ (diagonal here)."""
    cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + LINEAR_W.T @ LINEAR_W / LINEAR_S**2)
    mean = (x.reshape(x.shape[0], -1) - LINEAR_B) @ LINEAR_W @ cov.T / LINEAR_S**2
    return mean, 0.5 * torch.log(torch.diagonal(cov)).expand_as(mean)


def linear_gaussian_log_px(x: torch.Tensor) -> torch.Tensor:
    """Exact ``log p(x)`` of the linear-Gaussian model: x ~ N(b, W Wᵀ + s² I)."""
    cov = LINEAR_W @ LINEAR_W.T + LINEAR_S**2 * torch.eye(4, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(LINEAR_B, cov).log_prob(x.reshape(x.shape[0], -1))


def linear_gaussian_elbo(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Exact ELBO for q = N(mean, diag σ²): E_q log p(x|z) − KL, with
    E_q ‖x − b − W z‖² = ‖x − b − W μ‖² + Σ_i ‖W_i‖² σ_i²."""
    flat = x.reshape(x.shape[0], -1)
    var = torch.exp(2 * log_std)
    residual = ((flat - LINEAR_B - mean @ LINEAR_W.T) ** 2).sum(1) + (var * (LINEAR_W**2).sum(0)).sum(1)
    expected_log_lik = -0.5 * residual / LINEAR_S**2 - 2 * math.log(2 * math.pi * LINEAR_S**2)
    kl = 0.5 * (var + mean**2 - 1 - 2 * log_std).sum(1)
    return expected_log_lik - kl


def linear_gaussian_vae(mean_shift: float = 0.0, log_std_shift: float = 0.0) -> VAE:
    """A float64 VAE whose decoder is the linear-Gaussian model and whose encoder is its exact posterior,
    optionally with the posterior mean shifted and its log std offset (a deliberately imperfect q)."""
    vae = VAE(image_size=2, hidden_sizes=[], likelihood="gaussian", observation_std=LINEAR_S).double()
    cov_diag = torch.diagonal(torch.linalg.inv(torch.eye(2, dtype=torch.float64) + LINEAR_W.T @ LINEAR_W / LINEAR_S**2))
    gain = cov_diag[:, None] * LINEAR_W.T / LINEAR_S**2  # (2, 4): μ = gain (x − b)
    with torch.no_grad():
        vae.decoder.body[0].weight.copy_(LINEAR_W)
        vae.decoder.body[0].bias.copy_(LINEAR_B)
        head = vae.encoder.head
        head.weight.zero_()
        head.weight[:2] = gain
        head.bias[:2] = -gain @ LINEAR_B + mean_shift
        head.bias[2:] = 0.5 * torch.log(cov_diag) + log_std_shift
    return vae


def write_image_parquet(path: Path, pixels: np.ndarray, labels: list[int] | None = None, column: str = "image"):
    """Write uint8 images ``(N, H, W)`` (mode L) or ``(N, H, W, 3)`` (RGB) as PNG rows of a parquet file."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    data = {column: [PILImage.fromarray(p) for p in pixels]}
    features = {column: Image()}
    if labels is not None:
        data["label"] = labels
        features["label"] = ClassLabel(names=[str(i) for i in range(10)])
    Dataset.from_dict(data, features=Features(features)).to_parquet(str(path))
    return path


def digit_pixels(labels: list[int], seed: int, size: int = 8) -> np.ndarray:
    """``size × size`` uint8 images: a bright 3 × 3 block whose position encodes the label, on faint noise."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, size=(len(labels), size, size)).astype(np.uint8)
    for image, label in zip(pixels, labels, strict=True):
        row, col = divmod(label, 4)
        image[2 * row : 2 * row + 3, 2 * col : 2 * col + 3] = 230
    return pixels


def digit_parquet_files(folder: Path, num_train: int, num_test: int = 20, size: int = 8) -> tuple[str, str]:
    """Train and test parquet files of :func:`digit_pixels` with the labels 0 … 9 in turn (pixels seeded 0 and 1)."""
    files = []
    for split, rows, seed in (("train", num_train, 0), ("test", num_test, 1)):
        labels = [i % 10 for i in range(rows)]
        files.append(str(write_image_parquet(folder / f"{split}.parquet", digit_pixels(labels, seed, size), labels)))
    return files[0], files[1]


def train_task(task):
    """Train ``task`` in this process to the end: the trainer (ended) and its result."""
    from hfgen.training import Trainer

    trainer = Trainer(task)
    result = trainer.train()
    trainer.end()
    return trainer, result


def resume_at(train, args, root: Path, step: int = 3):
    """``train(args)`` in ``root/full``, then again in ``root/resumed`` holding only a copy of the first run's
    checkpoint-``step`` (as if killed right after saving it), resumed from it: the two results of ``train``."""
    full = train(replace(args, output_dir=str(root / "full")))
    reset_accelerate()
    resumed_dir = root / "resumed"
    checkpoint = Path("checkpoints") / f"checkpoint-{step}"
    shutil.copytree(root / "full" / checkpoint, resumed_dir / checkpoint)
    return full, train(replace(args, output_dir=str(resumed_dir), resume_from_checkpoint="latest"))


def checkpoint_file(output_dir: Path, step: int, name: str = "weights-model.safetensors") -> dict[str, torch.Tensor]:
    """The tensors of ``name`` in checkpoint-``step`` of the run in ``output_dir``."""
    from safetensors.torch import load_file

    return load_file(str(Path(output_dir) / "checkpoints" / f"checkpoint-{step}" / name))


def assert_equal_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    """Every tensor of ``first`` equals (bit for bit) the one of the same name in ``second``."""
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def tiny_unet(num_classes: int | None = None, channels: tuple[int, int] = (8, 16), seed: int | None = 0):
    """A two-level ``UNet2DModel`` on 8 × 8 one-channel images (in eval mode), with ``num_classes + 1`` class
    embeddings (the last the null class of classifier-free guidance) when ``num_classes`` is given; its weights from
    ``torch.manual_seed(seed)`` (``None``: the global generator as it stands)."""
    from diffusers import UNet2DModel

    if seed is not None:
        torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=None if num_classes is None else num_classes + 1,
    ).eval()
