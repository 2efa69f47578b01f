"""Final evaluation, old and new algorithms on the same trained weights: CPU seconds, peak memory and the figures.

    python benchmarks/bench_evaluation.py --runs flow_matching=out/fm ddpm=out/ddpm density=out/gmm
    python benchmarks/bench_evaluation.py --demo after=RUN_DIR:TIME_LOG     # add make demo's figures, keep the runs
    python benchmarks/bench_evaluation.py --families                        # every script: training vs evaluation
    python benchmarks/bench_evaluation.py --families ddpm gmm               # some rows; the others are kept

Each run folder (written by ``training/train_<family>.py``) is evaluated twice, each time in a fresh subprocess on one
thread, exactly as the training script's final evaluation draws its samples and held-out points:

* ``old``: W2 and its floor by the dense network simplex (``solver="emd"``), the flow's held-out log-densities by
  dopri5 at rtol = atol = 1e-5 with reverse-mode divergence (``pipeline.log_prob``);
* ``new``: W2 by the dual-certified sparse network simplex (``solver="auto"``), the log-densities by 32 RK4 steps.

The process's CPU seconds per stage and its peak resident memory (``ru_maxrss``) are recorded beside the figures.
For the flow, the log-density solvers are compared with dopri5 at 1e-5 on the same held-out points, and the exact
2-D divergence by forward mode (``torch.func.jvp`` under ``vmap``) is timed against reverse mode. ``--demo`` adds
``make demo``'s whole-process figures from ``/usr/bin/time -v`` logs and the run's ``metrics.json``.

``--families`` runs each training script (:data:`FAMILY_RUNS`) for a short run, on one thread, twice: with
``--evaluation full`` (the sizes every script but flow matching always evaluated at before ``--evaluation``) and
with the default ``auto`` (fast for a run that short). Each run's ``metrics.json`` gives its training and final
evaluation CPU seconds; the whole process's CPU is measured too. The training CPU of the recipe's length is the short
run's scaled by ``run_length`` (optimizer steps, EM iterations or the bridge's half-iteration steps): the evaluation
costs the same whatever the length of the training before it.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import Page, machine, markdown, plus_minus, table, verdict, write_results, written_by

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("evaluation", "evaluation_results.json", "EVALUATION_RESULTS.md")

HERE = Path(__file__).resolve().parent
FAMILIES = ("flow_matching", "ddpm", "density")
VARIANTS = ("old", "new")
#: the log-density solvers compared with dopri5 at 1e-5: (name, torchdiffeq method, options or tolerance)
SOLVERS = [
    ("dopri5 1e-4", "dopri5", 1e-4),
    ("dopri5 1e-3", "dopri5", 1e-3),
    ("rk4 8 steps", "rk4", 8),
    ("rk4 16 steps", "rk4", 16),
    ("rk4 32 steps", "rk4", 32),
    ("rk4 64 steps", "rk4", 64),
]
REPO = HERE.parent
MNIST = ["--train_data_files", "/work/shared/data/mnist/train.parquet"]
MNIST += ["--test_data_files", "/work/shared/data/mnist/test.parquet"]
#: each family's short run for ``--families``: (script, its arguments class, flags); the rest are the defaults
FAMILY_RUNS: dict[str, tuple[str, str, list[str]]] = {
    "flow_matching": ("train_fm.py", "FlowMatchingArguments", ["--max_train_steps", "300"]),
    "ddpm": ("train_ddpm.py", "DDPMPointsArguments", ["--max_train_steps", "300"]),
    "score_sde": ("train_score.py", "ScoreSDEArguments", ["--max_train_steps", "300"]),
    "energy": ("train_ebm.py", "EnergyArguments", ["--max_train_steps", "100"]),
    "density gmm": ("train_density.py", "DensityArguments", ["--model", "gmm", "--em_iterations", "10"]),
    "density cnf": ("train_density.py", "DensityArguments", ["--model", "cnf", "--max_train_steps", "100"]),
    "bridge": ("train_bridge.py", "SchrodingerBridgeArguments", ["--half_iteration_steps", "100"]),
    "rbm": ("train_rbm.py", "RBMArguments", [*MNIST, "--max_train_steps", "200"]),
    "vae": ("train_vae.py", "VAEArguments", [*MNIST, "--max_train_steps", "200"]),
    "images (fm)": ("train_fm.py", "FlowMatchingImageArguments", [*MNIST, "--max_train_steps", "10"]),
}
#: the W2 / held-out NLL figures compared between the variants
FIGURES = ("samples_w2", "samples_w2_floor", "samples_mmd", "samples_fraction_in_support", "nll", "nll_minus_entropy")


def _family(family: str) -> tuple[Any, Any, Any]:
    """(arguments class, task class, pipeline class) of a family."""
    from hfgen import DDPMPointsPipeline, DensityPipeline, FlowMatchingPipeline
    from hfgen.training import (
        DDPMPointsArguments,
        DDPMPointsTask,
        DensityArguments,
        DensityTask,
        FlowMatchingArguments,
        FlowMatchingTask,
    )

    return {
        "flow_matching": (FlowMatchingArguments, FlowMatchingTask, FlowMatchingPipeline),
        "ddpm": (DDPMPointsArguments, DDPMPointsTask, DDPMPointsPipeline),
        "density": (DensityArguments, DensityTask, DensityPipeline),
    }[family]


def _cpu() -> float:
    return time.process_time()


def _load(family: str, folder: Path) -> tuple[Any, Any, Any]:
    """(arguments, task, pipeline) of the run in ``folder``, on one thread, progress bars off."""
    import torch

    torch.set_num_threads(1)
    arguments, task_class, pipeline_class = _family(family)
    args = arguments(**json.loads((folder / "args.json").read_text()))
    pipeline = pipeline_class.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    return args, task_class(args), pipeline


def draw_samples(family: str, folder: Path, path: Path) -> dict[str, Any]:
    """The final evaluation's model samples (seed 1, as the trainer draws them), saved to ``path`` (``.npy``) for
    both variants: the sampler is the same in both, only its CPU seconds are recorded."""
    import numpy as np
    import torch

    args, task, pipeline = _load(family, folder)
    start = _cpu()
    samples = task.sample(pipeline, args.num_eval_samples, torch.Generator().manual_seed(1))
    np.save(path, samples.double().numpy())
    return {"sample_cpu": _cpu() - start, "n": args.num_eval_samples}


def evaluate_variant(family: str, folder: Path, variant: str, samples_path: Path) -> dict[str, Any]:
    """The final evaluation of the run in ``folder`` with the ``variant``'s algorithms on the saved samples, the
    reference and held-out points drawn as the trainer draws them (``HELD_OUT_SEED``): figures, CPU s per stage,
    peak RSS of the process."""
    import numpy as np
    import torch

    from hfgen.metrics import wasserstein
    from hfgen.training.engine import HELD_OUT_SEED

    args, task, pipeline = _load(family, folder)
    if variant == "old":
        wasserstein.DENSE_MAX_ARCS = math.inf  # 'auto' then always takes the dense network simplex, as before
    samples = torch.from_numpy(np.load(samples_path)).float()
    num_points = getattr(args, "num_nll_samples", 0)
    cpu: dict[str, float] = {}
    start = _cpu()
    figures = task.score(samples, torch.Generator().manual_seed(HELD_OUT_SEED))
    cpu["w2_floor_mmd"], start = _cpu() - start, _cpu()
    points = task.log_likelihood_points(num_points, torch.Generator().manual_seed(HELD_OUT_SEED + 1))
    if num_points and points is not None:
        if variant == "old" and family == "flow_matching":
            log_prob = pipeline.log_prob(points)  # dopri5, rtol = atol = 1e-5, reverse-mode divergence
        else:
            log_prob = task.log_likelihood(pipeline, points)
        figures |= task.score_log_likelihood(log_prob)
        cpu["nll"] = _cpu() - start
    figures = {key: value for key, value in figures.items() if isinstance(value, int | float)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GB
    return {"figures": figures, "cpu": cpu, "eval_cpu": sum(cpu.values()), "peak_rss_gb": peak}


def in_subprocess(*arguments: str) -> dict[str, Any]:
    """This script's ``--child`` step with ``arguments`` in a fresh interpreter (its peak memory is its own), on one
    thread; its JSON answer."""
    command = [sys.executable, __file__, "--child", *arguments]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1"} | _env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}


def solver_errors(folder: Path, num_points: int) -> dict[str, Any]:
    """Held-out log-densities of the flow in ``folder`` by each solver of ``SOLVERS`` against dopri5 at 1e-5: mean
    and largest absolute difference, the NLL difference in units of its standard error, and the CPU seconds."""
    import torch

    from hfgen import FlowMatchingPipeline
    from hfgen.methods.continuous_flows import log_prob
    from hfgen.training import FlowMatchingArguments, FlowMatchingTask
    from hfgen.training.engine import HELD_OUT_SEED

    torch.set_num_threads(1)
    task = FlowMatchingTask(FlowMatchingArguments(**json.loads((folder / "args.json").read_text())))
    pipeline = FlowMatchingPipeline.from_pretrained(folder)
    points = task.log_likelihood_points(num_points, torch.Generator().manual_seed(HELD_OUT_SEED + 1))
    source = pipeline.source_distribution.log_prob

    def solve(method: str, setting: float) -> tuple[torch.Tensor, float]:
        options = {"step_size": 1.0 / setting} if method == "rk4" else None
        tolerance = setting if method == "dopri5" else 1e-5
        start = _cpu()
        with torch.no_grad():
            values = log_prob(pipeline._field, points, source, method, tolerance, tolerance, options=options)
        return values.double(), _cpu() - start

    reference, reference_cpu = solve("dopri5", 1e-5)
    stderr = float(reference.std() / math.sqrt(len(reference)))
    rows = [{"solver": "dopri5 1e-5", "cpu": reference_cpu, "mean_diff": 0.0, "max_abs_diff": 0.0, "nll_diff_se": 0.0}]
    for name, method, setting in SOLVERS:
        values, cpu = solve(method, setting)
        difference = values - reference
        rows.append(
            {
                "solver": name,
                "cpu": cpu,
                "mean_diff": float(difference.mean()),
                "max_abs_diff": float(difference.abs().max()),
                "nll_diff_se": float(-difference.mean() / stderr),
            }
        )
    return {
        "num_points": len(reference),
        "nll_stderr": stderr,
        "rows": rows,
        "divergence": _divergence_timing(pipeline),
    }


def _divergence_timing(pipeline: Any, num_points: int = 1000, repeats: int = 30) -> dict[str, float]:
    """Milliseconds per exact divergence of the flow's field at ``num_points`` points: reverse mode (``D`` vector-
    Jacobian products, the library's) against forward mode (``D`` Jacobian-vector products under ``vmap``)."""
    import torch
    from torch.func import jvp, vmap

    from hfgen.methods.continuous_flows import divergence

    x, t = torch.randn(num_points, pipeline.dim, generator=torch.Generator().manual_seed(0)), torch.tensor(0.5)
    basis = torch.eye(pipeline.dim).unsqueeze(1).expand(-1, num_points, -1)

    def forward_mode() -> torch.Tensor:
        tangents = vmap(lambda e: jvp(lambda z: pipeline._field(z, t), (x,), (e,))[1])(basis)
        return torch.diagonal(tangents, dim1=0, dim2=2).sum(-1)

    def reverse_mode() -> torch.Tensor:
        return divergence(pipeline._field, x, t)[1]

    timings = {}
    with torch.no_grad():
        agreement = float((forward_mode() - reverse_mode()).abs().max())
        for name, function in (("reverse_ms", reverse_mode), ("forward_ms", forward_mode)):
            start = _cpu()
            for _ in range(repeats):
                function()
            timings[name] = (_cpu() - start) / repeats * 1000
    return {**timings, "max_abs_diff": agreement, "num_points": num_points}


