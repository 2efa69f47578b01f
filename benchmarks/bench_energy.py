"""Energy-based models benchmark: the RBM on MNIST (PCD, our AIS) beside scikit-learn's ``BernoulliRBM`` trained on
the same batches for the same CPU time, and 2-D EBMs trained by maximum likelihood (8 Gaussians, checkerboard)
beside torchebm's Langevin sampler run on the same trained energy.

    python benchmarks/bench_energy.py --data_root /path/to/data          # every run (MNIST parquet in <root>/mnist)
    python benchmarks/bench_energy.py --runs rbm sklearn_rbm --data_root /path/to/data   # a subset; others are kept
    python benchmarks/bench_energy.py --runs ebm-8gaussians ebm-checkerboard
    python benchmarks/bench_energy.py --quick --data_root /path/to/data  # a smoke run in seconds (numbers meaningless)

One thread; training times are CPU seconds of this process (``time.process_time``), as the shared Trainer reports
them. Every run is stored as ``<output>/energy_runs/<run>.json`` and ``ENERGY_RESULTS.md`` and
``energy_results.json`` are written from all stored runs, so runs can be made in separate processes.

- ``rbm``: the ``RBMArguments`` defaults (500 hidden units, PCD-1, 20 epochs); ``rbm_long``: the same for 70
  epochs (:data:`RBM_OVERRIDES`). MNIST training images are binarised afresh at every batch
  (``v ~ Bernoulli(pixel)``), the 10,000 test images once (``binarize_test_images``, seed 0). Test log-likelihood
  ``−F(v) − log Ẑ`` with ``log Ẑ`` by AIS from the base-rate model (``ais_num_chains`` runs, ``ais_num_betas``
  equally spaced β), with the runs' effective sample size, and a second, independent AIS (seed 1).
- ``sklearn_rbm`` (``sklearn_rbm_long``): ``sklearn.neural_network.BernoulliRBM`` (500 components, PCD-1 with SGD),
  ``partial_fit`` on the same stream of binarised batches until it has used the CPU time of the stored ``rbm``
  (``rbm_long``) run; scored by the same AIS, with its effective sample size.
- ``ebm-<dataset>``: the ``EnergyArguments`` defaults (the 8-Gaussians recipe) with ``EBM_OVERRIDES`` for the data
  set; W2 of 10,000 samples against as many data samples, mean of 2 draws, beside the floor W2 between two data
  samples; NLL of 10,000 held-out points with ``log Z`` by quadrature, beside the exact entropy. Peer: torchebm's
  ``LangevinDynamics`` (ULA) and ours (``LangevinScheduler``) run on the trained energy from the same uniform starts
  with the same step and length.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from report import Page, machine, markdown, plus_minus, table, verdict, write_results, written_by

from hfgen.data import get_toy_distribution
from hfgen.metrics import nll_report, w2_against_floor, wasserstein2
from hfgen.models.rbm import RBMModel
from hfgen.pipelines.rbm import RBMPipeline
from hfgen.schedulers.gibbs import GibbsScheduler
from hfgen.schedulers.langevin import LangevinScheduler
from hfgen.training.energy import EnergyArguments, train_energy
from hfgen.training.engine import HELD_OUT_SEED
from hfgen.training.rbm import RBMArguments, RBMTask, evaluate_rbm, load_rbm_data, train_rbm

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("energy", "energy_results.json", "ENERGY_RESULTS.md")

HERE = Path(__file__).resolve().parent
EBM_DATASETS = ("8gaussians", "checkerboard")
RUNS = ("rbm", "sklearn_rbm", "rbm_long", "sklearn_rbm_long", *(f"ebm-{d}" for d in EBM_DATASETS))
#: the RBM runs: arguments that differ from the ``RBMArguments`` defaults (``rbm_long``: 70 epochs, within the
#: 30 CPU minutes of the literature target); ``sklearn_rbm*`` trains for the CPU time of the run it is named after
RBM_OVERRIDES: dict[str, dict[str, Any]] = {"rbm": {}, "rbm_long": {"max_train_steps": 42_000}}
#: the seed of the second, independent AIS estimate of each RBM's log Ẑ (the first uses seed 0)
SECOND_AIS_SEED = 1
TARGETS = {
    "rbm_log_likelihood_min": -100.0,
    "rbm_cpu_minutes_max": 20.0,
    "rbm_long_log_likelihood_min": -90.0,
    "rbm_long_cpu_minutes_max": 30.0,
    "ebm_nll_minus_entropy_max": {"8gaussians": 0.20, "checkerboard": 0.35},
    "ebm_w2_ratio_max": {"8gaussians": 2.0},
    "ebm_cpu_minutes_max": 10.0,
}
#: Salakhutdinov & Murray (2008), Table 1: 500 hidden units, MNIST, AIS test log-likelihoods (nats)
PUBLISHED = {"CD-1": -125.53, "CD-3": -105.50, "CD-25": -86.34}
#: scikit-learn's learning rate for the same batches (SGD on the mean gradient)
SKLEARN_LEARNING_RATE = 0.05
EBM_W2_SAMPLES, EBM_W2_DRAWS, EBM_NLL_POINTS = 10_000, 2, 10_000
#: fresh target points of the KL estimate ``mean log p − log q`` (the estimator of the density benchmark)
EBM_KL_POINTS = 20_000
#: arguments that differ from the ``EnergyArguments`` defaults (the 8-Gaussians recipe), per data set
EBM_OVERRIDES: dict[str, dict[str, Any]] = {
    "checkerboard": {
        "training_sampler": "langevin",
        "step_size": 1e-3,
        "langevin_steps": 40,
        "regularization": 0.01,
        "max_train_steps": 5_000,
    }
}


def rbm_args(data_root: Path, quick: bool, overrides: dict[str, Any] | None = None) -> RBMArguments:
    args = RBMArguments(
        train_data_files=str(data_root / "mnist" / "train.parquet"),
        test_data_files=str(data_root / "mnist" / "test.parquet"),
        output_dir=str(HERE / "out" / "energy-rbm"),
        overwrite_output_dir=True,
        checkpointing_steps=0,
        validation_steps=0,
        report_to="none",
        logging_steps=500,
        **(overrides or {}),
    )
    if quick:
        args = replace(args, max_train_steps=30, num_nll_images=200, num_eval_images=200, ais_num_betas=100)
    return args


def rbm_data(args: RBMArguments, quick: bool) -> dict[str, torch.Tensor]:
    data = load_rbm_data(args)
    return {k: v[:3000] for k, v in data.items()} if quick else data


def rbm_row(metrics: dict[str, Any], train_cpu: float, steps: int, task: RBMTask) -> dict[str, Any]:
    return {
        **metrics,
        "train_cpu_seconds": train_cpu,
        "train_steps": steps,
        "epochs": steps * task.args.train_batch_size / task.train_images.shape[0],
        "num_test_images": int(task.test_images.shape[0]),
        "binarize": task.args.binarize,
        "num_hidden": task.args.num_hidden,
    }


def second_ais(pipeline: RBMPipeline, task: RBMTask) -> dict[str, Any]:
    """A second AIS estimate of the test log-likelihood, independent of the first (seed :data:`SECOND_AIS_SEED`)."""
    args = task.args
    metrics = task.ais_log_likelihood(pipeline.model, args.num_nll_images, args.ais_num_betas, SECOND_AIS_SEED)
    keys = ("log_likelihood", "log_likelihood_stderr", "log_partition", "log_partition_stderr",
            "ais_effective_sample_size", "ais_seed")  # fmt: skip
    return {k: metrics[k] for k in keys}


def bench_rbm(data_root: Path, quick: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate our RBM (the ``RBMArguments`` defaults with ``overrides``), AIS twice."""
    args = rbm_args(data_root, quick, overrides)
    pipeline, info, task = train_rbm(args, rbm_data(args, quick))
    start = time.process_time()
    metrics = evaluate_rbm(pipeline, task)
    row = rbm_row(metrics, info["train_cpu_seconds"], info["train_steps"], task)
    row["ais_repeat"] = second_ais(pipeline, task)
    recipe = ("method", "gibbs_steps", "num_chains", "train_batch_size", "learning_rate", "adam_beta1", "lr_scheduler")
    return {**row, "eval_cpu_seconds": time.process_time() - start, "recipe": {k: getattr(args, k) for k in recipe}}


