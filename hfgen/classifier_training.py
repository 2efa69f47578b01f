"""Train the MNIST-family classifier (:class:`~hfgen.models.classifier.MnistClassifier`) with Accelerate.

Minimises the cross-entropy ``−(1/B) Σ_i log softmax(f(x_i))_{y_i}`` with Adam on mini-batches, reports the
test accuracy and saves the model with ``save_pretrained`` (``config.json`` + ``model.safetensors``) and
``metrics.json`` in ``output_dir``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from hfgen.data.images import dataset_to_tensors, load_image_dataset
from hfgen.models.classifier import MnistClassifier, MnistClassifierConfig


@dataclass
class ClassifierTrainingArguments:
    """Arguments of ``training/train_classifier.py``."""

    output_dir: str = field(default="out/mnist-classifier", metadata={"help": "where the model is saved"})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub id, e.g. ylecun/mnist"})
    train_data_files: str | None = field(default=None, metadata={"help": "local train parquet (instead of a Hub id)"})
    test_data_files: str | None = field(default=None, metadata={"help": "local test parquet"})
    image_column: str = "image"
    label_column: str = "label"
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])
    hidden_size: int = 128
    dropout: float = 0.25
    num_epochs: int = 2
    train_batch_size: int = 128
    eval_batch_size: int = 1000
    learning_rate: float = 1e-3
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N training images"})
    seed: int = 0
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16 (Accelerate)"})
    logging_steps: int = 100

    def __post_init__(self) -> None:
        if self.dataset_name is None and self.train_data_files is None:
            raise ValueError("pass `dataset_name` (a Hub id) or `train_data_files` (a parquet file)")
        for name in ("num_epochs", "train_batch_size", "eval_batch_size", "hidden_size", "logging_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate!r}")


def _load_splits(args: ClassifierTrainingArguments):
    if args.train_data_files is not None:
        files = {"train": args.train_data_files}
        if args.test_data_files is not None:
            files["test"] = args.test_data_files
        return load_image_dataset(
            data_files=files, image_column=args.image_column, label_column=args.label_column, seed=args.seed
        )
    return load_image_dataset(
        args.dataset_name, image_column=args.image_column, label_column=args.label_column, seed=args.seed
    )


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


def train_classifier(args: ClassifierTrainingArguments) -> tuple[MnistClassifier, dict]:
    """Train a classifier on the data set of ``args``, save it to ``args.output_dir`` and return it with metrics
    (``test_accuracy``, ``train_seconds``, ...)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    set_seed(args.seed)
    splits = _load_splits(args)
    train_images, train_labels = dataset_to_tensors(splits["train"])
    test_images, test_labels = dataset_to_tensors(splits["test"])
    if args.max_train_samples is not None:
        train_images, train_labels = train_images[: args.max_train_samples], train_labels[: args.max_train_samples]
    label_feature = splits["train"].features[args.label_column]
    names = getattr(label_feature, "names", None) or [str(i) for i in range(int(train_labels.max()) + 1)]
    config = MnistClassifierConfig(
        num_channels=train_images.shape[1],
        image_size=train_images.shape[-1],
        conv_channels=args.conv_channels,
        hidden_size=args.hidden_size,
        dropout=args.dropout,
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    model = MnistClassifier(config)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train_images, train_labels),
        batch_size=args.train_batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    start, step = time.perf_counter(), 0
    model.train()
    for epoch in range(args.num_epochs):
        progress = tqdm(loader, disable=not accelerator.is_main_process, desc=f"epoch {epoch + 1}")
        for images, labels in progress:
            loss = model(pixel_values=images, labels=labels).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step % args.logging_steps == 0:
                progress.set_postfix(loss=f"{loss.item():.4f}")
            step += 1
    train_seconds = time.perf_counter() - start

    model = accelerator.unwrap_model(model)
    metrics = {
        "test_accuracy": classifier_accuracy(model, test_images, test_labels, args.eval_batch_size),
        "train_accuracy": classifier_accuracy(model, train_images, train_labels, args.eval_batch_size),
        "train_seconds": train_seconds,
        "train_steps": step,
        "num_train_images": int(train_labels.shape[0]),
        "num_test_images": int(test_labels.shape[0]),
    }
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        model.save_pretrained(args.output_dir)
        with open(os.path.join(args.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump({"metrics": metrics, "arguments": asdict(args)}, f, indent=2)
    return model, metrics
