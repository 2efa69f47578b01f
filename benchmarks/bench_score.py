"""Score-based benchmark: exact-score likelihood check, VP score SDE and DDPM likelihoods, SDEdit, couplings, solvers.

    python benchmarks/bench_score.py                 # every part; writes SCORE_RESULTS.md and score_results.json
    python benchmarks/bench_score.py --parts score   # a subset (results of earlier parts in the json are kept)
    python benchmarks/bench_score.py --quick         # a smoke run with tiny budgets (numbers meaningless)

Parts (one thread; CPU seconds from ``time.process_time``):

- ``exact``: probability-flow ``log_prob`` with the exact score of a Gaussian (VP score SDE) and with the exact ε of
  Gaussian data (the constant-α DDPM's continuous limit) against the closed-form log-densities.
- ``score``: the VP score SDE recipe (``ScoreSDEArguments`` defaults) on checkerboard and 8 Gaussians: training CPU
  seconds, W2 of 10,000 samples against its floor, probability-flow NLL − entropy on 1,000 held-out points.
- ``ddpm``: the DDPM recipe (``DDPMPointsArguments`` defaults): probability-flow NLL − entropy of its continuous limit.
- ``sdedit``: 8 Gaussians edited by the checkerboard models (score SDE, DDPM, flow matching): W2 to both against
  strength.
- ``coupling``: flow matching with independent and minibatch-OT couplings (short recipe): normalised path energy and
  the W2 of a one-step Euler sample.
- ``velocity``: the checkerboard flow-matching field at t = 0 on [−0.5, 0.5]² beside the optimal one (finite data).
- ``solver``: Euler, midpoint, Heun and RK4 on the trained checkerboard field: error against a dopri5 reference.
- ``dsm``: J_DSM − J_ESM on 8 Gaussians for several networks (Vincent 2011: the same constant).

Trained pipelines are cached under ``benchmarks/out/score-bench/`` so that parts can run separately.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from report import Page, machine, markdown, plus_minus, table, verdict, write_results, written_by, yes_no

from hfgen.data import get_toy_distribution
from hfgen.metrics import nll_report, w2_against_floor, wasserstein2
from hfgen.models.finite_data_velocity import FiniteDataVelocity
from hfgen.models.mixture import GaussianMixture
from hfgen.models.mlp import TimeMLP
from hfgen.pipelines.ddpm_points import DDPMPointsPipeline
from hfgen.pipelines.flow_matching import FlowMatchingPipeline
from hfgen.pipelines.score_sde import ScoreSDEPipeline
from hfgen.schedulers.constant_alpha_ddpm import ConstantAlphaDDPMScheduler
from hfgen.schedulers.score_sde import VPSDEScheduler

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("score", "score_results.json", "SCORE_RESULTS.md")

HERE = Path(__file__).resolve().parent
CACHE = HERE / "out" / "score-bench"
FIGURES = HERE / "score_figures"
TARGETS = ("checkerboard", "8gaussians")
PARTS = ("exact", "score", "ddpm", "sdedit", "coupling", "velocity", "solver", "dsm")
#: the issue's targets
MAX_EXACT_ERROR, MAX_NLL_GAP, MAX_RATIO, MAX_TRAIN_SECONDS = 1e-3, 0.10, 1.5, 300.0
HELD_OUT_SEED = 12_345


def cpu_seconds(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.process_time()
    value = function()
    return value, time.process_time() - start


def quiet(pipeline: Any) -> Any:
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def save_figure(figure: Any, name: str) -> str:
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURES / name, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f"score_figures/{name}"


# ---- closed-form models of Gaussian data -----------------------------------------------------------------------


class GaussianScore(ModelMixin, ConfigMixin):
    """ε = −σ_t ∇ log p_t of data ``N(μ, Σ)`` under a VP SDE: ``p_t = N(m_t μ, m_t² Σ + σ_t² I)``."""

    @register_to_config
    def __init__(self, mean: list[float], covariance: list[list[float]], dim: int = 2):
        super().__init__()
        self.register_buffer("data_mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("data_cov", torch.tensor(covariance, dtype=torch.float64))
        self.sde = VPSDEScheduler()

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, return_dict: bool = True) -> Any:
        m, s = (c.to(sample) for c in self.sde.marginal_coefficients(timestep))
        cov = m**2 * self.data_cov + s**2 * torch.eye(self.config.dim, dtype=sample.dtype)
        score = -torch.linalg.solve(cov, (sample - m * self.data_mean).T).T
        return (-s * score,)


class GaussianEpsilon(ModelMixin, ConfigMixin):
    """ε* of data ``N(μ, diag v)`` for the constant-α schedule at real levels ``t``: ``√(1 − ᾱ)(x − √ᾱ μ) / c``."""

    @register_to_config
    def __init__(self, mean: list[float], var: list[float], alpha: float, dim: int = 2):
        super().__init__()
        self.register_buffer("data_mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("data_var", torch.tensor(var, dtype=torch.float64))

    def marginal(self, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.config.alpha**level
        return math.sqrt(a) * self.data_mean, a * self.data_var + 1 - a

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, return_dict: bool = True) -> Any:
        a = torch.as_tensor(self.config.alpha, dtype=torch.float64) ** torch.as_tensor(timestep, dtype=torch.float64)
        return ((1 - a).sqrt() * (sample - a.sqrt() * self.data_mean) / (a * self.data_var + 1 - a),)


def bench_exact(quick: bool) -> dict:
    """Probability-flow log-densities with exact models against the closed forms."""
    gaussian = torch.distributions.MultivariateNormal
    mean, cov = [0.0, 0.0], [[0.6, 0.25], [0.25, 0.4]]
    points = gaussian(torch.tensor(mean, dtype=torch.float64), torch.tensor(cov, dtype=torch.float64)).sample(
        (20 if quick else 200,)
    )
    score = quiet(ScoreSDEPipeline(GaussianScore(mean, cov), VPSDEScheduler()))
    estimate, seconds = cpu_seconds(lambda: score.log_prob(points, rtol=1e-7, atol=1e-7))
    m, s = (float(c) for c in score.scheduler.marginal_coefficients(score.scheduler.config.sampling_eps))
    at_eps = gaussian(torch.zeros(2, dtype=torch.float64), m**2 * torch.tensor(cov) + s**2 * torch.eye(2))
    data = gaussian(torch.zeros(2, dtype=torch.float64), torch.tensor(cov, dtype=torch.float64))
    vp = {
        "max_abs_error_vs_p_eps": float((estimate - at_eps.log_prob(points)).abs().max()),
        "max_abs_error_vs_data": float((estimate - data.log_prob(points)).abs().max()),
        "cpu_seconds": seconds,
    }
    # the DDPM recipe's schedule (α = 0.99, T = 500, ᾱ_T = 0.0066) with the exact ε of N(μ, diag v): centred data
    # isolate the solver's error; off-centre data add the O(√ᾱ_T |μ|) error of taking p_T = N(0, I)
    var, alpha, T = [0.5, 1.5], 0.99, 500
    normal = torch.distributions.Normal
    levels = {}
    for mu in ([0.0, 0.0], [0.3, -0.2]):
        ddpm = quiet(DDPMPointsPipeline(GaussianEpsilon(mu, var, alpha), ConstantAlphaDDPMScheduler(alpha, T)))
        x = torch.tensor(mu, dtype=torch.float64) + torch.tensor(var).sqrt() * torch.randn(
            points.shape[0], 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        exact_data = normal(torch.tensor(mu), torch.tensor(var).sqrt()).log_prob(x).sum(1).double()
        for level in (1.0, 0.1):
            m_level, v_level = ddpm.model.marginal(level)
            estimate, seconds = cpu_seconds(
                lambda ddpm=ddpm, x=x, level=level: ddpm.log_prob(x, start_level=level, rtol=1e-7, atol=1e-7)
            )
            exact_level = normal(m_level, v_level.sqrt()).log_prob(x).sum(1)
            levels[f"mean {mu}, level {level}"] = {
                "max_abs_error_vs_level": float((estimate - exact_level).abs().max()),
                "mean_gap_to_data_density": float((exact_data - estimate).mean()),
                "cpu_seconds": seconds,
            }
    return {"vp_score_sde": vp, "ddpm_continuous_limit": levels, "num_points": points.shape[0]}


# ---- trained models (cached) -------------------------------------------------------------------------------------


def _run_args(arguments_class: type, folder: str, quick: dict[str, Any] | None, **fields: Any) -> Any:
    """``arguments_class(**fields)`` for a run in ``CACHE / folder`` without validations, checkpoints or trackers;
    with ``quick`` (tiny budgets) its fields replace the recipe's."""
    args = arguments_class(
        output_dir=str(CACHE / folder),
        validation_steps=0,
        checkpointing_steps=0,
        report_to="none",
        overwrite_output_dir=True,
        **fields,
    )
    return replace(args, **quick) if quick else args


