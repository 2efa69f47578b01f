"""The card of an explicit-likelihood model: a Gaussian mixture, KDE, MADE, coupling flow or CNF (``density.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.data.images import TEST_BINARIZATION_SEED
from hfgen.hub import (
    IMAGE_TASK,
    LIKELIHOOD_RESULTS,
    TASK,
    eval_results,
    image_dataset_type,
    nll_rows,
    off_hub_dataset_type,
    render_card,
    sample_quality_rows,
    validation_table,
)
from hfgen.methods.cnf import FIXED_STEP_SOLVERS
from hfgen.model_cards import metrics_table

MODEL_NAMES = {
    "gmm": "Gaussian mixture (EM)",
    "kde": "Gaussian kernel density estimate",
    "made": "MADE",
    "cnf": "continuous normalising flow (FFJORD, maximum likelihood)",
}
COUPLING_NAMES = {"affine": "RealNVP coupling flow", "spline": "neural spline flow (rational-quadratic couplings)"}


def metrics_rows(metrics: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The metrics table's rows from a run's ``metrics.json`` (missing entries are skipped)."""
    rows = sample_quality_rows(metrics, "model samples")
    what = "held-out points" if "entropy" in metrics else "test images"
    rows += nll_rows(metrics, f"{metrics.get('num_nll_samples', '')} {what}")
    if "bandwidth" in metrics:
        rows.append(("bandwidth h", f"{metrics['bandwidth']:.4f}", "kernel standard deviation"))
    if "em_log_likelihood" in metrics:
        history = metrics["em_log_likelihood"]
        note = "never decreased" if metrics.get("em_monotone") else "DECREASED at some step"
        rows.append(("EM train log-likelihood", f"{history[0]:.4f} → {history[-1]:.4f}", note))
    return rows


def model_title(args: Any) -> str:
    """The model's name in the card's first sentence."""
    return COUPLING_NAMES[args.coupling_type] if args.model == "coupling" else MODEL_NAMES[args.model]


def dataset_type(args: Any) -> str:
    """The ``model-index`` ``dataset.type``: the images' Hub id or local folder, or the toy distribution."""
    return image_dataset_type(args) if args.uses_images else off_hub_dataset_type("toy", args.dataset_label)


def density_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with density-model arguments ``args``: metadata, the model's equations, usage, metrics,
    figures, training summary and configuration; ``repo_id`` is the Hub id the usage line loads."""
    label = args.dataset_label
    task = IMAGE_TASK if args.uses_images else TASK
    return render_card(
        "density",
        args,
        metrics,
        repo_id,
        default_name=f"{args.model}-{label.split('/')[-1]}",
        tags=["hfgen", "diffusers", "density-estimation", args.model, "image" if args.uses_images else "toy-2d"],
        results=eval_results(metrics, LIKELIHOOD_RESULTS, label, dataset_type(args), task_type=task),
        card_data={"pipeline_tag": IMAGE_TASK} if args.uses_images else None,
        model_title=model_title(args),
        dataset=label,
        images=args.uses_images,
        test_binarization_seed=TEST_BINARIZATION_SEED,
        hidden_sizes=" → ".join(str(h) for h in getattr(args, "hidden_sizes", [])),
        fixed_step=getattr(args, "solver", None) in FIXED_STEP_SOLVERS,
        ema_decay=args.ema_decay if args.model in ("made", "coupling", "cnf") else 0,
        metrics_table=metrics_table(metrics, metrics_rows(metrics)),
        validation_table=validation_table(metrics.get("validation", [])),
    )
