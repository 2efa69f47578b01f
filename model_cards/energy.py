"""The card of an energy-based model trained on 2-D toy data (``energy.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import nll_rows, sample_quality_rows
from hfgen.model_cards import toy_card

SAMPLER_NAMES = {"langevin": "unadjusted Langevin (ULA)", "mala": "MALA (Langevin proposal + Metropolis test)"}


def metrics_rows(metrics: Mapping[str, Any], args: Any) -> list[tuple[Any, ...]]:
    """The metrics table's rows from a run's ``metrics.json`` (missing entries are skipped)."""
    rows = sample_quality_rows(metrics, f"{args.num_eval_samples:,} {args.sample_sampler} samples")
    grid = f"log Z on {args.grid_size}² cells of [−{args.grid_bound:g}, {args.grid_bound:g}]²"
    return rows + nll_rows(metrics, f"held-out points; {grid}", "KL(data ‖ model)")


def energy_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``EnergyArguments`` ``args``: metadata, the equations, usage, metrics, figures and
    configuration; ``repo_id`` is the Hub id the usage line loads (the output folder when ``None``)."""
    return toy_card(
        "energy",
        args,
        metrics,
        repo_id,
        metrics_rows(metrics, args),
        default_name=f"ebm-{args.dataset}",
        tags=["hfgen", "diffusers", "energy-based-model", "langevin", "toy-2d"],
        training_sampler=SAMPLER_NAMES[args.training_sampler],
        sample_sampler=SAMPLER_NAMES[args.sample_sampler],
    )
