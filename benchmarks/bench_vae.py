"""MNIST-family benchmark of the 2-D autoencoder and VAE (the `VAEArguments` defaults).

    python benchmarks/bench_vae.py                          # MNIST and Fashion-MNIST, AE, AE + graph, VAE
    python benchmarks/bench_vae.py --datasets mnist --models vae   # one row; others already measured are kept
    python benchmarks/bench_vae.py --quick                  # a smoke run with tiny budgets (numbers meaningless)

Model ``ae_graph`` is the autoencoder with the k-NN-graph neighbour-embedding term (``--neighbor_weight``
``NEIGHBOR_WEIGHT``, the other defaults unchanged). Each (dataset, model) run trains in-process with the shared
Trainer (no checkpoints or validation), then measures on the test split: the ELBO and the IWAE bound with K
importance samples (dynamically binarised images, the test set binarised once with the seed), the reconstruction
error through the code, the k-NN (k = 5) accuracy of test codes against training codes, and classifier scores of
1,000 generated images (the classifier is trained first with ``training/train_classifier.py`` unless
``--classifier_path`` names a saved one). Every run
is stored as ``<output>/vae_runs/<dataset>-<model>.json``; ``VAE_RESULTS.md`` and ``vae_results.json`` are
written from all stored runs, so runs can be made in separate processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from report import Page, machine, markdown, table, verdict, write_results, written_by

from hfgen.training import VAEArguments, evaluate_vae, train_vae
from hfgen.training.vae import load_vae_data

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("vae", "vae_results.json", "VAE_RESULTS.md")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASETS = ("mnist", "fashion_mnist")
MODELS = ("ae", "ae_graph", "vae")
#: λ of the ``ae_graph`` rows: reconstruction + λ · neighbour-embedding loss
NEIGHBOR_WEIGHT = 1000.0
MODEL_LABELS = {"ae": "AE", "ae_graph": "AE + k-NN graph", "vae": "VAE"}
TARGETS = {"vae_nll_max": 140.0, "ae_knn_min": 0.90, "train_minutes_max": 15.0}


def classifier_folder(dataset: str, data_root: Path, out: Path, quick: bool) -> Path:
    """Train the scoring classifier of ``dataset`` with ``training/train_classifier.py`` (once) and return it."""
    folder = out / f"classifier-{dataset}{'-quick' if quick else ''}"
    if (folder / "model.safetensors").is_file():
        return folder
    command = [sys.executable, str(REPO / "training" / "train_classifier.py"),
               "--train_data_files", str(data_root / dataset / "train.parquet"),
               "--test_data_files", str(data_root / dataset / "test.parquet"), "--output_dir", str(folder)]  # fmt: skip
    if quick:
        command += ["--num_epochs", "1", "--max_train_samples", "2000"]
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    return folder


def run_args(dataset: str, model: str, data_root: Path, out: Path, classifier: Path, quick: bool) -> VAEArguments:
    args = VAEArguments(
        model="ae" if model == "ae_graph" else model,
        neighbor_weight=NEIGHBOR_WEIGHT if model == "ae_graph" else 0.0,
        train_data_files=str(data_root / dataset / "train.parquet"),
        test_data_files=str(data_root / dataset / "test.parquet"),
        output_dir=str(out / f"{dataset}-{model}"),
        overwrite_output_dir=True,
        checkpointing_steps=0,
        validation_steps=0,
        report_to="none",
        classifier_path=str(classifier),
    )
    if quick:
        args = replace(
            args,
            max_train_steps=30,
            lr_warmup_steps=5,
            num_nll_images=20,
            num_importance_samples=50,
            quadrature_grid_size=40,
        )
    return args


def bench_run(args: VAEArguments, data: dict[str, torch.Tensor], quick: bool) -> dict:
    """Train one model on ``data`` (:func:`load_vae_data`), evaluate it, save its figures and return the row."""
    start = time.perf_counter()
    pipeline, info, task = train_vae(args, data)
    wall = time.perf_counter() - start
    load = os.getloadavg()[1]  # 5-minute load average at the end of training (2 cores: > 2 means a loaded machine)
    start = time.perf_counter()
    metrics = evaluate_vae(pipeline, task)
    eval_seconds = time.perf_counter() - start
    epochs = info["samples_seen"] / task.train_images.shape[0]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out)
    for name, figure in task.final_figures(pipeline).items():
        figure.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
    return {
        **{k: v for k, v in metrics.items() if k != "samples_label_distribution"},
        "samples_label_distribution": metrics.get("samples_label_distribution"),
        "train_steps": info["train_steps"],
        "train_seconds": info["train_seconds"],
        "train_wall_seconds": wall,
        "epochs": epochs,
        "seconds_per_epoch": info["train_seconds"] / epochs,
        "eval_seconds": eval_seconds,
        "load_average_5min": load,
        "num_test_images": int(task.test_images.shape[0]),
        "arguments": {k: v for k, v in args.to_dict().items() if k in ARGUMENTS_SHOWN},
        "quick": quick,
    }


ARGUMENTS_SHOWN = (
    "hidden_sizes",
    "activation",
    "normalization",
    "train_batch_size",
    "max_train_steps",
    "learning_rate",
    "lr_warmup_steps",
    "ema_decay",
    "binarize",
    "neighbor_weight",
    "neighbor_k",
    "neighbor_components",
    "neighbor_negatives",
)


def _recipe(arguments: dict) -> str:
    """One line describing a run's recipe from its stored arguments."""
    widths = " → ".join(str(h) for h in ["784", *arguments["hidden_sizes"], 2])
    norm = arguments.get("normalization", "none")
    encoder = f"MLP {widths}, {arguments.get('activation', 'relu')}" + (
        f", {norm} norm in the encoder" * (norm != "none")
    )
    graph = (
        f"; + {arguments['neighbor_weight']:g} × the neighbour-embedding loss on a {arguments['neighbor_k']}-NN graph "
        f"({arguments['neighbor_components']} principal components, {arguments['neighbor_negatives']} negatives)"
        if arguments.get("neighbor_weight")
        else ""
    )
    return (
        f"{encoder}{graph}; batch {arguments['train_batch_size']}, {arguments['max_train_steps']:,} steps, AdamW "
        f"{arguments['learning_rate']:g} ({arguments.get('lr_warmup_steps', 200)} warm-up steps, cosine decay), "
        f"EMA {arguments['ema_decay']}, {arguments['binarize']} binarisation"
    )