def score_args(dataset: str, quick: bool) -> Any:
    from hfgen.training.score_sde import ScoreSDEArguments

    tiny = {"max_train_steps": 30, "hidden_size": 16, "num_layers": 2, "num_inference_steps": 20}
    return _run_args(ScoreSDEArguments, f"train-score-{dataset}", tiny if quick else None, dataset=dataset)


def ddpm_args(dataset: str, quick: bool) -> Any:
    from hfgen.training.ddpm_points import DDPMPointsArguments

    tiny = {"max_train_steps": 30, "hidden_size": 16, "num_layers": 2, "num_train_timesteps": 20}
    return _run_args(DDPMPointsArguments, f"train-ddpm-{dataset}", tiny if quick else None, dataset=dataset)


def fm_args(dataset: str, coupling: str, quick: bool) -> Any:
    from hfgen.training.flow_matching import FlowMatchingArguments

    tiny = {"max_train_steps": 30, "hidden_size": 16, "num_layers": 2}
    folder = f"train-fm-{coupling}-{dataset}"
    fields = {"dataset": dataset, "coupling": coupling, "max_train_steps": 3_000}
    return _run_args(FlowMatchingArguments, folder, tiny if quick else None, **fields)


def cached(kind: str, dataset: str, quick: bool, train: Callable[[], tuple[Any, dict]], loader: type) -> tuple:
    """A trained pipeline and its training numbers, from the cache when this configuration was trained before."""
    folder = CACHE / ("quick" if quick else "full") / f"{kind}-{dataset}"
    info_file = folder / "training.json"
    if info_file.is_file():
        return quiet(loader.from_pretrained(folder)), json.loads(info_file.read_text())
    pipeline, info = train()
    pipeline.save_pretrained(folder)
    info_file.write_text(json.dumps(info), encoding="utf-8")
    return quiet(pipeline), info


