"""The card of a score-SDE run on toy data (``score_sde.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import nll_rows, sample_quality_rows
from hfgen.model_cards import toy_card


def metrics_rows(metrics: Mapping[str, Any], args: Any) -> list[tuple[Any, ...]]:
    """The metrics table's rows from a score-SDE run's ``metrics.json`` (missing entries are skipped)."""
    rows = sample_quality_rows(
        metrics, f"{args.num_eval_samples:,} samples ({args.sampler}, {args.num_inference_steps} steps)"
    )
    return rows + nll_rows(metrics, "probability-flow ODE")


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
    return toy_card(
        "score_sde",
        args,
        metrics,
        repo_id,
        metrics_rows(metrics, args),
        default_name=f"score-{args.sde}-{args.dataset}",
        tags=["hfgen", "score-sde", "score-matching", "diffusion", "diffusers", "toy-2d"],
        sde_description=sde_description(args),
    )
