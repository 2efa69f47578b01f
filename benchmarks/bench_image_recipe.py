"""The unconditional MNIST recipe inside the same training budget of 30 CPU minutes: image flow matching with uniform
training times (the recipe of ``benchmarks/bench_images.py``) against logit-normal times ``t = σ(z)``, ``z ~ N(0, 1)``
(Esser et al. 2024), at its steps and at twice as many, with a slower EMA, a larger learning rate, a wider network for
fewer steps, and half the batch for more steps.

    python benchmarks/bench_image_recipe.py --train_data_files mnist/train.parquet \
        --test_data_files mnist/test.parquet --jobs 2
    python benchmarks/bench_image_recipe.py --quick ...      # a smoke run with tiny budgets (numbers meaningless)

Each recipe trains through ``training/train_fm.py`` with the network, batch and learning rate of ``bench_images.py``
but what its flags change (:data:`RECIPES`: 4,500 steps, about 14 CPU minutes on this machine; twice as many, also
with another EMA decay or learning rate; the UNet 32-64-64, about 2.7 times the cost of a step, for a third of them;
batch 32, about 0.55 times the cost of a step, for 16,000), ``--jobs`` recipes at a time (one process and one CPU
thread each), timed in CPU seconds (user + sys of that child). Each saved pipeline but those of :data:`UNSCORED`
(compared by their runs' own final evaluation only) is then scored at
10,000 samples over 3 independent draws, in that process, with one sampler for all (Heun, 10 steps: 20 network
evaluations): k-NN precision and recall (Kynkäänniemi et al. 2019, k = 3), Fréchet distance and mean confidence in
the features of the scoring ``MnistClassifier`` (trained first by ``training/train_classifier.py`` unless
``--classifier_path`` names one), against the 10,000 test images, and their first 5,000 against a random half of the
test images beside the floor: the other half, real images the classifier never saw. Each stage stores its JSON under
``<out>/stages/`` (a rerun skips what is there); ``IMAGE_RECIPE_RESULTS.md`` and ``image_recipe_results.json`` are
written at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from bench_images import (
    QUALITY,
    TARGETS,
    _quality_cells,
    add_data_arguments,
    classifier_folder,
    load_data,
    load_pipeline,
    real_quality,
    reference_features,
    run_quality,
    stored_stage,
    train_run,
)
from report import Page, markdown, table, verdict, write_results

from hfgen.models.classifier import MnistClassifier

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("image_recipe", "image_recipe_results.json", "IMAGE_RECIPE_RESULTS.md")
HERE = Path(__file__).resolve().parent
#: each recipe: its label, the flags it adds to (or overrides in) the benchmark's flow-matching run, and its optimizer
#: steps (``None``: ``--max_train_steps``); each is inside the 30-CPU-minute budget on this machine
RECIPES = {
    "uniform": ("uniform times t ~ U[0, 1] (the benchmark recipe)", [], None),
    "logit_normal": ("logit-normal times t = σ(z), z ~ N(0, 1)", ["--time_law", "logit_normal"], None),
    "logit_normal_long": ("logit-normal times, twice the steps", ["--time_law", "logit_normal"], 9000),
    "logit_normal_long_ema": (
        "logit-normal times, twice the steps, EMA decay 0.999",
        ["--time_law", "logit_normal", "--ema_decay", "0.999"],
        9000,
    ),
    "logit_normal_wide": (
        "logit-normal times, UNet 32-64-64 (4× the parameters), a third of the steps",
        ["--time_law", "logit_normal", "--block_out_channels", "32", "64", "64"],
        3000,
    ),
    "logit_normal_small_batch": (
        "logit-normal times, batch 32 for 16,000 steps",
        ["--time_law", "logit_normal", "--train_batch_size", "32"],
        16000,
    ),
    "logit_normal_long_fast_lr": (
        "logit-normal times, twice the steps, learning rate 2e-3",
        ["--time_law", "logit_normal", "--learning_rate", "2e-3"],
        9000,
    ),
}
#: recipes trained but not scored at 10,000 samples, and why: they are compared by their runs' own final evaluation
UNSCORED = {
    "logit_normal_wide": "its network costs about 2.7 times as much to sample, about 75 CPU minutes for the 3 draws, "
    "and its run's own evaluation puts it behind the recipe of twice the steps",
}
#: the one sampler every recipe is scored with
SAMPLER = {"solver": "heun", "steps": 10}


def run_recipe(name: str, args: argparse.Namespace, out: Path, config: dict) -> None:
    """Train recipe ``name`` and score its pipeline (each a stage of ``<out>/stages``), in this process."""
    stages, classifier_path = out / "stages", classifier_folder(args, out)
    _, flags, steps = RECIPES[name]
    run = ("train_fm.py", flags)
    stored_stage(stages, f"train-{name}", lambda: train_run(name, args, out, classifier_path, run, steps))
    if name in UNSCORED:
        return
    classifier = MnistClassifier.from_pretrained(classifier_path, use_safetensors=True).eval()

    def score() -> dict:
        features = reference_features(load_data(args, out), classifier, config["num"])
        return run_quality(load_pipeline(out / name), classifier, features, SAMPLER, config)

    stored_stage(stages, f"quality-{name}", score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--output_dir", type=Path, default=HERE / "out" / "image_recipe", help="run folders")
    parser.add_argument("--max_train_steps", type=int, default=4500, help="optimizer steps of every recipe")
    parser.add_argument("--jobs", type=int, default=1, help="recipes trained and scored at once (one thread each)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="train and score this recipe only (no page)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = args.output_dir
    (out / "stages").mkdir(parents=True, exist_ok=True)
    config = {"num": 64, "draws": 3, "k": 3, "chunk": 32} if args.quick else QUALITY
    if args.recipe:
        run_recipe(args.recipe, args, out, config)
        return
    classifier_path = classifier_folder(args, out)  # once, before the recipes' processes look for it
    flags = [*sys.argv[1:], *([] if args.classifier_path else ["--classifier_path", str(classifier_path)])]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for result in [pool.submit(subprocess.run, [sys.executable, __file__, *flags, "--recipe", name], check=True)
                       for name in RECIPES]:  # fmt: skip
            result.result()
    classifier = MnistClassifier.from_pretrained(classifier_path, use_safetensors=True).eval()
    data = load_data(args, out)
    stages = out / "stages"
    real = stored_stage(stages, "real", lambda: real_quality(data, classifier, config["num"], config["draws"], 3))
    results = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}",
        "quick": args.quick,
        "quality": {**config, "sampler": SAMPLER},
        "real": real,
        "recipes": {
            name: {
                "label": RECIPES[name][0],
                "train": json.loads((stages / f"train-{name}.json").read_text()),
                "quality": None if name in UNSCORED else json.loads((stages / f"quality-{name}.json").read_text()),
                "unscored": UNSCORED.get(name),
            }
            for name in RECIPES
        },  # fmt: skip
    }
    report_folder = out if args.quick else HERE
    write_results(results, report_folder, PAGE, render)
    print(f"wrote {report_folder / PAGE.markdown_name}")


def flag_values(command: str, flag: str) -> list[str]:
    """The values that follow the last ``flag`` in a shown ``command`` (the one the script used)."""
    words = command.split()
    start = len(words) - words[::-1].index(flag)
    return list(itertools.takewhile(lambda word: not word.startswith("--"), words[start:]))


def render(results: dict) -> str:
    quality, real, recipes = results["quality"], results["real"], results["recipes"]
    num, half, draws = quality["num"], quality["num"] // 2, quality["draws"]
    sampler = f"{quality['sampler']['solver']} {quality['sampler']['steps']}"
    header = ["recipe", "Fréchet", "precision", "recall", "confidence"]
    train_rows = [
        [recipe["label"], "-".join(flag_values(recipe["train"]["command"], "--block_out_channels")),
         recipe["train"]["metrics"]["samples_seen"] // recipe["train"]["metrics"]["train_steps"],
         f"{recipe['train']['metrics']['train_steps']:,}",
         f"{recipe['train']['cpu_seconds'] / 60:.1f}", f"{recipe['train']['metrics']['train_cpu_seconds']:.0f}",
         f"{recipe['train']['metrics']['samples_confidence']:.3f}", f"`{recipe['train']['command']}`"]
        for recipe in recipes.values()
    ]  # fmt: skip
    own = next(iter(recipes.values()))["train"]["metrics"]
    scored = [recipe for recipe in recipes.values() if recipe.get("quality")]
    unscored = [f"- {recipe['label']}: {recipe['unscored']}." for recipe in recipes.values() if recipe.get("unscored")]
    full_rows = [[recipe["label"], *_quality_cells(recipe["quality"]["full"])] for recipe in scored]
    half_rows = [[recipe["label"], *_quality_cells(recipe["quality"]["half"])] for recipe in scored]
    half_rows.append([f"real test half B ({half:,}, unseen): the floor", *_quality_cells(real["floor_half"])])
    floor = real["floor_half"]
    targets = []
    for recipe in scored:
        scores = recipe["quality"]["half"]
        confidence = recipe["quality"]["full"]["confidence"]["mean"]
        gaps = {key: floor[key]["mean"] - scores[key]["mean"] for key in ("precision", "recall")}
        near = all(gap <= TARGETS["precision_recall_gap_max"] for gap in gaps.values())
        minutes = recipe["train"]["cpu_seconds"] / 60
        targets.append(
            f"- {recipe['label']}: {minutes:.1f} CPU minutes ≤ {TARGETS['cpu_minutes_max']}: "
            f"{verdict(minutes <= TARGETS['cpu_minutes_max'])}; confidence {confidence:.3f} ≥ "
            f"{TARGETS['confidence_min']}: "
            f"{verdict(confidence >= TARGETS['confidence_min'])}; precision and recall within "
            f"{TARGETS['precision_recall_gap_max']} of the floor's (gaps {gaps['precision']:.3f}, "
            f"{gaps['recall']:.3f}): {verdict(near)}."
        )
    lines = [
        "# The unconditional image recipe inside 30 CPU minutes",
        "",
        f"Written by `benchmarks/bench_image_recipe.py` on {results['machine']}; CPU only. Image flow matching on "
        "MNIST with the network, batch and learning rate of `benchmarks/bench_images.py`; the recipes differ in "
        "the law of the training times, the number of steps, the EMA decay, the learning rate, the network's width and "
        "the batch, each inside the benchmark's budget of 30 CPU minutes for the whole training script. Logit-normal "
        "times (Esser et al. 2024, *Scaling Rectified Flow Transformers*, §3.1) put the training weight on the middle "
        "of the path.",
        "",
        "## Training",
        "",
        *table(
            [
                "recipe",
                "UNet channels",
                "batch",
                "steps",
                "CPU min (whole script)",
                "optimisation CPU s",
                "confidence at the run's own evaluation",
                "command",
            ],
            train_rows,
        ),  # fmt: skip
        "",
        f"The run's own evaluation: the training script's final one, {own['evaluation_samples']:,} samples with the "
        f"run's default sampler (Euler, 20 steps), where real test images score {own['real_confidence']:.3f}.",
        *(["", f"Trained, not scored at {num:,} samples:", "", *unscored] if unscored else []),
        "",
        f"## Sample quality at {num:,} samples",
        "",
        f"Mean ± standard error over {draws} independent draws, every recipe sampled with {sampler} (Heun's method: "
        "two network evaluations a step), in the features of the scoring `MnistClassifier`: k-NN precision and "
        "recall (Kynkäänniemi et al. 2019, k = 3), the Fréchet distance and the mean confidence `max_c p(c | x)`. "
        f"Against the first {num:,} test images:",
        "",
        *table(header, full_rows),
        "",
        f"The first {half:,} images of each draw against a random half A of the test images, beside the floor: the "
        "other half B, real images the classifier never saw, at the same size:",
        "",
        *table(header, half_rows),
        "",
        "## Targets",
        "",
        *targets,
    ]
    return markdown(lines, results["quick"])


if __name__ == "__main__":
    main()