def score_model(dataset: str, quick: bool) -> tuple[ScoreSDEPipeline, dict]:
    from hfgen.training.score_sde import train_score_sde

    return cached("score", dataset, quick, lambda: train_score_sde(score_args(dataset, quick)), ScoreSDEPipeline)


def ddpm_model(dataset: str, quick: bool) -> tuple[DDPMPointsPipeline, dict]:
    from hfgen.training.ddpm_points import train_ddpm_points

    return cached("ddpm", dataset, quick, lambda: train_ddpm_points(ddpm_args(dataset, quick)), DDPMPointsPipeline)


def fm_model(dataset: str, coupling: str, quick: bool) -> tuple[FlowMatchingPipeline, dict]:
    from hfgen.training.flow_matching import train_flow_matching

    return cached(
        f"fm-{coupling}", dataset, quick, lambda: train_flow_matching(fm_args(dataset, coupling, quick)),
        FlowMatchingPipeline,
    )  # fmt: skip


def held_out(dataset: str, n: int) -> torch.Tensor:
    return get_toy_distribution(dataset).sample(n, torch.Generator().manual_seed(HELD_OUT_SEED))


def likelihood(log_prob: Callable[[torch.Tensor], torch.Tensor], dataset: str, n: int) -> dict:
    values, seconds = cpu_seconds(lambda: log_prob(held_out(dataset, n)))
    return {**nll_report(values, get_toy_distribution(dataset).entropy), "num_points": n, "cpu_seconds": seconds}


def bench_score(quick: bool) -> list[dict]:
    rows = []
    for dataset in TARGETS:
        pipeline, info = score_model(dataset, quick)
        args = score_args(dataset, quick)
        n = 500 if quick else 10_000
        timings = []

        def draw(
            k: int, g: torch.Generator, pipeline: ScoreSDEPipeline = pipeline, args: Any = args, timings: list = timings
        ) -> torch.Tensor:
            samples, seconds = cpu_seconds(
                lambda: pipeline(k, args.num_inference_steps, sampler=args.sampler, generator=g).samples
            )
            timings.append(seconds)
            return samples

        quality = w2_against_floor(draw, get_toy_distribution(dataset), n, 2, seed=1)
        nll = likelihood(pipeline.log_prob, dataset, 100 if quick else 1_000)
        rows.append(
            {
                "target": dataset,
                "train_steps": info["train_steps"],
                "train_cpu_seconds": info["train_cpu_seconds"],
                "num_samples": n,
                "sampler": f"{args.sampler}, {args.num_inference_steps} steps",
                "sampling_cpu_seconds": min(timings),
                "w2": quality,
                "nll": nll,
                "meets_targets": quality["ratio"] <= MAX_RATIO
                and nll["nll_minus_entropy"] <= MAX_NLL_GAP
                and info["train_cpu_seconds"] <= MAX_TRAIN_SECONDS,
            }
        )
    return rows


