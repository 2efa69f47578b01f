"""MNIST benchmark of image flow matching and constant-α DDPM with a diffusers UNet2DModel.

    python benchmarks/bench_images.py --dataset_name ylecun/mnist
    python benchmarks/bench_images.py --train_data_files mnist/train.parquet --test_data_files mnist/test.parquet
    python benchmarks/bench_images.py --quick ...      # a smoke run with tiny budgets (numbers meaningless)
    python benchmarks/bench_images.py --rescore ...    # score the stored results again (see below)

Three runs train through the real scripts, ``--jobs`` at a time (one CPU thread each), each timed in wall-clock and
CPU seconds (user + sys of that child): flow matching and DDPM, unconditional, with the same network, batch and number
of steps (the equal-cost comparison; ``--max_train_steps``, 4,500 by default, of batch 64 with the UNet2DModel of
``NETWORK``: about 25 CPU minutes a run, inside the 30-minute budget), and class-conditional flow matching (label
dropout 0.1). The scoring classifier is
trained first with ``training/train_classifier.py`` unless ``--classifier_path`` names a saved one.

Then, from the saved pipelines: the sample quality of the unconditional models at 10,000 samples against the 10,000
test images (k-NN precision and recall, Kynkäänniemi et al. 2019, k = 3; Fréchet distance; confidence; all in the
classifier's features, mean ± standard error over 3 independent draws), and the same for their first 5,000 against a
random half of the test images, beside the floor: the other half, real images the classifier never saw, at the same
size. Classifier scores at 500 and 1,000 samples (Fréchet distance, confidence, label entropy, accuracy of the
requested label) and sampling time for several step counts (Euler/Heun for flow matching, DDIM/ancestral for DDPM),
each beside its floor (as many unseen test images) and beside as many training images (which the classifier was
trained on: no floor); the guidance scale of the conditional model on a small grid; bits per dimension of test images
under the flow-matching model (uniform dequantisation, Hutchinson divergence); and SDEdit of thickened and blurred test
digits (a figure of strength 0 … 1 with the classifier's label and confidence). Each stage stores its JSON under
``<out>/image_runs/`` (a rerun skips what is there); ``IMAGE_RESULTS.md`` and ``image_results.json`` are written after
every stage. ``--rescore`` scores the real images and the unconditional pipelines found in ``--output_dir`` again
into the stored results, without training.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from report import Page, markdown, plus_minus, table, write_results

from hfgen.image_metrics import classifier_outputs, frechet_distance, image_scores, precision_recall
from hfgen.models.classifier import MnistClassifier
from hfgen.pipelines.base import HfgenPipeline
from hfgen.schedulers import ConstantAlphaDDPMScheduler
from hfgen.schedulers.flow_match_solvers import flow_match_scheduler
from hfgen.training.images import ImageDiffusionArguments, grid_labels

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("images", "image_results.json", "IMAGE_RESULTS.md")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: the network and budget of every run (``--quick`` shrinks them)
NETWORK = ["--block_out_channels", "16", "32", "32", "--norm_num_groups", "8", "--layers_per_block", "1"]
BUDGET = {"steps": 4500, "batch": 64, "learning_rate": 1e-3}
RUNS = {
    "fm": ("train_fm.py", []),
    "ddpm": ("train_ddpm.py", []),
    "fm_cond": ("train_fm.py", ["--class_conditional", "--cond_drop_prob", "0.1"]),
}
RUN_LABELS = {"fm": "flow matching", "ddpm": "DDPM (constant α)", "fm_cond": "flow matching, class-conditional"}
GUIDANCE_SCALES = (1.0, 2.0, 3.0, 4.0)
#: Euler steps of the guidance grid
GUIDANCE_STEPS = 10
#: the 2-D VAE's classifier Fréchet distance on MNIST, as benchmarks/bench_vae.py measured it (VAE_RESULTS.md)
VAE_FRECHET = json.loads((HERE / "vae_results.json").read_text())["runs"]["mnist-vae"]["samples_frechet_distance"]
TARGETS = {"frechet_max": VAE_FRECHET / 4, "entropy_gap_max": 0.05, "label_accuracy_min": 0.95, "cpu_minutes_max": 30,
           "confidence_min": 0.95, "precision_recall_gap_max": 0.1}  # fmt: skip
#: the sample-quality scores: ``num`` samples against as many test images, ``draws`` independent draws, the k of the
#: k-NN precision and recall, and the images drawn per pipeline call
QUALITY = {"num": 10_000, "draws": 3, "k": 3, "chunk": 1000}


def stored_stage(folder: Path, name: str, compute: Any) -> Any:
    """The JSON stored as ``<folder>/<name>.json``, computed by ``compute()`` and stored first if it is not there."""
    file = folder / f"{name}.json"
    if file.is_file():
        return json.loads(file.read_text())
    value = compute()
    file.write_text(json.dumps(value, indent=2))
    return value


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every MNIST benchmark: a smoke run, the data and the scoring classifier."""
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for checking that the script runs")
    parser.add_argument("--dataset_name", default="ylecun/mnist", help="Hub dataset id")
    parser.add_argument("--train_data_files", default=None, help="local training parquet (instead of the Hub)")
    parser.add_argument("--test_data_files", default=None, help="local test parquet")
    parser.add_argument("--classifier_path", default=None, help="a saved MnistClassifier (else one is trained)")


def load_data(args: argparse.Namespace, out: Path) -> dict:
    """The images and labels of the run's data (a Hub id or local parquet files)."""
    flags = {"dataset_name": None if args.train_data_files else args.dataset_name,
             "train_data_files": args.train_data_files, "test_data_files": args.test_data_files}  # fmt: skip
    return ImageDiffusionArguments(output_dir=str(out / "unused"), **flags).load_images()


def data_flags(args: argparse.Namespace) -> list[str]:
    if args.train_data_files:
        flags = ["--train_data_files", args.train_data_files]
        return flags + (["--test_data_files", args.test_data_files] if args.test_data_files else [])
    return ["--dataset_name", args.dataset_name]