def run_script(script: str, flags: list[str], evaluation: str, folder: Path) -> dict[str, Any]:
    """``training/<script> flags --evaluation evaluation`` in a fresh process on one thread, without validation or
    checkpoints: its ``metrics.json`` numbers and the whole process's CPU seconds (user + system)."""
    quiet = ["--validation_steps", "0", "--checkpointing_steps", "0", "--report_to", "none"]
    command = [sys.executable, str(REPO / "training" / script), *flags, *quiet, "--evaluation", evaluation]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*command, "--output_dir", str(folder)], capture_output=True, check=True, env=_one_thread())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = json.loads((folder / "metrics.json").read_text())
    keys = ("evaluation", "evaluation_samples", "evaluation_likelihood_points", "evaluation_cpu_seconds")
    return {
        "process_cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "train_cpu": run["train_cpu_seconds"],
        **{key: run[key] for key in keys},
    }


def run_length(arguments: str, flags: list[str]) -> tuple[int, int]:
    """``(length of the short run, of the recipe)`` in the family's unit (:meth:`TrainingArguments.run_length`) of
    the arguments class ``arguments`` (a name in :mod:`hfgen.training`) parsed from ``flags``."""
    import hfgen.training
    from hfgen.cli.parser import parse_arguments

    return parse_arguments(getattr(hfgen.training, arguments), [*flags, "--output_dir", "unused"]).run_length()