def bench_ddpm(quick: bool) -> list[dict]:
    rows = []
    for dataset in TARGETS:
        pipeline, info = ddpm_model(dataset, quick)
        nll = likelihood(pipeline.log_prob, dataset, 100 if quick else 1_000)
        rows.append({"target": dataset, "train_cpu_seconds": info["train_cpu_seconds"], "nll": nll})
    return rows


def bench_sdedit(quick: bool) -> dict:
    """8 Gaussians edited toward each checkerboard model: W2 to both distributions against strength."""
    import matplotlib.pyplot as plt

    n = 300 if quick else 2_000
    source, target = get_toy_distribution("8gaussians"), get_toy_distribution("checkerboard")
    start = source.sample(n, torch.Generator().manual_seed(7))
    references = {name: dist.sample(n, torch.Generator().manual_seed(8)) for name, dist in
                  (("8gaussians", source), ("checkerboard", target))}  # fmt: skip
    strengths = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    score, _ = score_model("checkerboard", quick)
    ddpm, _ = ddpm_model("checkerboard", quick)
    fm, _ = fm_model("checkerboard", "independent", quick)
    steps = score_args("checkerboard", quick).num_inference_steps
    editors = {
        "score SDE (Euler–Maruyama)": lambda s, g: (
            score(num_inference_steps=max(2, round(s * steps)), start_samples=start, strength=s, generator=g).samples
        ),
        "DDPM (ancestral)": lambda s, g: ddpm(start_samples=start, strength=s, generator=g).samples,
        "flow matching (Euler)": lambda s, g: fm(start_samples=start, strength=s, generator=g).samples,
    }
    curves = {}
    for name, edit in editors.items():
        rows = []
        for s in strengths:
            edited = edit(s, torch.Generator().manual_seed(9))
            rows.append({"strength": s, **{f"w2_to_{k}": wasserstein2(edited, ref) for k, ref in references.items()}})
        curves[name] = rows
    floors = {k: wasserstein2(dist.sample(n, torch.Generator().manual_seed(10)), references[k])
              for k, dist in (("8gaussians", source), ("checkerboard", target))}  # fmt: skip
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("8gaussians", "checkerboard"), strict=True):
        for name, rows in curves.items():
            ax.plot(strengths, [r[f"w2_to_{key}"] for r in rows], marker="o", label=name)
        ax.axhline(floors[key], color="grey", linestyle="--", label="floor (two data samples)")
        ax.set_xlabel("SDEdit strength")
        ax.set_ylabel(f"W2 to {key}")
        ax.set_title(f"W2 to {key}")
    axes[0].legend(fontsize=7)
    figure.suptitle("SDEdit: 8 Gaussians edited by checkerboard models")
    edited = {
        s: editors["score SDE (Euler–Maruyama)"](s, torch.Generator().manual_seed(9)) for s in (0.0, 0.3, 0.6, 1.0)
    }
    scatter, panels = plt.subplots(1, 4, figsize=(14, 3.5))
    for ax, (s, points) in zip(panels, edited.items(), strict=True):
        ax.scatter(points[:, 0], points[:, 1], s=2)
        ax.set_title(f"strength {s}")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
    return {
        "num_points": n,
        "curves": curves,
        "floors": floors,
        "figure": save_figure(figure, "sdedit_w2.png"),
        "scatter": save_figure(scatter, "sdedit_points.png"),
    }


def path_energy(pipeline: FlowMatchingPipeline, n: int, steps: int) -> float:
    r"""Normalised path energy ``E[Σ_i h ‖v_i‖²] / E‖x_1 − x_0‖² ≥ 1`` of Euler paths (1 iff straight at constant
    speed; Liu et al. 2022's straightness is this minus one)."""
    out = pipeline(n, steps, generator=torch.Generator().manual_seed(11), return_trajectory=True)
    trajectory = out.trajectory.double()
    increments = trajectory[1:] - trajectory[:-1]
    energy = (increments.square().sum(-1) * steps).sum(0).mean()
    return float(energy / (trajectory[-1] - trajectory[0]).square().sum(-1).mean())


