"""The card of a score-SDE run on toy data (``score_sde.md``)."""

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


def metrics_table(metrics: Mapping[str, Any], args: Any) -> str:
    """The metrics table from a score-SDE run's ``metrics.json`` (missing entries are skipped)."""
    rows = sample_quality_rows(
        metrics, f"{args.num_eval_samples:,} samples ({args.sampler}, {args.num_inference_steps} steps)"
    )
    rows += nll_rows(metrics, "probability-flow ODE")
    return markdown_table(("metric", "value", "note"), rows + training_row(metrics))


def sde_description(args: Any) -> str:
    """The forward SDE in words and formulas, with the run's constants."""
    if args.sde == "vp":
        return (
            f"variance preserving, `dx = −½ β(t) x dt + √β(t) dW`, `β(t) = {args.beta_min} + t ({args.beta_max} − "
            f"{args.beta_min})`; `x_t = e^(−B(t)/2) x_0 + √(1 − e^(−B(t))) z`, prior `N(0, I)`"
        )
    return (
        f"variance exploding, `dx = √(dσ²/dt) dW`, `σ(t) = {args.sigma_min} ({args.sigma_max}/{args.sigma_min})^t`; "
        f"`x_t = x_0 + √(σ(t)² − σ_min²) z`, prior `N(0, {args.sigma_max}² I)`"
    )


def score_sde_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``ScoreSDEArguments`` ``args``: metadata, the SDE, loss, sampler and likelihood,
    usage, metrics, validation history and configuration; ``repo_id`` is the Hub id the usage line loads."""
    present = {key: value for key, value in metrics.items() if value is not None}
    return render_card(
        "score_sde",
        args,
        metrics,
        repo_id,
        default_name=f"score-{args.sde}-{args.dataset}",
        tags=["hfgen", "score-sde", "score-matching", "diffusion", "diffusers", "toy-2d"],
        results=eval_results(present, LIKELIHOOD_RESULTS, args.dataset, f"hfgen/{args.dataset}"),
        card_data={"target_distribution": args.dataset},
        sde_description=sde_description(args),
        metrics_table=metrics_table(metrics, args),
        validation_table=validation_table(metrics.get("validation", [])),
    )