def measure_family(name: str) -> dict[str, Any]:
    """The family's short run with the full and with the auto evaluation, and the recipe's training CPU."""
    script, arguments, flags = FAMILY_RUNS[name]
    length, recipe = run_length(arguments, flags)
    with tempfile.TemporaryDirectory() as scratch:
        runs = {kind: run_script(script, flags, kind, Path(scratch) / kind) for kind in ("full", "auto")}
    train_cpu = runs["full"]["train_cpu"]
    return {
        "command": " ".join([script, *flags]),
        "length": length,
        "recipe": recipe,
        "recipe_train_cpu": train_cpu * recipe / length,
        **runs,
    }


def _one_thread() -> dict[str, str]:
    return {"OMP_NUM_THREADS": "1"} | _env()


def demo_figures(folder: Path, time_log: Path) -> dict[str, float]:
    """``make demo``'s whole-process CPU seconds (user + system) and peak RSS from a ``/usr/bin/time -v`` log, and
    the optimisation's CPU seconds from the run's ``metrics.json``."""
    fields = {}
    for line in time_log.read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    total = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
    run = json.loads((folder / "metrics.json").read_text())
    train = float(run["train_cpu_seconds"])
    return {
        "total_cpu": total,
        "train_cpu": train,
        "ratio": total / train,
        "peak_rss_gb": float(fields["Maximum resident set size (kbytes)"]) / 2**20,
        **{key: run[key] for key in FIGURES if key in run},
        "nll_stderr": run.get("nll_stderr"),
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Final evaluation: old and new algorithms on the same weights",
        "",
        written_by("bench_evaluation", results) + ". CPU seconds of the evaluation stages (one thread, a fresh",
        "process per variant) and the process's peak resident memory. `old`: dense network simplex for W2, dopri5",
        "1e-5 with reverse-mode divergence for the flow's held-out log-densities; `new`: the dual-certified sparse",
        "network simplex (exact: same linear program, optimality certified on all N·M arcs) and 32 RK4 steps.",
        "",
    ]
    for name, run in results["runs"].items():
        old, new = run["old"], run["new"]
        lines += [
            f"## {name} (`{run['folder']}`)",
            "",
            f"{run['n']:,} model samples ({run['sample_cpu']:.1f} CPU s to draw, the same for both variants).",
            "",
        ]
        rows = []
        for key in FIGURES:
            if key in old["figures"]:
                error = ""
                if key.startswith("nll"):
                    error = f"SE {old['figures']['nll_stderr']:.4f}"
                rows.append([key, f"{old['figures'][key]:.6g}", f"{new['figures'][key]:.6g}", error])
        for stage in old["cpu"]:
            rows.append([f"CPU s: {stage}", f"{old['cpu'][stage]:.1f}", f"{new['cpu'][stage]:.1f}", ""])
        rows.append(["CPU s: evaluation", f"{old['eval_cpu']:.1f}", f"{new['eval_cpu']:.1f}", ""])
        rows.append(["peak RSS (GB)", f"{old['peak_rss_gb']:.2f}", f"{new['peak_rss_gb']:.2f}", ""])
        lines += table(["figure", "old", "new", "stated error"], rows) + [""]
    solver = results.get("solver")
    if solver:
        lines += [
            "## Log-density solvers against dopri5 at 1e-5",
            "",
            f"{solver['num_points']:,} held-out points of the flow run; NLL standard error {solver['nll_stderr']:.4f}."
            " `NLL shift / SE`: how far the solver moves the held-out NLL, in its standard errors.",
            "",
        ]
        rows = [
            [
                row["solver"],
                f"{row['cpu']:.2f}",
                f"{row['mean_diff']:.2e}",
                f"{row['max_abs_diff']:.2e}",
                f"{row['nll_diff_se']:+.3f}",
            ]
            for row in solver["rows"]
        ]
        lines += table(["solver", "CPU s", "mean Δ log p", "max abs Δ log p", "NLL shift / SE"], rows) + [""]
        div = solver["divergence"]
        lines += [
            f"Exact divergence at {div['num_points']:,} points: reverse mode {div['reverse_ms']:.1f} ms, forward mode"
            f" (`jvp` under `vmap`) {div['forward_ms']:.1f} ms (largest difference {div['max_abs_diff']:.1e}); the"
            " library keeps reverse mode.",
            "",
        ]
    lines += render_families(results.get("families", {}))
    demo = results.get("demo")
    if demo:
        lines += [
            "## `make demo`, whole process (`/usr/bin/time -v`, OMP_NUM_THREADS=1)",
            "",
            "Targets: whole-process CPU ≤ 1.5 × the optimisation's CPU, peak RSS ≤ 1.5 GB.",
            "",
        ]
        rows = []
        for label, run in demo.items():
            nll = plus_minus(run["nll"], run["nll_stderr"], ".4f") if run.get("nll_stderr") else "–"
            rows.append(
                [
                    label,
                    f"{run['train_cpu']:.0f}",
                    f"{run['total_cpu']:.0f}",
                    f"{run['ratio']:.2f} ({verdict(run['ratio'] <= 1.5)})",
                    f"{run['peak_rss_gb']:.2f} ({verdict(run['peak_rss_gb'] <= 1.5)})",
                    f"{run.get('samples_w2', float('nan')):.4f}",
                    f"{run.get('samples_w2_floor', float('nan')):.4f}",
                    nll,
                ]
            )
        header = ["run", "train CPU s", "total CPU s", "total / train", "peak RSS GB", "W2", "W2 floor", "NLL"]
        lines += table(header, rows) + [""]
    return markdown(lines, results.get("quick", False))