def bench_sklearn_rbm(data_root: Path, quick: bool, cpu_budget: float) -> dict[str, Any]:
    """``BernoulliRBM.partial_fit`` on our batch stream until ``cpu_budget`` CPU seconds are used; our AIS."""
    from sklearn.neural_network import BernoulliRBM

    args = rbm_args(data_root, quick)
    task = RBMTask(args, rbm_data(args, quick))
    rbm = BernoulliRBM(
        n_components=args.num_hidden, learning_rate=SKLEARN_LEARNING_RATE, batch_size=args.train_batch_size,
        random_state=0,
    )  # fmt: skip
    start, steps = time.process_time(), 0
    while time.process_time() - start < cpu_budget:
        rbm.partial_fit(task.batch(steps, 0, 1)[0].numpy())
        steps += 1
    train_cpu = time.process_time() - start
    model = RBMModel(num_visible=args.num_visible, num_hidden=args.num_hidden, image_size=args.image_size)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(rbm.components_.T.astype(np.float32)))
        model.visible_bias.copy_(torch.from_numpy(rbm.intercept_visible_.astype(np.float32)))
        model.hidden_bias.copy_(torch.from_numpy(rbm.intercept_hidden_.astype(np.float32)))
    pipeline = RBMPipeline(model, GibbsScheduler())
    start = time.process_time()
    metrics = evaluate_rbm(pipeline, task)
    row = rbm_row(metrics, train_cpu, steps, task)
    recipe = {"learning_rate": SKLEARN_LEARNING_RATE, "batch_size": args.train_batch_size, "method": "PCD-1, SGD"}
    return {**row, "eval_cpu_seconds": time.process_time() - start, "recipe": recipe}


