"""MNIST-family image data through 🤗 ``datasets``: loading, a float-tensor transform, binarisation, a test split.

Sources: a Hub id (``ylecun/mnist``, ``zalando-datasets/fashion_mnist``), a builder with files
(``"parquet"``/``"imagefolder"`` and ``data_files``), local parquet files, a folder written by
``save_to_disk`` or an image folder (one sub-folder per class). Every split is returned with a transform that
gives ``pixel_values`` ``(B, C, H, W)`` float32 in ``[0, 1]`` (pixel value ``k/255``) and ``labels`` ``(B,)``.

Binarisation (Salakhutdinov & Murray 2008; Burda et al. 2016, "Importance Weighted Autoencoders"):

* ``"dynamic"``: a fresh ``x ~ Bernoulli(k/255)`` every time an image is read, from the transform's generator;
* ``"fixed"``: one draw per image, made with the seed, the split and the row, identical on every read.

The fixed draw of row ``r`` is ``x = 1[v < k]`` with ``v ~ Uniform{0, …, 254}`` from a NumPy generator seeded
by ``(seed, split, r)``, so ``P(x = 1) = k/255`` exactly.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pyarrow.lib import ArrowException
from torch import Tensor

from hfgen.checks import check_choice
from hfgen.choices import TEST_BINARIZATION_SEED
from hfgen.utils import batch_generator

__all__ = [
    "BINARIZATIONS",
    "ImageTransform",
    "dataset_to_tensors",
    "TEST_BINARIZATION_SEED",
    "binarize_test_images",
    "dynamic_binarize",
    "load_image_dataset",
    "prepare_image_dataset",
]

BINARIZATIONS = (None, "dynamic", "fixed")
#: the stream and index of :func:`~hfgen.utils.batch_generator` of that draw
_TEST_DRAW_STREAM, _TEST_DRAW_INDEX = -3, 1
ROW_COLUMN = "row_index"
_MODES = {1: "L", 3: "RGB"}


def dynamic_binarize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``x ~ Bernoulli(p)`` pixel-wise for intensities ``p = images`` in ``[0, 1]`` (dynamic binarisation)."""
    if not isinstance(images, Tensor) or not torch.is_floating_point(images):
        raise TypeError(f"`images` must be a floating-point torch.Tensor in [0, 1], got {type(images).__name__}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"`images` must lie in [0, 1] to be Bernoulli means, got range [{float(images.min())}, "
            f"{float(images.max())}]"
        )
    return torch.bernoulli(images, generator=generator)


def binarize_test_images(images: Tensor, seed: int = TEST_BINARIZATION_SEED) -> Tensor:
    """The test set of dynamically binarised training: one draw ``x ~ Bernoulli(p)`` of the whole set from
    ``batch_generator(seed, −3, 1)``, identical on every call (Burda et al. 2016 binarise their test set once)."""
    return dynamic_binarize(images, batch_generator(seed, _TEST_DRAW_STREAM, _TEST_DRAW_INDEX))


def _fixed_binarize(pixels: np.ndarray, rows: Sequence[int], seed: int, split: str) -> Tensor:
    """``1[v < k]`` with ``v ~ Uniform{0, …, 254}`` drawn per row by NumPy's generator seeded with the entropy
    ``(seed, crc32(split), row)`` (a ``SeedSequence``: distinct rows get independent streams)."""
    salt = zlib.crc32(split.encode())
    out = np.empty(pixels.shape, dtype=np.float32)
    for i, row in enumerate(rows):
        thresholds = np.random.default_rng([seed, salt, int(row)]).integers(0, 255, size=pixels.shape[1:])
        out[i] = thresholds < pixels[i]
    return torch.from_numpy(out)


class ImageTransform:
    """``set_transform`` callable: PIL images → ``pixel_values`` ``(B, C, H, W)`` float32 in [0, 1] (+ ``labels``).

    Every image must be ``image_size × image_size`` with ``num_channels`` channels (mode ``"L"`` for 1,
    ``"RGB"`` for 3); anything else raises a ValueError naming the image column, the size and mode found.
    ``binarize="dynamic"`` draws from ``generator`` (seeded with ``seed``) on every call: with DataLoader
    workers each worker copies it, so keep ``num_workers=0`` for repeatable draws.
    """

    def __init__(
        self,
        image_column: str = "image",
        label_column: str | None = "label",
        binarize: str | None = None,
        seed: int = 0,
        split: str = "train",
        image_size: int = 28,
        num_channels: int = 1,
    ):
        check_choice(binarize, "binarize", BINARIZATIONS)
        if num_channels not in _MODES:
            raise ValueError(f"`num_channels` must be 1 (mode 'L') or 3 (mode 'RGB'), got {num_channels!r}")
        self.image_column, self.label_column = image_column, label_column
        self.binarize, self.seed, self.split = binarize, seed, split
        self.image_size, self.num_channels = image_size, num_channels
        self.generator = torch.Generator().manual_seed(seed)

    def check_image(self, image: Any) -> np.ndarray:
        """Return one image as a ``(C, H, W)`` uint8 array, or raise if its type, size or channels are wrong."""
        size, channels = self.image_size, self.num_channels
        expected = f"{size}x{size} with {channels} channel(s) (mode {_MODES[channels]!r})"
        if not hasattr(image, "mode") or not hasattr(image, "size"):
            raise TypeError(
                f"column {self.image_column!r} must hold images (datasets Image feature), got {type(image).__name__}"
            )
        if image.mode != _MODES[self.num_channels] or tuple(image.size) != (self.image_size, self.image_size):
            width, height = image.size
            raise ValueError(
                f"images in column {self.image_column!r} must be {expected}, got {width}x{height} mode {image.mode!r}"
            )
        array = np.asarray(image, dtype=np.uint8)
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def __call__(self, batch: Mapping[str, list]) -> dict[str, Tensor]:
        pixels = np.stack([self.check_image(image) for image in batch[self.image_column]])
        if self.binarize == "fixed":
            values = _fixed_binarize(pixels, batch[ROW_COLUMN], self.seed, self.split)
        else:
            values = torch.from_numpy(pixels).float() / 255.0
            if self.binarize == "dynamic":
                values = torch.bernoulli(values, generator=self.generator)
        out = {"pixel_values": values}
        if self.label_column is not None:
            out["labels"] = torch.as_tensor(batch[self.label_column], dtype=torch.long)
        return out


def prepare_image_dataset(dataset: Any, **settings: Any) -> Any:
    """Check the columns and the first image of a ``datasets.Dataset`` and return it with the
    :class:`ImageTransform` of ``settings`` (its keyword arguments; ``with_transform``: the input is left
    unchanged). Fixed binarisation adds a ``row_index`` column first when the dataset has none."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        raise TypeError(f"`dataset` must be a datasets.Dataset, got {type(dataset).__name__}")
    transform = ImageTransform(**settings)
    image_column, label_column, split = transform.image_column, transform.label_column, transform.split
    columns = dataset.column_names
    if image_column not in columns:
        raise ValueError(
            f"the dataset has no image column {image_column!r}; its columns are {columns}: pass `image_column=`"
        )
    if label_column is not None and label_column not in columns:
        raise ValueError(
            f"the dataset has no label column {label_column!r}; its columns are {columns}: pass `label_column=` "
            "(or None for unlabelled images)"
        )
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of the dataset is empty")
    if label_column is not None:
        feature = dataset.features[label_column]
        dtype = getattr(feature, "dtype", "")
        if not (hasattr(feature, "names") or str(dtype).startswith(("int", "uint"))):
            raise ValueError(
                f"the label column {label_column!r} of split {split!r} holds {dtype or type(feature).__name__} "
                "values; labels must be integers 0 … K−1 (cast strings with dataset.class_encode_column)"
            )
        missing = dataset.data.column(label_column).null_count
        if missing:
            raise ValueError(
                f"split {split!r} has {missing} rows without a label in column {label_column!r} (does its file lack "
                "the column the other split has?); every row needs a label, or pass label_column=None"
            )
    transform.check_image(dataset[0][image_column])
    if transform.binarize == "fixed" and ROW_COLUMN not in columns:
        dataset = dataset.add_column(ROW_COLUMN, list(range(len(dataset))))
    return dataset.with_transform(transform)


def _check_parquet_files(data_files: Any) -> None:
    """Refuse local parquet files with no rows, or splits whose files have different columns, before ``datasets``
    reads them (its own errors name neither the file nor the columns)."""
    import pyarrow.parquet as pq

    if not isinstance(data_files, Mapping):
        data_files = {"train": data_files} if data_files else {}
    columns: dict[str, list[str]] = {}
    for split, entry in data_files.items():
        for file in [entry] if isinstance(entry, (str, os.PathLike)) else entry:
            if not (str(file).endswith(".parquet") and os.path.isfile(file)):
                continue
            metadata = pq.read_metadata(file)
            if metadata.num_rows == 0:
                raise ValueError(f"`data_files` entry {str(file)!r} ({split}) is empty: it has no rows (no images)")
            names = sorted(metadata.schema.to_arrow_schema().names)
            known = next(iter(columns.values()), names)
            if not (set(names) <= set(known) or set(known) <= set(names)):  # a missing label column is named later
                first = next(iter(columns))
                raise ValueError(
                    f"the {split!r} file {str(file)!r} has columns {names} but the {first!r} file has {known}: "
                    "every split needs the same image and label columns"
                )
            columns.setdefault(split, names)


def _load_source(path: str | os.PathLike | None, data_files: Any, cache_dir: str | None) -> Any:
    """A ``DatasetDict`` (or ``Dataset``) from a Hub id, a builder with files, parquet files or a local folder."""
    from datasets import load_dataset, load_from_disk

    if path is None and data_files is None:
        raise ValueError("pass a Hub dataset id or local folder as `path`, or parquet files as `data_files`")
    files = data_files.values() if isinstance(data_files, Mapping) else [data_files] if data_files else []
    for entry in files:
        for file in [entry] if isinstance(entry, (str, os.PathLike)) else entry:
            if os.path.isdir(file):
                raise ValueError(
                    f"`data_files` entry {str(file)!r} is a folder: pass the parquet file(s) inside it, or the folder "
                    "itself as the data set path"
                )
    _check_parquet_files(data_files)
    if path is not None and os.path.isdir(path):
        if any(os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json")):
            return load_from_disk(str(path))
        return load_dataset("imagefolder", data_dir=str(path), cache_dir=cache_dir)
    if path is not None and str(path).endswith(".parquet") and os.path.isfile(path):
        path, data_files = "parquet", {"train": str(path)}
    elif path is None:
        path = "parquet"
    try:
        return load_dataset(str(path), data_files=data_files, cache_dir=cache_dir)
    except (ArrowException, ValueError) as error:
        raise ValueError(f"could not read {data_files or path} as an image data set: {error}") from error


def load_image_dataset(
    path: str | os.PathLike | None = None,
    *,
    data_files: str | Sequence[str] | Mapping[str, Any] | None = None,
    split: str = "train",
    test_split: str | None = "test",
    test_size: float | int = 0.1,
    image_column: str = "image",
    label_column: str | None = "label",
    binarize: str | None = None,
    seed: int = 0,
    image_size: int = 28,
    num_channels: int = 1,
    cache_dir: str | None = None,
) -> Any:
    """Load an MNIST-family data set as a ``DatasetDict`` with ``"train"`` and ``"test"`` splits, both transformed.

    Args:
        path: Hub id (``"ylecun/mnist"``), a builder name (``"parquet"``, ``"imagefolder"``) used with
            ``data_files``, a ``.parquet`` file, a ``save_to_disk`` folder or an image folder.
        data_files: parquet files, e.g. ``{"train": ".../train.parquet", "test": ".../test.parquet"}``.
        split: the training split.
        test_split: the held-out split; when the source has no such split, ``test_size`` (a fraction or a
            count) of ``split`` is held out with ``seed`` (``Dataset.train_test_split``). ``None``: no test split.
        image_column, label_column: column names (``label_column=None`` for unlabelled images).
        binarize: ``None``, ``"dynamic"`` or ``"fixed"`` (module docstring).
        image_size, num_channels: the expected image shape; other images raise a ValueError.
    """
    from datasets import Dataset, DatasetDict

    source = _load_source(path, data_files, cache_dir)
    if isinstance(source, Dataset):
        source = DatasetDict({split: source})
    if split not in source:
        raise ValueError(f"`split` {split!r} is not in the data set; its splits are {list(source)}")
    train = source[split]
    splits = {"train": train}
    if test_split is not None:
        if test_split in source and test_split != split:
            splits["test"] = source[test_split]
            if sorted(splits["test"].column_names) != sorted(train.column_names):
                raise ValueError(
                    f"the {test_split!r} split has columns {splits['test'].column_names} but the {split!r} split has "
                    f"{train.column_names}: both splits need the same image and label columns"
                )
        else:
            held_out = train.train_test_split(test_size=test_size, seed=seed)
            splits = {"train": held_out["train"], "test": held_out["test"]}
    options = {
        "image_column": image_column,
        "label_column": label_column,
        "binarize": binarize,
        "seed": seed,
        "image_size": image_size,
        "num_channels": num_channels,
    }
    return DatasetDict({name: prepare_image_dataset(data, split=name, **options) for name, data in splits.items()})


def load_image_splits(
    dataset_name: str | None, train_data_files: str | None, test_data_files: str | None = None, **options: Any
) -> Any:
    """The ``"train"``/``"test"`` splits of a training script's data: local parquet files (``train_data_files``,
    optionally ``test_data_files``) or a Hub id / folder (``dataset_name``), through :func:`load_image_dataset`
    with ``options``."""
    if train_data_files is not None:
        files = {"train": train_data_files}
        if test_data_files is not None:
            files["test"] = test_data_files
        return load_image_dataset(data_files=files, **options)
    return load_image_dataset(dataset_name, **options)


def dataset_to_tensors(dataset: Any, batch_size: int = 1000) -> tuple[Tensor, Tensor | None]:
    """All ``pixel_values`` ``(N, C, H, W)`` and ``labels`` ``(N,)`` (None when unlabelled) of a transformed data set.

    For fast training loops on small images: decode once, keep the tensors, and redraw a dynamic binarisation
    per batch with :func:`dynamic_binarize` (a dataset prepared with ``binarize="dynamic"`` would fix one draw).
    """
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(f"`dataset` must be a transformed datasets.Dataset, got {type(dataset).__name__}")
    images, labels = [], []
    for start in range(0, len(dataset), batch_size):
        batch = _decode_rows(dataset, start, min(start + batch_size, len(dataset)))
        if "pixel_values" not in batch:
            raise ValueError("`dataset` has no `pixel_values`: prepare it with `prepare_image_dataset` first")
        images.append(batch["pixel_values"])
        if "labels" in batch:
            labels.append(batch["labels"])
    labels = torch.cat(labels) if labels else None
    if labels is not None and labels.numel() and labels.min() < 0:
        row = int(torch.nonzero(labels < 0)[0])
        raise ValueError(f"row {row} has label {int(labels[row])}: labels must be integers 0 … K−1")
    return torch.cat(images), labels


def _decode_rows(dataset: Any, start: int, stop: int) -> Mapping[str, Any]:
    """Rows ``start … stop − 1`` decoded by the data set's transform; a row that cannot be decoded (a corrupt image)
    is named in the error."""
    try:
        return dataset[start:stop]
    except (OSError, ValueError, SyntaxError) as error:  # what PIL raises on corrupt image bytes
        for row in range(start, stop):
            try:
                dataset[row : row + 1]
            except (OSError, ValueError, SyntaxError) as row_error:
                raise ValueError(f"row {row} of the data set cannot be decoded as an image: {row_error}") from error
        raise
