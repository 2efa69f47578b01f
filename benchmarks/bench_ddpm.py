"""Constant-α DDPM benchmark: the built-in recipe (``DDPMPointsArguments`` defaults) on three toy targets, two seeds.

    python benchmarks/bench_ddpm.py            # full run, writes benchmarks/DDPM_RESULTS.md and ddpm_results.json
    python benchmarks/bench_ddpm.py --targets checkerboard --seeds 0 1 2   # a subset
    python benchmarks/bench_ddpm.py --quick    # a smoke run with tiny budgets (numbers meaningless)

For each target and seed (the seed of the run: initial weights, batches, samples): training seconds (as the shared
Trainer reports them, one thread), W2 of 10,000 ancestral samples against 10,000 fresh data samples beside the
floor W2 between two data samples of that size (means over independent draws), and the time to draw 10,000 samples
(median over those draws).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from report import Page, machine, markdown, plus_minus, table, write_results, written_by, yes_no

from hfgen.data import get_toy_distribution
from hfgen.metrics import w2_against_floor
from hfgen.training import DDPMPointsArguments, train_ddpm_points

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("ddpm", "ddpm_results.json", "DDPM_RESULTS.md")

HERE = Path(__file__).resolve().parent
TARGETS = ("checkerboard", "8gaussians", "moons")
#: the issue's targets: W2 at 10,000 samples at most 1.5× the floor, training at most 5 minutes per task
MAX_RATIO, MAX_TRAIN_SECONDS = 1.5, 300.0


def bench_target(dataset: str, seed: int, quick: bool) -> dict:
    """Train the default recipe on ``dataset`` with ``seed`` in this process and measure it."""
    args = DDPMPointsArguments(
        dataset=dataset,
        seed=seed,
        output_dir=str(HERE / "out" / f"ddpm-{dataset}"),
        validation_steps=0,
        checkpointing_steps=0,
        report_to="none",
        overwrite_output_dir=True,
    )
    if quick:
        args = replace(args, max_train_steps=20, hidden_size=16, num_layers=2, num_train_timesteps=20)
    pipeline, info = train_ddpm_points(args)
    pipeline.set_progress_bar_config(disable=True)
    target = get_toy_distribution(dataset)
    n, sampling_seconds = 500 if quick else 10_000, []

    def timed_samples(k: int, g: torch.Generator) -> torch.Tensor:
        start = time.perf_counter()
        samples = pipeline(k, generator=g).samples
        sampling_seconds.append(time.perf_counter() - start)
        return samples

    quality = w2_against_floor(timed_samples, target, n, 2, seed=1 + 1_000 * seed)
    return {
        "target": dataset,
        "seed": seed,
        "train_steps": info["train_steps"],
        "train_seconds": info["train_seconds"],
        "train_cpu_seconds": info["train_cpu_seconds"],
        "num_samples": n,
        "sampling_steps": args.num_train_timesteps,
        "sampling_seconds": statistics.median(sampling_seconds),
        "w2": quality,
        # one thread: the CPU time is the wall-clock time the run takes on an otherwise idle machine
        "meets_targets": quality["ratio"] <= MAX_RATIO and info["train_cpu_seconds"] <= MAX_TRAIN_SECONDS,
    }


def recipe() -> dict:
    """The default arguments that decide the result."""
    args = DDPMPointsArguments()
    keys = ("num_train_timesteps", "hidden_size", "num_layers", "num_position_frequencies", "time_embedding",
            "train_batch_size", "max_train_steps", "learning_rate", "lr_scheduler", "lr_warmup_steps", "ema_decay",
            "variance_type", "sampler")  # fmt: skip
    return {"alpha": args.schedule_alpha(), **{key: getattr(args, key) for key in keys}}


def render(results: dict) -> str:
    """The Markdown page of a stored run (``ddpm_results.json``)."""
    r = results["recipe"]
    T, alpha = r["num_train_timesteps"], r["alpha"]
    n = f"{results['runs'][0]['num_samples']:,}"
    lines = [
        "# hfgen constant-α DDPM benchmark",
        "",
        written_by("bench_ddpm", results) + ".",
        "",
        f"Recipe (`DDPMPointsArguments` defaults): α = {alpha}, T = {T} (ᾱ_T = {alpha**T:.3g}), ε-network TimeMLP "
        f"{r['num_layers']}×{r['hidden_size']} with octave position encoding L = {r['num_position_frequencies']} and "
        f"{r['time_embedding']} embedding of the integer t, batch {r['train_batch_size']}, {r['max_train_steps']:,} "
        f"steps, lr {r['learning_rate']} {r['lr_scheduler']} (warm-up {r['lr_warmup_steps']}), EMA {r['ema_decay']}; "
        f"{r['sampler']} sampling on all T steps, variance {r['variance_type']}.",
        "",
        "One row per target and seed. W2 is the mean over 2 independent draws of model samples against fresh data",
        "samples; the floor is the mean W2 between two independent data samples of the same size (± one sd).",
        "Targets: ratio at most "
        f"{MAX_RATIO}, training at most {MAX_TRAIN_SECONDS:.0f} s. Training runs on one thread, so its CPU time is",
        "its wall-clock time on an idle machine; the wall-clock column is inflated when other jobs share the CPU",
        f"(load average {results['load_average'][0]:.1f} at the start, {results['load_average'][1]:.1f} at the end).",
        "",
    ]
    header = ["target", "seed", "train steps", "train CPU (s)", "train wall (s)", f"W2 {n}", f"floor {n}", "ratio",
              f"sampling {n} × T steps (s)", "targets met"]  # fmt: skip
    rows = [
        [
            row["target"],
            row["seed"],
            f"{row['train_steps']:,}",
            f"{row['train_cpu_seconds']:.0f}",
            f"{row['train_seconds']:.0f}",
            plus_minus(row["w2"]["w2"], row["w2"]["w2_sd"], ".4f"),
            plus_minus(row["w2"]["floor"], row["w2"]["floor_sd"], ".4f"),
            f"{row['w2']['ratio']:.2f}",
            f"{row['sampling_seconds']:.1f}",
            yes_no(row["meets_targets"]),
        ]  # fmt: skip
        for row in results["runs"]
    ]
    lines += table(header, rows)
    return markdown(lines, results["quick"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for checking that the script runs")
    parser.add_argument("--output", type=Path, default=HERE, help="folder for DDPM_RESULTS.md and ddpm_results.json")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one training run per seed and target")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load_at_start = os.getloadavg()[0]
    results = {
        **machine(),
        "quick": args.quick,
        "recipe": recipe(),
        "runs": [bench_target(dataset, seed, args.quick) for dataset in args.targets for seed in args.seeds],
    }
    results["load_average"] = [load_at_start, os.getloadavg()[0]]
    print(write_results(results, args.output, PAGE, render))


if __name__ == "__main__":
    main()
