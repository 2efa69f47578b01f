"""How the built-in checkerboard recipe was found: each ingredient switched on in turn.

    python benchmarks/recipe_ablation.py          # writes benchmarks/RECIPE.md and benchmarks/recipe.json

Every variant is ``FlowMatchingArguments()`` (MLP 4×256, batch 512, Adam 2e-3 with warm-up and cosine decay,
EMA 0.999, independent coupling, linear path) with the overrides listed, trained on one thread and scored on
held-out checkerboard points: NLL − entropy (2,000 points, dopri5), the fraction of 10,000 Euler-100 samples
inside the support, and W2 at 10,000 samples against its floor.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from report import Page, markdown, plus_minus, table, write_results

from hfgen.training import FlowMatchingArguments, evaluate_flow_matching, train_flow_matching

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("recipe", "recipe.json", "RECIPE.md")

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "plain MLP, uniform t, 6k steps": {"num_position_frequencies": 0, "time_beta": 1.0, "max_train_steps": 6000},
    "+ t ~ Beta(1, 1/2), 6k steps": {"num_position_frequencies": 0, "time_beta": 0.5, "max_train_steps": 6000},
    "+ octave position encoding (L = 6), 6k steps": {"time_beta": 1.0, "max_train_steps": 6000},
    "both, 6k steps": {"max_train_steps": 6000},
    "both, 15k steps": {"max_train_steps": 15_000},
    "both, 12k steps (the default)": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, for checking that the script runs")
    parser.add_argument("--output", type=Path, default=HERE)
    options = parser.parse_args()
    torch.set_num_threads(1)
    rows = {}
    base = FlowMatchingArguments(
        output_dir=str(HERE / "out" / "recipe"),
        validation_steps=0,
        checkpointing_steps=0,
        report_to="none",
        overwrite_output_dir=True,
    )
    for name, overrides in VARIANTS.items():
        args = replace(base, **overrides)
        if options.quick:
            args = replace(args, max_train_steps=20, hidden_size=16, num_nll_samples=50, num_eval_samples=200)
        pipeline, info = train_flow_matching(args)
        metrics = evaluate_flow_matching(pipeline, args)
        rows[name] = {"overrides": overrides, **info, **metrics}
        print(name, json.dumps(rows[name]), flush=True)
    print(write_results(rows, options.output, PAGE, render))


def render(rows: dict) -> str:
    """The Markdown page of the stored variants (``recipe.json``)."""
    lines = [
        "# How the checkerboard recipe was found",
        "",
        "Written by `python benchmarks/recipe_ablation.py` (one thread). Targets: NLL within 0.10 nats of the",
        "entropy log 8, at least 97% of samples in the support, W2 at 10,000 samples at most 1.5× its floor.",
        "",
    ]
    header = ["variant", "train (s)", "NLL − H (± se)", "in support", "W2 10k", "floor 10k", "ratio"]
    cells = [
        [name, f"{r['train_seconds']:.0f}", plus_minus(r["nll_minus_entropy"], r["nll_stderr"], ".3f"),
         f"{r['samples_fraction_in_support']:.3f}", f"{r['samples_w2']:.4f}", f"{r['samples_w2_floor']:.4f}",
         f"{r['samples_w2_ratio']:.2f}"]
        for name, r in rows.items()
    ]  # fmt: skip
    return markdown(lines + table(header, cells))


if __name__ == "__main__":
    main()
