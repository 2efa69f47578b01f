"""The card of a flow-matching run on toy data (``flow_matching.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import config_table, nll_rows, sample_quality_rows, validation_table
from hfgen.model_cards import toy_card

#: how each ``coupling`` pairs the training points (``regularisation``: Sinkhorn's 2σ²)
COUPLING_DESCRIPTIONS = {
    "independent": "independent pairs x_0 ~ source, x_1 ~ target",
    "ot": "pairs coupled by exact minibatch optimal transport",
    "sinkhorn": "pairs drawn from the entropic minibatch OT plan (Sinkhorn), regularisation 2σ² = {regularisation:g}",
}


def metrics_rows(metrics: Mapping[str, Any], args: Any) -> list[tuple[Any, ...]]:
    """The metrics table's rows from a run's ``metrics.json`` (missing entries are skipped); the W2, MMD and support
    figures come from the final evaluation's samples (``evaluation_samples``), drawn with the run's solver."""
    num_samples = metrics.get("evaluation_samples", args.num_eval_samples)
    rows = sample_quality_rows(metrics, f"{num_samples:,} samples ({args.solver}, {args.num_inference_steps} steps)")
    return rows + nll_rows(metrics, "held-out target points")


def settings_in_use(args: Any) -> dict[str, Any]:
    """The run's arguments without those its path and coupling do not use (``sigma`` outside the Brownian bridge
    and Sinkhorn, ``sigma_min`` outside the linear path)."""
    unused = set()
    if args.path != "brownian" and args.coupling != "sinkhorn":
        unused.add("sigma")
    if args.path != "linear":
        unused.add("sigma_min")
    return {key: value for key, value in args.to_dict().items() if key not in unused}


def flow_matching_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``FlowMatchingArguments`` ``args``: metadata, the path, loss and sampler, usage,
    metrics and configuration; ``repo_id`` is the Hub id the usage line loads (the output folder when ``None``)."""
    return toy_card(
        "flow_matching",
        args,
        metrics,
        repo_id,
        metrics_rows(metrics, args),
        default_name=f"fm-{args.source}-to-{args.dataset}",
        tags=["hfgen", "flow-matching", "diffusers", "toy-2d", *(["ot-cfm"] if args.coupling == "ot" else [])],
        card_data={"source_distribution": args.source, "target_distribution": args.dataset},
        path_description=args.probability_path().describe(),
        coupling_description=COUPLING_DESCRIPTIONS[args.coupling].format(regularisation=2 * args.sigma**2),
        validation_table=validation_table(metrics.get("validation", []), final=metrics),
        config_table=config_table(settings_in_use(args)),
    )
