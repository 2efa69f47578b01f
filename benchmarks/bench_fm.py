"""Flow-matching benchmark: framework overhead, OT-coupling cost, sample quality and likelihood.

    python benchmarks/bench_fm.py            # full run, writes benchmarks/RESULTS.md and benchmarks/results.json
    python benchmarks/bench_fm.py --quick    # a smoke run with tiny budgets (numbers meaningless)
    python benchmarks/bench_fm.py --sections trainer_overhead   # remeasure one section, keep the others

Timings run on one thread and interleave the compared variants (A, B, A, B, …), reporting medians and the
ratio measured in the same run, so that a noisy machine shifts both sides alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from report import Page, machine, markdown, plus_minus, table, write_results, written_by
from torch import nn

from hfgen import FlowMatchEulerScheduler, FlowMatchingPipeline, TimeMLP
from hfgen.data import StandardGaussian, get_toy_distribution
from hfgen.methods.couplings import optimal_permutation, ot_assignment
from hfgen.methods.flow_matching import cfm_loss
from hfgen.metrics import fraction_in_support, nll_report, w2_against_floor
from hfgen.training import FlowMatchingArguments, train_flow_matching
from hfgen.training.flow_matching import CoupledPairs

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("fm", "results.json", "RESULTS.md")

HERE = Path(__file__).resolve().parent
QUALITY_TARGETS = ("checkerboard", "8gaussians", "moons")


# ---- the plain PyTorch baseline: the same network and the same CFM loop in 20 lines -----------------------
class PlainMLP(nn.Module):
    def __init__(self, dim: int = 2, width: int = 64, layers: int = 3, embed: int = 64):
        super().__init__()
        self.register_buffer("freqs", torch.exp(-math.log(1e4) * torch.arange(embed // 2) / (embed // 2)))
        self.inp, self.tp = nn.Linear(dim, width), nn.Linear(embed, width, bias=False)
        body = [nn.SiLU()]
        for _ in range(layers - 1):
            body += [nn.Linear(width, width), nn.SiLU()]
        self.body = nn.Sequential(*body, nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = (1000 * t.reshape(-1))[:, None] * self.freqs
        return self.body(self.inp(x) + self.tp(torch.cat([angles.cos(), angles.sin()], -1)))


def plain_train_step(net, opt, x0, x1, t):
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    loss = (net(xt, t) - (x1 - x0)).square().sum(1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@torch.no_grad()
def plain_sample(net, x, steps):
    for i in range(steps):
        x = x + net(x, torch.tensor(i / steps)) / steps
    return x


# ---- timing helpers ---------------------------------------------------------------------------------------
def interleaved_medians(variants: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each variant, calling them in turn ``repeats`` times after one warm-up."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_overhead(quick: bool) -> dict:
    """hfgen (TimeMLP + cfm_loss, FlowMatchingPipeline) against the plain loop: MLP 3×64, batch 256."""
    torch.manual_seed(0)
    target, source = get_toy_distribution("checkerboard"), StandardGaussian(2)
    ours = TimeMLP(dim=2, hidden_size=64, num_layers=3)
    plain = PlainMLP()
    plain.load_state_dict({k: v for k, v in ours.state_dict().items()}, strict=False)
    opt_ours, opt_plain = torch.optim.Adam(ours.parameters(), 1e-3), torch.optim.Adam(plain.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    batch, steps_per_call = 256, 20 if quick else 200
    batches = [(source.sample(batch, g), target.sample(batch, g), torch.rand(batch, generator=g)) for _ in range(8)]

    def train_ours():
        for i in range(steps_per_call):
            x0, x1, t = batches[i % 8]
            loss = cfm_loss(ours, x0, x1, t=t)
            opt_ours.zero_grad(set_to_none=True)
            loss.backward()
            opt_ours.step()

    def train_plain():
        for i in range(steps_per_call):
            plain_train_step(plain, opt_plain, *batches[i % 8])

    train = interleaved_medians({"hfgen": train_ours, "plain": train_plain}, 3 if quick else 15)
    pipe = FlowMatchingPipeline(ours, FlowMatchEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    x0 = source.sample(1000, g)
    sample = interleaved_medians(
        {
            "hfgen": lambda: pipe(source_samples=x0, num_inference_steps=100),
            "plain": lambda: plain_sample(plain, x0, 100),
        },
        3 if quick else 25,
    )
    return {
        "train_steps_per_s": {k: steps_per_call / v for k, v in train.items()},
        "train_ratio_plain_over_hfgen_time": train["plain"] / train["hfgen"],
        "euler_sampling_s": sample,
        "sampling_ratio_hfgen_over_plain_time": sample["hfgen"] / sample["plain"],
        "train_time_ratio_hfgen_over_plain": train["hfgen"] / train["plain"],
    }


def plain_training_run(steps: int, batch: int, seed: int = 0, fused: bool = False) -> tuple[float, float]:
    """The whole plain loop: fresh data each step, CFM, Adam (torch's default; with ``fused``, the fused AdamW kernel
    that hfgen's engine uses), warm-up + cosine LR, EMA 0.999; wall-clock and CPU seconds (of every thread of the
    process)."""
    torch.manual_seed(seed)
    target, source, g = get_toy_distribution("checkerboard"), StandardGaussian(2), torch.Generator().manual_seed(0)
    net = PlainMLP()
    opt = (
        torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=0.0, fused=True)
        if fused
        else torch.optim.Adam(net.parameters(), 2e-3)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, s / 200) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0, s - 200) / (steps - 200))))
    )
    shadow = [p.detach().clone() for p in net.parameters()]
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        x1, x0 = target.sample(batch, g), source.sample(batch, g)
        plain_train_step(net, opt, x0, x1, torch.rand(batch, generator=g))
        schedule.step()
        torch._foreach_lerp_(shadow, [p.detach() for p in net.parameters()], 1e-3)
    return time.perf_counter() - start, time.process_time() - cpu_start


def bench_trainer_overhead(quick: bool) -> dict:
    """``hfgen.training.Trainer`` (Accelerate, fused AdamW, EMAModel, LR schedule, non-finite check, counter-based
    batches, progress bar) against the plain loop doing the same work, MLP 3×64, batch 256: training seconds,
    wall-clock and CPU (every thread of the process). Two plain loops: with torch's default Adam, as one writes it,
    and with the engine's fused AdamW, which leaves only the engine's own overhead. The three alternate, seven times
    each; the ratios are of the medians. The CPU ratios move little when another job shares the machine; the
    wall-clock ones need an idle one."""
    steps = 300 if quick else 2000
    args = FlowMatchingArguments(
        output_dir=str(HERE / "out" / "trainer-overhead"),
        hidden_size=64,
        num_layers=3,
        num_position_frequencies=0,
        time_beta=1.0,
        train_batch_size=256,
        max_train_steps=steps,
        validation_steps=0,
        checkpointing_steps=0,
        report_to="none",
        overwrite_output_dir=True,
    )
    names = ("hfgen", "plain", "plain_fused")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    repeats = 1 if quick else 7
    for _ in range(repeats):
        metrics = train_flow_matching(args)[1]
        wall["hfgen"].append(metrics["train_seconds"])
        cpu["hfgen"].append(metrics["train_cpu_seconds"])
        for name in ("plain", "plain_fused"):
            plain_wall, plain_cpu = plain_training_run(steps, 256, fused=name == "plain_fused")
            wall[name].append(plain_wall)
            cpu[name].append(plain_cpu)
    medians = {name: statistics.median(values) for name, values in wall.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    return {
        "steps": steps,
        "repeats": repeats,
        "train_seconds": medians,
        "train_cpu_seconds": cpu_medians,
        "engine_ms_per_step": 1e3 * (cpu_medians["hfgen"] - cpu_medians["plain_fused"]) / steps,
        "time_ratio_hfgen_over_plain": medians["hfgen"] / medians["plain"],
        "cpu_ratio_hfgen_over_plain": cpu_medians["hfgen"] / cpu_medians["plain"],
        "time_ratio_hfgen_over_plain_fused": medians["hfgen"] / medians["plain_fused"],
        "cpu_ratio_hfgen_over_plain_fused": cpu_medians["hfgen"] / cpu_medians["plain_fused"],
        "load_average_1min": os.getloadavg()[0],
    }


def interleaved_costs(variants: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall-clock, CPU seconds of this process (every thread) and of its child processes (the pairs workers)
    per call of each variant, calling them in turn ``repeats`` times after one warm-up."""
    import psutil  # a dependency of accelerate

    me = psutil.Process()

    def children_cpu() -> float:
        return sum(sum(child.cpu_times()[:2]) for child in me.children(recursive=True))

    costs: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": [], "worker_cpu": []} for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            wall, cpu, worker = time.perf_counter(), time.process_time(), children_cpu()
            fn()
            costs[name]["wall"].append(time.perf_counter() - wall)
            costs[name]["cpu"].append(time.process_time() - cpu)
            costs[name]["worker_cpu"].append(children_cpu() - worker)
    return {name: {k: statistics.median(v) for k, v in c.items()} for name, c in costs.items()}