def timed(command: list[str]) -> dict[str, float]:
    """Run ``command``; its wall-clock seconds and the CPU seconds (user + sys) of that child and its own children,
    read from the child's own resource usage, so that runs in parallel threads are timed apart."""
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    child = subprocess.Popen(command, env=env, cwd=REPO)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    return {"wall_seconds": time.perf_counter() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def classifier_folder(args: argparse.Namespace, out: Path) -> Path:
    """The scoring classifier: ``--classifier_path``, or trained once with ``training/train_classifier.py``."""
    if args.classifier_path:
        return Path(args.classifier_path)
    folder = out / f"classifier{'-quick' if args.quick else ''}"
    if not (folder / "model.safetensors").is_file():
        command = [sys.executable, str(REPO / "training" / "train_classifier.py"), *data_flags(args),
                   "--output_dir", str(folder), "--report_to", "none", "--overwrite_output_dir"]  # fmt: skip
        if args.quick:
            command += ["--num_epochs", "1", "--max_train_samples", "2000"]
        timed(command)
    return folder


def train_run(
    name: str,
    args: argparse.Namespace,
    out: Path,
    classifier: Path,
    run: tuple[str, list[str]] | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Train run ``name`` through its script (``run``: the script and its extra flags, else ``RUNS[name]``) for
    ``steps`` optimizer steps (else ``--max_train_steps``) into ``out / name`` and return its timing, arguments and
    final metrics. The extra flags come last, so a run may override the benchmark's network, batch or learning rate
    (the last value of a flag wins)."""
    script, extra = run or RUNS[name]
    steps = 20 if args.quick else steps or args.max_train_steps
    network = ["--block_out_channels", "8", "16", "--norm_num_groups", "4"] if args.quick else NETWORK
    folder = out / name
    command = [sys.executable, str(REPO / "training" / script), *data_flags(args), *network,
               "--output_dir", str(folder), "--overwrite_output_dir", "--max_train_steps", str(steps),
               "--train_batch_size", str(BUDGET["batch"]), "--learning_rate", str(BUDGET["learning_rate"]),
               "--checkpointing_steps", str(steps // 2), "--validation_steps", str(steps // 2),
               "--num_eval_samples", str(64 if args.quick else 500), "--classifier_path", str(classifier),
               "--report_to", "none", "--seed", "0", *extra]  # fmt: skip
    timing = timed(command)
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"command": public_command(command[1:]), **timing, "metrics": metrics}


def public_command(command: list[str]) -> str:
    """``command`` as the report shows it: paths inside the repository relative to it, data files as
    ``<folder>/<file>``."""
    shown = []
    for item in command:
        path = Path(item)
        if path.is_absolute() and path.exists():
            resolved = path.resolve()
            inside = resolved.is_relative_to(REPO)
            item = str(resolved.relative_to(REPO)) if inside else f"{resolved.parent.name}/{resolved.name}"
        shown.append(item)
    return " ".join(shown)


def load_pipeline(folder: Path) -> Any:
    pipeline = HfgenPipeline.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def sampler_settings(name: str, quick: bool) -> list[tuple[str, int]]:
    """(solver, steps) pairs of the speed/quality sweep."""
    if name == "ddpm":
        pairs = [("ddim", 10), ("ddim", 20), ("ancestral", 20), ("ancestral", 50)]
    else:
        pairs = [("euler", 5), ("euler", 10), ("euler", 20), ("heun", 5), ("heun", 10), ("heun", 20)]
    return pairs[:2] if quick else pairs


def set_solver(pipeline: Any, solver: str) -> None:
    if solver in ("ddim", "ancestral"):
        pipeline.scheduler = ConstantAlphaDDPMScheduler.from_config(pipeline.scheduler.config, sampler=solver)
    else:
        pipeline.scheduler = flow_match_scheduler(solver)


def draw(pipeline: Any, num: int, steps: int, seed: int, **kwargs: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Images and their sampling time (wall-clock and CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    images = pipeline(num, steps, generator=torch.Generator().manual_seed(seed), **kwargs).images
    return images, {"sample_wall_seconds": time.perf_counter() - wall, "sample_cpu_seconds": time.process_time() - cpu}


def evaluate_sweep(name: str, out: Path, data: dict, classifier: Any, num: int, quick: bool) -> list[dict]:
    """Scores and sampling time of run ``name`` for each sampler setting."""
    pipeline = load_pipeline(out / name)
    reference = data["test_images"][:num]
    rows = []
    for solver, steps in sampler_settings(name, quick):
        set_solver(pipeline, solver)
        images, timing = draw(pipeline, num, steps, seed=11)
        rows.append({"solver": solver, "steps": steps, "nfe": steps * (2 if solver == "heun" else 1), **timing,
                     **image_scores(classifier, images, reference)})  # fmt: skip
    return rows


def evaluate_guidance(out: Path, data: dict, classifier: Any, num: int, quick: bool) -> list[dict]:
    """Scores of the conditional model's samples (labels 0 … 9 in turn) for each guidance scale, and of its
    unconditional (null-class) samples."""
    pipeline = load_pipeline(out / "fm_cond")
    set_solver(pipeline, "euler")
    steps = 5 if quick else GUIDANCE_STEPS
    reference = data["test_images"][:num]
    labels = torch.arange(num) % 10
    rows = []
    images, timing = draw(pipeline, num, steps, seed=13)
    rows.append({"guidance_scale": None, **timing, **image_scores(classifier, images, reference)})
    for w in GUIDANCE_SCALES[:2] if quick else GUIDANCE_SCALES:
        guidance = {} if w == 1.0 else {"guidance_scale": w}
        images, timing = draw(pipeline, num, steps, seed=13, class_labels=labels, **guidance)
        probs, _ = classifier_outputs(classifier, images)
        accuracy = float((probs.argmax(1) == labels).double().mean())
        rows.append({"guidance_scale": w, **timing, **image_scores(classifier, images, reference),
                     "label_accuracy": accuracy})  # fmt: skip
    return rows


def evaluate_headline(
    out: Path, data: dict, classifier: Any, num: int, sweeps: dict, guidance_scale: float, quick: bool
) -> dict:
    """Each model's scores at ``num`` samples, as the VAE benchmark scores 1,000: the unconditional models with the
    sampler setting of their sweep that had the lowest Fréchet distance, the conditional one with 20 Euler steps at
    the chosen guidance scale; and the floor at that size."""
    reference = data["test_images"][:num]
    labels = torch.arange(num) % 10
    settings = {name: min(rows, key=lambda row: row["frechet_distance"]) for name, rows in sweeps.items()}
    settings["fm_cond"] = {"solver": "euler", "steps": 5 if quick else 20}
    rows = {}
    for name, setting in settings.items():
        pipeline = load_pipeline(out / name)
        set_solver(pipeline, setting["solver"])
        extra = {"class_labels": labels, "guidance_scale": guidance_scale} if name == "fm_cond" else {}
        images, timing = draw(pipeline, num, setting["steps"], seed=17, **extra)
        row = {"solver": setting["solver"], "steps": setting["steps"], **timing}
        row |= image_scores(classifier, images, reference)
        if name == "fm_cond":
            probs, _ = classifier_outputs(classifier, images)
            accuracy = float((probs.argmax(1) == labels).double().mean())
            row |= {"guidance_scale": guidance_scale, "label_accuracy": accuracy}
        rows[name] = row
    return {"num_scored": num, "runs": rows, "floor": floors(data, classifier, num)}


def quality_scores(probs: torch.Tensor, features: torch.Tensor, reference: torch.Tensor, k: int) -> dict:
    """Fréchet distance, k-NN precision and recall of ``features`` against the ``reference`` features, and the mean
    classifier confidence of ``probs``."""
    return {"frechet_distance": frechet_distance(features, reference), **precision_recall(reference, features, k),
            "confidence": float(probs.max(1).values.mean())}  # fmt: skip


def mean_and_stderr(draws: list[dict]) -> dict[str, dict[str, float]]:
    """Each score's mean over the draws and its standard error ``s / √n`` (``s`` with ``n − 1``)."""
    summary = {}
    for key in draws[0]:
        values = torch.tensor([draw[key] for draw in draws], dtype=torch.float64)
        summary[key] = {"mean": float(values.mean()), "stderr": float(values.std() / math.sqrt(len(draws)))}
    return summary


def split_halves(num: int, draw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random halves ``(A, B)`` of the indices ``0 … num − 1`` (draw ``draw``)."""
    order = torch.randperm(num, generator=torch.Generator().manual_seed(1000 + draw))
    return order[: num // 2], order[num // 2 : 2 * (num // 2)]


def sample_outputs(pipeline: Any, classifier: Any, num: int, steps: int, seed: int, chunk: int) -> tuple:
    """Class probabilities and features of ``num`` samples drawn ``chunk`` at a time (one generator seeded ``seed``
    for all of them), and the sampling CPU seconds."""
    generator, cpu = torch.Generator().manual_seed(seed), time.process_time()
    images = [pipeline(min(chunk, num - start), steps, generator=generator).images for start in range(0, num, chunk)]
    seconds = time.process_time() - cpu
    return (*classifier_outputs(classifier, torch.cat(images)), seconds)


def real_quality(data: dict, classifier: Any, num: int, draws: int, k: int) -> dict:
    """Scores of real images, per draw: the floor (a random half ``B`` of the first ``num`` test images against the
    other half ``A``: images the classifier never saw, ``num / 2`` each) and, for comparison, ``num`` random training
    images (which the classifier was trained on) against the ``num`` test images."""
    test_probs, test_features = classifier_outputs(classifier, data["test_images"][:num])
    floor, train = [], []
    for draw in range(draws):
        a, b = split_halves(num, draw)
        floor.append(quality_scores(test_probs[b], test_features[b], test_features[a], k))
        pick = torch.randperm(len(data["train_images"]), generator=torch.Generator().manual_seed(2000 + draw))[:num]
        probs, features = classifier_outputs(classifier, data["train_images"][pick])
        train.append(quality_scores(probs, features, test_features, k))
    contiguous = frechet_distance(test_features[num // 2 :], test_features[: num // 2])
    return {"floor_half": mean_and_stderr(floor), "train_full": mean_and_stderr(train),
            "contiguous_halves_frechet": contiguous, "draws": {"floor_half": floor, "train_full": train}}  # fmt: skip


def run_quality(pipeline: Any, classifier: Any, test_features: torch.Tensor, setting: dict, config: dict) -> dict:
    """Scores of ``config["draws"]`` independent draws of ``config["num"]`` samples of ``pipeline`` with the sampler
    ``setting``: all of them against the ``num`` test images (``full``), and their first half against the half ``A``
    of the test images that the floor is measured against (``half``, so that the sizes match the floor's)."""
    set_solver(pipeline, setting["solver"])
    num, k = config["num"], config["k"]
    full, half, seconds = [], [], []
    for draw in range(config["draws"]):
        probs, features, cpu = sample_outputs(pipeline, classifier, num, setting["steps"], 3000 + draw, config["chunk"])
        a, _ = split_halves(num, draw)
        full.append(quality_scores(probs, features, test_features, k))
        half.append(quality_scores(probs[: num // 2], features[: num // 2], test_features[a], k))
        seconds.append(cpu)
    summary = {"full": mean_and_stderr(full), "half": mean_and_stderr(half), "sample_cpu_seconds": seconds}
    return {"solver": setting["solver"], "steps": setting["steps"], **summary, "draws": {"full": full, "half": half}}


def reference_features(data: dict, classifier: Any, num: int) -> torch.Tensor:
    """The classifier's features of the first ``num`` test images, which the generated images are scored against."""
    if len(data["test_images"]) < num:
        raise ValueError(f"the quality scores need {num} test images, the data has {len(data['test_images'])}")
    return classifier_outputs(classifier, data["test_images"][:num])[1]


def evaluate_quality(out: Path, data: dict, classifier: Any, settings: dict, config: dict) -> dict:
    """The sample-quality stage: :func:`real_quality`, and :func:`run_quality` of each unconditional run in
    ``settings`` (run name → sampler setting)."""
    num = config["num"]
    test_features = reference_features(data, classifier, num)
    runs = {name: run_quality(load_pipeline(out / name), classifier, test_features, setting, config)
            for name, setting in settings.items()}  # fmt: skip
    return {**config, "real": real_quality(data, classifier, num, config["draws"], config["k"]), "runs": runs}


def sample_grids(out: Path, settings: dict, guidance_scale: float, figures: Path) -> dict[str, str]:
    """A 10 × 10 grid of each run's samples with its headline sampler ``settings`` (the conditional model one row per
    class at ``guidance_scale``), saved under ``figures``; returns the file of each run."""
    from hfgen import plotting

    files = {}
    figures.mkdir(parents=True, exist_ok=True)
    for name, setting in settings.items():
        pipeline = load_pipeline(out / name)
        set_solver(pipeline, setting["solver"])
        extra = {"class_labels": grid_labels(100, 10), "guidance_scale": guidance_scale} if name == "fm_cond" else {}
        images, _ = draw(pipeline, 100, setting["steps"], seed=19, **extra)
        title = f"{RUN_LABELS[name]}, {setting['solver']} {setting['steps']}"
        figure = plotting.plot_image_grid(
            images, ncols=10, title=title + (f", w = {guidance_scale:g}" if extra else "")
        )
        figure.savefig(figures / f"{name}_samples.png", dpi=90)
        plt.close(figure)
        files[name] = f"{figures.name}/{name}_samples.png"
    return files


def evaluate_bits_per_dim(out: Path, data: dict, num: int, quick: bool) -> list[dict]:
    """Bits per dimension of ``num`` test images under the unconditional flow-matching model (Hutchinson
    divergence; the same dequantisation and Hutchinson noise in every row): the fixed-step midpoint solver at several
    step counts, which shows the discretisation error, and the adaptive dopri5 solver."""
    pipeline = load_pipeline(out / "fm")
    images = data["test_images"][:num]
    settings = [("midpoint", 4, None)] if quick else [("midpoint", n, None) for n in (20, 40, 80, 160)]
    settings.append(("dopri5", None, 1e-2 if quick else 1e-3))
    rows = []
    for solver, steps, tolerance in settings:
        wall, cpu = time.perf_counter(), time.process_time()
        options = {"rtol": tolerance, "atol": tolerance} if tolerance else {"num_inference_steps": steps}
        result = pipeline.log_prob(images, generator=torch.Generator().manual_seed(5), ode_solver=solver, **options)
        rows.append({"solver": solver, "steps": steps if steps else f"adaptive (tol {tolerance:g})",
                     "nfe": result.nfe, "num_images": num, "bits_per_dim": result.mean_bits_per_dim,
                     "stderr": result.stderr_bits_per_dim, "wall_seconds": time.perf_counter() - wall,
                     "cpu_seconds": time.process_time() - cpu})  # fmt: skip
    return rows


def corrupt(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hand-drawn-looking inputs: strokes thickened (3 × 3 max-pool) and blurred (Gaussian, σ = 1.5 px)."""
    thick = torch.nn.functional.max_pool2d(images, 3, stride=1, padding=1)
    x = torch.arange(-4, 5, dtype=images.dtype)
    kernel = torch.exp(-(x**2) / (2 * 1.5**2))
    kernel = kernel / kernel.sum()
    blurred = torch.nn.functional.conv2d(images, kernel.view(1, 1, 1, -1), padding=(0, 4))
    blurred = torch.nn.functional.conv2d(blurred, kernel.view(1, 1, -1, 1), padding=(4, 0))
    return {"thick": thick.clamp(0, 1), "blurred": (blurred / blurred.amax((1, 2, 3), keepdim=True)).clamp(0, 1)}


def sdedit_figure(out: Path, data: dict, classifier: Any, quick: bool, figures: Path) -> list[dict]:
    """SDEdit of corrupted test digits at strengths 0 … 1 with the unconditional flow-matching model; a figure with
    the classifier's label and confidence above each image."""
    pipeline = load_pipeline(out / "fm")
    set_solver(pipeline, "euler")
    originals = data["test_images"][:3]
    strengths = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    inputs = [(kind, i, image) for kind, batch in corrupt(originals).items() for i, image in enumerate(batch)]
    fig, axes = plt.subplots(len(inputs), len(strengths), figsize=(1.6 * len(strengths), 1.8 * len(inputs)))
    rows = []
    for r, (kind, i, image) in enumerate(inputs):
        for c, s in enumerate(strengths):
            generator = torch.Generator().manual_seed(100 + r)
            edited = pipeline(num_inference_steps=5 if quick else 20, generator=generator, strength=s,
                              start_images=image[None]).images  # fmt: skip
            probs, _ = classifier_outputs(classifier, edited)
            label, confidence = int(probs.argmax()), float(probs.max())
            rows.append({"input": f"{kind}-{i}", "true_label": int(data["test_labels"][i]), "strength": s,
                         "label": label, "confidence": confidence})  # fmt: skip
            ax = axes[r, c]
            ax.imshow(edited[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label} ({confidence:.2f})", fontsize=9)
            if r == 0:
                ax.set_xlabel(f"strength {s:g}", fontsize=9)
                ax.xaxis.set_label_position("top")
            if c == 0:
                ax.set_ylabel(f"{kind}, true {int(data['test_labels'][i])}", fontsize=8)
    fig.suptitle("SDEdit (flow matching): classifier label (confidence) of each edit")
    fig.tight_layout()
    figures.mkdir(parents=True, exist_ok=True)
    fig.savefig(figures / "sdedit_digits.png", dpi=90)
    plt.close(fig)
    return rows


#: draws of the unseen test images of each floor
FLOOR_DRAWS = 5


def floors(data: dict, classifier: Any, num: int) -> dict[str, dict[str, Any]]:
    """The scores of real images against the first ``num`` test images: ``unseen``, ``num`` test images drawn at
    random from the rest (which the classifier never saw, mixing the test set's two halves as the training set mixes
    its writers: the scores of a generator that draws from the data distribution; the floor), the mean over
    :data:`FLOOR_DRAWS` draws with its ``stderr``; and ``seen``, the first ``num`` training images (which the
    classifier was trained on: not a floor)."""
    reference = data["test_images"][:num]
    if len(data["test_images"]) < 2 * num:
        raise ValueError(f"the floors need {2 * num} test images, the data has {len(data['test_images'])}")
    draws = []
    for draw in range(FLOOR_DRAWS):
        order = torch.randperm(len(data["test_images"]) - num, generator=torch.Generator().manual_seed(num + draw))
        rest = num + order[:num]
        draws.append(labelled_scores(classifier, data["test_images"][rest], data["test_labels"][rest], reference))
    summary = mean_and_stderr(draws)
    unseen = {key: value["mean"] for key, value in summary.items()}
    unseen["stderr"] = {key: value["stderr"] for key, value in summary.items()}
    seen = labelled_scores(classifier, data["train_images"][:num], data["train_labels"][:num], reference)
    return {"unseen": unseen, "seen": seen}


def labelled_scores(classifier: Any, images: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor) -> dict:
    """:func:`image_scores` of ``images`` against ``reference`` and the classifier's accuracy on their ``labels``."""
    scores = image_scores(classifier, images, reference)
    probs, _ = classifier_outputs(classifier, images)
    return scores | {"label_accuracy": float((probs.argmax(1) == labels).double().mean())}


# ---- report ---------------------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _training_section(runs: dict) -> list[str]:
    rows = [
        [RUN_LABELS[name], run["metrics"]["train_steps"], BUDGET["batch"], f"{run['wall_seconds']:.0f}",
         f"{run['cpu_seconds']:.0f}", f"{run['cpu_seconds'] / 60:.1f}", f"{run['metrics']['train_cpu_seconds']:.0f}"]
        for name, run in runs.items()
    ]  # fmt: skip
    header = ["run", "steps", "batch", "wall (s)", "CPU (s)", "CPU min", "of which optimisation (CPU s)"]
    return [
        "## Training (the same UNet2DModel, batch and steps for every run)",
        "",
        *table(header, rows),
        "",
        "CPU seconds are user + sys of the training script (its data loading, validation and final evaluation "
        "included); the last column is the optimisation alone (the scripts' `train_cpu_seconds`).",
        "",
        "Commands (`python training/...`):",
        "",
        *(f"- {RUN_LABELS[name]}: `{run['command']}`" for name, run in runs.items()),
        "",
    ]


#: the labels of the two rows of real images under each table
REAL_ROWS = {"unseen": "real test images, unseen (floor)", "seen": "real training images, seen by the classifier"}


def _real_rows(floor: dict, cells: Any) -> list[list[Any]]:
    """One row per set of real images of ``floor`` (:func:`floors`), its cells ``cells(scores)``."""
    return [[REAL_ROWS[name], *cells(scores)] for name, scores in floor.items()]


def _real(scores: dict, key: str, spec: str) -> str:
    """A real-image score, with its standard error over the draws where it has one."""
    errors = scores.get("stderr", {})
    return plus_minus(scores[key], errors[key], spec) if key in errors else f"{scores[key]:{spec}}"


def _pm(score: dict, spec: str) -> str:
    return plus_minus(score["mean"], score["stderr"], spec)


def _quality_cells(summary: dict) -> list[str]:
    return [_pm(summary["frechet_distance"], ".2f"), _pm(summary["precision"], ".3f"), _pm(summary["recall"], ".3f"),
            _pm(summary["confidence"], ".3f")]  # fmt: skip


def _quality_section(quality: dict, runs_note: str) -> list[str]:
    num, half, draws, k = quality["num"], quality["num"] // 2, quality["draws"], quality["k"]
    real, runs = quality["real"], quality["runs"]
    header = ["", "sampler", "Fréchet", "precision", "recall", "confidence"]
    full_rows = [[RUN_LABELS[name], f"{row['solver']} {row['steps']}", *_quality_cells(row["full"])]
                 for name, row in runs.items()]  # fmt: skip
    full_rows.append([REAL_ROWS["seen"] + f" ({num:,}, not a floor)", "", *_quality_cells(real["train_full"])])
    half_rows = [[RUN_LABELS[name], f"{row['solver']} {row['steps']}", *_quality_cells(row["half"])]
                 for name, row in runs.items()]  # fmt: skip
    half_rows.append([f"real test half B ({half:,}, unseen): the floor", "", *_quality_cells(real["floor_half"])])
    return [
        f"## Sample quality at {num:,} samples",
        "",
        f"Scores in the features of the `MnistClassifier`, each the mean ± standard error over {draws} independent "
        f"draws (new samples, a new random split of the test images). **Precision** and **recall** (Kynkäänniemi et "
        f"al. 2019, k = {k}): each set's manifold is the union of balls around its points with radius the distance "
        "to the point's k-th nearest neighbour in its own set; precision is the fraction of generated images inside "
        "the real manifold (do they look real), recall the fraction of real images inside the generated one (is the "
        "data covered); both computed exactly. **Fréchet**: the Fréchet distance between Gaussian fits of the two "
        "feature sets (the FID's formula). **Confidence**: the classifier's mean `max_c p(c | x)`.",
        "",
        f"Against the first {num:,} test images (on MNIST all of them: its test split has 10,000, so no set of "
        f"unseen real images of this size is left for a floor at {num:,}); the row of training images, which the "
        "classifier was trained on, is for comparison only.",
        "",
        *table(header, full_rows),
        "",
        f"Against a random half A of the test images ({half:,}), the floor being the other half B: images the "
        f"classifier never saw, at the same sample size (the Fréchet distance is biased upwards at small sizes, and "
        f"the k-NN radii shrink as a set grows, so only scores at equal sizes compare). Generated rows: the first "
        f"{half:,} images of each draw. The halves are random: the first and the second half of the test images "
        f"are {quality['real']['contiguous_halves_frechet']:.2f} apart in Fréchet distance (on MNIST the first "
        "5,000 come from NIST's SD-3, Census Bureau writers, and are cleaner than the last 5,000, from SD-1, "
        "students, as the MNIST page says).",
        "",
        *table(header, half_rows),
        "",
        *([runs_note, ""] if runs_note else []),
    ]


def _headline_section(headline: dict) -> list[str]:
    def sampler(row: dict) -> str:
        return f"{row['solver']} {row['steps']}" + (
            f", w = {row['guidance_scale']:g}" if "guidance_scale" in row else ""
        )

    rows = [
        [RUN_LABELS[name], sampler(row), f"{row['frechet_distance']:.2f}", f"{row['confidence']:.3f}",
         f"{row['label_entropy']:.3f}", _f(row.get("label_accuracy"), 3)]
        for name, row in headline["runs"].items()
    ]  # fmt: skip
    rows += _real_rows(headline["floor"], lambda f: ["", _real(f, "frechet_distance", ".2f"),
                                                     _real(f, "confidence", ".3f"), _real(f, "label_entropy", ".3f"),
                                                     _real(f, "label_accuracy", ".3f")])  # fmt: skip
    header = ["run", "sampler", "Fréchet", "confidence", "label entropy", "requested label recognised"]
    return [
        f"## Headline scores at {headline['num_scored']:,} samples",
        "",
        f"As the VAE benchmark measures them ({headline['num_scored']:,} generated images against the first as many "
        "test images; the floor: as many test images drawn at random from the rest, ± the standard error over "
        f"{FLOOR_DRAWS} such draws), with each unconditional model's "
        "best sampler setting of the sweep below and the conditional model at the chosen guidance scale. Single "
        "draws without standard errors, and Fréchet distances biased upwards at this size: the scores at 10,000 "
        "samples with standard errors are in the section above.",
        "",
        *table(header, rows),
        "",
        *_near_floor_lines(headline),
    ]


def _near_floor_lines(headline: dict) -> list[str]:
    """A note naming the runs whose Fréchet distance is below the floor's mean plus two standard errors."""
    floor = headline["floor"]["unseen"]
    bound = floor["frechet_distance"] + 2 * floor["stderr"]["frechet_distance"]
    near = [name for name, row in headline["runs"].items() if row["frechet_distance"] <= bound]
    if not near:
        return []
    names = ", ".join(f"{RUN_LABELS[name]} ({headline['runs'][name]['frechet_distance']:.2f})" for name in near)
    return [f"Within two standard errors of the floor's Fréchet distance (≤ {bound:.2f}): {names}; one draw of this "
            "size does not tell such a run from real images, and does not show it to be better than them (compare "
            "the confidence).", ""]  # fmt: skip


def _sweep_section(sweeps: dict, floor: dict, num_scored: int) -> list[str]:
    rows = [
        [RUN_LABELS[name], row["solver"], row["steps"], row["nfe"], f"{row['sample_wall_seconds']:.1f}",
         f"{row['sample_cpu_seconds']:.1f}", f"{row['frechet_distance']:.2f}", f"{row['confidence']:.3f}",
         f"{row['label_entropy']:.3f}"]
        for name, rows in sweeps.items()
        for row in rows
    ]  # fmt: skip
    rows += _real_rows(floor, lambda f: ["", "", "", "", "", _real(f, "frechet_distance", ".2f"),
                                         _real(f, "confidence", ".3f"), _real(f, "label_entropy", ".3f")])  # fmt: skip
    header = ["run", "solver", "steps", "NFE", "sample wall (s)", "sample CPU (s)", "Fréchet", "confidence",
              "label entropy"]  # fmt: skip
    return [
        "## Samplers at equal training cost",
        "",
        f"{num_scored} samples per row; sampling time for all of them on this CPU.",
        "",
        *table(header, rows),
        "",
    ]


def _guidance_section(guidance: list[dict], floor: dict, chosen: float | None) -> list[str]:
    rows = [
        ["unconditional" if row["guidance_scale"] is None else f"{row['guidance_scale']:g}",
         f"{row['frechet_distance']:.2f}", f"{row['confidence']:.3f}", f"{row['label_entropy']:.3f}",
         _f(row.get("label_accuracy"), 3), f"{row['sample_cpu_seconds']:.1f}"]
        for row in guidance
    ]  # fmt: skip
    rows += _real_rows(floor, lambda f: [_real(f, "frechet_distance", ".2f"), _real(f, "confidence", ".3f"),
                                         _real(f, "label_entropy", ".3f"), _real(f, "label_accuracy", ".3f"),
                                         ""])  # fmt: skip
    header = ["guidance w", "Fréchet", "confidence", "label entropy", "requested label recognised", "sample CPU (s)"]
    return [
        "## Class-conditional flow matching and classifier-free guidance",
        "",
        f"`v = v_∅ + w (v_c − v_∅)` (Ho & Salimans 2022), {GUIDANCE_STEPS} Euler steps, labels 0 … 9 in turn; the "
        "first row samples the null class (unconditional).",
        "",
        *table(header, rows),
        "",
        f"Chosen guidance scale: **{chosen}** (the smallest on the grid whose samples are recognised as the requested "
        "digit ≥ 95% of the time, else the most accurate).",
        "",
    ]


def _bits_per_dim_section(bpd: list[dict]) -> list[str]:
    rows = [
        [row["solver"], row["steps"], row.get("nfe", ""), row["num_images"],
         plus_minus(row["bits_per_dim"], row["stderr"], ".3f"), f"{row['cpu_seconds']:.0f}"]
        for row in bpd
    ]  # fmt: skip
    return [
        "## Likelihood (unconditional flow matching)",
        "",
        "Bits per dimension of test images: uniform dequantisation `v = (k + u)/256`, the flow's density of "
        "`y = 2v − 1` by the instantaneous change of variables with Hutchinson's trace estimate (one Rademacher "
        "vector per image), `bits/dim = −(log p(v) − 784 log 256) / (784 log 2)`; ± is the standard error over the "
        "images.",
        "",
        *table(["solver", "steps", "NFE", "images", "bits/dim", "CPU (s)"], rows),
        "",
    ]


def _samples_section(grids: dict) -> list[str]:
    return [
        "## Samples",
        "",
        "10 × 10 grids with the headline sampler settings (one row per class for the conditional model, at the "
        "chosen guidance scale).",
        "",
        *(f"![{RUN_LABELS[name]}]({file})" for name, file in grids.items()),
        "",
    ]


SDEDIT_SECTION = [
    "## SDEdit on digits",
    "",
    "Thickened (3 × 3 max-pool) and blurred (σ = 1.5 px) test digits edited by the unconditional flow-matching "
    "model (Meng et al. 2022): the image is put on the path at `t_0 = 1 − s` and the ODE runs to `t = 1`. Above "
    "each image: the classifier's label (confidence).",
    "",
    "![SDEdit](image_figures/sdedit_digits.png)",
    "",
]


def render(results: dict) -> str:
    """The Markdown page of the stored results (``image_results.json``), each section once its stage has run."""
    lines = [
        "# Image benchmark: flow matching and DDPM on MNIST",
        "",
        "Written by `benchmarks/bench_images.py`. " + results["machine"],
        "",
        "Every score stands beside its **floor**: the same score of real test images that the classifier never "
        "saw, against the test images the generated ones are scored against, at the same sample size. Scores come "
        "from hfgen's `MnistClassifier` (`training/train_classifier.py`): precision and recall and the Fréchet "
        "distance in its penultimate features, its mean confidence, the entropy of its predicted labels "
        "(log 10 = 2.3026 is uniform) and, for conditional samples, how often it recognises the requested digit. "
        "Real training images are shown too but are no floor: the classifier was trained on them.",
        "",
    ]
    floor = results.get("floor")
    if results.get("runs"):
        lines += _training_section(results["runs"])
    if results.get("quality"):
        lines += _quality_section(results["quality"], results.get("quality_note", ""))
    if results.get("headline"):
        lines += _headline_section(results["headline"])
    if results.get("sweeps") and floor:
        lines += _sweep_section(results["sweeps"], floor, results["num_scored"])
    if results.get("guidance") and floor:
        lines += _guidance_section(results["guidance"], floor, results.get("chosen_guidance_scale"))
    if results.get("bits_per_dim"):
        lines += _bits_per_dim_section(results["bits_per_dim"])
    if results.get("grids"):
        lines += _samples_section(results["grids"])
    if results.get("sdedit"):
        lines += SDEDIT_SECTION
    lines += ["## Targets", ""] + target_lines(results)
    return markdown(lines)


def target_lines(results: dict) -> list[str]:
    lines = []
    sweeps, guidance, runs = results.get("sweeps", {}), results.get("guidance"), results.get("runs", {})
    headline = results.get("headline", {}).get("runs", {})
    for name in ("fm", "ddpm"):
        if name in headline or name in sweeps:
            best = headline.get(name) or min(sweeps[name], key=lambda row: row["frechet_distance"])
            ok = best["frechet_distance"] <= TARGETS["frechet_max"]
            gap = abs(best["label_entropy"] - math.log(10))
            lines.append(
                f"- {RUN_LABELS[name]}: Fréchet {best['frechet_distance']:.2f} ({best['solver']}, "
                f"{best['steps']} steps) {'≤' if ok else '>'} {TARGETS['frechet_max']:.2f} "
                f"(a quarter of the 2-D VAE's {VAE_FRECHET:.2f}): "
                f"{'met' if ok else 'not met'}; label entropy {best['label_entropy']:.3f}, "
                f"{gap:.3f} from log 10: {'met' if gap <= TARGETS['entropy_gap_max'] else 'not met'}."
            )
    if guidance:
        chosen = headline.get("fm_cond") or next(
            (r for r in guidance if r["guidance_scale"] == results.get("chosen_guidance_scale")), None
        )
        if chosen is not None:
            ok = chosen["label_accuracy"] >= TARGETS["label_accuracy_min"]
            lines.append(f"- conditional samples at w = {chosen['guidance_scale']:g} recognised as the requested "
                         f"digit {100 * chosen['label_accuracy']:.1f}% of the time: {'met' if ok else 'not met'} "
                         "(≥ 95%).")  # fmt: skip
    lines += quality_target_lines(results.get("quality"), headline)
    for name, run in runs.items():
        minutes = run["cpu_seconds"] / 60
        ok = minutes <= TARGETS["cpu_minutes_max"]
        lines.append(f"- {RUN_LABELS[name]}: {minutes:.1f} CPU minutes for the whole script "
                     f"({'within' if ok else 'over'} the 30-minute budget).")  # fmt: skip
    return lines


def quality_target_lines(quality: dict | None, headline: dict) -> list[str]:
    """Mean confidence ≥ 0.95 and precision and recall each within 0.1 of the floor's, at the half size (without
    scored runs: the confidence of the ``headline`` rows)."""
    if not quality:
        return []
    gap_max, floor = TARGETS["precision_recall_gap_max"], quality["real"]["floor_half"]
    if not quality["runs"]:
        low = [f"{RUN_LABELS[name]} {headline[name]['confidence']:.3f}" for name in ("fm", "ddpm")
               if name in headline and headline[name]["confidence"] < TARGETS["confidence_min"]]  # fmt: skip
        known = f"; below it in the headline scores: {', '.join(low)}" if low else ""
        return [f"- unconditional samples: mean confidence ≥ {TARGETS['confidence_min']}, precision and recall each "
                f"within {gap_max} of the floor's ({floor['precision']['mean']:.3f}, {floor['recall']['mean']:.3f}): "
                f"not measured at 10,000 samples (no trained pipeline was scored){known}."]  # fmt: skip
    lines = []
    for name, row in quality["runs"].items():
        confidence = row["full"]["confidence"]["mean"]
        gaps = {key: row["half"][key]["mean"] - floor[key]["mean"] for key in ("precision", "recall")}
        ok = confidence >= TARGETS["confidence_min"] and all(abs(gap) <= gap_max for gap in gaps.values())
        lines.append(f"- {RUN_LABELS[name]}: mean confidence {confidence:.3f} (≥ {TARGETS['confidence_min']}), "
                     f"precision {gaps['precision']:+.3f} and recall {gaps['recall']:+.3f} from the floor's "
                     f"(within {gap_max}): {'met' if ok else 'not met'}.")  # fmt: skip
    return lines


def rescore(results: dict, out: Path, data: dict, classifier: Any, config: dict) -> dict:
    """``results`` with the real-image rows of every table (:func:`floors`) scored again and the quality stage
    (:func:`evaluate_quality`) of the unconditional pipelines of the headline found in ``out``; ``quality_note`` says
    which were not found."""
    previous = results["headline"]["floor"]
    results["floor"] = floors(data, classifier, results["num_scored"])
    results["headline"]["floor"] = floors(data, classifier, results["headline"]["num_scored"])
    settings = results["headline"]["runs"]
    found = {name: settings[name] for name in ("fm", "ddpm") if (out / name / "model_index.json").is_file()}
    results["quality"] = evaluate_quality(out, data, classifier, found, config)
    missing = [RUN_LABELS[name] for name in ("fm", "ddpm") if name not in found]
    # the earlier classifier's number is kept from the first rescore on
    earlier = results.setdefault("earlier_seen_frechet", previous.get("seen", previous)["frechet_distance"])
    now = results["headline"]["floor"]["seen"]["frechet_distance"]
    note = "The real-image rows of every table were scored again (`--rescore`)"
    if not math.isclose(now, earlier, rel_tol=1e-9):
        note += (f" with a classifier trained again by the same command; the generated rows of the sections below "
                 f"come from the earlier run's classifier, whose weights differ slightly (the training images' "
                 f"Fréchet distance at {results['headline']['num_scored']:,} was {earlier:.2f} with it, "
                 f"{now:.2f} now)")  # fmt: skip
    note += "."
    if missing:
        note += (f" Not scored at {config['num']:,} samples: {', '.join(missing)}: the pipelines of the earlier run "
                 f"are not on the machine that rescored, and training them again was not done there.")  # fmt: skip
    results["quality_note"] = note
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--output_dir", type=Path, default=HERE / "out" / "images", help="run folders")
    parser.add_argument("--max_train_steps", type=int, default=BUDGET["steps"], help="optimizer steps of every run")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at once (one CPU thread each)")
    parser.add_argument("--num_scored", type=int, default=500, help="generated images per score")
    parser.add_argument("--num_headline", type=int, default=1000, help="samples of the headline scores")
    parser.add_argument("--num_bits_per_dim_images", type=int, default=100, help="test images for bits/dim")
    parser.add_argument("--rescore", action="store_true",
                        help="score again, from the stored results, the real images and the unconditional pipelines "
                        "found in --output_dir (no training), and write the page")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = args.output_dir
    stages = out / "image_runs"
    stages.mkdir(parents=True, exist_ok=True)
    # a quick run writes everything into its output folder, so that it never overwrites the measured results
    report_folder = out if args.quick else HERE
    results_path = report_folder / PAGE.json_name
    report_path = report_folder / PAGE.markdown_name
    figures = report_folder / "image_figures"
    num = 64 if args.quick else args.num_scored
    results: dict[str, Any] = {
        "machine": f"CPU only ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}); no GPU was lent "
        "to this benchmark, so every number is a CPU number.",
        "num_scored": num,
        "budget": {**BUDGET, "steps": args.max_train_steps},
        "network": NETWORK,
    }

    stage = functools.partial(stored_stage, stages)

    def save() -> None:
        write_results(results, report_folder, PAGE, render)

    quality_config = {"num": 64, "draws": 3, "k": 3, "chunk": 32} if args.quick else QUALITY

    classifier_path = classifier_folder(args, out)
    classifier = MnistClassifier.from_pretrained(classifier_path, use_safetensors=True).eval()
    data = load_data(args, out)
    if args.rescore:
        if not results_path.is_file():
            sys.exit(f"error: --rescore needs the stored results {results_path}")
        results = rescore(json.loads(results_path.read_text()), out, data, classifier, quality_config)
        save()
        print(f"wrote {report_path} and {results_path}")
        return
    results["floor"] = stage("floor", lambda: floors(data, classifier, num))
    results["runs"], results["sweeps"] = {}, {}
    # the runs train in up to --jobs child processes at once (one thread each); each run is scored as soon as it
    # is trained, beside the runs still training, so that a partial report is already useful
    pool = ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="train")
    trained = {
        name: pool.submit(stage, f"train-{name}", lambda name=name: train_run(name, args, out, classifier_path))
        for name in RUNS
    }
    for name in RUNS:
        results["runs"][name] = trained[name].result()
        save()
        if name in ("fm", "ddpm"):
            results["sweeps"][name] = stage(
                f"sweep-{name}", lambda name=name: evaluate_sweep(name, out, data, classifier, num, args.quick)
            )
            save()
        if name == "fm":
            results["sdedit"] = stage("sdedit", lambda: sdedit_figure(out, data, classifier, args.quick, figures))
            save()
    pool.shutdown()
    results["guidance"] = stage("guidance", lambda: evaluate_guidance(out, data, classifier, num, args.quick))
    guided = [row for row in results["guidance"] if row["guidance_scale"] is not None]
    good = [row for row in guided if row["label_accuracy"] >= TARGETS["label_accuracy_min"]]
    chosen = min(good, key=lambda r: r["guidance_scale"]) if good else max(guided, key=lambda r: r["label_accuracy"])
    results["chosen_guidance_scale"] = chosen["guidance_scale"]
    save()
    count = 8 if args.quick else args.num_bits_per_dim_images
    results["bits_per_dim"] = stage("bits_per_dim", lambda: evaluate_bits_per_dim(out, data, count, args.quick))
    save()
    headline_num = 64 if args.quick else args.num_headline
    results["headline"] = stage(
        "headline",
        lambda: evaluate_headline(
            out, data, classifier, headline_num, results["sweeps"], results["chosen_guidance_scale"], args.quick
        ),
    )
    save()
    settings = results["headline"]["runs"]
    unconditional = {name: settings[name] for name in ("fm", "ddpm")}
    results["quality"] = stage(
        "quality", lambda: evaluate_quality(out, data, classifier, unconditional, quality_config)
    )
    save()
    results["grids"] = stage("grids", lambda: sample_grids(out, settings, results["chosen_guidance_scale"], figures))
    save()
    print(f"wrote {report_path} and {results_path}")


if __name__ == "__main__":
    main()
