"""Arguments of ``training/train_classifier.py``: the digit classifier behind the image scores, without torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from hfgen.arguments.common import TrainingArguments
from hfgen.checks import check_int
from hfgen.cli.parser import documented, recipe

__all__ = ["ClassifierArguments"]


@dataclass
@recipe(learning_rate=1e-3, lr_warmup_steps=0)
class ClassifierArguments(TrainingArguments):
    """Arguments of ``training/train_classifier.py`` (``--dataset_name`` or ``--train_data_files`` is required)."""

    run_only_fields = TrainingArguments.run_only_fields | {"eval_batch_size"}
    positive_fields = (
        *("train_batch_size", "gradient_accumulation_steps", "num_validation_samples"),
        *("num_epochs", "eval_batch_size", "hidden_size"),
    )

    output_dir: str = documented("out/mnist-classifier", "where the model, its card and metrics are saved")
    dataset_name: str | None = documented(None, "Hub id, e.g. ylecun/mnist")
    train_data_files: str | None = documented(None, "local train parquet (instead of a Hub id)")
    test_data_files: str | None = documented(None, "local test parquet")
    image_column: str = documented("image", "column of the images")
    label_column: str = documented("label", "column of the labels")
    conv_channels: list[int] = field(default_factory=lambda: [32, 64], metadata={"help": "channels of the convs"})
    hidden_size: int = documented(128, "width of the hidden layer (the features of the Fréchet distance)")
    dropout: float = documented(0.25, "dropout before the hidden and the output layer")
    num_epochs: int = documented(2, "passes over the training set")
    max_train_steps: int | None = documented(None, "optimizer steps (None: as many as num_epochs passes take)")
    train_batch_size: int = documented(128, "images per process and micro-batch")
    eval_batch_size: int = documented(1000, "images per batch when measuring the accuracy")
    lr_scheduler: str = documented("constant", "learning-rate schedule")
    ema_decay: float = documented(0.0, "EMA decay of the weights (0: off)")
    max_train_samples: int | None = documented(None, "use only the first N training images")
    checkpointing_steps: int = documented(0, "save the training state every N steps (0: never)")
    validation_steps: int = documented(0, "measure the test accuracy every N steps (0: at the end only)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataset_name is None and self.train_data_files is None:
            raise ValueError("pass `dataset_name` (a Hub id) or `train_data_files` (a parquet file)")
        if self.max_train_steps is not None:
            check_int(self.max_train_steps, "max_train_steps")
