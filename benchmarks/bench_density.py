"""Likelihood-model benchmark: each model's recipe (``DensityArguments`` defaults) on the toy targets, scikit-learn's
GaussianMixture and KernelDensity on the same data, conditional flow matching against the CNF trained by maximum
likelihood, MADE on binarised MNIST, and the coupling flow against the flow libraries zuko and normflows.

    python benchmarks/bench_density.py --quick                       # a smoke run in seconds (numbers meaningless)
    python benchmarks/bench_density.py --models gmm kde --targets 8gaussians   # a subset; stored runs are kept
    python benchmarks/bench_density.py --models coupling zuko normflows --targets 8gaussians checkerboard --seed 1
    python benchmarks/bench_density.py --models made --targets mnist --data_root /path/to/data   # {mnist}/*.parquet
    python benchmarks/bench_density.py --models made --targets mnist-dynamic --data_root /path/to/data

Each (model, target, seed) run trains in this process on one thread and is stored as
``<output>/density_runs/<model>-<target>[-seed<s>].json``; ``DENSITY_RESULTS.md`` and ``density_results.json`` are
written from all stored runs, so subsets (the coupling section above, say) can run in separate processes and the other
rows stay. Training time is CPU seconds (``time.process_time``) of the training loop. Toy targets: NLL of held-out
points beside the exact entropy, and NLL − entropy = KL(target ‖ model) estimated pairwise as the mean of
log p(x) − log q(x) with the target's exact log p (the same expectation as NLL − entropy, with a far smaller standard
error); the fraction of 10,000 samples in the support of a bounded target (checkerboard); W2 of 2,000 samples against
fresh target samples beside the floor (mean of 3 draws). ``cfm`` is flow matching with the CNF's velocity network; its
NLL and the CNF's are logged during training, giving the NLL − entropy against CPU seconds of both objectives. MNIST:
test images binarised at 0.5 (``x = 1[p > 0.5]``), the NLL of all test images in nats; ``mnist-dynamic``: training
images binarised afresh at every batch (``x ~ Bernoulli(p)``), the test images once (``binarize_test_images``, seed
0), as in the literature.

The peers (``pip install hfgen[bench]``; skipped with a note when not installed) are zuko's neural spline flow
(``zuko.flows.NSF`` with two passes: a coupling flow) and normflows' rational-quadratic coupling flow with an
LU-decomposed linear layer after each coupling (``CoupledRationalQuadraticSpline`` + ``LULinearPermute``), each with
the coupling recipe's couplings, bins, hidden widths and depth, trained on the same batches of the target with the
same optimisation (AdamW, learning rate, warm-up and schedule, EMA decay, steps and batch size) by a plain loop; their
spline bounds are the libraries' defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from report import Page, markdown, plus_minus, table, verdict, write_results, written_by, yes_no

from hfgen.data import ToyDistribution, get_toy_distribution
from hfgen.metrics import fraction_in_support, w2_against_floor
from hfgen.models.mlp import TimeMLP
from hfgen.training.density import DENSITY_TASKS, DensityArguments, density_task, evaluate_density
from hfgen.training.density_tasks import DensityTask
from hfgen.training.flow_matching import FlowMatchingArguments, FlowMatchingTask
from hfgen.training.trainer import Trainer
from hfgen.utils import batch_generator

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("density", "density_results.json", "DENSITY_RESULTS.md")

HERE = Path(__file__).resolve().parent
#: the flow libraries the coupling flow is compared with (optional: the ``bench`` extra)
PEERS = ("zuko", "normflows")
PEER_NAMES = {"zuko": "zuko NSF", "normflows": "normflows NSF + LU linear"}
MODELS = ("gmm", "kde", "made", "coupling", "cnf", "cfm", *PEERS)
TARGETS = ("8gaussians", "checkerboard", "mnist", "mnist-dynamic", "mnist-dynamic-direct", "mnist-dynamic-masks")
#: MADE on dynamically binarised MNIST (a fresh ``x ~ Bernoulli(p)`` per batch, the test set drawn once): the
#: arguments that differ from the MNIST recipe, without and with direct input-output connections; published:
#: Germain et al. 2015, Table 6 (nats)
MNIST_DYNAMIC = {
    "mnist-dynamic": {"binarize": "dynamic", "max_train_steps": 50_000},
    "mnist-dynamic-direct": {"binarize": "dynamic", "direct_connections": True, "max_train_steps": 60_000},
    "mnist-dynamic-masks": {
        "binarize": "dynamic",
        "direct_connections": True,
        "num_masks": 32,
        "order": "random",
        "max_train_steps": 50_000,
    },
}
MADE_PUBLISHED = {"one mask, 1 × 500": 88.40, "32 masks, order-agnostic": 86.64}
MAX_MNIST_DYNAMIC_NLL, MAX_MNIST_DYNAMIC_CPU_MINUTES = 88.4, 30.0
#: the issues' targets: NLL − entropy at most this, per (model, target); MNIST NLL in nats; CPU minutes
MAX_KL = {
    ("gmm", "8gaussians"): 0.02,
    ("kde", "8gaussians"): 0.15,
    ("made", "8gaussians"): 0.10,
    ("coupling", "8gaussians"): 0.008,
    ("cnf", "8gaussians"): 0.15,
    ("coupling", "checkerboard"): 0.05,
    ("made", "checkerboard"): 0.20,
}
#: the coupling flow's further targets on the checkerboard: samples in the support, training CPU seconds
MIN_SUPPORT, MAX_COUPLING_CPU_SECONDS = {("coupling", "checkerboard"): 0.97}, {("coupling", "checkerboard"): 100.0}
NUM_SUPPORT_SAMPLES = 10_000
MAX_CNF_CPU_MINUTES, MAX_MNIST_NLL, MAX_MNIST_CPU_MINUTES = 15.0, 90.0, 20.0
MAX_SKLEARN_GAP, MAX_FIT_TIME_RATIO, MAX_CFM_TIME_FRACTION = 1e-6, 2.0, 0.2
#: the velocity network and optimisation shared by ``cnf`` (maximum likelihood) and ``cfm`` (flow matching)
SHARED_NETWORK = {"hidden_size": 64, "num_layers": 3, "activation": "silu", "train_batch_size": 256}
NUM_NLL_POINTS, NUM_W2_SAMPLES, W2_REPEATS = 20_000, 2_000, 3
#: the ODE models' likelihoods need an adaptive solve per point: fewer held-out points for them
NUM_ODE_NLL_POINTS, CURVE_NLL_POINTS = 2_000, 300
CURVE_POINTS = 8  # validations (NLL against CPU time) per curve run


def run_name(model: str, target: str, seed: int) -> str:
    """``<model>-<target>``, with ``-seed<s>`` for a seed other than 0 (the stored run's file name)."""
    return f"{model}-{target}" + (f"-seed{seed}" if seed else "")


def base_arguments(model: str, target: str, out: Path, data_root: Path, quick: bool, seed: int = 0) -> DensityArguments:
    """The model's recipe for ``target`` with the benchmark's bookkeeping (no checkpoints, validation for curves)."""
    options: dict[str, Any] = {
        "model": model,
        "seed": seed,
        "output_dir": str(out / run_name(model, target, seed)),
        "overwrite_output_dir": True,
        "report_to": "none",
        "checkpointing_steps": 0,
        "validation_steps": 0,
        "num_nll_samples": 10_000 if target.startswith("mnist") else NUM_NLL_POINTS,
        "num_validation_samples": 200,
        "num_validation_nll_samples": 500,
    }
    if target.startswith("mnist"):
        options |= {
            "train_data_files": str(data_root / "mnist" / "train.parquet"),
            "test_data_files": str(data_root / "mnist" / "test.parquet"),
        }
    else:
        options["dataset"] = target
    options |= MNIST_DYNAMIC.get(target, {})
    if model == "cnf":
        options |= {
            **SHARED_NETWORK,
            "num_nll_samples": NUM_ODE_NLL_POINTS,
            "num_validation_nll_samples": CURVE_NLL_POINTS,
        }
    args = DensityArguments(**options)
    if model == "cnf":
        args = replace(args, validation_steps=max(1, args.max_train_steps // CURVE_POINTS))
    if quick:
        quick_options = {
            "gmm": {"em_iterations": 10, "num_train_points": 1_000},
            "kde": {"num_train_points": 1_000, "bandwidth_grid_size": 4},
            "made": {"max_train_steps": 20, "hidden_sizes": [32] if target.startswith("mnist") else [16]},
            "coupling": {"max_train_steps": 20, "hidden_size": 16},
            "cnf": {"max_train_steps": 8, "validation_steps": 4, "hidden_size": 16, "num_ode_steps": 2},
        }[model]
        args = replace(args, num_nll_samples=200, num_validation_nll_samples=50, lr_warmup_steps=2, **quick_options)
    return args


def run_row(model: str, target: str, seed: int, info: dict[str, Any]) -> dict[str, Any]:
    """The columns every row starts with: the run (model, target, seed) and its training steps and seconds."""
    return {"model": model, "target": target, "seed": seed, "train_steps": info["train_steps"],
            "train_cpu_seconds": info["train_cpu_seconds"], "train_wall_seconds": info["train_seconds"]}  # fmt: skip


def train(task: Any) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Train ``task`` in this process; returns the pipeline, the training numbers and the validation history."""
    trainer = Trainer(task)
    result = trainer.train()
    trainer.end()
    return result.pipeline, result.metrics, trainer.history


def curve(history: list[dict[str, Any]], info: dict[str, Any]) -> list[dict[str, float]]:
    """NLL − entropy at each validation against CPU seconds, ``step × (train CPU seconds / steps)`` (one thread, a
    fixed-step solver or a fixed batch: each step costs the same)."""
    per_step = info["train_cpu_seconds"] / info["train_steps"]
    return [
        {"step": r["step"], "cpu_seconds": r["step"] * per_step, "nll_minus_entropy": r["nll_minus_entropy"]}
        for r in history
        if "nll_minus_entropy" in r
    ]


def quality(task: DensityTask | FlowMatchingTask, pipeline: Any, target: Any, quick: bool, seed: int) -> dict:
    n = 300 if quick else NUM_W2_SAMPLES
    return w2_against_floor(lambda k, g: task.sample(pipeline, k, g).float(), target, n, W2_REPEATS, seed)


def likelihood(target: ToyDistribution, log_q_fn: Any, num_points: int) -> dict[str, float]:
    """NLL of held-out target points and NLL − entropy estimated pairwise, ``(1/n) Σ_i [log p(x_i) − log q(x_i)]``
    with the target's exact ``log p``: the same expectation KL(p ‖ q) as ``NLL − H(p)``, with a far smaller standard
    error (``log p − log q`` varies little over the points when ``q`` is close to ``p``). ``log_q_fn`` maps float32
    points ``(n, D)`` to the model's ``log q``."""
    points = held_out(target, num_points).float()
    with torch.no_grad():
        log_q = log_q_fn(points).double()
    gap = target.log_prob(points.double()) - log_q
    n = points.shape[0]
    return {
        "nll": float(-log_q.mean()),
        "nll_stderr": float(log_q.std() / n**0.5),
        "entropy": target.entropy,
        "nll_minus_entropy": float(gap.mean()),
        "nll_minus_entropy_stderr": float(gap.std() / n**0.5),
        "num_nll_samples": n,
    }


def support(target: ToyDistribution, sample_fn: Any, quick: bool) -> dict[str, float]:
    """``{"fraction_in_support": …}`` of ``NUM_SUPPORT_SAMPLES`` samples ``sample_fn(n, generator)`` for a target of
    bounded support (the checkerboard), ``{}`` for the others."""
    if not target.has_bounded_support:
        return {}
    with torch.no_grad():
        samples = sample_fn(300 if quick else NUM_SUPPORT_SAMPLES, torch.Generator().manual_seed(12)).float()
    return {"fraction_in_support": fraction_in_support(samples, target), "num_support_samples": samples.shape[0]}


def bench_toy(model: str, target: str, out: Path, data_root: Path, quick: bool, seed: int = 0) -> dict[str, Any]:
    args = base_arguments(model, target, out, data_root, quick, seed)
    task = paired_density_task(args)
    pipeline, info, history = train(task)
    points = args.num_nll_samples
    row = {
        **run_row(model, target, seed, info),
        **likelihood(task.target, lambda x: task.log_likelihood(pipeline, x), points),
        **support(task.target, lambda n, g: task.sample(pipeline, n, g), quick),
        "w2": quality(task, pipeline, task.target, quick, 11),
        "recipe": {k: v for k, v in args.to_dict().items() if k in RECIPE_KEYS[model]},
    }
    if model == "gmm":
        row |= {k: v for k, v in task.score(torch.zeros(2, 2), torch.Generator()).items() if k.startswith("em_")}
        row["sklearn"] = sklearn_gmm(task, points)
    if model == "kde":
        row["bandwidth"] = task.bandwidth
        row["sklearn"] = sklearn_kde(task, task.bandwidth, points)
    if model == "cnf":
        row["curve"] = curve(history, info)
    save_outputs(task, pipeline, {**info, **{k: v for k, v in row.items() if k != "w2"}, "validation": history})
    return row


RECIPE_KEYS = {
    "peer": (
        "num_couplings",
        "num_bins",
        "hidden_size",
        "num_layers",
        "train_batch_size",
        "max_train_steps",
        "learning_rate",
        "lr_scheduler",
        "lr_warmup_steps",
        "ema_decay",
    ),  # fmt: skip
    "gmm": ("num_components", "covariance_type", "num_train_points", "em_iterations", "reg_covar", "num_inits"),
    "kde": ("num_train_points", "bandwidth", "bandwidth_grid_size", "cv_folds"),
    "made": (
        "hidden_sizes",
        "num_components",
        "train_batch_size",
        "max_train_steps",
        "learning_rate",
        "binarize",
        "direct_connections",
        "num_masks",
        "order",
    ),
    "coupling": (
        "coupling_type",
        "num_couplings",
        "num_bins",
        "tail_bound",
        "hidden_size",
        "num_layers",
        "activation",
        "invertible_linear",
        "linear_parametrization",
        "unconditional_splines",
        "num_position_frequencies",
        "train_batch_size",
        "max_train_steps",
        "learning_rate",
    ),  # fmt: skip
    "cnf": (
        "hidden_size",
        "num_layers",
        "solver",
        "num_ode_steps",
        "divergence",
        "train_batch_size",
        "max_train_steps",
        "learning_rate",
    ),  # fmt: skip
}


def held_out(target: ToyDistribution, n: int) -> torch.Tensor:
    from hfgen.training.engine import HELD_OUT_SEED

    return target.sample(n, torch.Generator().manual_seed(HELD_OUT_SEED + 1)).double()


def _sklearn_likelihood(task: DensityTask, points: torch.Tensor, log_q: Any) -> dict[str, float]:
    """scikit-learn's NLL and paired NLL − entropy on the held-out points (as :func:`likelihood`)."""
    log_q = torch.as_tensor(log_q, dtype=torch.float64)
    gap = task.target.log_prob(points) - log_q
    return {"nll": float(-log_q.mean()), "nll_minus_entropy": float(gap.mean())}


def sklearn_gmm(task: DensityTask, num_points: int) -> dict[str, Any]:
    """EM from the same k-means++ start for as many steps (tol 0): ours (hfgen.methods.mixtures) and scikit-learn's,
    timed by CPU seconds; the mean log-likelihood of held-out points of both."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    args, data = task.args, task.train.double()
    model = task.build_model()
    start = {
        "weights_init": model.weights.detach().numpy(),
        "means_init": model.means.detach().numpy(),
        "precisions_init": torch.linalg.inv(model.covariances).detach().numpy(),
    }
    began = time.process_time()
    for _ in range(args.em_iterations):
        task.update(model, (data, None), torch.device("cpu"))
    ours_seconds = time.process_time() - began
    sk = SkGaussianMixture(
        args.num_components,
        covariance_type=args.covariance_type,
        reg_covar=args.reg_covar,
        max_iter=args.em_iterations,
        tol=0.0,
        **start,
    )
    began = time.process_time()
    with warnings.catch_warnings():  # tol = 0 runs every step and reports "not converged"
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(data.numpy())
    sk_seconds = time.process_time() - began
    points = held_out(task.target, num_points)
    with torch.no_grad():
        ours = model.log_prob(points).numpy()
    theirs = sk.score_samples(points.numpy())
    return {
        **_sklearn_likelihood(task, points, theirs),
        "fit_cpu_seconds": sk_seconds,
        "ours_fit_cpu_seconds": ours_seconds,
        "mean_log_likelihood_gap": float(abs(ours.mean() - theirs.mean())),
        "max_log_likelihood_gap": float(abs(ours - theirs).max()),
    }


def sklearn_kde(task: DensityTask, bandwidth: float, num_points: int) -> dict[str, Any]:
    """The KDE of the same points and bandwidth: fit (ours stores the points; scikit-learn builds its tree) and
    scoring of held-out points, in CPU seconds, and the log-likelihood gap."""
    from sklearn.neighbors import KernelDensity as SkKernelDensity

    from hfgen.models.kde import KernelDensity

    data, points = task.train.double(), held_out(task.target, num_points)
    began = time.process_time()
    ours_model = KernelDensity.from_data(data, bandwidth=bandwidth)
    ours_fit = time.process_time() - began
    began = time.process_time()
    ours = ours_model.log_prob(points).numpy()
    ours_score = time.process_time() - began
    began = time.process_time()
    sk = SkKernelDensity(bandwidth=bandwidth).fit(data.numpy())
    sk_fit = time.process_time() - began
    began = time.process_time()
    theirs = sk.score_samples(points.numpy())
    sk_score = time.process_time() - began
    return {
        **_sklearn_likelihood(task, points, theirs),
        "fit_cpu_seconds": sk_fit,
        "ours_fit_cpu_seconds": ours_fit,
        "score_cpu_seconds": sk_score,
        "ours_score_cpu_seconds": ours_score,
        "mean_log_likelihood_gap": float(abs(ours.mean() - theirs.mean())),
        "max_log_likelihood_gap": float(abs(ours - theirs).max()),
    }


class PairedKL:
    """A task mixin whose validation NLL − entropy is the paired estimate ``(1/n) Σ_i [log p(x_i) − log q(x_i)]``
    (see :func:`likelihood`): precise enough at a few hundred points to draw curves (one process)."""

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> torch.Tensor:
        self.points = super().log_likelihood_points(num_points, generator)
        return self.points

    def score_log_likelihood(self, log_prob: torch.Tensor) -> dict[str, Any]:
        metrics = super().score_log_likelihood(log_prob)
        gap = self.target.log_prob(self.points.double()) - log_prob.double()
        metrics["nll_minus_entropy"] = float(gap.mean())
        metrics["nll_minus_entropy_stderr"] = float(gap.std() / gap.numel() ** 0.5)
        return metrics


def paired_density_task(args: DensityArguments) -> DensityTask:
    """The task of ``args.model`` with the paired validation estimate."""
    task_class = DENSITY_TASKS[args.model]
    return type(f"Paired{task_class.__name__}", (PairedKL, task_class), {})(args)


class SameNetworkFlowMatching(PairedKL, FlowMatchingTask):
    """Flow matching with exactly the CNF's velocity network (its time embedding scale included)."""

    def build_model(self) -> TimeMLP:
        args = self.args
        return TimeMLP(
            dim=self.target.dim,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            activation=args.activation,
            time_scale=DensityArguments(model="cnf").time_scale,
        )


def bench_cfm(target: str, out: Path, quick: bool, mle_steps: int, seed: int = 0) -> dict[str, Any]:
    """Flow matching with the CNF's network and batch, NLL logged during training (the CFM side of the curve)."""
    steps = 16 if quick else 5 * mle_steps
    args = FlowMatchingArguments(
        dataset=target,
        seed=seed,
        output_dir=str(out / run_name("cfm", target, seed)),
        overwrite_output_dir=True,
        report_to="none",
        checkpointing_steps=0,
        max_train_steps=steps,
        validation_steps=max(1, steps // (2 * CURVE_POINTS)),
        num_validation_samples=200,
        num_validation_nll_samples=50 if quick else CURVE_NLL_POINTS,
        num_position_frequencies=0,
        time_embedding="sinusoidal",
        time_beta=1.0,
        learning_rate=DensityArguments(model="cnf").learning_rate,
        **({**SHARED_NETWORK, "hidden_size": 16} if quick else SHARED_NETWORK),
    )
    task = SameNetworkFlowMatching(args)
    pipeline, info, history = train(task)
    return {
        **run_row("cfm", target, seed, info),
        **likelihood(task.target, lambda x: task.log_likelihood(pipeline, x), 200 if quick else NUM_ODE_NLL_POINTS),
        "w2": quality(task, pipeline, task.target, quick, 11),
        "curve": curve(history, info),
        "recipe": {"time_beta": 1.0, "path": "linear", "time_scale": 1.0, **SHARED_NETWORK, "max_train_steps": steps},
    }


def peer_flow(name: str, args: DensityArguments, dim: int) -> tuple[torch.nn.Module, Any, Any]:
    """The peer library's coupling flow with the recipe's couplings, bins and conditioner sizes, as ``(module,
    log_q(x), sample(n, generator))``; samples are the flow's inverse applied to ``N(0, I)`` draws of ``generator``.

    zuko: ``NSF(passes=2)``, a coupling flow whose masks alternate (the kept coordinates also get an unconditional
    spline), ReLU MLPs of ``num_layers`` hidden layers, splines on [−5, 5]. normflows:
    ``CoupledRationalQuadraticSpline`` (alternating masks, an unconditional spline on the kept coordinates, splines
    on [−3, 3] with linear tails) whose network is a ReLU ``ResidualNet`` of ``b`` residual blocks of two layers each,
    the fewest whose ``2 + 2b`` linear layers are at least the MLPs' ``num_layers + 1``, followed by
    ``LULinearPermute`` (a random permutation and an LU-decomposed linear map starting at the identity), over a
    standard normal base."""
    if name == "zuko":
        import zuko

        flow = zuko.flows.NSF(
            dim,
            transforms=args.num_couplings,
            passes=2,
            bins=args.num_bins,
            hidden_features=(args.hidden_size,) * args.num_layers,
        )

        def sample(n: int, generator: torch.Generator) -> torch.Tensor:
            return flow().transform.inv(torch.randn(n, dim, generator=generator))

        return flow, lambda x: flow().log_prob(x), sample
    import normflows as nf

    layers: list[torch.nn.Module] = []
    for block in range(args.num_couplings):
        layers.append(
            nf.flows.CoupledRationalQuadraticSpline(
                dim, max(1, args.num_layers // 2), args.hidden_size, num_bins=args.num_bins, reverse_mask=block % 2 == 1
            )
        )
        layers.append(nf.flows.LULinearPermute(dim))
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), layers)

    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, dim, generator=generator)
        for layer in flow.flows:
            z = layer(z)[0]
        return z

    return flow, flow.log_prob, sample


def peer_available(name: str) -> bool:
    """Whether the peer library ``name`` is installed (the ``bench`` extra)."""
    import importlib.util

    return importlib.util.find_spec(name) is not None


def bench_peer(name: str, target_name: str, quick: bool, seed: int = 0) -> dict[str, Any]:
    """A peer library's coupling flow trained like hfgen's coupling recipe: the same fresh batches of the target
    (``batch_generator(seed, 0, step)``), AdamW with the recipe's learning rate, betas, weight decay, warm-up and
    schedule, its EMA decay (diffusers' ``EMAModel``, whose weights are evaluated) and steps; training CPU seconds of
    the loop (batches drawn inside it, as the Trainer does)."""
    from importlib.metadata import version

    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    args = base_arguments("coupling", target_name, HERE / "out", Path("."), quick, seed)
    target = get_toy_distribution(target_name)
    torch.manual_seed(seed)
    flow, log_q, sample = peer_flow(name, args, target.dim)
    parameters = list(flow.parameters())
    optimizer = torch.optim.AdamW(
        parameters,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        fused=True,
    )
    schedule = get_scheduler(
        args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps, num_training_steps=args.max_train_steps
    )
    ema = EMAModel(parameters, decay=args.ema_decay) if args.ema_decay > 0 else None
    began, began_wall = time.process_time(), time.perf_counter()
    for step in range(args.max_train_steps):
        loss = -log_q(target.sample(args.train_batch_size, batch_generator(seed, 0, step))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
        optimizer.step()
        schedule.step()
        if ema is not None:
            ema.step(parameters)
    cpu, wall = time.process_time() - began, time.perf_counter() - began_wall
    if ema is not None:
        ema.copy_to(parameters)
    flow.eval()
    with torch.no_grad():
        w2 = w2_against_floor(sample, target, 300 if quick else NUM_W2_SAMPLES, W2_REPEATS, 11)
    return {
        "model": name,
        "target": target_name,
        "seed": seed,
        "train_steps": args.max_train_steps,
        "train_cpu_seconds": cpu,
        "train_wall_seconds": wall,
        **likelihood(target, log_q, 200 if quick else NUM_NLL_POINTS),
        **support(target, sample, quick),
        "w2": w2,
        "recipe": {
            "library": f"{name} {version(name)}",
            **{k: v for k, v in args.to_dict().items() if k in RECIPE_KEYS["peer"]},
        },
    }


def bench_mnist(target: str, out: Path, data_root: Path, quick: bool, seed: int = 0) -> dict[str, Any]:
    args = base_arguments("made", target, out, data_root, quick, seed)
    data = None
    if quick:
        from hfgen.training.density_tasks import load_density_images

        data = {k: v[:500] for k, v in load_density_images(args).items()}
    task = density_task(args, data)
    pipeline, info, history = train(task)
    metrics = evaluate_density(pipeline, task)
    save_outputs(task, pipeline, {**info, **metrics, "validation": history})
    row = {
        **run_row("made", target, seed, info),
        **{k: metrics[k] for k in ("nll", "nll_stderr", "num_nll_samples")},
        "recipe": {k: v for k, v in args.to_dict().items() if k in RECIPE_KEYS["made"]},
    }
    if args.num_masks > 1:
        row["mask_nll"] = mask_nlls(pipeline.model, task.test[: args.num_nll_samples])
    return row


@torch.no_grad()
def mask_nlls(model: Any, images: torch.Tensor) -> list[float]:
    """Each mask's own test NLL ``−mean log p_m(x)`` (nats) of an ensemble, beside the ensemble's."""
    images = images.to(model.dtype)
    return [
        -float(torch.cat([model.log_prob(chunk, mask_index=m) for chunk in images.split(1000)]).double().mean())
        for m in range(model.num_masks)
    ]


def save_outputs(task: DensityTask, pipeline: Any, metrics: dict[str, Any]) -> None:
    """The run's pipeline, figures and card in its output folder (``benchmarks/out/density/<model>-<target>``)."""
    from hfgen.training.engine import finish_output_dir, save_figure

    out = Path(task.args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out)
    for name, figure in task.final_figures(pipeline).items():
        save_figure(figure, out / name)
    task.model_card(metrics, None).save(out / "README.md")
    finish_output_dir(task.args)


def plot_curves(runs: dict[str, dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    targets = [t for t in TARGETS[:2] if f"cnf-{t}" in runs or f"cfm-{t}" in runs]
    if not targets:
        return
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.6), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        for model, label in (("cfm", "flow matching"), ("cnf", "maximum likelihood (FFJORD)")):
            row = runs.get(f"{model}-{target}")
            if row and row.get("curve"):
                ax.plot([p["cpu_seconds"] for p in row["curve"]], [p["nll_minus_entropy"] for p in row["curve"]],
                        marker="o", label=label)  # fmt: skip
        ax.set(title=target, xlabel="training CPU seconds", ylabel="NLL − entropy (nats)", xscale="log")
        ax.set_yscale("symlog", linthresh=0.01)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def time_to_reach(curve_points: list[dict[str, float]], level: float) -> float | None:
    """First CPU time at which a curve's NLL − entropy is at most ``level`` (None if never)."""
    return next((p["cpu_seconds"] for p in curve_points if p["nll_minus_entropy"] <= level), None)


def _w2(row: dict) -> str:
    w = row.get("w2")
    return f"{w['w2']:.3f} / {w['floor']:.3f} = {w['ratio']:.2f}" if w else "–"


def _goal(row: dict) -> str:
    """The issues' targets for the row's (model, target) and whether it meets them."""
    key = (row["model"], row["target"])
    goals = []
    if key in MAX_KL:
        goals.append(f"≤ {MAX_KL[key]} {verdict(row['nll_minus_entropy'] <= MAX_KL[key])}")
    if key in MIN_SUPPORT:
        inside = row.get("fraction_in_support")
        goals.append(
            f"≥ {MIN_SUPPORT[key]:.0%} in support {verdict(None if inside is None else inside >= MIN_SUPPORT[key])}"
        )
    if key in MAX_COUPLING_CPU_SECONDS:
        limit = MAX_COUPLING_CPU_SECONDS[key]
        goals.append(f"≤ {limit:.0f} CPU s {verdict(row['train_cpu_seconds'] <= limit)}")
    if row["model"] == "cnf":
        goals.append(
            f"≤ {MAX_CNF_CPU_MINUTES:.0f} CPU min {verdict(row['train_cpu_seconds'] <= 60 * MAX_CNF_CPU_MINUTES)}"
        )
    return "; ".join(goals) or "–"


TOY_COLUMNS = ["model", "target", "steps", "train CPU (s)", "NLL", "entropy", "NLL − entropy (paired)", "in support",
               "target", "W2 / floor = ratio"]  # fmt: skip


def _toy_row(row: dict, quick: bool, label: str | None = None) -> list[str]:
    """A toy run's cells: steps, CPU, NLL, entropy, paired NLL − entropy, samples in support, targets, W2."""
    inside = row.get("fraction_in_support")
    return [
        f"{label or row['model']}{' (quick)' * quick}",
        row["target"],
        f"{row['train_steps']:,}",
        f"{row['train_cpu_seconds']:.1f}",
        plus_minus(row["nll"], row["nll_stderr"], ".4f"),
        f"{row['entropy']:.4f}",
        plus_minus(row["nll_minus_entropy"], row.get("nll_minus_entropy_stderr", float("nan")), ".4f"),
        "–" if inside is None else f"{inside:.1%}",
        _goal(row),
        _w2(row),
    ]


def _toy_rows(runs: dict, quick: bool) -> list[list[str]]:
    """One row per seed-0 toy run of hfgen's models (and one per scikit-learn fit beside it)."""
    ours = [
        r
        for r in runs.values()
        if r["model"] not in PEERS and r.get("seed", 0) == 0 and not r["target"].startswith("mnist")
    ]
    rows = []
    for row in sorted(ours, key=lambda r: (r["target"], MODELS.index(r["model"]))):
        rows.append(_toy_row(row, quick))
        if "sklearn" in row:
            sk = row["sklearn"]
            peer = "GaussianMixture" if row["model"] == "gmm" else "KernelDensity"
            rows.append(
                [f"scikit-learn {peer}", row["target"], "–", f"{sk['fit_cpu_seconds']:.3f} (fit)", f"{sk['nll']:.4f}",
                 f"{row['entropy']:.4f}", f"{sk['nll_minus_entropy']:.4f}", "–", "–", "–"]
            )  # fmt: skip
    return rows


def _flow_runs(runs: dict) -> dict[tuple[str, str], list[dict]]:
    """The toy runs of the coupling flow and its peers by ``(target, model)``, each list in seed order."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    order = ("coupling", *PEERS)
    flows = [r for r in runs.values() if r["model"] in order and not r["target"].startswith("mnist")]
    for row in sorted(flows, key=lambda r: (r["target"], order.index(r["model"]), r.get("seed", 0))):
        grouped.setdefault((row["target"], row["model"]), []).append(row)
    return grouped


def _flow_name(model: str) -> str:
    return "hfgen coupling" if model == "coupling" else PEER_NAMES[model]


def seed_mean(rows: list[dict]) -> tuple[float, float]:
    """The mean NLL − entropy over seeds ``m = (1/S) Σ_s g_s`` and its standard error: the larger of the propagated
    within-run error ``sqrt(Σ_s se_s²) / S`` and, with two seeds or more, the seed-to-seed one ``sd(g_s) / sqrt(S)``
    (weights and batches vary between seeds, which the within-run error does not see)."""
    gaps = [row["nll_minus_entropy"] for row in rows]
    count = len(gaps)
    mean = sum(gaps) / count
    within = sum(row["nll_minus_entropy_stderr"] ** 2 for row in rows) ** 0.5 / count
    if count < 2:
        return mean, within
    spread = (sum((g - mean) ** 2 for g in gaps) / (count - 1)) ** 0.5 / count**0.5
    return mean, max(within, spread)


def reproduces(first: dict, second: dict) -> bool:
    """Whether two seeds' NLL − entropy agree within two standard errors of their difference,
    ``|g_0 − g_1| ≤ 2 sqrt(se_0² + se_1²)``."""
    error = (first["nll_minus_entropy_stderr"] ** 2 + second["nll_minus_entropy_stderr"] ** 2) ** 0.5
    return abs(first["nll_minus_entropy"] - second["nll_minus_entropy"]) <= 2 * error


def compare(ours: tuple[float, float], theirs: tuple[float, float]) -> str:
    """hfgen's seed mean against a peer's: the difference ``d = m_peer − m_hfgen ± sqrt(se² + se²)``, "ahead" or
    "behind" when ``|d|`` exceeds two standard errors, "level" otherwise."""
    difference, error = theirs[0] - ours[0], (ours[1] ** 2 + theirs[1] ** 2) ** 0.5
    if abs(difference) <= 2 * error:
        call = "level (within 2 SE)"
    else:
        call = f"{'ahead' if difference > 0 else 'behind'} ({abs(difference) / error:.1f} SE)"
    return f"{plus_minus(difference, error, '.4f')}: {call}"


def _summary_rows(grouped: dict[tuple[str, str], list[dict]]) -> list[list[str]]:
    """Per (target, flow): each seed's NLL − entropy, whether the second seed reproduces the first within 2 SE, the
    seed mean with its error, the mean CPU seconds and the seed mean against hfgen's."""
    rows = []
    for (target, model), runs in grouped.items():
        mean = seed_mean(runs)
        ours = grouped.get((target, "coupling"))
        against = "–" if model == "coupling" or not ours else compare(seed_mean(ours), mean)
        seeds = ", ".join(
            f"{row.get('seed', 0)}: {plus_minus(row['nll_minus_entropy'], row['nll_minus_entropy_stderr'], '.4f')}"
            for row in runs
        )
        again = "–" if len(runs) < 2 else yes_no(all(reproduces(runs[0], row) for row in runs[1:]))
        cpu = sum(row["train_cpu_seconds"] for row in runs) / len(runs)
        rows.append([_flow_name(model), target, seeds, again, plus_minus(*mean, ".4f"), f"{cpu:.1f}", against])
    return rows


def _peer_lines(runs: dict, quick: bool) -> list[str]:
    """The coupling flow beside zuko's and normflows' coupling flows: every stored seed, then the seeds summarised."""
    grouped = _flow_runs(runs)
    if not grouped:
        return []
    lines = [
        "",
        "## The coupling flow against the flow libraries",
        "",
        "hfgen's coupling recipe beside zuko's and normflows' rational-quadratic coupling flows with the same "
        "couplings, bins and conditioner widths, trained on the same batches with the same optimisation (AdamW, "
        "learning rate, warm-up and schedule, EMA, steps, batch size; see the module docstring), evaluated by the "
        f"same code: NLL − entropy is the paired mean of log p(x) − log q(x) over {NUM_NLL_POINTS:,} fresh target "
        "points with the target's exact log p (± its standard error); train CPU seconds come from the same runs. "
        "Each seed is a separate run (weights and batches).",
        "",
    ]
    rows = [
        _toy_row(r, quick, f"{_flow_name(r['model'])}, seed {r.get('seed', 0)}") for g in grouped.values() for r in g
    ]
    lines += table(TOY_COLUMNS, rows)
    lines += [
        "",
        "Over seeds: a second seed reproduces the first when their NLL − entropy differ by at most 2 standard errors "
        "of the difference; the seed mean's error is the larger of the propagated within-run error and the "
        "seed-to-seed standard error; a peer's mean minus hfgen's (positive: hfgen lower, i.e. ahead) is called level "
        "when within 2 standard errors.",
        "",
    ]
    header = ["model", "target", "seed: NLL − entropy", "second seed within 2 SE", "mean over seeds",
              "mean train CPU (s)", "peer − hfgen"]  # fmt: skip
    lines += table(header, _summary_rows(grouped))
    versions = sorted({r["recipe"]["library"] for g in grouped.values() for r in g if "library" in r["recipe"]})
    if versions:
        lines += ["", f"Peer versions: {', '.join(versions)}."]
    return lines


def _sklearn_rows(runs: dict) -> list[list[str]]:
    """Our GMM and KDE against scikit-learn's on the same data: fit times and log-likelihood gaps."""
    rows = []
    for _, row in sorted(runs.items()):
        if "sklearn" not in row:
            continue
        sk = row["sklearn"]
        ratio = sk["ours_fit_cpu_seconds"] / max(sk["fit_cpu_seconds"], 1e-9)
        scoring = (
            f"{sk['ours_score_cpu_seconds']:.3f} / {sk['score_cpu_seconds']:.3f}" if "score_cpu_seconds" in sk else "–"
        )
        rows.append(
            [row["model"], row["target"], f"{sk['ours_fit_cpu_seconds']:.4f}", f"{sk['fit_cpu_seconds']:.4f}",
             f"{ratio:.2f} {verdict(ratio <= MAX_FIT_TIME_RATIO)}",
             f"{sk['mean_log_likelihood_gap']:.1e} {verdict(sk['mean_log_likelihood_gap'] <= MAX_SKLEARN_GAP)}",
             f"{sk['max_log_likelihood_gap']:.1e}", scoring]
        )  # fmt: skip
    return rows


def _curve_rows(runs: dict) -> list[list[str]]:
    """Flow matching against maximum likelihood: NLL − entropy at each validation against the CPU time."""
    rows = []
    for target in TARGETS[:2]:
        mle, cfm = runs.get(f"cnf-{target}"), runs.get(f"cfm-{target}")
        fraction = None
        if mle and cfm and mle.get("curve") and cfm.get("curve"):
            reached = time_to_reach(cfm["curve"], mle["curve"][-1]["nll_minus_entropy"])
            fraction = None if reached is None else reached / mle["train_cpu_seconds"]
        for name, row in (("CFM", cfm), ("MLE", mle)):
            if not row or not row.get("curve"):
                continue
            points = ", ".join(f"{p['cpu_seconds']:.1f} → {p['nll_minus_entropy']:.3f}" for p in row["curve"])
            share = "–"
            if name == "CFM" and mle:
                share = "never reached" if fraction is None else f"{fraction:.3f} {verdict(fraction <= 0.2)}"
            rows.append([target, name, points, f"{row['nll_minus_entropy']:.4f}", share])
    return rows


def _mnist_lines(mnist: dict | None) -> list[str]:
    if not mnist:
        return ["No MNIST run stored yet."]
    r = mnist["recipe"]
    nll_ok = mnist["nll"] <= MAX_MNIST_NLL
    cpu_ok = mnist["train_cpu_seconds"] <= 60 * MAX_MNIST_CPU_MINUTES
    return [
        f"Test images binarised at 0.5 (`x = 1[p > 0.5]`, train images too); MADE 784 → "
        f"{' → '.join(map(str, r['hidden_sizes']))} → 784 (natural order, one mask), batch "
        f"{r['train_batch_size']}, {r['max_train_steps']:,} steps, AdamW {r['learning_rate']}, EMA 0.999.",
        "",
        f"- test NLL {plus_minus(mnist['nll'], mnist['nll_stderr'], '.2f')} nats on {mnist['num_nll_samples']:,} test "
        f"images (target ≤ {MAX_MNIST_NLL:.0f}: {verdict(nll_ok)}); training "
        f"{mnist['train_cpu_seconds'] / 60:.1f} CPU minutes (≤ {MAX_MNIST_CPU_MINUTES:.0f}: {verdict(cpu_ok)}). "
        "Samples (10 × 10): "
        "`benchmarks/out/density/made-mnist/samples.png`, also in that folder's card.",
    ]


def _mnist_dynamic_lines(runs: dict) -> list[str]:
    """MADE on dynamically binarised MNIST, without and with direct connections, beside Germain et al. (2015)."""
    published = "; ".join(f"{name} {nll:.2f}" for name, nll in MADE_PUBLISHED.items())
    rows = []
    for target in MNIST_DYNAMIC:
        row = runs.get(f"made-{target}")
        if row is None:
            continue
        r, minutes = row["recipe"], row["train_cpu_seconds"] / 60
        ok = row["nll"] <= MAX_MNIST_DYNAMIC_NLL and minutes <= MAX_MNIST_DYNAMIC_CPU_MINUTES
        masks = r.get("num_masks", 1)
        rows.append(
            [f"`{target}`", f"784 → {' → '.join(map(str, r['hidden_sizes']))} → 784",
             "yes" if r.get("direct_connections") else "no",
             f"{masks} ({r.get('order', 'natural')} order{'s' if masks > 1 else ''})", f"{r['max_train_steps']:,}",
             f"{row['train_steps'] * r['train_batch_size'] / 60_000:.0f}", f"{minutes:.1f}",
             plus_minus(row["nll"], row["nll_stderr"], ".2f"), verdict(ok)]
        )  # fmt: skip
    if not rows:
        return ["No dynamic-binarisation run stored yet (`--targets mnist-dynamic`)."]
    header = ["target", "MADE", "direct connections", "masks", "steps", "epochs", "train CPU min", "test NLL (nats)",
              f"≤ {MAX_MNIST_DYNAMIC_NLL} in ≤ {MAX_MNIST_DYNAMIC_CPU_MINUTES:.0f} CPU min"]  # fmt: skip
    return [
        "Training images binarised afresh at every batch (`x ~ Bernoulli(p)`, p the grey level); the 10,000 test "
        "images binarised once by `hfgen.data.images.binarize_test_images` with seed 0 (the RBM's test set in "
        "`ENERGY_RESULTS.md`). Batch 128, AdamW 0.001, cosine, EMA 0.999; direct connections: a masked linear map "
        'from the inputs to the outputs beside the hidden layer (Germain et al.\'s `direct_input_connect="Output"`). '
        "More than one mask: order- and connectivity-agnostic training (Germain et al. §4.2), each mask with its own "
        "random order and hidden degrees, one mask drawn uniformly per batch and trained on `−log p_m(x)`; the test "
        "NLL is the ensemble's, `log p(x) = logmeanexp_m log p_m(x)` over all the masks. NLL ± its standard error "
        "over the test images; CPU minutes of the same run.",
        "",
        *table(header, rows),
        "",
        *_mask_lines(runs),
        f"Published (Germain et al. 2015, Table 6, binarised MNIST, nats): {published}; their hyper-parameter search "
        "used direct connections.",
    ]


def _mask_lines(runs: dict) -> list[str]:
    """For each stored ensemble: its NLL beside its masks' own NLLs (best, mean, worst)."""
    lines = []
    for target in MNIST_DYNAMIC:
        row = runs.get(f"made-{target}")
        if row is None or "mask_nll" not in row:
            continue
        each = row["mask_nll"]
        lines += [
            f"`{target}`: the ensemble of {len(each)} masks {row['nll']:.2f} nats; each mask alone: best "
            f"{min(each):.2f}, mean {sum(each) / len(each):.2f}, worst {max(each):.2f} (the same network and test "
            "images).",
            "",
        ]
    return lines


def render(results: dict) -> str:
    """The Markdown page of the stored runs (``density_results.json``)."""
    runs = results["runs"]
    lines = [
        "# hfgen likelihood-model benchmark",
        "",
        written_by("bench_density", results) + "; times are training CPU seconds (`time.process_time`), which on one "
        "thread is the wall-clock time of an otherwise idle machine (this one was shared with other jobs).",
        "",
        f"Toy targets: NLL of {NUM_NLL_POINTS:,} held-out points ({NUM_ODE_NLL_POINTS:,} for the ODE models cnf and "
        "cfm, whose log-density is an adaptive dopri5 solve per point; ± standard error) beside the exact entropy; "
        "NLL − entropy = KL(target ‖ model) is estimated pairwise, the mean of log p(x) − log q(x) with the target's "
        "exact log p (the same expectation, a far smaller standard error); "
        f"W2 of {NUM_W2_SAMPLES:,} samples against fresh target samples / the floor W2 between two target samples "
        f"(mean of {W2_REPEATS} draws); the fraction of {NUM_SUPPORT_SAMPLES:,} samples in the support of the "
        "checkerboard ('–': not measured in that run). Each row is the model's recipe (`DensityArguments` defaults, "
        "listed below), seed 0.",
        "",
    ]
    lines += table(TOY_COLUMNS, _toy_rows(runs, results["quick"]))
    lines += _peer_lines(runs, results["quick"])
    lines += ["", "## scikit-learn on the same data", ""]
    lines += [
        "GMM: EM from the same k-means++ start for the same number of steps (tol 0), ours against "
        "`sklearn.mixture.GaussianMixture`; KDE: the same points and cross-validated bandwidth against "
        "`sklearn.neighbors.KernelDensity` (exact, atol = rtol = 0). Log-likelihood gaps on the held-out points.",
        "",
    ]
    header = ["model", "target", "our fit CPU (s)", "scikit-learn fit CPU (s)", "ratio (≤ 2)",
              "mean log-lik gap (≤ 1e-6)", "max pointwise gap", "scoring CPU ours / sklearn (s)"]  # fmt: skip
    lines += table(header, _sklearn_rows(runs))
    lines += ["", "## Flow matching against maximum likelihood (the same velocity network)", ""]
    lines += [
        f"TimeMLP {SHARED_NETWORK['num_layers']} × {SHARED_NETWORK['hidden_size']} ({SHARED_NETWORK['activation']}), "
        f"batch {SHARED_NETWORK['train_batch_size']}; CFM on the linear path with uniform t, CNF-MLE by "
        "`hfgen.methods.cnf.cnf_nll_loss` (exact divergence, fixed rk4 steps). NLL − entropy of "
        f"{CURVE_NLL_POINTS} held-out points "
        "(dopri5) at validations, against the CPU seconds spent training up to them (`step × CPU per step`). "
        "Plot: `density_cfm_vs_mle.png`.",
        "",
    ]
    header = ["target", "objective", "CPU (s) → NLL − entropy at each validation", "final NLL − entropy",
              "CFM time to the MLE's final value / MLE time (≤ 0.2)"]  # fmt: skip
    lines += table(header, _curve_rows(runs))
    lines += ["", "## MADE on binarised MNIST", "", *_mnist_lines(runs.get("made-mnist"))]
    lines += ["", "### Dynamic binarisation (the literature's setting)", ""]
    lines += _mnist_dynamic_lines(runs)
    lines += ["", "## Recipes", ""]
    lines += [f"- {name}: {json.dumps(row['recipe'])}" for name, row in sorted(runs.items())]
    return markdown(lines, results["quick"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for checking that the script runs")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument(
        "--data_root", type=Path, default=None, help="folder holding mnist/{train,test}.parquet (needed for mnist)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="folder for the results (default: benchmarks/, quick: out/)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the runs (stored apart from seed 0's)")
    args = parser.parse_args()
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    work = HERE / "out" / ("density-quick" if args.quick else "density")
    output = args.output or (work if args.quick else HERE)
    store = output / "density_runs"
    store.mkdir(parents=True, exist_ok=True)
    for target in args.targets:
        if target.startswith("mnist"):
            if "made" not in args.models:
                continue
            if args.data_root is None:
                print("skipping mnist: pass --data_root, a folder with mnist/train.parquet and mnist/test.parquet")
                continue
            rows = [bench_mnist(target, work, args.data_root, args.quick, args.seed)]
        else:
            rows = []
            for model in args.models:
                if model == "cfm":
                    mle = base_arguments("cnf", target, work, Path("."), args.quick)
                    rows.append(bench_cfm(target, work, args.quick, mle.max_train_steps, args.seed))
                elif model in PEERS:
                    if not peer_available(model):
                        print(f"skipping {model}: not installed (pip install 'hfgen[bench]')")
                        continue
                    rows.append(bench_peer(model, target, args.quick, args.seed))
                else:
                    rows.append(bench_toy(model, target, work, Path("."), args.quick, args.seed))
        for row in rows:
            name = run_name(row["model"], row["target"], row.get("seed", 0))
            (store / f"{name}.json").write_text(json.dumps(row, indent=2), encoding="utf-8")
    results = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "runs": {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(store.glob("*.json"))},
    }
    text = write_results(results, output, PAGE, render)
    plot_curves(results["runs"], output / "density_cfm_vs_mle.png")
    print(text)


if __name__ == "__main__":
    main()
