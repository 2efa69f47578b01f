r"""What the image families share: the data-set arguments, the train/test tensors, and an exactly resumable stream
of micro-batches over per-epoch permutations of the training images.

Micro-batch ``k`` of process ``s`` (of ``P``) is a pure function of ``(seed, s, k)``: epoch ``e = k // B_e`` uses
the permutation of the training images drawn from ``batch_generator(seed, −1, e)``, process ``s`` takes its shard
``perm[s::P]`` and batch ``k mod B_e`` of it, and the batch's own randomness comes from
``batch_generator(seed, s, k)``. A resumed run therefore sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from hfgen.training.task import TrainingTask
from hfgen.utils import batch_generator, batches_per_epoch

#: the stream index of the per-epoch permutations (process streams are 0, 1, …)
PERMUTATION_STREAM = -1


def check_image_shapes(task: Any, names: tuple[str, ...] = ("train_images", "test_images")) -> None:
    """Refuse image tensors of ``task`` whose ``(C, H, W)`` is not its arguments' ``image_shape``."""
    shape = task.args.image_shape
    for name in names:
        if tuple(getattr(task, name).shape[1:]) != shape:
            raise ValueError(f"{name} have shape {tuple(getattr(task, name).shape)}, expected (N, {shape})")


def check_images(images: object, name: str, shape: tuple[int, ...] | None = None) -> Tensor:
    """``images`` if they are a finite float ``(N, C, H, W)`` tensor, ``N >= 1`` (``(C, H, W) = shape`` when given),
    with values in ``[0, 1]``."""
    expected = f"(N, {', '.join(map(str, shape))})" if shape else "(N, C, H, W)"
    if not isinstance(images, Tensor) or not torch.is_floating_point(images):
        kind = getattr(images, "dtype", type(images).__name__)
        raise TypeError(f"`{name}` must be a float tensor {expected} in [0, 1], got {kind}")
    if images.ndim != 4 or images.shape[0] < 1 or (shape is not None and tuple(images.shape[1:]) != tuple(shape)):
        raise ValueError(f"`{name}` must have shape {expected}, got {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()) or images.min() < 0 or images.max() > 1:
        raise ValueError(
            f"`{name}` must lie in [0, 1], got range [{float(images.min())}, {float(images.max())}]: the pixels are "
            "a binary model's probabilities (finite; scale them by 1/255)"
        )
    return images


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
