"""What a call costs and how the cost grows: the thread policy, sampling CPU and memory against the number of samples,
and training throughput with one and two processes.

    python benchmarks/bench_cost.py                          # every section → COST_RESULTS.md, cost_results.json
    python benchmarks/bench_cost.py --sections threads       # remeasure one section, keep the others
    python benchmarks/bench_cost.py --train_data_files mnist/train.parquet   # the processes section on local MNIST
    # (--test_data_files mnist/test.parquet optional: without it train_fm.py holds out a tenth of the training file)
    python benchmarks/bench_cost.py --quick                  # a smoke run (numbers meaningless)

- ``threads``: the README's first sampling snippet (1,000 flow-matching samples, 100 Euler steps, the recipe's
  4 × 256 MLP) in a fresh process as a user runs it — torch's default threads, no variable set — against the same
  process with ``OMP_NUM_THREADS=1`` and with ``OMP_NUM_THREADS`` set to the cores (torch's default count, as every
  call ran before the thread policy of :mod:`hfgen.threads`), each beside one busy process (a Python loop),
  alternating.
  An image UNet's sampling keeps the cores: its call with the default threads against one thread, on the same
  machine.
- ``growth``: CPU seconds and peak resident memory of sampling ``10³ … 10⁶`` points, flow matching (20 Euler steps)
  and DDPM (20 DDIM steps), each size in its own process, one thread.
- ``startup``: how soon a script answers ``--help`` and a bad argument, beside a bare ``python -c "import argparse"``
  (each command in a fresh process, alternating, 10 times): the scripts parse their command line before they import
  torch. Target: ``train_fm.py --help`` within 2× the bare interpreter plus 1 s.
- ``processes``: the MNIST image model's training throughput under ``accelerate launch --num_processes 1`` and ``2``
  (the same global batch: 64 on one process, 32 on each of two), images per second of wall time.

Every section records the machine's load average (1 minute) when it starts and ends: other jobs share the cores.
The JSON keeps the threads section under ``thread_policy`` (``threads`` is the machine's thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import Page, machine, markdown, plus_minus, table, verdict, write_results, written_by

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PAGE = Page("cost", "cost_results.json", "COST_RESULTS.md")
SECTIONS = ("threads", "growth", "startup", "processes")
#: the key of each section in the JSON
SECTION_KEYS = {"threads": "thread_policy", "growth": "growth", "startup": "startup", "processes": "processes"}
#: the thread target of the issue: the README snippet at default settings within 1.2× its one-thread time
MAX_THREADS_RATIO = 1.2
#: the startup target: ``train_fm.py --help`` within this many times a bare interpreter's wall time, plus 1 s
STARTUP_FACTOR, STARTUP_SLACK = 2.0, 1.0
#: the startup section's commands by label: the arguments of ``python`` (a script's path is under ``training/``)
STARTUP_COMMANDS = {
    "python -c 'import argparse'": ["-c", "import argparse"],
    "train_fm.py --help": ["train_fm.py", "--help"],
    "train_ddpm.py --help": ["train_ddpm.py", "--help"],
    "train_density.py --help": ["train_density.py", "--help"],
    "train_fm.py --max_train_steps 0 (refused)": ["train_fm.py", "--max_train_steps", "0"],
}

#: a child that times one call in a fresh process and prints {"wall": …, "cpu": …, "threads": …, "max_rss_mb": …}
_TIMED_CALL = """
import json, resource, sys, time
import torch
from hfgen import HfgenPipeline
folder, mode, kind, num_samples, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
pipe = HfgenPipeline.from_pretrained(folder)
pipe.set_progress_bar_config(disable=True)
seen = []
network = pipe.unet if kind == "image" else (pipe.velocity if kind == "fm" else pipe.model)
network.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
start, cpu = time.perf_counter(), time.process_time()
pipe(num_samples=num_samples, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "threads": max(seen),
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def timed_call(folder: Path, mode: str, kind: str, num_samples: int, steps: int) -> dict[str, float]:
    """One pipeline call in a fresh process: ``mode`` "default" (no thread variable: the thread policy decides),
    "one" (``OMP_NUM_THREADS=1``) or "all" (``OMP_NUM_THREADS`` = the cores: torch's default count, chosen by the
    user, so the policy leaves it, as every call ran before the policy)."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if mode != "default":
        env["OMP_NUM_THREADS"] = "1" if mode == "one" else str(os.cpu_count())
    argv = [sys.executable, "-c", _TIMED_CALL, str(folder), mode, kind, str(num_samples), str(steps)]
    process = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"the timed call failed:\n{process.stderr[-2000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def save_recipe_pipeline(folder: Path) -> Path:
    """The main job's flow-matching pipeline (the recipe's network, untrained weights: the cost is the same)."""
    import torch

    from hfgen.training.flow_matching import FlowMatchingArguments, FlowMatchingTask

    torch.manual_seed(0)
    task = FlowMatchingTask(FlowMatchingArguments(output_dir=str(folder)))
    task.pipeline(task.build_model()).save_pretrained(folder)
    return folder


def save_ddpm_pipeline(folder: Path) -> Path:
    """The DDPM recipe's pipeline (untrained weights) with its scheduler set to DDIM steps."""
    import torch

    from hfgen.training import DDPMPointsArguments, DDPMPointsTask

    torch.manual_seed(0)
    task = DDPMPointsTask(DDPMPointsArguments(output_dir=str(folder)))
    pipeline = task.pipeline(task.build_model())
    pipeline.scheduler.register_to_config(sampler="ddim")
    pipeline.save_pretrained(folder)
    return folder


