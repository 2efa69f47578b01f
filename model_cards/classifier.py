"""The card of the MNIST-family classifier that scores generated digits (``classifier.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import markdown_table, public_value, render_card


def classifier_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``ClassifierArguments`` ``args``: what the classifier is for, its test and training
    accuracy, usage and configuration."""
    rows = [
        ("test accuracy", f"{metrics['test_accuracy']:.4f}", f"{metrics['num_test_images']:,} test images"),
        ("training accuracy", f"{metrics['train_accuracy']:.4f}", f"{metrics['num_train_images']:,} training images"),
    ]
    return render_card(
        "classifier",
        args,
        metrics,
        repo_id,
        default_name="mnist-classifier",
        tags=["hfgen", "image-classification", "mnist"],
        card_data={"library_name": "transformers", "pipeline_tag": "image-classification"},
        dataset=args.dataset_name or public_value("train_data_files", args.train_data_files),
        metrics_table=markdown_table(("metric", "value", "note"), rows),
    )