def torchebm_samples(model: torch.nn.Module, starts: torch.Tensor, step_size: float, steps: int, seed: int) -> Any:
    """torchebm's ``LangevinDynamics`` (``x ← x − η∇E + √(2η) z``) on ``model`` from ``starts``."""
    from torchebm.core import BaseModel
    from torchebm.samplers import LangevinDynamics

    class TrainedEnergy(BaseModel):
        def __init__(self, energy: torch.nn.Module):
            super().__init__()
            self.energy = energy

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.energy(x, return_dict=False)[0]

    sampler = LangevinDynamics(TrainedEnergy(model), step_size=step_size, noise_scale=1.0)
    return sampler.sample(x=starts.clone(), n_steps=steps, generator=torch.Generator().manual_seed(seed))


def peer_rows(pipeline: Any, args: EnergyArguments, n: int) -> dict[str, Any]:
    """W2 to the data of ULA samples by torchebm and by hfgen from the same starts (step ``sample_step_size``,
    ``num_sample_steps`` steps), W2 between the two sample sets, and the CPU seconds of each."""
    target = get_toy_distribution(args.dataset)
    g = torch.Generator().manual_seed(11)
    starts = args.buffer_low + (args.buffer_high - args.buffer_low) * torch.rand(n, 2, generator=g)
    data = target.sample(n, g)
    start = time.process_time()
    ours = pipeline(
        start_samples=starts, num_inference_steps=args.num_sample_steps, generator=torch.Generator().manual_seed(12),
    ).samples  # fmt: skip
    our_cpu = time.process_time() - start
    ours_ula = type(pipeline)(pipeline.model, LangevinScheduler(step_size=args.sample_step_size))
    ours_ula.set_progress_bar_config(disable=True)
    start = time.process_time()
    ula = ours_ula(
        start_samples=starts, num_inference_steps=args.num_sample_steps, generator=torch.Generator().manual_seed(13)
    ).samples
    ula_cpu = time.process_time() - start
    row: dict[str, Any] = {
        "num_samples": n,
        "hfgen_sampler_w2": wasserstein2(ours, data),
        "hfgen_sampler_cpu_seconds": our_cpu,
        "hfgen_ula_w2": wasserstein2(ula, data),
        "hfgen_ula_cpu_seconds": ula_cpu,
        "data_floor_w2": wasserstein2(target.sample(n, g), data),
    }
    try:
        import torchebm
    except ImportError as error:
        return {**row, "torchebm": f"not installed ({error}): pip install torchebm"}
    start = time.process_time()
    theirs = torchebm_samples(pipeline.model, starts, args.sample_step_size, args.num_sample_steps, 14)
    row |= {
        "torchebm_version": torchebm.__version__,
        "torchebm_ula_w2": wasserstein2(theirs, data),
        "torchebm_ula_cpu_seconds": time.process_time() - start,
        "hfgen_ula_vs_torchebm_w2": wasserstein2(ula, theirs),
    }
    return row