def save_image_pipeline(folder: Path) -> Path:
    """The MNIST image recipe's flow-matching pipeline (its UNet2DModel, untrained weights)."""
    import torch

    from hfgen import FlowMatchEulerScheduler, FlowMatchingImagePipeline
    from hfgen.training.images import FlowMatchingImageArguments

    torch.manual_seed(0)
    args = FlowMatchingImageArguments(output_dir=str(folder), dataset_name="ylecun/mnist")
    FlowMatchingImagePipeline(args.build_unet(), FlowMatchEulerScheduler()).save_pretrained(folder)
    return folder


class BusyNeighbour:
    """One other busy process on the machine (a Python loop), for the length of a ``with`` block."""

    def __enter__(self) -> BusyNeighbour:
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


def bench_threads(work: Path, quick: bool) -> dict[str, Any]:
    folder = save_recipe_pipeline(work / "fm")
    repeats, samples = (1, 100) if quick else (7, 1000)
    runs: dict[str, list[dict[str, float]]] = {"default": [], "one": [], "all": []}
    with BusyNeighbour():
        for _ in range(repeats):
            for mode in runs:
                runs[mode].append(timed_call(folder, mode, "fm", samples, 100))
    image_folder = save_image_pipeline(work / "image")
    image: dict[str, list[dict[str, float]]] = {"default": [], "one": []}
    image_samples, image_steps = (4, 2) if quick else (16, 10)
    for _ in range(repeats):
        for mode in image:
            image[mode].append(timed_call(image_folder, mode, "image", image_samples, image_steps))
    return {
        "samples": samples,
        "repeats": repeats,
        "points": runs,
        "image": image,
        "image_samples": image_samples,
        "image_steps": image_steps,
    }


def bench_growth(work: Path, quick: bool) -> dict[str, Any]:
    folders = {"fm": save_recipe_pipeline(work / "fm-growth"), "ddpm": save_ddpm_pipeline(work / "ddpm-growth")}
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    rows = []
    for kind, folder in folders.items():
        for size in sizes:
            rows.append({"kind": kind, "num_samples": size, **timed_call(folder, "one", kind, size, 20)})
    return {"steps": 20, "rows": rows}


def bench_processes(work: Path, train_file: str | None, test_file: str | None, quick: bool) -> dict[str, Any]:
    """Training throughput of the MNIST flow-matching image model under accelerate with 1 and 2 processes."""
    if train_file is None:
        return {"skipped": "no MNIST data given (--train_data_files)"}
    test = ["--test_data_files", test_file] if test_file else []
    steps = 4 if quick else 60
    rows = []
    for processes in (1, 2):
        batch = 64 // processes
        out = work / f"processes-{processes}"
        argv = [
            sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--num_processes", str(processes), "--main_process_port", "0",
            *(["--multi_gpu"] if processes > 1 else []),
            str(REPO / "training" / "train_fm.py"), "--train_data_files", train_file, *test,
            "--max_train_steps", str(steps), "--train_batch_size", str(batch), "--validation_steps",
            "0", "--checkpointing_steps", "0", "--num_eval_samples", "16", "--report_to", "none",
            "--output_dir", str(out),
        ]  # fmt: skip
        env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
        process = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO, check=False)
        if process.returncode != 0:
            raise RuntimeError(f"the {processes}-process run failed:\n{process.stderr[-2000:]}")
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        rows.append(
            {
                "processes": processes,
                "batch_per_process": batch,
                "steps": steps,
                "train_seconds": metrics["train_seconds"],
                "train_cpu_seconds": metrics["train_cpu_seconds"],
                "images_per_second": steps * 64 / metrics["train_seconds"],
            }
        )
    return {"rows": rows}


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _load(section: dict[str, Any]) -> str:
    start, end = section["load_average"]
    return f"Load average (1 minute) {start:.1f} when the section started, {end:.1f} when it ended."