def _cell(row: dict, key: str, fmt: str, stderr: str | None = None) -> str:
    if row.get(key) is None:
        return "–"
    text = format(row[key], fmt)
    return text + (f" ± {format(row[stderr], fmt)}" if stderr and row.get(stderr) is not None else "")


def _run_row(name: str, r: dict) -> list[str]:
    dataset, model = name.rsplit("-", 1)
    k = f"{r['num_importance_samples']} × {r['num_nll_images']}" if "nll" in r else "–"
    return [
        dataset,
        f"{MODEL_LABELS[model]}{' (quick)' if r['quick'] else ''}",
        f"{r['train_steps']:,} ({r['epochs']:.1f})",
        f"{r['train_seconds']:.0f}",
        f"{r['seconds_per_epoch']:.1f}",
        _cell(r, "quadrature_nll", ".2f", "quadrature_nll_stderr"),
        _cell(r, "nll", ".2f", "iwae_stderr"),
        k,
        f"{-r['elbo']:.2f}" if "elbo" in r else "–",
        _cell(r, "reconstruction_nll", ".2f"),
        _cell(r, "reconstruction_mse", ".4f"),
        _cell(r, "knn_accuracy", ".4f"),
        _cell(r, "samples_confidence", ".3f"),
        _cell(r, "samples_label_entropy", ".3f"),
        _cell(r, "samples_frechet_distance", ".2f"),
    ]


