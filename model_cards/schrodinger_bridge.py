"""The card of a Schrödinger-bridge run (``schrodinger_bridge.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from hfgen.hub import TASK, markdown_table, render_card
from hfgen.schedulers.schrodinger_bridge import DIRECTIONS

#: the W2 figures of each end of the bridge: metric key suffix → (model-index type, name)
W2_METRICS = {
    "w2": ("wasserstein-2", "W2"),
    "w2_floor": ("wasserstein-2-floor", "W2 floor"),
    "w2_ratio": ("wasserstein-2-over-floor", "W2 / floor"),
}


def _number(record: Mapping[str, Any], key: str) -> str:
    return f"{record[key]:.4f}" if key in record else ""


def history_table(history: list[Mapping[str, Any]], steps_per_iteration: int) -> str:
    """Per IPF iteration: W2 of each end to its marginal beside the floor, and the final mean-matching losses."""
    rows = [
        (
            record["step"] // steps_per_iteration,
            *(_number(record, f"{d}_{k}") for d in DIRECTIONS for k in W2_METRICS),
            _number(record, "forward_loss"),
            _number(record, "backward_loss"),
        )
        for record in history
    ]
    header = ("iteration", "→ p'_data W2", "floor", "ratio", "→ p_data W2", "floor", "ratio", "loss f", "loss b")
    return markdown_table(header, rows)


def final_table(metrics: Mapping[str, Any]) -> str:
    """The final W2 of each end beside its floor."""
    rows = [
        (f"x_0 ~ p_data → {direction}" if direction == "forward" else f"y ~ p'_data → {direction}",
         *(f"{metrics[f'{direction}_{k}']:.4f}" for k in W2_METRICS))
        for direction in DIRECTIONS
        if f"{direction}_w2" in metrics
    ]  # fmt: skip
    return markdown_table(("transport", "W2", "floor", "W2 / floor"), rows)


def results(args: Any, metrics: Mapping[str, Any]) -> list[EvalResult]:
    """The W2 figures of both ends for the card's ``model-index``."""
    source, target = args.marginals()
    return [
        EvalResult(
            task_type=TASK,
            dataset_type=f"hfgen/{marginal.name}",
            dataset_name=name,
            metric_type=f"{direction}-{metric_type}",
            metric_name=f"{direction} {metric_name}",
            metric_value=round(float(metrics[f"{direction}_{key}"]), 6),
        )
        for direction, marginal, name in (
            ("forward", target, args.describe_target()),
            ("backward", source, args.dataset),
        )
        for key, (metric_type, metric_name) in W2_METRICS.items()
        if f"{direction}_{key}" in metrics
    ]


def schrodinger_bridge_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``SchrodingerBridgeArguments`` ``args``: metadata (W2 of both ends), the chain, the
    mean-matching loss and IPF, usage, metrics per iteration, plots and configuration."""
    source, target = args.marginals()
    scheduler = args.noise_scheduler()
    gammas = scheduler.gammas
    return render_card(
        "schrodinger_bridge",
        args,
        metrics,
        repo_id,
        default_name=f"bridge-{args.dataset}",
        tags=["hfgen", "schrodinger-bridge", "diffusion", "diffusers", "toy-2d"],
        results=results(args, metrics),
        card_data={"source_distribution": args.dataset, "target_distribution": args.describe_target()},
        source=f"{args.dataset}: {source!r}",
        target=f"{args.describe_target()}: {target!r}",
        gamma=f"{float(gammas.mean()):.4g}",
        gamma_range=f"{float(gammas.min()):.4g} … {float(gammas.max()):.4g}",
        reference_variance=f"{scheduler.reference_variance:.4g}",
        network="x + g_θ(x, k) (ResidualMean)" if args.residual else "a TimeMLP m_θ(x, k)",
        final_table=final_table(metrics),
        history_table=history_table(metrics.get("validation", []), 2 * args.half_iteration_steps),
        train_seconds=f"{metrics.get('train_seconds', 0.0):.0f}",
        half_iterations=metrics.get("half_iterations", len(args.half_iterations())),
    )
