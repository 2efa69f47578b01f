r"""What the image families share: the data-set arguments, the train/test tensors, and an exactly resumable stream
of micro-batches over per-epoch permutations of the training images.

Micro-batch ``k`` of process ``s`` (of ``P``) is a pure function of ``(seed, s, k)``: epoch ``e = k // B_e`` uses
the permutation of the training images drawn from ``batch_generator(seed, −1, e)``, process ``s`` takes its shard
``perm[s::P]`` and batch ``k mod B_e`` of it, and the batch's own randomness comes from
``batch_generator(seed, s, k)``. A resumed run therefore sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hfgen.data.images import dataset_to_tensors, load_image_splits
from hfgen.training.arguments import TrainingArguments, _read_config_file, _take_config_flag, documented
from hfgen.training.task import TrainingTask
from hfgen.utils import batch_generator, batches_per_epoch

#: the flags that make ``train_fm.py`` / ``train_ddpm.py`` train on images
IMAGE_DATA_FLAGS = ("--dataset_name", "--train_data_files")
#: the stream index of the per-epoch permutations (process streams are 0, 1, …)
PERMUTATION_STREAM = -1


def is_image_run(argv: Sequence[str]) -> bool:
    """Whether a training script's command line asks for images: ``--dataset_name``/``--train_data_files`` among the
    flags, or in the ``--config`` file."""
    if any(item.split("=", 1)[0] in IMAGE_DATA_FLAGS for item in argv):
        return True
    try:
        path, _ = _take_config_flag(list(argv))
    except ValueError:
        return False
    if path is None and len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")):
        path = argv[0]
    if path is None or not os.path.isfile(path):
        return False
    values = _read_config_file(path)
    return any(values.get(flag.removeprefix("--")) is not None for flag in IMAGE_DATA_FLAGS)


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

    def load_images(self, binarize: str | None = None) -> dict[str, Tensor | None]:
        """Train and test ``images`` ``(N, C, H, W)`` in ``[0, 1]`` and their ``labels`` (None without a
        ``label_column``), through :func:`hfgen.data.images.load_image_splits` (``binarize="fixed"``: one draw per
        image)."""
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


def check_image_shapes(task: Any, names: tuple[str, ...] = ("train_images", "test_images")) -> None:
    """Refuse image tensors of ``task`` whose ``(C, H, W)`` is not its arguments' ``image_shape``."""
    shape = task.args.image_shape
    for name in names:
        if tuple(getattr(task, name).shape[1:]) != shape:
            raise ValueError(f"{name} have shape {tuple(getattr(task, name).shape)}, expected (N, {shape})")


def load_classifier(path: str | None) -> Any:
    """The saved :class:`~hfgen.models.classifier.MnistClassifier` in ``path`` (safetensors), or None."""
    if path is None:
        return None
    from hfgen.models.classifier import MnistClassifier

    return MnistClassifier.from_pretrained(path, use_safetensors=True).eval()


class ImageStreamTask(TrainingTask):
    """A task whose micro-batches are drawn from ``train_images`` in per-epoch permutations (module docstring)."""

    train_images: Tensor
    _order: tuple[int, Tensor] | None = None

    def check_processes(self, num_processes: int) -> None:
        batches_per_epoch(self.train_images.shape[0], num_processes, self.args.train_batch_size)

    def permutation(self, epoch: int) -> Tensor:
        """The order of the training images in ``epoch`` (cached for the current epoch)."""
        if self._order is None or self._order[0] != epoch:
            generator = batch_generator(self.args.seed, PERMUTATION_STREAM, epoch)
            self._order = (epoch, torch.randperm(self.train_images.shape[0], generator=generator))
        return self._order[1]

    def rows(self, index: int, stream: int, num_streams: int) -> Tensor:
        """The training-image rows of micro-batch ``index`` of process ``stream`` of ``num_streams``."""
        size = self.args.train_batch_size
        per_epoch = batches_per_epoch(self.train_images.shape[0], num_streams, size)
        epoch, position = divmod(index, per_epoch)
        return self.permutation(epoch)[stream::num_streams][position * size : (position + 1) * size]

    @abstractmethod
    def batch(self, index: int, stream: int, num_streams: int) -> tuple[Any, ...]:
        """Micro-batch ``index`` of process ``stream`` of ``num_streams``: the family's training inputs."""

    def start_stream(self, stream: int) -> None:
        """Set up process ``stream``'s state before its first batch (nothing by default)."""

    @contextmanager
    def batches(self, start: int, stream: int, phase: int = 0) -> Iterator[Iterator[tuple[Any, ...]]]:
        from accelerate import PartialState

        num_streams = PartialState().num_processes
        self.start_stream(stream)

        def stream_of_batches() -> Iterator[tuple[Any, ...]]:
            index = start
            while True:
                yield self.batch(index, stream, num_streams)
                index += 1

        yield stream_of_batches()
