"""The image data set of a run (a Hub id or local parquet files), without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfgen.arguments.common import TrainingArguments
from hfgen.cli.parser import documented


@dataclass
class ImageDataArguments(TrainingArguments):
    """The image data set of a run: a Hub id (``dataset_name``) or local parquet files, its columns and the
    images' size. A family that reads labels declares the ``label_column`` field."""

    label_column = None  # not a field: no labels unless a subclass declares one
    positive_fields = (*TrainingArguments.positive_fields, "image_size", "num_channels")

    dataset_name: str | None = documented(None, "Hub dataset id, e.g. ylecun/mnist (or use --train_data_files)")
    train_data_files: str | None = documented(None, "local training parquet file (instead of --dataset_name)")
    test_data_files: str | None = documented(None, "local test parquet file (default: a tenth of the train held out)")
    image_column: str = "image"
    image_size: int = 28
    num_channels: int = 1

    @property
    def dataset_label(self) -> str:
        """The data set's name: the Hub id, or the folder of the local training file."""
        return self.dataset_name or Path(self.train_data_files).resolve().parent.name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return (self.num_channels, self.image_size, self.image_size)

    def load_images(self, binarize: str | None = None) -> dict[str, Any]:
        """Train and test ``images`` ``(N, C, H, W)`` in ``[0, 1]`` and their ``labels`` (None without a
        ``label_column``), through :func:`hfgen.data.images.load_image_splits` (``binarize="fixed"``: one draw per
        image)."""
        from hfgen.data.images import dataset_to_tensors, load_image_splits  # torch and datasets, to load the data

        options = {
            "image_column": self.image_column,
            "label_column": self.label_column,
            "binarize": binarize,
            "seed": self.seed,
            "image_size": self.image_size,
            "num_channels": self.num_channels,
        }
        splits = load_image_splits(self.dataset_name, self.train_data_files, self.test_data_files, **options)
        train_images, train_labels = dataset_to_tensors(splits["train"])
        test_images, test_labels = dataset_to_tensors(splits["test"])
        return {"train_images": train_images, "train_labels": train_labels, "test_images": test_images,
                "test_labels": test_labels}  # fmt: skip