def render_families(families: dict[str, Any]) -> list[str]:
    """The per-family section: the full evaluation against the recipe's training CPU, and a short run's process
    CPU with ``--evaluation full`` (every script but flow matching before ``auto``) and with ``auto``."""
    if not families:
        return []
    lines = [
        "## Every family: training CPU vs final-evaluation CPU",
        "",
        "Each script's short run (the command; every other argument at its default, no validation or checkpoints),",
        "once with `--evaluation full` and once with the default `auto`, one thread. `recipe train CPU s`: the short",
        "run's training CPU scaled to the recipe's length (optimizer steps, EM iterations or the bridge's",
        "half-iteration steps); target: full evaluation ≤ it. `process CPU s`: the whole short run, imports,",
        "figures and card included, before (`full`, what every script but flow matching evaluated at) and after",
        "(`auto`). The full evaluation is that of the short run's weights, whose samples fit the target worse than",
        "the recipe's: exact W2 (sparse network simplex) may take another number of rounds on a recipe run's samples.",
        "Families without a row were not measured yet.",
        "",
    ]
    rows = []
    for name, run in families.items():
        full, auto = run["full"], run["auto"]
        ratio = full["evaluation_cpu_seconds"] / run["recipe_train_cpu"]
        rows.append(
            [
                name,
                f"`{run['command']}`",
                f"{run['length']:,} / {run['recipe']:,}",
                f"{run['recipe_train_cpu']:.0f}",
                f"{full['evaluation_cpu_seconds']:.1f} ({full['evaluation_samples']:,} + "
                f"{full['evaluation_likelihood_points']:,})",
                f"{ratio:.2f} ({verdict(ratio <= 1)})",
                f"{full['train_cpu']:.1f}",
                f"{auto['evaluation']}: {auto['evaluation_cpu_seconds']:.1f} ({auto['evaluation_samples']:,} + "
                f"{auto['evaluation_likelihood_points']:,})",
                f"{full['process_cpu']:.0f} → {auto['process_cpu']:.0f}",
            ]
        )
    header = [
        "family",
        "short run",
        "length / recipe",
        "recipe train CPU s",
        "full evaluation CPU s (samples + points)",
        "full eval / recipe train",
        "short run train CPU s",
        "auto evaluation CPU s",
        "process CPU s: full → auto",
    ]
    return lines + table(header, rows) + [""]


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = dict(value.split("=", 1) for value in values if "=" in value)
    if len(pairs) != len(values):
        raise SystemExit(f"error: {what} takes NAME=VALUE pairs, got {values}")
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=[], help=f"FAMILY=RUN_DIR pairs, FAMILY in {FAMILIES}")
    parser.add_argument("--demo", nargs="*", default=[], help="LABEL=RUN_DIR:TIME_LOG pairs of make demo runs")
    parser.add_argument(
        "--families", nargs="*", default=None, help=f"measure these rows (none named: all of {list(FAMILY_RUNS)})"
    )
    parser.add_argument("--num_solver_points", type=int, default=1000)
    parser.add_argument("--child", nargs=4, metavar=("FAMILY", "RUN_DIR", "STEP", "SAMPLES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        family, folder, step, samples = args.child
        if step == "sample":
            print(json.dumps(draw_samples(family, Path(folder), Path(samples))))
        else:
            print(json.dumps(evaluate_variant(family, Path(folder), step, Path(samples))))
        return
    runs = _pairs(args.runs, "--runs")
    unknown = sorted(set(runs) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"error: --runs families must be among {FAMILIES}, got {unknown}")
    families = list(FAMILY_RUNS) if args.families == [] else args.families or []
    unknown = sorted(set(families) - set(FAMILY_RUNS))
    if unknown:
        raise SystemExit(f"error: --families must be among {list(FAMILY_RUNS)}, got {unknown}")
    stored = HERE / PAGE.json_name
    # remeasure what is named (--runs, --families, --demo) and keep every other stored row
    keep = json.loads(stored.read_text()) if stored.exists() else {}
    results: dict[str, Any] = {**machine(), "threads": 1, "runs": {}} | keep
    results["families"] = results.get("families", {})
    for name in families:
        print(f"{name}: a short run with the full evaluation, then with auto …", flush=True)
        results["families"][name] = measure_family(name)
        write_results(results, HERE, PAGE, render)  # each row kept as soon as it is measured
    for family, folder in runs.items():
        print(f"evaluating {family} ({folder}): samples, then old and new …", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            samples = str(Path(scratch) / "samples.npy")
            run = {"folder": folder} | in_subprocess(family, folder, "sample", samples)
            results["runs"][family] = run | {v: in_subprocess(family, folder, v, samples) for v in VARIANTS}
    if "flow_matching" in runs:
        print("log-density solvers against dopri5 1e-5 …", flush=True)
        results["solver"] = solver_errors(Path(runs["flow_matching"]), args.num_solver_points)
    demo = {}
    for label, value in _pairs(args.demo, "--demo").items():
        folder, _, log = value.partition(":")
        demo[label] = demo_figures(Path(folder), Path(log))
    results["demo"] = demo or results.get("demo", {})
    print(write_results(results, HERE, PAGE, render))


if __name__ == "__main__":
    main()