def _thread_table(runs: dict[str, list[dict[str, float]]], labels: dict[str, str]) -> list[str]:
    """One row per mode of ``runs``: the threads the network ran with, the median wall (with the range) and CPU
    seconds, and the median wall over the one-thread median."""
    one = _median(runs["one"], "wall")
    return table(
        ["process", "threads in the network's calls", "wall (s), median (range)", "CPU (s)", "wall / one thread"],
        [
            (
                label,
                max(run["threads"] for run in runs[mode]),
                f"{_median(runs[mode], 'wall'):.2f} ({min(r['wall'] for r in runs[mode]):.2f}–"
                f"{max(r['wall'] for r in runs[mode]):.2f})",
                f"{_median(runs[mode], 'cpu'):.2f}",
                f"{_median(runs[mode], 'wall') / one:.2f}",
            )
            for mode, label in labels.items()
        ],
    )


def _memory_per_sample(rows: list[dict[str, Any]]) -> list[str]:
    """Per pipeline, the peak memory each sample adds between its two largest sizes, in kB."""
    lines = []
    for kind in dict.fromkeys(row["kind"] for row in rows):
        small, large = sorted((row for row in rows if row["kind"] == kind), key=lambda row: row["num_samples"])[-2:]
        added = 1024 * (large["max_rss_mb"] - small["max_rss_mb"]) / (large["num_samples"] - small["num_samples"])
        lines.append(
            f"- {kind}: {added:.1f} kB of peak memory per sample from {small['num_samples']:,} to "
            f"{large['num_samples']:,} samples (every step runs the network on the whole batch)."
        )
    return [*lines, ""]


def _timed_process(arguments: list[str]) -> dict[str, float]:
    """Wall and CPU seconds (user + system, of the child alone) of ``python ARGUMENTS`` in a fresh process."""
    if arguments[0].endswith(".py"):
        arguments = [str(REPO / "training" / arguments[0]), *arguments[1:]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *arguments], cwd=REPO, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def bench_startup(quick: bool) -> dict[str, Any]:
    """Each of :data:`STARTUP_COMMANDS` ``repeats`` times, alternating, so that the machine's load falls on all."""
    repeats = 2 if quick else 10
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in STARTUP_COMMANDS}
    for _ in range(repeats):
        for label, arguments in STARTUP_COMMANDS.items():
            runs[label].append(_timed_process(arguments))
    return {"repeats": repeats, "runs": runs}


