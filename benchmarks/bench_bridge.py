"""Schrödinger-bridge benchmark: IPF with the built-in recipe (``BridgeArguments`` defaults), two balls → the same
two balls shifted by (0, 3).

    python benchmarks/bench_bridge.py            # full run, writes benchmarks/BRIDGE_RESULTS.md and bridge_results.json
    python benchmarks/bench_bridge.py --quick    # smoke run, tiny budgets, writes under benchmarks/out/bridge-quick

Reported: training seconds (one thread), then for each end the W2 of ``n`` transported points (``x_0 ~ p_data``
carried forward, ``y ~ p'_data`` carried backward) against ``n`` fresh samples of the marginal they should reach,
beside the floor W2 between two independent samples of that marginal (means over independent draws), and the time
to transport ``n`` points (median over those draws). The issue's target: W2 within 1.3× the floor at both ends.

Noise. At ``n = 2,000`` one floor draw has sd ≈ 0.04 around a mean ≈ 0.115: the random imbalance between the two
balls (a binomial count) dominates W2, so a ratio over 10 floor draws moves by about ±10 % from seed to seed. The
floor depends only on the marginal and ``n``, so it is averaged over more draws (``--floor_repeats``, default 50)
than the transported samples (``--repeats``, default 20), and the table gives the ratio's standard error
(delta method: ``se(m/f)/(m/f) = √((se_m/m)² + (se_f/f)²)``). ``--num_samples`` changes ``n``; a larger ``n`` is
a stricter test, since the floor shrinks while a model's bias does not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from hfgen.metrics import wasserstein2, wasserstein2_floor
from hfgen.training import BridgeArguments, BridgeTrainer

HERE = Path(__file__).resolve().parent
MAX_RATIO = 1.3


def transport_against_floor(
    pipeline, direction: str, n: int, repeats: int, seed: int, floor_repeats: int | None = None
) -> dict[str, float]:
    """Mean W2 of ``repeats`` transported samples of size ``n`` against fresh samples of the marginal they should
    reach, the mean floor over ``floor_repeats`` (default ``repeats``) independent pairs of marginal samples, the
    ratio of the two means with its standard error (delta method), and the median transport time."""
    start, goal = (
        (pipeline.source_distribution, pipeline.target_distribution)
        if direction == "forward"
        else (pipeline.target_distribution, pipeline.source_distribution)
    )
    g = torch.Generator().manual_seed(seed)
    model, seconds = [], []
    for _ in range(repeats):
        x = start.sample(n, g)
        tick = time.perf_counter()
        moved = pipeline.transport(x, direction, generator=g)
        seconds.append(time.perf_counter() - tick)
        model.append(wasserstein2(moved, goal.sample(n, g)))
    floor = [wasserstein2_floor(goal, n, g) for _ in range(floor_repeats or repeats)]
    w2, w2_sd = statistics.mean(model), statistics.stdev(model) if len(model) > 1 else 0.0
    base, base_sd = statistics.mean(floor), statistics.stdev(floor) if len(floor) > 1 else 0.0
    ratio = w2 / base
    relative_se = math.hypot(w2_sd / math.sqrt(len(model)) / w2, base_sd / math.sqrt(len(floor)) / base)
    return {
        "w2": w2,
        "w2_sd": w2_sd,
        "floor": base,
        "floor_sd": base_sd,
        "ratio": ratio,
        "ratio_se": ratio * relative_se,
        "transport_seconds": statistics.median(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that the script runs")
    parser.add_argument("--num_samples", type=int, default=2_000, help="points n per transported and floor sample")
    parser.add_argument("--repeats", type=int, default=20, help="transported samples per end")
    parser.add_argument("--floor_repeats", type=int, default=50, help="pairs of marginal samples for the floor")
    options = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = BridgeArguments(
        output_dir=str(HERE / "out" / ("bridge-quick" if options.quick else "bridge-two-balls")),
        checkpointing_steps=0,
        validation_steps=0,
        report_to="none",
        overwrite_output_dir=True,
    )
    n, repeats, floor_repeats = options.num_samples, options.repeats, options.floor_repeats
    if options.quick:
        args = replace(args, ipf_iterations=1, max_train_steps=20, hidden_size=16, num_trajectories=200)
        n, repeats, floor_repeats = 200, 2, 2
    trainer = BridgeTrainer(args)
    result = trainer.train()
    trainer.end()
    pipeline = result.pipeline
    ends = {
        d: transport_against_floor(pipeline, d, n, repeats, seed=11 + i, floor_repeats=floor_repeats)
        for i, d in enumerate(("forward", "backward"))
    }
    record = {
        "quick": options.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread",
        "recipe": {k: v for k, v in args.to_dict().items() if k in args.trained_config()},
        "train_seconds": result.metrics["train_seconds"],
        "num_samples": n,
        "repeats": repeats,
        "floor_repeats": floor_repeats,
        "ends": ends,
        "target_ratio": MAX_RATIO,
        "meets_target": all(end["ratio"] <= MAX_RATIO for end in ends.values()),
    }
    folder = Path(args.output_dir) if options.quick else HERE  # a smoke run's numbers stay out of the repository
    (folder / "bridge_results.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (folder / "BRIDGE_RESULTS.md").write_text(report(record), encoding="utf-8")
    print(report(record))


def report(record: dict) -> str:
    """The Markdown page of a benchmark record."""
    recipe = record["recipe"]
    rows = [
        f"| {label} | {end['w2']:.4f} ± {end['w2_sd']:.4f} | {end['floor']:.4f} ± {end['floor_sd']:.4f} | "
        f"{end['ratio']:.2f} ± {end['ratio_se']:.2f} | {'yes' if end['ratio'] <= record['target_ratio'] else 'no'} | "
        f"{end['transport_seconds']:.3f} |"
        for label, end in (
            ("x_0 ~ p_data → forward → p'_data", record["ends"]["forward"]),
            ("y ~ p'_data → backward → p_data", record["ends"]["backward"]),
        )
    ]
    return "\n".join(
        [
            "# Schrödinger bridge benchmark" + (" (quick smoke run: numbers meaningless)" if record["quick"] else ""),
            "",
            "Generated by `python benchmarks/bench_bridge.py`; do not edit by hand.",
            "",
            f"IPF ({recipe['ipf_iterations']} iterations, {recipe['max_train_steps']} Adam steps per half-iteration) "
            f"between `{recipe['dataset']}` and the same shifted by {tuple(recipe['target_shift'])}, "
            f"N = {recipe['num_steps']} steps, mean γ = 2/N, `{recipe['schedule']}` schedule, "
            f"final step {'noisy' if recipe['final_step_noise'] else 'returns its mean'}, "
            f"{'residual' if recipe['residual'] else 'plain'} mean networks of width {recipe['hidden_size']}. "
            f"Machine: {record['machine']}.",
            "",
            f"Training: {record['train_seconds']:.0f} s. W2 of {record['num_samples']:,} transported points against as "
            f"many fresh samples of the marginal they should reach (mean ± sd over {record['repeats']} draws); "
            f"floor: W2 between two such marginal samples (mean ± sd over {record['floor_repeats']} draws); "
            f"W2 / floor: ratio of the means ± its standard error. "
            f"Target: W2 ≤ {record['target_ratio']}× floor at both ends.",
            "",
            "| transport | W2 | floor | W2 / floor | within target | transport time (s) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    main()