def kl_estimate(pipeline: Any, target: Any, args: EnergyArguments, num_points: int, seed: int) -> dict[str, float]:
    """``KL(p ‖ q) = E_p[log p(x) − log q(x)]`` over ``num_points`` fresh target points, with the target's exact
    ``log p`` and the model's ``log q = −E − log Z`` (``log Z`` by the converged quadrature): the same expectation as
    NLL − entropy, with a far smaller standard error."""
    points = target.sample(num_points, torch.Generator().manual_seed(HELD_OUT_SEED + 1 + seed)).double()
    gap = target.log_prob(points) - pipeline.log_prob(points, args.bounds, args.grid_size)
    return {"kl": float(gap.mean()), "kl_stderr": float(gap.std() / num_points**0.5), "kl_points": num_points}


def bench_ebm(dataset: str, quick: bool, seed: int = 0) -> dict[str, Any]:
    """Train the ``EnergyArguments`` defaults (with :data:`EBM_OVERRIDES`) on ``dataset`` from ``seed`` and measure
    it."""
    args = EnergyArguments(
        dataset=dataset,
        seed=seed,
        output_dir=str(HERE / "out" / f"energy-ebm-{dataset}-seed{seed}"),
        overwrite_output_dir=True,
        checkpointing_steps=0,
        validation_steps=0,
        report_to="none",
        logging_steps=500,
        num_nll_samples=EBM_NLL_POINTS,
        **EBM_OVERRIDES.get(dataset, {}),
    )
    n, draws = EBM_W2_SAMPLES, EBM_W2_DRAWS
    if quick:
        args = replace(args, max_train_steps=20, num_sample_steps=20, num_nll_samples=200, grid_size=64)
        n, draws = 300, 2
    pipeline, info, _ = train_energy(args)
    pipeline.set_progress_bar_config(disable=True)
    start = time.process_time()
    target = get_toy_distribution(dataset)
    held_out = target.sample(args.num_nll_samples, torch.Generator().manual_seed(HELD_OUT_SEED))
    metrics = nll_report(pipeline.log_prob(held_out, args.bounds, args.grid_size), target.entropy)

    def sample(k: int, g: torch.Generator) -> torch.Tensor:
        return pipeline(k, args.num_sample_steps, generator=g).samples

    kl = kl_estimate(pipeline, target, args, 2_000 if quick else EBM_KL_POINTS, seed)
    w2 = w2_against_floor(sample, target, n, draws, seed=5)
    log_z = pipeline.log_partition(args.bounds, args.grid_size)
    recipe_keys = ("hidden_size", "num_layers", "confinement", "regularization", "training_sampler", "step_size",
                   "langevin_steps", "buffer_size", "reinit_fraction", "train_batch_size", "max_train_steps",
                   "learning_rate", "sample_sampler", "sample_step_size", "num_sample_steps", "grid_bound",
                   "grid_size")  # fmt: skip
    return {
        "dataset": dataset,
        "seed": seed,
        **kl,
        "train_cpu_seconds": info["train_cpu_seconds"],
        "train_steps": info["train_steps"],
        "nll": metrics["nll"],
        "nll_stderr": metrics["nll_stderr"],
        "entropy": metrics["entropy"],
        "nll_minus_entropy": metrics["nll_minus_entropy"],
        "num_nll_points": args.num_nll_samples,
        "log_partition": float(log_z.log_partition),
        "log_partition_error": log_z.error_estimate,
        "w2": w2,
        "w2_samples": n,
        "w2_draws": draws,
        "eval_cpu_seconds": time.process_time() - start,
        "peer": peer_rows(pipeline, args, 2_000 if not quick else 200),
        "recipe": {k: getattr(args, k) for k in recipe_keys},
    }