def render(results: dict) -> str:
    """The Markdown page of the stored runs (``vae_results.json``)."""
    runs = results["runs"]
    lines = [
        "# hfgen AE / VAE benchmark (2-D latent, MNIST family)",
        "",
        written_by("bench_vae", results) + ", a machine shared with other jobs (times are upper bounds).",
        "Recipe: the `VAEArguments` defaults at the time of each run, Bernoulli decoder (the decoder mirrors the",
        "encoder's widths). Test metrics on the 10,000 test images except the IWAE bound (first `num_nll_images`",
        "test images, K importance samples); nats per image.",
        "",
        *sorted(f"- {name}: {_recipe(r['arguments'])}" for name, r in runs.items()),
        "",
        "5-minute load average at the end of training (above the core count: other jobs shared the CPU): "
        + ", ".join(f"{name} {r['load_average_5min']:.1f}" for name, r in runs.items() if "load_average_5min" in r),
        "",
    ]
    header = ["data", "model", "steps (epochs)", "train (s)", "s / epoch", "−log p, exact (quadrature)",
              "−log p, IWAE (± se)", "K × images", "−ELBO", "−log p(x ∣ ẑ)", "MSE", "k-NN acc. (k = 5)",
              "classifier conf.", "label entropy", "Fréchet (clf.)"]  # fmt: skip
    lines += table(header, (_run_row(name, r) for name, r in sorted(runs.items())))
    lines += ["", "Targets (MNIST): " + ", ".join(_target_lines(runs)), ""]
    lines += [
        "The exact −log p is the quadrature of ∫ p(x | z) N(z; 0, I) dz on a G × G latent grid over [−6, 6]² (the",
        "same test images as the IWAE bound, which must lie above it); grid convergence, the largest change of an",
        "image's value from G/2 to G: "
        + (
            ", ".join(
                f"{name} {r['quadrature_grid_change']:.2g} nats (G = {r['quadrature_grid_size']})"
                for name, r in sorted(runs.items())
                if "quadrature_grid_change" in r
            )
            or "no run with the quadrature stored yet"
        )
        + ".",
        "",
    ]
    lines += [
        'The AE has no prior: its "samples" decode `z ~ N(m, C)`, the Gaussian fitted to the test codes. Label',
        "entropy is that of the classifier's predicted labels of 1,000 samples (log 10 = 2.303 is uniform).",
        "Figures of each run (latent scatter, 10 × 10 grid, reconstructions, samples) are in",
        "`benchmarks/out/vae/<data>-<model>/`.",
    ]
    return markdown(lines)


def _target_lines(runs: dict) -> list[str]:
    found = []
    vae = runs.get("mnist-vae")
    if vae is not None and "nll" in vae:
        ok = vae["nll"] <= TARGETS["vae_nll_max"]
        found.append(f"VAE −log p {vae['nll']:.2f} ≤ {TARGETS['vae_nll_max']:.0f}: {verdict(ok)}")
    for model in ("ae", "ae_graph"):
        ae = runs.get(f"mnist-{model}")
        if ae is not None:
            ok = ae["knn_accuracy"] >= TARGETS["ae_knn_min"]
            found.append(
                f"{MODEL_LABELS[model]} k-NN {ae['knn_accuracy']:.4f} ≥ {TARGETS['ae_knn_min']}: {verdict(ok)}"
            )
    for name, r in sorted(runs.items()):
        minutes = r["train_seconds"] / 60
        ok = minutes <= TARGETS["train_minutes_max"]
        found.append(f"{name} trained {minutes:.1f} min ≤ 15: {verdict(ok)}")
    return found or ["no MNIST run stored yet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for checking that the script runs")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--data_root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--classifier_path", type=Path, default=None, help="a saved MnistClassifier (one dataset)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for VAE_RESULTS.md and vae_results.json (default: "
        "benchmarks/, or benchmarks/out/vae-quick with --quick)",
    )
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    work = HERE / "out" / ("vae-quick" if args.quick else "vae")
    args.output = args.output or (work if args.quick else HERE)
    store = args.output / "vae_runs"
    store.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        classifier = args.classifier_path or classifier_folder(dataset, args.data_root, work, args.quick)
        data = None
        for model in args.models:
            run = run_args(dataset, model, args.data_root, work, classifier, args.quick)
            if data is None:  # the same images for both models (they share the data arguments)
                data = {k: v[:2000] if args.quick else v for k, v in load_vae_data(run).items()}
            row = bench_run(run, data, args.quick)
            (store / f"{dataset}-{model}.json").write_text(json.dumps(row, indent=2), encoding="utf-8")
    results = {
        **machine(),
        "targets": TARGETS,
        "runs": {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(store.glob("*.json"))},
    }
    print(write_results(results, args.output, PAGE, render))


if __name__ == "__main__":
    main()