def _mean_and_error(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error."""
    error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return statistics.fmean(values), error


def _startup_lines(startup: dict[str, Any]) -> list[str]:
    runs = startup["runs"]
    bare = _mean_and_error([run["wall"] for run in runs["python -c 'import argparse'"]])[0]
    limit = STARTUP_FACTOR * bare + STARTUP_SLACK
    rows = []
    for label, timings in runs.items():
        wall, wall_error = _mean_and_error([run["wall"] for run in timings])
        cpu, cpu_error = _mean_and_error([run["cpu"] for run in timings])
        target = verdict(wall <= limit) if label == "train_fm.py --help" else "–"
        rows.append((label, plus_minus(wall, wall_error, ".3f"), plus_minus(cpu, cpu_error, ".3f"), target))
    return [
        "## How soon a script answers",
        "",
        f"Each command in a fresh process, {startup['repeats']} times, alternating; mean ± standard error. The scripts "
        "parse their command line (`hfgen.arguments`, without torch) before they import torch and their "
        f"task. Target: `train_fm.py --help` within {STARTUP_FACTOR:g}× the bare interpreter plus "
        f"{STARTUP_SLACK:g} s = {limit:.2f} s. " + _load(startup),
        "",
        *table(["command", "wall (s)", "CPU (s)", "target"], rows),
        "",
    ]


def render(results: dict[str, Any]) -> str:
    lines = [
        "# What a call costs and how the cost grows",
        "",
        written_by("bench_cost", results, "threads as each row says")
        + "; CPU seconds are the process's own (`time.process_time`, every thread).",
        "",
    ]
    threads = results.get(SECTION_KEYS["threads"])
    if threads:
        points, image = threads["points"], threads["image"]
        ratio = _median(points["default"], "wall") / _median(points["one"], "wall")
        cpu_ratio = _median(points["default"], "cpu") / _median(points["one"], "cpu")
        lines += [
            "## Threads",
            "",
            f"The README's sampling snippet ({threads['samples']:,} flow-matching samples, 100 Euler steps, the "
            "recipe's 4 × 256 MLP) in a fresh process beside one busy process (a Python loop), "
            f"{threads['repeats']} runs of each, alternating. {_load(threads)}",
            "",
            *_thread_table(
                points,
                {
                    "default": "as a user runs it (no variable set): the thread policy",
                    "one": "`OMP_NUM_THREADS=1`",
                    "all": "`OMP_NUM_THREADS` = the cores (torch's default count, without the policy)",
                },
            ),
            "",
            f"Target (default settings ≤ {MAX_THREADS_RATIO}× the one-thread time): "
            f"{verdict(ratio <= MAX_THREADS_RATIO)} ({ratio:.2f}× in wall time, {cpu_ratio:.2f}× in CPU time).",
            "",
            f"An image UNet (the MNIST recipe's, {threads['image_steps']} Euler steps of {threads['image_samples']} "
            "images): the policy leaves a convolutional network to torch's default threads. Same machine, no busy "
            "neighbour of our own:",
            "",
            *_thread_table(image, {"default": "no variable set", "one": "`OMP_NUM_THREADS=1`"}),
            "",
        ]
    growth = results.get("growth")
    if growth:
        lines += [
            "## How sampling cost grows",
            "",
            f"{growth['steps']} steps (flow matching: Euler; DDPM: DDIM), one thread, each size in its own process; "
            "peak resident memory of the whole process (torch and hfgen loaded: the first rows are mostly that). "
            + _load(growth),
            "",
            *table(
                ["pipeline", "samples", "wall (s)", "CPU (s)", "CPU per 1,000 samples (s)", "peak memory (MB)"],
                [
                    (
                        row["kind"],
                        f"{row['num_samples']:,}",
                        f"{row['wall']:.2f}",
                        f"{row['cpu']:.2f}",
                        f"{1000 * row['cpu'] / row['num_samples']:.3f}",
                        f"{row['max_rss_mb']:,.0f}",
                    )
                    for row in growth["rows"]
                ],
            ),
            "",
            *_memory_per_sample(growth["rows"]),
        ]
    if results.get("startup"):
        lines += _startup_lines(results["startup"])
    processes = results.get("processes")
    if processes:
        lines += ["## Training with one and two processes", ""]
        if "skipped" in processes:
            lines += [f"Skipped: {processes['skipped']}.", ""]
        else:
            rows = processes["rows"]
            lines += [
                "The MNIST flow-matching image model (`train_fm.py` on MNIST parquet files), the same global batch of "
                "64, `accelerate launch` on the CPU (`--multi_gpu` with `ACCELERATE_USE_CPU=true` for two), one "
                "thread per process; images / s of training wall time; CPU of process 0 alone. On a machine shared "
                "with other jobs a second process also takes a larger share of the cores from them, so the speed-up "
                "is what a user sees there, not what an idle machine gives. " + _load(processes),
                "",
                *table(
                    [
                        "processes",
                        "batch per process",
                        "steps",
                        "training wall (s)",
                        "training CPU, process 0 (s)",
                        "images / s",
                        "speed-up",
                    ],
                    [
                        (
                            row["processes"],
                            row["batch_per_process"],
                            row["steps"],
                            f"{row['train_seconds']:.1f}",
                            f"{row['train_cpu_seconds']:.1f}",
                            f"{row['images_per_second']:.0f}",
                            f"{row['images_per_second'] / rows[0]['images_per_second']:.2f}×",
                        )
                        for row in rows
                    ],
                ),
                "",
            ]
    return markdown(lines, results.get("quick", False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--train_data_files", help="MNIST training parquet file (the processes section)")
    parser.add_argument(
        "--test_data_files", help="MNIST test parquet file (processes section; default: a tenth of the train held out)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--output", type=Path, default=HERE, help="folder of the results files")
    args = parser.parse_args()
    for name in ("train_data_files", "test_data_files"):
        path = getattr(args, name)
        if path is not None and not Path(path).is_file():
            parser.error(f"--{name} {path!r}: no such file (expected an MNIST parquet file)")
    stored = args.output / PAGE.json_name
    results = json.loads(stored.read_text(encoding="utf-8")) if stored.is_file() and not args.quick else {}
    results |= {**machine(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="hfgen-cost-") as tmp:
        work = Path(tmp)
        for section in args.sections:
            print(f"[bench_cost] {section} …", flush=True)
            start = os.getloadavg()[0]
            if section == "threads":
                found = bench_threads(work, args.quick)
            elif section == "growth":
                found = bench_growth(work, args.quick)
            elif section == "startup":
                found = bench_startup(args.quick)
            else:
                found = bench_processes(work, args.train_data_files, args.test_data_files, args.quick)
            results[SECTION_KEYS[section]] = {**found, "load_average": [start, os.getloadavg()[0]]}
    print(write_results(results, args.output, PAGE, render))


if __name__ == "__main__":
    main()