def _rbm_training(name: str, recipe: dict) -> str:
    """How a run of the RBM table trained: hfgen's recipe, or scikit-learn's learning rate and batch."""
    if name == "rbm":
        return (
            f"{recipe['method'].upper()}-{recipe['gibbs_steps']}, {recipe['num_chains']} chains, batch "
            f"{recipe['train_batch_size']}, AdamW {recipe['learning_rate']:g} (β₁ {recipe['adam_beta1']}), "
            f"{recipe['lr_scheduler']}"
        )
    return f"{recipe['method']} {recipe['learning_rate']:g}, batch {recipe['batch_size']}, same batches"


RBM_LABELS = {
    "rbm": "hfgen `RBMModel`",
    "sklearn_rbm": "scikit-learn `BernoulliRBM`",
    "rbm_long": "hfgen `RBMModel`, 70 epochs",
    "sklearn_rbm_long": "scikit-learn `BernoulliRBM`, CPU of the 70 epochs",
}


def _ais_cells(r: dict[str, Any]) -> list[str]:
    """The AIS cells of an RBM row: log p, log Ẑ, the runs' ESS, and the second, independent estimate."""
    runs = r["ais_num_chains"]
    ess = f"{r['ais_effective_sample_size']:.0f} of {runs}" if "ais_effective_sample_size" in r else "–"
    repeat = r.get("ais_repeat")
    second = (
        f"{plus_minus(repeat['log_likelihood'], repeat['log_likelihood_stderr'], '.2f')} (ESS "
        f"{repeat['ais_effective_sample_size']:.0f})"
        if repeat
        else "–"
    )
    return [
        plus_minus(r["log_likelihood"], r["log_likelihood_stderr"], ".2f"),
        plus_minus(r["log_partition"], r["log_partition_stderr"], ".2f"),
        f"{runs} × {r['ais_num_betas']:,}",
        ess,
        second,
    ]


def _rbm_target(name: str, r: dict[str, Any], targets: dict[str, Any]) -> str:
    """The targets line of one of our RBM runs (log-likelihood and CPU minutes)."""
    minutes, least, most = (
        r["train_cpu_seconds"] / 60,
        targets[f"{name}_log_likelihood_min"],
        targets[f"{name}_cpu_minutes_max"],
    )
    ok = r["log_likelihood"] >= least and minutes <= most
    return (
        f"Target of `{name}`: test log-likelihood ≥ {least:.0f} nats within {most:.0f} CPU minutes: "
        f"{r['log_likelihood']:.2f} in {minutes:.1f} min, {verdict(ok)}."
    )