def bench_coupling(quick: bool) -> dict:
    import matplotlib.pyplot as plt

    n = 500 if quick else 5_000
    rows = []
    figure, axes = plt.subplots(2, 4, figsize=(14, 7))
    for i, dataset in enumerate(TARGETS):
        target = get_toy_distribution(dataset)
        for j, coupling in enumerate(("independent", "ot")):
            pipeline, info = fm_model(dataset, coupling, quick)
            one_step = pipeline(n, 1, generator=torch.Generator().manual_seed(12)).samples
            many = pipeline(n, 100, generator=torch.Generator().manual_seed(12)).samples
            reference = target.sample(n, torch.Generator().manual_seed(13))
            floor = wasserstein2(target.sample(n, torch.Generator().manual_seed(14)), reference)
            rows.append(
                {
                    "target": dataset,
                    "coupling": coupling,
                    "train_steps": info["train_steps"],
                    "train_cpu_seconds": info["train_cpu_seconds"],
                    "path_energy": path_energy(pipeline, 500 if quick else 2_000, 100),
                    "w2_one_step": wasserstein2(one_step, reference),
                    "w2_100_steps": wasserstein2(many, reference),
                    "w2_floor": floor,
                    "num_samples": n,
                }
            )
            for k, (points, title) in enumerate(((one_step, "1 Euler step"), (many, "100 Euler steps"))):
                ax = axes[i, 2 * j + k]
                ax.scatter(points[:2000, 0], points[:2000, 1], s=1)
                ax.set_title(f"{dataset}, {coupling}: {title}", fontsize=8)
                ax.set_xlim(-3, 3)
                ax.set_ylim(-3, 3)
                ax.set_aspect("equal")
    return {"rows": rows, "figure": save_figure(figure, "coupling_one_step.png")}


def bench_velocity(quick: bool) -> dict:
    from hfgen import plotting

    pipeline, _ = fm_model("checkerboard", "independent", quick)
    data = get_toy_distribution("checkerboard").sample(20_000, torch.Generator().manual_seed(15))
    oracle = FiniteDataVelocity(data.tolist())
    axis = torch.linspace(-0.5, 0.5, 15)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    learned = pipeline.velocity_field(grid, 0.0)
    with torch.no_grad():
        optimal = oracle(grid, torch.tensor(0.0), return_dict=False)[0]
    error = float((learned - optimal).norm(dim=1).square().mean().sqrt())
    relative = error / float(optimal.norm(dim=1).square().mean().sqrt())
    figure = plotting.plot_velocity_field(
        pipeline.velocity_field,
        t=0.0,
        reference=lambda x, t: oracle(x, t, return_dict=False)[0],
        titles=("learned v(x, 0)", "FiniteDataVelocity (20,000 points)"),
    )
    figure.suptitle(f"checkerboard, t = 0: RMS error {error:.3f} ({relative:.1%} of the optimal field)", y=1.02)
    return {"rms_error": error, "relative_rms_error": relative, "figure": save_figure(figure, "velocity_t0.png")}


