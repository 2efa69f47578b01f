"""The card of an energy-based model trained on 2-D toy data (``energy.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import (
    LIKELIHOOD_RESULTS,
    eval_results,
    markdown_table,
    nll_rows,
    render_card,
    sample_quality_rows,
    training_row,
    validation_table,
)

SAMPLER_NAMES = {"langevin": "unadjusted Langevin (ULA)", "mala": "MALA (Langevin proposal + Metropolis test)"}


def metrics_table(metrics: Mapping[str, Any], args: Any) -> str:
    """The metrics table from a run's ``metrics.json`` (missing entries are skipped)."""
    rows = sample_quality_rows(metrics, f"{args.num_eval_samples:,} {args.sample_sampler} samples")
    grid = f"log Z on {args.grid_size}² cells of [−{args.grid_bound:g}, {args.grid_bound:g}]²"
    rows += nll_rows(metrics, f"held-out points; {grid}", "KL(data ‖ model)")
    return markdown_table(("metric", "value", "note"), rows + training_row(metrics))


def energy_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``EnergyArguments`` ``args``: metadata, the equations, usage, metrics, figures and
    configuration; ``repo_id`` is the Hub id the usage line loads (the output folder when ``None``)."""
    return render_card(
        "energy",
        args,
        metrics,
        repo_id,
        default_name=f"ebm-{args.dataset}",
        tags=["hfgen", "diffusers", "energy-based-model", "langevin", "toy-2d"],
        results=eval_results(metrics, LIKELIHOOD_RESULTS, args.dataset, f"hfgen/{args.dataset}"),
        card_data={"target_distribution": args.dataset},
        training_sampler=SAMPLER_NAMES[args.training_sampler],
        sample_sampler=SAMPLER_NAMES[args.sample_sampler],
        metrics_table=metrics_table(metrics, args),
        validation_table=validation_table(metrics.get("validation", [])),
    )