def _rbm_section(runs: dict[str, Any], targets: dict[str, Any]) -> list[str]:
    """The RBM on MNIST, hfgen's against scikit-learn's, beside the published log-likelihoods."""
    lines = [
        "## RBM, 500 hidden units, MNIST",
        "",
        "Binarisation: training images drawn afresh at every batch, `v ~ Bernoulli(pixel / 255)`; the 10,000 test",
        "images binarised once (`hfgen.data.images.binarize_test_images`, seed 0, the test set of the MADE",
        "dynamic row of `DENSITY_RESULTS.md`) and kept fixed. Test log-likelihood `−F(v) − log Ẑ` in",
        "nats per image, `log Ẑ` by AIS from the base-rate model (visible biases `log p̄ / (1 − p̄)` of the",
        "training pixels) with the number of runs and of equally spaced β shown; ± combines the spread over",
        "test images and the AIS standard error of `log Ẑ`. ESS: Kish's effective sample size of the AIS runs'",
        f"weights, `(Σw)² / Σw²` (far below the runs, the ± is unreliable); the second AIS (seed {SECOND_AIS_SEED})",
        "is independent of the first (seed 0). The pseudo-log-likelihood and the reconstruction error are on the",
        "same test images.",
        "",
    ]
    rows = [
        [
            label,
            _rbm_training(name.removesuffix("_long"), r["recipe"]),
            f"{r['train_cpu_seconds']:.0f} ({r['epochs']:.1f})",
            *_ais_cells(r),
            f"{r['pseudo_log_likelihood']:.2f}",
            f"{r['reconstruction_error']:.2f}",
        ]
        for name, label in RBM_LABELS.items()
        if (r := runs.get(name)) is not None
    ]
    header = ["model", "training", "CPU s (epochs)", "test log p (AIS)", "log Ẑ ± se", "AIS runs × β", "AIS ESS",
              f"second AIS (seed {SECOND_AIS_SEED})", "pseudo-LL", "recon. error"]  # fmt: skip
    lines += table(header, rows)
    lines += [
        "",
        "Published (Salakhutdinov & Murray 2008, 500 hidden units, AIS): "
        + ", ".join(f"{k} {v:.1f}" for k, v in PUBLISHED.items())
        + " nats (their binarisation and AIS schedule differ from ours).",
        "",
    ]
    lines += [_rbm_target(name, runs[name], targets) for name in ("rbm", "rbm_long") if name in runs]
    return [*lines, ""]


def _ebm_targets(dataset: str, r: dict[str, Any], targets: dict[str, Any]) -> str:
    """The targets line of a 2-D EBM: KL (NLL − entropy), W2 / floor where it has a bound, and the CPU minutes."""
    bound = targets["ebm_nll_minus_entropy_max"][dataset]
    found = [f"KL (NLL − entropy) {r['kl']:.3f} ≤ {bound}: " + verdict(r["kl"] <= bound)]
    if dataset in targets["ebm_w2_ratio_max"]:
        bound = targets["ebm_w2_ratio_max"][dataset]
        found.append(f"W2 / floor {r['w2']['ratio']:.2f} ≤ {bound}: " + verdict(r["w2"]["ratio"] <= bound))
    minutes, bound = r["train_cpu_seconds"] / 60, targets["ebm_cpu_minutes_max"]
    found.append(f"{minutes:.1f} CPU min ≤ {bound:.0f}: " + verdict(minutes <= bound))
    return f"Targets, seed {r.get('seed', 0)}: " + "; ".join(found) + "."


def _peer_lines(recipe: dict[str, Any], p: dict[str, Any]) -> list[str]:
    """hfgen's samplers against torchebm's Langevin dynamics from the same starts."""
    lines = [
        f"Peer check of the sampler ({p['num_samples']:,} chains from the same uniform starts, "
        f"{recipe['num_sample_steps']} steps, η = {recipe['sample_step_size']}; W2 to {p['num_samples']:,} "
        "data samples):",
        "",
    ]
    rows = [
        [f"hfgen `EnergyPipeline` ({recipe['sample_sampler']})", f"{p['hfgen_sampler_w2']:.4f}",
         f"{p['hfgen_sampler_cpu_seconds']:.2f}"],
        ["hfgen `LangevinScheduler` (ULA)", f"{p['hfgen_ula_w2']:.4f}", f"{p['hfgen_ula_cpu_seconds']:.2f}"],
    ]  # fmt: skip
    if "torchebm_ula_w2" not in p:
        return [*lines, *table(["sampler", "W2 to data", "CPU s"], rows), "", f"torchebm: {p['torchebm']}."]
    rows += [
        [f"torchebm {p['torchebm_version']} `LangevinDynamics` (ULA)", f"{p['torchebm_ula_w2']:.4f}",
         f"{p['torchebm_ula_cpu_seconds']:.2f}"],
        ["two data samples (floor)", f"{p['data_floor_w2']:.4f}", ""],
    ]  # fmt: skip
    return [
        *lines,
        *table(["sampler", "W2 to data", "CPU s"], rows),
        "",
        f"W2 between the hfgen ULA and torchebm ULA samples: {p['hfgen_ula_vs_torchebm_w2']:.4f} (the floor "
        f"between two data samples of this size is {p['data_floor_w2']:.4f}).",
    ]