def bench_ot_coupling(quick: bool) -> dict:
    """Cost of a training step of OT-CFM against independent CFM at batch 256, one torch thread: wall-clock, CPU
    seconds of the training process (all its threads) and of the pairs worker process.

    ``ot`` solves each minibatch's exact OT in the training thread; ``ot_thread`` and ``ot_process`` solve the next
    two batches ahead in :class:`~hfgen.training.flow_matching.CoupledPairs`'s background thread (the solver
    releases the GIL, the sampling around it does not) or in one worker process (what training uses by default,
    ``coupling_workers = 1``). The four variants alternate; the ratios are of medians from the same run.
    """
    results: dict = {}
    target, source = get_toy_distribution("checkerboard"), StandardGaussian(2)
    steps = 5 if quick else 100
    variants = {
        "independent": ("independent", 0, 0),
        "ot": ("ot", 0, 0),
        "ot_thread": ("ot", 2, 0),
        "ot_process": ("ot", 2, 1),
    }
    for width, layers in ((64, 3), (256, 4)):
        model = TimeMLP(dim=2, hidden_size=width, num_layers=layers)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        streams = {
            name: CoupledPairs(source, target, 256, coupling, seed=0, prefetch=prefetch, workers=workers)
            for name, (coupling, prefetch, workers) in variants.items()
        }

        def run(stream: CoupledPairs, model=model, opt=opt) -> None:
            for _ in range(steps):
                x0, x1, t, _ = next(stream)
                loss = cfm_loss(model, x0, x1, t=t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        costs = interleaved_costs({name: (lambda s=s: run(s)) for name, s in streams.items()}, 3 if quick else 9)
        for stream in streams.values():
            stream.close()
        base = costs["independent"]
        results[f"mlp_{layers}x{width}"] = {
            name: {
                "ms_per_step": 1e3 * c["wall"] / steps,
                "cpu_ms_per_step": 1e3 * c["cpu"] / steps,
                "worker_cpu_ms_per_step": 1e3 * c["worker_cpu"] / steps,
                "wall_over_independent": c["wall"] / base["wall"],
                "cpu_over_independent": (c["cpu"] + c["worker_cpu"]) / (base["cpu"] + base["worker_cpu"]),
            }
            for name, c in costs.items()
        }
    results["load_average_1min"] = os.getloadavg()[0]
    return results


def bench_ot_solvers(quick: bool) -> dict:
    """Median time of one exact minibatch OT solve, batch 256, on the squared-distance cost between N(0, I)
    and each toy target: :func:`hfgen.methods.couplings.optimal_permutation` (POT's network simplex, what training
    uses) against scipy's ``linear_sum_assignment``. Both must reach the same optimal cost."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    source, results = StandardGaussian(2), {}
    solvers = {"scipy_lsa": lambda c: linear_sum_assignment(c)[1], "pot_emd": optimal_permutation}
    for name in QUALITY_TARGETS:
        target, g = get_toy_distribution(name), torch.Generator().manual_seed(0)
        timings: dict[str, list[float]] = {solver: [] for solver in solvers}
        for _ in range(5 if quick else 40):
            cost = torch.cdist(target.sample(256, g).double(), source.sample(256, g).double()).square().numpy()
            matched = {}
            for solver, solve in solvers.items():
                start = time.perf_counter()
                sigma = solve(cost)
                timings[solver].append(time.perf_counter() - start)
                matched[solver] = cost[np.arange(256), sigma].sum()
            assert abs(matched["scipy_lsa"] - matched["pot_emd"]) < 1e-9 * matched["scipy_lsa"]
        results[name] = {solver: 1e3 * statistics.median(values) for solver, values in timings.items()}
    return results


#: block sizes of the blockwise exact OT coupling of a batch of 256 (256: the exact minibatch OT of the whole batch;
#: 1: the independent coupling)
OT_BLOCKS = (256, 128, 64, 32, 1)


def bench_ot_blocks(quick: bool) -> dict:
    """What a cheaper approximation of the minibatch OT coupling costs: a batch of 256 pairs split into blocks of
    ``b`` consecutive pairs, each block coupled by its own exact OT (:func:`~hfgen.methods.couplings.ot_assignment`).
    For each ``b``: the median CPU time of coupling a batch, and the mean squared distance of its pairs
    ``(1/256) Σ_i ‖x_0^{σ(i)} − x_1^i‖²`` (the objective the coupling minimises; the whole batch's OT is its
    minimum, the independent coupling ``E‖x_0 − x_1‖²``) over independent batches, with its standard error."""
    source, results = StandardGaussian(2), {}
    num_batches = 5 if quick else 40
    for name in QUALITY_TARGETS:
        target, rows = get_toy_distribution(name), {}
        for block in OT_BLOCKS:
            costs, seconds = [], []
            for index in range(num_batches):
                g = torch.Generator().manual_seed(index)
                x1, x0 = target.sample(256, g), source.sample(256, g)
                start = time.process_time()
                if block > 1:
                    blocks = range(0, 256, block)
                    x0 = x0[torch.cat([ot_assignment(x0[i : i + block], x1[i : i + block]) + i for i in blocks])]
                seconds.append(time.process_time() - start)
                costs.append(float((x0 - x1).square().sum(1).mean()))
            rows[str(block)] = {
                "cpu_ms": 1e3 * statistics.median(seconds),
                "pair_cost": statistics.mean(costs),
                "pair_cost_stderr": statistics.stdev(costs) / math.sqrt(num_batches),
            }
        results[name] = rows
    return results


def _ot_block_lines(blocks: dict) -> list[str]:
    rows = []
    for name, by_block in blocks.items():
        for block, row in by_block.items():
            kind = {"256": "exact OT of the whole batch", "1": "independent"}.get(
                block, f"exact OT in blocks of {block}"
            )
            rows.append(
                [name, kind, f"{row['cpu_ms']:.2f}", plus_minus(row["pair_cost"], row["pair_cost_stderr"], ".3f")]
            )
    return [
        "A cheaper coupling than the whole batch's exact OT: the batch's pairs split into blocks of consecutive "
        "pairs, each coupled by its own exact OT. Median CPU ms to couple a batch, and the mean squared distance "
        "of its pairs (the objective OT minimises; mean ± standard error over independent batches):",
        "",
        *table(["target", "coupling", "CPU ms per batch", "mean ‖x₀ − x₁‖² of the pairs"], rows),
    ]


def bench_quality(quick: bool) -> dict:
    """The built-in recipe on three targets: W2 vs. floor at 1k and 10k samples, dopri5 NFE and time, NLL."""
    results = {}
    # in-process runs: no checkpoints, validation or trackers, and the benchmark's own output folders
    base = FlowMatchingArguments(validation_steps=0, checkpointing_steps=0, report_to="none", overwrite_output_dir=True)
    for dataset in QUALITY_TARGETS:
        args = replace(base, dataset=dataset, output_dir=str(HERE / "out" / dataset))
        if quick:
            args = replace(args, max_train_steps=20, hidden_size=16, num_layers=2, num_nll_samples=50)
        pipeline, train_info = train_flow_matching(args)
        pipeline.set_progress_bar_config(disable=True)
        target = get_toy_distribution(dataset)
        row = {"train_seconds": train_info["train_seconds"], "train_steps": train_info["train_steps"]}

        def euler(n, g, pipeline=pipeline):
            return pipeline(n, 100, generator=g).samples

        def dopri5(n, g, pipeline=pipeline):
            return pipeline(n, generator=g, ode_solver="dopri5").samples

        large, small = (500, 100) if quick else (10_000, 1_000)
        row["w2_10k_euler"] = w2_against_floor(euler, target, large, 2, seed=1)
        row["w2_1k_euler"] = w2_against_floor(euler, target, small, 3 if quick else 10, seed=2)
        row["w2_1k_dopri5"] = w2_against_floor(dopri5, target, small, 3 if quick else 10, seed=2)
        g = torch.Generator().manual_seed(3)
        start = time.perf_counter()
        pipeline(1000, 100, generator=g)
        row["euler100_sampling_s_1000"] = time.perf_counter() - start
        start = time.perf_counter()
        row["dopri5_nfe"] = pipeline(1000, generator=g, ode_solver="dopri5").nfe
        row["dopri5_sampling_s_1000"] = time.perf_counter() - start
        if target.has_bounded_support:
            row["fraction_in_support"] = fraction_in_support(euler(large, g), target)
        if target.has_log_prob:
            row |= nll_report(pipeline.log_prob(target.sample(args.num_nll_samples, g)), target.entropy)
        results[dataset] = row
    return results


def _overhead_rows(o: dict, t: dict) -> list[list[str]]:
    """hfgen against a plain PyTorch loop: steps, sampling and whole training runs (wall-clock and CPU)."""
    seconds, cpu = t["train_seconds"], t["train_cpu_seconds"]
    return [
        ["training steps/s", f"{o['train_steps_per_s']['hfgen']:.0f}", f"{o['train_steps_per_s']['plain']:.0f}",
         f"{o['train_time_ratio_hfgen_over_plain']:.3f}"],
        ["Euler sampling, 1,000 points × 100 steps (ms)", f"{1e3 * o['euler_sampling_s']['hfgen']:.1f}",
         f"{1e3 * o['euler_sampling_s']['plain']:.1f}", f"{o['sampling_ratio_hfgen_over_plain_time']:.3f}"],
        [f"whole training run, {t['steps']:,} steps, wall-clock (s): `Trainer` vs the plain loop with the same data, "
         "schedule and EMA, torch's default Adam", f"{seconds['hfgen']:.2f}", f"{seconds['plain']:.2f}",
         f"{t['time_ratio_hfgen_over_plain']:.3f}"],
        ["the same runs, CPU seconds", f"{cpu['hfgen']:.2f}", f"{cpu['plain']:.2f}",
         f"{t['cpu_ratio_hfgen_over_plain']:.3f}"],
        ["whole training run, wall-clock (s): the plain loop with the engine's fused AdamW (the engine's own "
         "overhead)", f"{seconds['hfgen']:.2f}", f"{seconds['plain_fused']:.2f}",
         f"{t['time_ratio_hfgen_over_plain_fused']:.3f}"],
        ["the same runs, CPU seconds", f"{cpu['hfgen']:.2f}", f"{cpu['plain_fused']:.2f}",
         f"{t['cpu_ratio_hfgen_over_plain_fused']:.3f}"],
    ]  # fmt: skip


def _quality_row(name: str, r: dict) -> list[str]:
    big, e1, d1 = r["w2_10k_euler"], r["w2_1k_euler"], r["w2_1k_dopri5"]
    support = f"{r['fraction_in_support']:.3f}" if "fraction_in_support" in r else "–"
    nll = plus_minus(r["nll_minus_entropy"], r["nll_stderr"], ".3f") if "nll" in r else "– (sample-only)"
    return [name, f"{r['train_seconds']:.0f}", f"{big['w2']:.4f}", plus_minus(big["floor"], big["floor_sd"], ".4f"),
            f"{big['ratio']:.2f}", plus_minus(e1["w2"], e1["w2_sd"], ".3f"), plus_minus(d1["w2"], d1["w2_sd"], ".3f"),
            plus_minus(e1["floor"], e1["floor_sd"], ".3f"), r["dopri5_nfe"],
            f"{r['euler100_sampling_s_1000']:.2f} / {r['dopri5_sampling_s_1000']:.2f}", support, nll]  # fmt: skip


OT_VARIANTS = {
    "independent": "independent CFM",
    "ot": "OT-CFM, OT in the step",
    "ot_thread": "OT-CFM, 2 batches ahead in a thread",
    "ot_process": "OT-CFM, 2 batches ahead in a worker process",
}


def _ot_coupling_lines(r: dict) -> list[str]:
    """The OT-coupling cost table: per network and variant, wall-clock and CPU per step and the ratios."""
    rows = [
        [network, OT_VARIANTS[name], f"{c['ms_per_step']:.2f}", f"{c['cpu_ms_per_step']:.2f}",
         f"{c['worker_cpu_ms_per_step']:.2f}", f"{c['wall_over_independent']:.2f}",
         f"{c['cpu_over_independent']:.2f}"]
        for network, row in r.items() if network.startswith("mlp_") for name, c in row.items()
    ]  # fmt: skip
    header = ["network", "batches", "wall (ms/step)", "training process CPU (ms/step)", "worker process CPU (ms/step)",
              "wall / independent", "total CPU / independent"]  # fmt: skip
    bounds = []
    for network, row in r.items():
        if network.startswith("mlp_"):
            step, worker = row["independent"]["cpu_ms_per_step"], row["ot_process"]
            single = max(worker["cpu_ms_per_step"], worker["worker_cpu_ms_per_step"]) / step
            bounds.append(f"{network} {single:.2f}")
    return [
        *table(header, rows),
        "",
        f"Load average {r['load_average_1min']:.2f} at the end of the run, on 2 cores: the wall-clock times are "
        "those of a shared machine, the CPU times are each process's own. A worker solves the next batches on "
        "another core while the step runs, so on an idle machine a step takes about max(training process CPU, "
        "worker CPU), a wall-clock ratio of about " + ", ".join(bounds) + " from the CPU columns; the total CPU "
        "(training process plus worker) still pays for every solve.",
    ]


def render(results: dict) -> str:
    """The Markdown page of the stored results (``results.json``)."""
    t = results["trainer_overhead"]
    lines = [
        "# hfgen flow-matching benchmark",
        "",
        written_by("bench_fm", results) + ". Timings are medians of interleaved repeats; ratios come from one run.",
        "",
        "## Framework overhead (MLP 3×64, batch 256, one thread)",
        "",
        *table(["", "hfgen", "plain PyTorch loop", "hfgen / plain (time)"], _overhead_rows(results["overhead"], t)),
        "",
        f"The whole-run rows are medians of {t['repeats']} alternating runs each (load average "
        f"{t['load_average_1min']:.2f} at the end). The target, ≤ 1.05, is against the plain loop as one writes it "
        "(torch's default Adam); the loop with the engine's fused AdamW isolates the engine's own bookkeeping: "
        f"{t['engine_ms_per_step']:.3f} ms a step of CPU time.",
        "",
        "## Minibatch OT coupling cost (batch 256, one thread)",
        "",
    ]
    lines += _ot_coupling_lines(results["ot_coupling"])
    lines += [
        "",
        "## Exact minibatch OT solvers (batch 256, squared-distance cost from N(0, I) to the target, one thread)",
        "",
        *table(
            ["target", "scipy `linear_sum_assignment` (ms)", "POT `ot.emd`, `optimal_permutation` (ms)"],
            ([name, f"{row['scipy_lsa']:.2f}", f"{row['pot_emd']:.2f}"] for name, row in results["ot_solvers"].items()),
        ),
        "",
        "## Exact OT in blocks of the batch (batch 256, one thread)",
        "",
        *_ot_block_lines(results["ot_blocks"]),
        "",
        "## Quality of the built-in recipe (`FlowMatchingArguments` defaults)",
        "",
        "W2 is the mean over independent draws (2 at 10,000 samples, 10 at 1,000) against fresh target samples;",
        "the floor is the mean W2 between two independent target samples of the same size (± one sd). NLL in",
        "nats on held-out target points (dopri5, exact divergence), beside the target's entropy.",
        "",
    ]
    header = ["target", "train (s)", "W2 10k, Euler 100", "floor 10k", "ratio 10k", "W2 1k, Euler 100",
              "W2 1k, dopri5", "floor 1k", "dopri5 NFE", "Euler / dopri5 time, 1k (s)", "in support",
              "NLL − H (± se)"]  # fmt: skip
    lines += table(header, (_quality_row(name, r) for name, r in results["quality"].items()))
    return markdown(lines)


#: the benchmark's sections, in the order they run
SECTIONS = {
    "overhead": bench_overhead,
    "trainer_overhead": bench_trainer_overhead,
    "ot_coupling": bench_ot_coupling,
    "ot_solvers": bench_ot_solvers,
    "ot_blocks": bench_ot_blocks,
    "quality": bench_quality,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for checking that the script runs")
    parser.add_argument("--output", type=Path, default=HERE, help="folder for RESULTS.md and results.json")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=sorted(SECTIONS),
        default=sorted(SECTIONS),
        help="measure only these sections; the others are kept from the existing results.json",
    )
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    results_path = args.output / "results.json"
    partial = set(args.sections) != set(SECTIONS)
    if partial and not results_path.is_file():
        raise SystemExit(f"--sections {' '.join(args.sections)} needs an existing {results_path} for the others")
    results = json.loads(results_path.read_text(encoding="utf-8")) if partial else {}
    results |= machine()
    for name in args.sections:
        results[name] = SECTIONS[name](args.quick)
    print(write_results(results, args.output, PAGE, render))


if __name__ == "__main__":
    main()
