"""The MNIST-family classifier (:class:`~hfgen.models.classifier.MnistClassifier`) as a
:class:`~hfgen.training.task.TrainingTask`.

Minimises the cross-entropy ``−(1/B) Σ_i log softmax(f(x_i))_{y_i}`` with Adam (AdamW without weight decay) on
shuffled mini-batches for ``num_epochs`` passes, reports the test and training accuracy and saves the model with
``save_pretrained`` (``config.json`` + ``model.safetensors``, loadable with transformers' Auto classes), a card and
``metrics.json`` in ``output_dir``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from hfgen.arguments.classifier import ClassifierArguments
from hfgen.data.images import dataset_to_tensors, load_image_splits
from hfgen.model_cards.classifier import classifier_card
from hfgen.models.classifier import MnistClassifier, MnistClassifierConfig
from hfgen.training.task import Phase, TrainingTask
from hfgen.training.trainer import Trainer, run

__all__ = ["ClassifierTask", "train_classifier"]


def _load_splits(args: ClassifierArguments) -> Any:
    columns = {"image_column": args.image_column, "label_column": args.label_column}
    return load_image_splits(args.dataset_name, args.train_data_files, args.test_data_files, seed=args.seed, **columns)


@torch.no_grad()
def classifier_accuracy(model: MnistClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000):
    """Accuracy ``(1/N) Σ_i 1[argmax f(x_i) = y_i]`` of the model on ``images`` ``(N, C, H, W)``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = sum(
        int((model(pixel_values=x.to(device)).logits.argmax(-1).cpu() == y).sum())
        for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True)
    )
    model.train(was_training)
    return correct / labels.shape[0]


class ClassifierTask(TrainingTask):
    """Cross-entropy training of :class:`MnistClassifier` on shuffled mini-batches.

    The batch order is that of a ``DataLoader(shuffle=True)`` whose generator is seeded by ``seed``: epoch after
    epoch, batch ``k`` of the run goes to process ``k mod P``, so batch ``k`` is a function of ``(seed, k)`` and a
    resumed run sees the batches of an uninterrupted one. Dropout draws from the global generator, whose state is
    part of every checkpoint."""

    name = "classifier"
    card = staticmethod(classifier_card)

    def __init__(self, args: ClassifierArguments):
        """Loads the data (before the run's output folder is touched: data that do not fit refuse the run)."""
        super().__init__(args)
        splits = _load_splits(args)
        train_images, train_labels = dataset_to_tensors(splits["train"])
        test_images, test_labels = dataset_to_tensors(splits["test"])
        if args.max_train_samples is not None:
            train_images, train_labels = train_images[: args.max_train_samples], train_labels[: args.max_train_samples]
        self.data = {"train_images": train_images, "train_labels": train_labels}
        self.data |= {"test_images": test_images, "test_labels": test_labels}
        label_feature = splits["train"].features[args.label_column]
        self.label_names = getattr(label_feature, "names", None) or [str(i) for i in range(int(train_labels.max()) + 1)]

    def build_model(self) -> MnistClassifier:
        args, names, train_images = self.args, self.label_names, self.data["train_images"]
        config = MnistClassifierConfig(
            num_channels=train_images.shape[1],
            image_size=train_images.shape[-1],
            conv_channels=args.conv_channels,
            hidden_size=args.hidden_size,
            dropout=args.dropout,
            id2label=dict(enumerate(names)),
            label2id={name: i for i, name in enumerate(names)},
        )
        self.model = MnistClassifier(config)
        return self.model

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.data["train_labels"].shape[0] / self.args.train_batch_size)

    def phases(self) -> list[Phase]:
        args = self.args
        accum = args.gradient_accumulation_steps
        from accelerate import PartialState

        per_step = accum * PartialState().num_processes
        if args.max_train_steps is not None:
            return [Phase("model", args.max_train_steps)]
        return [Phase("model", max(1, args.num_epochs * self.batches_per_epoch // per_step))]

    def _epoch_orders(self) -> Iterator[torch.Tensor]:
        """The training-set index order of each mini-batch, epoch after epoch, as a shuffling ``DataLoader``
        seeded by ``seed`` draws them."""
        n = self.data["train_labels"].shape[0]
        loader = torch.utils.data.DataLoader(
            range(n),
            batch_size=self.args.train_batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.args.seed),
        )
        while True:
            yield from loader

    @contextmanager
    def batches(self, start: int, stream: int, phase: int = 0) -> Iterator[Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        from accelerate import PartialState

        world = PartialState().num_processes
        images, labels = self.data["train_images"], self.data["train_labels"]

        def stream_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for k, rows in enumerate(self._epoch_orders()):
                if k % world == stream and k // world >= start:
                    yield images[rows], labels[rows]

        yield stream_batches()

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device):
        images, labels = batch
        return model(pixel_values=images.to(device), labels=labels.to(device)).loss

    def pipeline(self, model: MnistClassifier) -> MnistClassifier:
        return model

    def evaluate(
        self, trainer: Trainer, pipeline: MnistClassifier, num_samples: int, num_likelihood_points: int, seed: int
    ) -> tuple[dict[str, Any], None]:
        """Test and training accuracy (``num_samples`` and the other arguments are unused: nothing is sampled)."""
        batch = self.args.eval_batch_size
        return {
            "test_accuracy": classifier_accuracy(pipeline, self.data["test_images"], self.data["test_labels"], batch),
            "train_accuracy": classifier_accuracy(
                pipeline, self.data["train_images"], self.data["train_labels"], batch
            ),
            "num_train_images": int(self.data["train_labels"].shape[0]),
            "num_test_images": int(self.data["test_labels"].shape[0]),
        }, None


def train_classifier(args: ClassifierArguments) -> tuple[MnistClassifier, dict[str, Any]]:
    """Train, evaluate and save a classifier (:func:`~hfgen.training.trainer.run`); returns it and its metrics."""
    task = ClassifierTask(args)
    metrics = run(task)
    return task.model, metrics