def _reproduction_line(first: dict[str, Any], second: dict[str, Any] | None) -> str:
    """Whether the second seed's KL agrees with the first's within two standard errors of their difference."""
    if second is None:
        return "No second seed stored (`--seeds 0 1`)."
    difference = second["kl"] - first["kl"]
    se = (first["kl_stderr"] ** 2 + second["kl_stderr"] ** 2) ** 0.5
    agrees = abs(difference) <= 2 * se
    return (
        f"Second seed: KL {plus_minus(second['kl'], second['kl_stderr'], '.4f')} against "
        f"{plus_minus(first['kl'], first['kl_stderr'], '.4f')}, a difference of {difference:+.4f} = "
        f"{difference / se:+.1f} standard errors: "
        + ("reproduces within two standard errors." if agrees else "**does not reproduce** within two standard errors.")
    )


def _ebm_row(r: dict[str, Any]) -> list[str]:
    w2 = r["w2"]
    return [
        str(r.get("seed", 0)),
        f"{r['train_cpu_seconds']:.0f}",
        plus_minus(r["kl"], r["kl_stderr"], ".4f"),
        plus_minus(r["nll"], r["nll_stderr"], ".4f"),
        f"{r['entropy']:.4f}",
        plus_minus(w2["w2"], w2["w2_sd"], ".4f"),
        f"{w2['floor']:.4f}",
        f"{w2['ratio']:.2f}",
    ]


def _ebm_section(dataset: str, runs: list[dict[str, Any]], targets: dict[str, Any]) -> list[str]:
    """A 2-D EBM: its recipe, its KL, NLL and W2 against the floor for each stored seed, whether the second seed
    reproduces the first, its targets and the peer check of its sampler."""
    r = runs[0]
    recipe = r["recipe"]
    return [
        f"## 2-D EBM, {dataset}",
        "",
        f"Energy MLP {recipe['num_layers']} × {recipe['hidden_size']} (κ = {recipe['confinement']}), α = "
        f"{recipe['regularization']}; training chains: {recipe['langevin_steps']} {recipe['training_sampler']} "
        "steps "
        f"(η = {recipe['step_size']}) from a replay buffer of {recipe['buffer_size']:,} (restarts "
        f"{recipe['reinit_fraction']}); batch {recipe['train_batch_size']}, {r['train_steps']:,} steps, AdamW "
        f"{recipe['learning_rate']:g}. Samples: {recipe['num_sample_steps']} {recipe['sample_sampler']} steps "
        f"(η = {recipe['sample_step_size']}) from uniform noise. log Z by quadrature on {recipe['grid_size']}² "
        f"cells of [−{recipe['grid_bound']:g}, {recipe['grid_bound']:g}]² (error estimate "
        f"{r['log_partition_error']:.1e}).",
        "",
        *table(
            [
                "seed",
                "train CPU s",
                "KL = E_p[log p − log q] ± se",
                "NLL ± se",
                "entropy",
                "W2 (mean of draws)",
                "floor",
                "W2 / floor",
            ],
            [_ebm_row(run) for run in runs],
        ),  # fmt: skip
        "",
        f"The estimator: KL(p ‖ q) = mean of `log p(x) − log q(x)` over {r['kl_points']:,} fresh target points, "
        "with the target's exact `log p` and `log q = −E(x) − log Z` (the estimator of the density benchmark: the "
        "same expectation as NLL − entropy, with a far smaller standard error). NLL on "
        f"{r['num_nll_points']:,} held-out points; W2 of {r['w2_samples']:,} samples against as many data samples, "
        f"mean of {r['w2_draws']} draws, beside the floor W2 between two data samples. Training CPU seconds come "
        "from the same runs as the figures.",
        "",
        _reproduction_line(r, runs[1] if len(runs) > 1 else None),
        "",
        *[_ebm_targets(dataset, run, targets) + "\n" for run in runs],
        *_peer_lines(recipe, r["peer"]),
        "",
    ]