def bench_solver(quick: bool) -> dict:
    import matplotlib.pyplot as plt

    from hfgen.methods.solver_order import solver_order_study

    pipeline, _ = fm_model("checkerboard", "independent", quick)
    network = copy.deepcopy(pipeline.velocity).double().eval()

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return network(x, t, return_dict=False)[0]

    x = torch.randn(100 if quick else 500, 2, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    with torch.no_grad():
        results, seconds = cpu_seconds(
            lambda: solver_order_study(
                field, x, methods=("euler", "midpoint", "heun2", "rk4"), num_steps=(8, 16, 32, 64)
            )
        )
    figure, ax = plt.subplots(figsize=(5, 4))
    for result in results.values():
        ax.loglog(result.nfe, result.errors, marker="o", label=f"{result.method} (order {result.order:.2f})")
    ax.set_xlabel("network evaluations")
    ax.set_ylabel("RMS error at t = 1 vs dopri5 (1e-10)")
    ax.set_title("fixed-step solvers on the checkerboard field")
    ax.legend(fontsize=7)
    rows = [{"method": r.method, "num_steps": r.num_steps, "nfe": r.nfe, "errors": r.errors, "order": r.order}
            for r in results.values()]  # fmt: skip
    return {"rows": rows, "cpu_seconds": seconds, "figure": save_figure(figure, "solver_order.png")}


def bench_dsm(quick: bool) -> dict:
    """J_DSM − J_ESM for networks of very different quality, with common random numbers."""
    import matplotlib.pyplot as plt

    from hfgen.methods.score_matching import denoising_score_matching_loss, diffused_mixture_score, dsm_esm_gap

    target = get_toy_distribution("8gaussians")
    mixture = GaussianMixture(num_components=8, dim=2).double().requires_grad_(False)
    centres = target.centres(target.radius, dtype=torch.float64)
    covariances = (target.std**2 * torch.eye(2, dtype=torch.float64)).expand(8, 2, 2)
    mixture.set_parameters(torch.full((8,), 1 / 8, dtype=torch.float64), centres, covariances)
    scheduler = VPSDEScheduler()

    def true_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return diffused_mixture_score(x.double(), mixture, *scheduler.marginal_coefficients(t)).to(x)

    def trained(steps: int, seed: int) -> TimeMLP:
        torch.manual_seed(seed)
        network = TimeMLP(dim=2, hidden_size=64, num_layers=2)
        optimizer = torch.optim.Adam(network.parameters(), lr=2e-3)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            loss = denoising_score_matching_loss(network, target.sample(256, generator), scheduler, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return network.eval()

    class Exact(torch.nn.Module):
        def forward(self, sample: torch.Tensor, timestep: torch.Tensor, return_dict: bool = True) -> tuple:
            return (-scheduler.marginal_coefficients(timestep)[1].to(sample)[:, None] * true_score(sample, timestep),)

    budget = 20 if quick else 1_500
    networks = {
        "untrained (seed 0)": trained(0, 0),
        "untrained (seed 1)": trained(0, 1),
        f"{budget // 10} DSM steps": trained(budget // 10, 2),
        f"{budget} DSM steps": trained(budget, 3),
        "exact score": Exact(),
    }
    data = target.sample(2_000 if quick else 50_000, torch.Generator().manual_seed(17))
    rows = []
    for name, network in networks.items():
        gap = dsm_esm_gap(network, data, scheduler, true_score, generator=torch.Generator().manual_seed(18))
        rows.append(
            {"network": name, "dsm": gap.dsm, "esm": gap.esm, "gap": gap.gap, "standard_error": gap.standard_error}
        )
    figure, ax = plt.subplots(figsize=(8, 4))
    positions = torch.arange(len(rows)).float()
    ax.bar(positions - 0.25, [r["dsm"] for r in rows], width=0.25, label="J_DSM")
    ax.bar(positions, [r["esm"] for r in rows], width=0.25, label="J_ESM")
    ax.bar(positions + 0.25, [r["gap"] for r in rows], width=0.25, yerr=[2 * r["standard_error"] for r in rows],
           label="J_DSM − J_ESM (± 2 se)")  # fmt: skip
    ax.set_xticks(positions.tolist(), [r["network"] for r in rows], fontsize=7)
    ax.set_ylabel("objective (λ = σ_t², t ~ U[ε, 1])")
    ax.set_title("Denoising vs explicit score matching (VP SDE, λ = σ², 8 Gaussians)")
    ax.legend(fontsize=7)
    return {"num_points": data.shape[0], "rows": rows, "figure": save_figure(figure, "dsm_esm_gap.png")}


BENCHES = {
    "exact": bench_exact,
    "score": bench_score,
    "ddpm": bench_ddpm,
    "sdedit": bench_sdedit,
    "coupling": bench_coupling,
    "velocity": bench_velocity,
    "solver": bench_solver,
    "dsm": bench_dsm,
}


def recipe() -> dict:
    from hfgen.training.score_sde import ScoreSDEArguments

    args = ScoreSDEArguments()
    keys = ("sde", "beta_min", "beta_max", "sampling_eps", "prediction_type", "hidden_size", "num_layers",
            "num_position_frequencies", "time_embedding", "time_beta", "train_batch_size", "max_train_steps",
            "learning_rate", "lr_scheduler", "ema_decay", "sampler", "num_inference_steps")  # fmt: skip
    return {key: getattr(args, key) for key in keys}


# ---- report ------------------------------------------------------------------------------------------------------


def _exact_section(e: dict, recipe: dict) -> list[str]:
    vp, ddpm = e["vp_score_sde"], e["ddpm_continuous_limit"]
    rows = [
        [
            "VP score SDE, p_ε (ε = 1e-3)",
            f"{vp['max_abs_error_vs_p_eps']:.2e}",
            f"{vp['max_abs_error_vs_data']:.2e}",
            f"{vp['cpu_seconds']:.1f}",
        ]
    ]
    rows += [
        [f"DDPM continuous limit (α = 0.99, T = 500), data {level}", f"{row['max_abs_error_vs_level']:.2e}",
         f"mean log p_data − log p_(t_s): {row['mean_gap_to_data_density']:.4f}", f"{row['cpu_seconds']:.1f}"]
        for level, row in ddpm.items()
    ]  # fmt: skip
    return [
        "",
        "## Exact-score check",
        "",
        f"Probability-flow `log_prob` (dopri5, rtol = atol = 1e-7) on {e['num_points']} points of a centred",
        "Gaussian with the exact score, against the closed-form density. Target: within "
        f"{MAX_EXACT_ERROR:g} nats — {verdict(vp['max_abs_error_vs_p_eps'] <= MAX_EXACT_ERROR)}.",
        "",
        *table(["model", "max abs error (nats)", "vs data density", "CPU (s)"], rows),
        "",
        "The DDPM rows use `DDPMPointsPipeline.log_prob` at level t_s with the exact ε of N(μ, diag(0.5, 1.5)):",
        "centred data isolate the solver's error, off-centre data add approximation (3), p_T taken as N(0, I)",
        "(O(√ᾱ_T |μ|), ᾱ_T = 0.0066). The column 'vs data density' measures approximation (2): the density of",
        "level t_s (data convolved with N(0, 1 − ᾱ_(t_s))) differs from that of x_0.",
    ]


def _score_section(rows: list[dict], r: dict) -> list[str]:
    header = ["target", "train steps", "train CPU (s)", "W2", "floor", "ratio", "NLL − entropy (± se)", "NLL CPU (s)",
              "sampling CPU (s)", "targets met"]  # fmt: skip
    cells = [
        [row["target"], f"{row['train_steps']:,}", f"{row['train_cpu_seconds']:.0f}", f"{row['w2']['w2']:.4f}",
         f"{row['w2']['floor']:.4f}", f"{row['w2']['ratio']:.2f}",
         plus_minus(row["nll"]["nll_minus_entropy"], row["nll"]["nll_stderr"], ".3f"),
         f"{row['nll']['cpu_seconds']:.0f}", f"{row['sampling_cpu_seconds']:.0f}", yes_no(row["meets_targets"])]
        for row in rows
    ]  # fmt: skip
    return [
        "",
        "## VP score SDE recipe",
        "",
        f"`ScoreSDEArguments` defaults: VP β ∈ [{r['beta_min']}, {r['beta_max']}], ε = {r['sampling_eps']}, "
        f"{r['prediction_type']} prediction, TimeMLP {r['num_layers']}×{r['hidden_size']} with octave encoding "
        f"L = {r['num_position_frequencies']}, t-law Beta(1, {r['time_beta']}), batch {r['train_batch_size']}, "
        f"{r['max_train_steps']:,} steps, lr {r['learning_rate']} {r['lr_scheduler']}, EMA {r['ema_decay']}; "
        f"sampler {r['sampler']} with {r['num_inference_steps']} steps. Targets: W2 / floor ≤ {MAX_RATIO}, "
        f"NLL − entropy ≤ {MAX_NLL_GAP} (probability-flow ODE, 1,000 held-out points), training ≤ "
        f"{MAX_TRAIN_SECONDS:.0f} CPU s.",
        "",
        *table(header, cells),
    ]


def _ddpm_section(rows: list[dict], recipe: dict) -> list[str]:
    cells = [
        [
            row["target"],
            f"{row['train_cpu_seconds']:.0f}",
            plus_minus(row["nll"]["nll_minus_entropy"], row["nll"]["nll_stderr"], ".3f"),
            f"{row['nll']['cpu_seconds']:.0f}",
        ]
        for row in rows
    ]
    return [
        "",
        "## DDPM recipe: probability-flow likelihood of the continuous limit",
        "",
        "`DDPMPointsArguments` defaults (constant α = 0.99, T = 500, 12,000 steps); `DDPMPointsPipeline.log_prob` at",
        "level t_s = 1 (data convolved with N(0, 0.01 I)), dopri5 rtol = atol = 1e-5, 1,000 held-out points.",
        "",
        *table(["target", "train CPU (s)", "NLL − entropy (± se)", "CPU (s)"], cells),
    ]


def _sdedit_section(s: dict, recipe: dict) -> list[str]:
    strengths = [f"s = {r['strength']}" for r in next(iter(s["curves"].values()))]
    cells = [
        [f"{name} (to 8G / to checkerboard)",
         *(f"{r['w2_to_8gaussians']:.2f} / {r['w2_to_checkerboard']:.2f}" for r in rows)]
        for name, rows in s["curves"].items()
    ]  # fmt: skip
    return [
        "",
        "## SDEdit: 8 Gaussians edited by checkerboard models",
        "",
        f"W2 of {s['num_points']:,} edited points to fresh samples of each distribution (floors: "
        f"8 Gaussians {s['floors']['8gaussians']:.3f}, checkerboard {s['floors']['checkerboard']:.3f}).",
        "",
        *table(["model", *strengths], cells),
        "",
        f"![SDEdit W2]({s['figure']})",
        "",
        f"![SDEdit points]({s['scatter']})",
    ]


def _coupling_section(c: dict, recipe: dict) -> list[str]:
    cells = [
        [row["target"], row["coupling"], f"{row['train_cpu_seconds']:.0f}", f"{row['path_energy']:.3f}",
         f"{row['w2_one_step']:.3f}", f"{row['w2_100_steps']:.3f}", f"{row['w2_floor']:.3f}"]
        for row in c["rows"]
    ]  # fmt: skip
    header = ["target", "coupling", "train CPU (s)", "path energy", "W2 one step", "W2 100 steps", "floor"]
    return [
        "",
        "## Independent vs minibatch-OT coupling (flow matching, 3,000 steps)",
        "",
        "Normalised path energy E[∫‖v‖² dt] / E‖x_1 − x_0‖² of 100-step Euler paths (1 = straight), and W2 of a",
        "one-step Euler sample against fresh data.",
        "",
        *table(header, cells),
        "",
        f"![one-step samples]({c['figure']})",
    ]


def _velocity_section(v: dict, recipe: dict) -> list[str]:
    return [
        "",
        "## Checkerboard velocity at t = 0 on [−0.5, 0.5]²",
        "",
        f"Learned field (independent coupling) against `FiniteDataVelocity` on 20,000 data points (at t = 0: "
        f"mean − x): RMS error {v['rms_error']:.4f} ({v['relative_rms_error']:.1%} of the optimal field's RMS).",
        "",
        f"![velocity]({v['figure']})",
    ]


def _solver_section(sv: dict, recipe: dict) -> list[str]:
    steps = [f"n = {n}" for n in sv["rows"][0]["num_steps"]]
    cells = [
        [row["method"], *(f"{e:.2e} ({f} NFE)" for e, f in zip(row["errors"], row["nfe"], strict=True)),
         f"{row['order']:.2f}"]
        for row in sv["rows"]
    ]  # fmt: skip
    return [
        "",
        "## Euler vs Runge–Kutta on the trained checkerboard field",
        "",
        "RMS error at t = 1 against dopri5 (rtol = atol = 1e-10), float64 copy of the network.",
        "",
        *table(["method", *steps, "fitted order"], cells),
        "",
        f"![solver order]({sv['figure']})",
    ]


def _dsm_section(d: dict, recipe: dict) -> list[str]:
    cells = [
        [row["network"], f"{row['dsm']:.4f}", f"{row['esm']:.4f}", plus_minus(row["gap"], row["standard_error"], ".4f")]
        for row in d["rows"]
    ]
    return [
        "",
        "## Denoising ⇔ explicit score matching",
        "",
        f"J_DSM − J_ESM on {d['num_points']:,} points of 8 Gaussians (common random numbers): the same "
        "constant for every network (Vincent 2011).",
        "",
        *table(["network", "J_DSM", "J_ESM", "J_DSM − J_ESM (± se)"], cells),
        "",
        f"![DSM vs ESM]({d['figure']})",
    ]


#: the page's section of each part, in the order of PARTS: a function of the part's result and the recipe
SECTIONS: dict[str, Callable[[Any, dict], list[str]]] = {
    "exact": _exact_section,
    "score": _score_section,
    "ddpm": _ddpm_section,
    "sdedit": _sdedit_section,
    "coupling": _coupling_section,
    "velocity": _velocity_section,
    "solver": _solver_section,
    "dsm": _dsm_section,
}


def render(results: dict) -> str:
    """The Markdown page of the stored parts (``score_results.json``), in the order of :data:`PARTS`."""
    parts = results["parts"]
    lines = [
        "# hfgen score-based benchmark",
        "",
        written_by("bench_score", results, "one thread;"),
        "CPU seconds from `time.process_time`. Each part records when it ran; parts can be rerun alone (`--parts`).",
    ]
    for part in PARTS:
        if part in parts:
            lines += SECTIONS[part](parts[part]["result"], results["recipe"])
    return markdown(lines, results["quick"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for checking that the script runs")
    parser.add_argument(
        "--output", type=Path, default=None, help="folder for SCORE_RESULTS.md and score_results.json (default: here)"
    )
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    global FIGURES
    if args.output is None:
        args.output = CACHE / "quick" if args.quick else HERE
    if args.quick:
        FIGURES = args.output / "score_figures"
    json_file = args.output / "score_results.json"
    results = json.loads(json_file.read_text()) if json_file.is_file() else {"parts": {}}
    results |= {**machine(), "quick": args.quick, "recipe": recipe()}
    for part in args.parts:
        load = os.getloadavg()[0]
        result, seconds = cpu_seconds(lambda part=part: BENCHES[part](args.quick))
        results["parts"][part] = {
            "result": result,
            "cpu_seconds": seconds,
            "load_average": [load, os.getloadavg()[0]],
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        text = write_results(results, args.output, PAGE, render)
        print(f"[{part}] done in {seconds:.0f} CPU s", flush=True)
    print(text)


if __name__ == "__main__":
    main()
