"""Jinja templates of the model cards, one per model family, read by :mod:`hfgen.hub`, and what their renderers
share: the metrics table, and the card of a run on a toy distribution or on images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import (
    IMAGE_TASK,
    LIKELIHOOD_RESULTS,
    eval_results,
    image_dataset_type,
    markdown_table,
    off_hub_dataset_type,
    render_card,
    training_row,
    validation_table,
)


def metrics_table(metrics: Mapping[str, Any], rows: list[tuple[Any, ...]]) -> str:
    """A card's metrics table: ``rows`` ``(metric, value, note)`` and the training budget."""
    return markdown_table(("metric", "value", "note"), rows + training_row(metrics))


def toy_card(
    template: str,
    args: Any,
    metrics: Mapping[str, Any],
    repo_id: str | None,
    rows: list[tuple[Any, ...]],
    names: Mapping[str, tuple[str, ...]] = LIKELIHOOD_RESULTS,
    **values: Any,
) -> ModelCard:
    """The card ``template`` of a run on the toy distribution ``args.dataset``: the ``names`` of ``metrics`` (those
    reported, not ``None``) as its ``model-index``, the metrics table of ``rows`` and the validation history;
    ``values`` (``render_card``'s) may override these."""
    reported = {key: value for key, value in metrics.items() if value is not None}
    return render_card(
        template,
        args,
        metrics,
        repo_id,
        **{
            "results": eval_results(reported, names, args.dataset, off_hub_dataset_type("toy", args.dataset)),
            "card_data": {"target_distribution": args.dataset},
            "metrics_table": metrics_table(metrics, rows),
            "validation_table": validation_table(metrics.get("validation", [])),
            **values,
        },
    )


def image_card(
    template: str,
    args: Any,
    metrics: Mapping[str, Any],
    repo_id: str | None,
    kind: str,
    names: Mapping[str, tuple[str, ...]],
    task: str = IMAGE_TASK,
    **values: Any,
) -> ModelCard:
    """The card ``template`` of a ``kind`` of model trained on the images ``args.dataset_label``: the ``names`` of
    ``metrics`` on its test split as its ``model-index`` under the Hub ``task``, the data set and the image shape;
    ``values`` are ``render_card``'s."""
    dataset = args.dataset_label
    return render_card(
        template,
        args,
        metrics,
        repo_id,
        default_name=f"{kind}-{dataset.split('/')[-1]}",
        results=eval_results(metrics, names, dataset, image_dataset_type(args), "test", task_type=task),
        card_data={"pipeline_tag": task},
        dataset=dataset,
        image_shape=f"{args.num_channels} × {args.image_size} × {args.image_size}",
        **values,
    )