def ebm_seed(run: dict[str, Any]) -> int:
    return run.get("seed", 0)


def ebm_run_name(run: str, seed: int) -> str:
    """The stored name of a 2-D EBM run: ``ebm-<dataset>`` for seed 0, ``ebm-<dataset>-seed<k>`` for another."""
    return run if seed == 0 else f"{run}-seed{seed}"


def render(results: dict[str, Any]) -> str:
    """The Markdown page of the stored runs (``energy_results.json``)."""
    runs, targets = results["runs"], results["targets"]
    quick = any(r.get("quick") for r in runs.values())
    lines = [
        "# hfgen energy-based models benchmark" + (" (QUICK smoke run: numbers meaningless)" if quick else ""),
        "",
        written_by("bench_energy", results, f"{results['threads']} thread")
        + "; times are CPU seconds of the process (`time.process_time`), on a machine",
        "shared with other jobs.",
        "",
    ]
    if any(name in runs for name in RBM_LABELS):
        lines += _rbm_section(runs, targets)
    for dataset in EBM_DATASETS:
        seeds = sorted((r for name, r in runs.items() if name.startswith(f"ebm-{dataset}")), key=ebm_seed)
        if seeds:
            lines += _ebm_section(dataset, seeds, targets)
    return markdown(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for checking that the script runs")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--data_root", type=Path, default=None, help="folder holding mnist/{train,test}.parquet")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds of the 2-D EBM runs (0 1: a second)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for ENERGY_RESULTS.md and energy_results.json (default: benchmarks/, or "
        "benchmarks/out/energy-quick with --quick)",
    )
    args = parser.parse_args()
    if any(run.endswith("rbm") for run in args.runs) and args.data_root is None:
        parser.error("the RBM runs need --data_root, the folder holding mnist/train.parquet and mnist/test.parquet")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    output = args.output or (HERE / "out" / "energy-quick" if args.quick else HERE)
    store = output / "energy_runs"
    store.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        if run in RBM_OVERRIDES:
            row = bench_rbm(args.data_root, args.quick, RBM_OVERRIDES[run])
        elif run.startswith("sklearn_rbm"):
            ours = run.removeprefix("sklearn_")
            stored = store / f"{ours}.json"
            if not stored.is_file():
                parser.error(f"{run} takes the CPU time of the stored {ours} run: run `--runs {ours}` first")
            budget = json.loads(stored.read_text(encoding="utf-8"))["train_cpu_seconds"]
            row = bench_sklearn_rbm(args.data_root, args.quick, budget)
        else:
            for seed in args.seeds:
                row = bench_ebm(run.removeprefix("ebm-"), args.quick, seed) | {"quick": args.quick}
                name = ebm_run_name(run, seed)
                (store / f"{name}.json").write_text(json.dumps(row, indent=2), encoding="utf-8")
                print(f"{name}: stored", flush=True)
            continue
        row["quick"] = args.quick
        (store / f"{run}.json").write_text(json.dumps(row, indent=2), encoding="utf-8")
        print(f"{run}: stored", flush=True)
    results = {
        **machine(),
        "targets": TARGETS,
        "published_salakhutdinov_murray_2008": PUBLISHED,
        "runs": {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(store.glob("*.json"))},
    }
    print(write_results(results, output, PAGE, render))


if __name__ == "__main__":
    main()
