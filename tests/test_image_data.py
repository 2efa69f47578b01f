"""MNIST-family loading through datasets, on tiny synthetic parquet files, image folders and saved data sets."""

import numpy as np
import pytest
import torch
from factories import write_image_parquet

from hfgen.data import dataset_to_tensors, dynamic_binarize, load_image_dataset, prepare_image_dataset
from hfgen.training import DDPMImageArguments, FlowMatchingImageArguments, RBMArguments, VAEArguments


def random_pixels(n, size=28, seed=0, channels=None):
    shape = (n, size, size) if channels is None else (n, size, size, channels)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def parquet_files(tmp_path):
    train = write_image_parquet(tmp_path / "train.parquet", random_pixels(12), [i % 10 for i in range(12)])
    test = write_image_parquet(tmp_path / "test.parquet", random_pixels(5, seed=1), [3, 1, 4, 1, 5])
    return {"train": str(train), "test": str(test)}


@pytest.mark.parametrize(
    "arguments_class",
    [RBMArguments, VAEArguments, FlowMatchingImageArguments, DDPMImageArguments],
    ids=lambda cls: cls.__name__,
)
def test_every_image_run_takes_exactly_one_data_source_that_exists(arguments_class, parquet_files, tmp_path):
    train, test = parquet_files["train"], parquet_files["test"]
    with pytest.raises(ValueError, match="exactly one data source"):
        arguments_class()
    with pytest.raises(ValueError, match="exactly one data source"):
        arguments_class(dataset_name="ylecun/mnist", train_data_files=train)
    with pytest.raises(ValueError, match="`test_data_files` needs `train_data_files`"):
        arguments_class(dataset_name="ylecun/mnist", test_data_files=test)
    with pytest.raises(FileNotFoundError, match="train_data_files"):
        arguments_class(train_data_files=str(tmp_path / "missing.parquet"))


def test_parquet_splits_give_float_tensors_of_the_pixels(parquet_files):
    splits = load_image_dataset(data_files=parquet_files)
    assert sorted(splits) == ["test", "train"] and len(splits["train"]) == 12 and len(splits["test"]) == 5
    batch = splits["test"][:5]
    assert batch["pixel_values"].shape == (5, 1, 28, 28) and batch["pixel_values"].dtype == torch.float32
    expected = torch.from_numpy(random_pixels(5, seed=1)).float()[:, None] / 255
    torch.testing.assert_close(batch["pixel_values"], expected)
    assert batch["labels"].tolist() == [3, 1, 4, 1, 5]
    row = splits["train"][3]  # one row: the batch dimension is dropped
    assert row["pixel_values"].shape == (1, 28, 28) and int(row["labels"]) == 3
    images, labels = dataset_to_tensors(splits["train"], batch_size=5)
    assert images.shape == (12, 1, 28, 28) and labels.tolist() == [i % 10 for i in range(12)]
    loader = torch.utils.data.DataLoader(splits["train"], batch_size=4)
    first = next(iter(loader))
    torch.testing.assert_close(first["pixel_values"], images[:4])


def test_builder_name_and_single_parquet_path(parquet_files):
    by_builder = load_image_dataset("parquet", data_files=parquet_files)
    assert len(by_builder["test"]) == 5
    # A single file has no test split: 25% of it is held out, repeatably and disjointly.
    a = load_image_dataset(parquet_files["train"], test_size=0.25, seed=3)
    b = load_image_dataset(parquet_files["train"], test_size=0.25, seed=3)
    assert len(a["train"]) == 9 and len(a["test"]) == 3
    torch.testing.assert_close(a["test"][:]["pixel_values"], b["test"][:]["pixel_values"])
    train, test = dataset_to_tensors(a["train"])[0], dataset_to_tensors(a["test"])[0]
    all_images = torch.from_numpy(random_pixels(12)).float()[:, None] / 255
    assert sorted(_row_ids(train, all_images) + _row_ids(test, all_images)) == list(range(12))
    assert load_image_dataset(parquet_files["train"], test_split=None).keys() == {"train"}


def _row_ids(images, all_images):
    return [int(((all_images - image) ** 2).flatten(1).sum(1).argmin()) for image in images]


def test_image_folder_and_saved_dataset(tmp_path, parquet_files):
    from PIL import Image

    pixels = random_pixels(6, seed=2)
    for i, p in enumerate(pixels):
        folder = tmp_path / "folder" / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(p).save(folder / f"{i}.png")
    splits = load_image_dataset(tmp_path / "folder", test_split=None)
    assert len(splits["train"]) == 6 and set(splits["train"][:]["labels"].tolist()) == {0, 1}

    from datasets import load_dataset

    load_dataset("parquet", data_files=parquet_files).save_to_disk(str(tmp_path / "saved"))
    saved = load_image_dataset(tmp_path / "saved")
    torch.testing.assert_close(
        saved["test"][:]["pixel_values"], load_image_dataset(data_files=parquet_files)["test"][:]["pixel_values"]
    )


def test_dynamic_binarisation_redraws_bernoulli_pixels(tmp_path):
    grey = np.full((4, 28, 28), 77, dtype=np.uint8)  # p = 77/255
    path = write_image_parquet(tmp_path / "grey.parquet", grey, [0, 1, 2, 3])
    splits = load_image_dataset(path, test_split=None, binarize="dynamic", seed=0)
    first, second = splits["train"][:]["pixel_values"], splits["train"][:]["pixel_values"]
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    draws = torch.stack([splits["train"][:]["pixel_values"] for _ in range(20)])
    # 62,720 Bernoulli(0.302) draws: standard error 0.0018.
    assert abs(float(draws.mean()) - 77 / 255) < 0.01
    again = load_image_dataset(path, test_split=None, binarize="dynamic", seed=0)
    torch.testing.assert_close(again["train"][:]["pixel_values"], first)
    x = torch.full((1000, 1, 4, 4), 0.25)
    sample = dynamic_binarize(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample, torch.bernoulli(x, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dynamic_binarize(x + 1)


def test_fixed_binarisation_is_the_same_on_every_read(tmp_path):
    grey = np.full((8, 28, 28), 200, dtype=np.uint8)
    grey[:, :3] = 0
    grey[:, -3:] = 255
    path = write_image_parquet(tmp_path / "grey.parquet", grey, list(range(8)))
    splits = load_image_dataset(path, test_size=2, binarize="fixed", seed=5)
    first = splits["train"][:]["pixel_values"]
    torch.testing.assert_close(splits["train"][:]["pixel_values"], first)
    torch.testing.assert_close(splits["train"][2]["pixel_values"], first[2])
    assert torch.all(first[:, :, :3] == 0) and torch.all(first[:, :, -3:] == 1)  # p = 0 and p = 1 are exact
    middle = first[:, :, 3:-3]
    assert abs(float(middle.mean()) - 200 / 255) < 0.02  # 4,704 draws, standard error 0.006
    assert not torch.equal(first[0], first[1])  # rows are binarised independently
    other_seed = load_image_dataset(path, test_size=2, binarize="fixed", seed=6)["train"][:]["pixel_values"]
    assert not torch.equal(other_seed, first)


def test_missing_columns_name_the_column(tmp_path):
    path = write_image_parquet(tmp_path / "img.parquet", random_pixels(3), column="img")
    with pytest.raises(ValueError, match=r"no image column 'image'.*\['img'\].*image_column"):
        load_image_dataset(path, test_split=None, label_column=None)
    with pytest.raises(ValueError, match="no label column 'label'"):
        load_image_dataset(path, test_split=None, image_column="img")
    splits = load_image_dataset(path, test_split=None, image_column="img", label_column=None)
    assert set(splits["train"][:2]) == {"pixel_values"}


def test_wrong_image_size_or_channels(tmp_path):
    big = write_image_parquet(tmp_path / "big.parquet", random_pixels(2, size=32), [0, 1])
    with pytest.raises(ValueError, match=r"must be 28x28 with 1 channel.*got 32x32 mode 'L'"):
        load_image_dataset(big, test_split=None)
    assert load_image_dataset(big, test_split=None, image_size=32)["train"][:]["pixel_values"].shape == (2, 1, 32, 32)
    rgb = write_image_parquet(tmp_path / "rgb.parquet", random_pixels(2, channels=3), [0, 1])
    with pytest.raises(ValueError, match="got 28x28 mode 'RGB'"):
        load_image_dataset(rgb, test_split=None)
    assert load_image_dataset(rgb, test_split=None, num_channels=3)["train"][0]["pixel_values"].shape == (3, 28, 28)


def test_bad_arguments(parquet_files):
    with pytest.raises(ValueError, match="binarize"):
        load_image_dataset(data_files=parquet_files, binarize="otsu")
    with pytest.raises(ValueError, match="split"):
        load_image_dataset(data_files=parquet_files, split="validation")
    with pytest.raises(ValueError, match="data_files"):
        load_image_dataset()
    with pytest.raises(TypeError, match="datasets.Dataset"):
        prepare_image_dataset({"image": []})


# --- bad input files: each refused with a message that names the file, column or row ------------------------------


def _pixels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8)).astype(np.uint8)


def test_zero_rows_a_folder_and_column_mismatches_are_refused_clearly(tmp_path):
    from datasets import Dataset

    empty = tmp_path / "empty.parquet"
    Dataset.from_dict({"image": [], "label": []}).to_parquet(str(empty))
    with pytest.raises(ValueError, match="empty"):
        load_image_dataset(data_files={"train": str(empty)}, image_size=8)
    with pytest.raises(ValueError, match="is a folder: pass the parquet file"):
        load_image_dataset(data_files={"train": str(tmp_path)}, image_size=8)
    train = write_image_parquet(tmp_path / "train.parquet", _pixels(6), [0, 1, 2, 3, 4, 5])
    test = write_image_parquet(tmp_path / "test.parquet", _pixels(4), None)  # no label column
    with pytest.raises(ValueError, match="split 'test' has 4 rows without a label in column 'label'"):
        load_image_dataset(data_files={"train": str(train), "test": str(test)}, image_size=8)
    renamed = tmp_path / "renamed.parquet"
    write_image_parquet(renamed, _pixels(4), [0, 1, 2, 3], column="img")
    with pytest.raises(ValueError, match=r"'test' file .* has columns \['img', 'label'\] but the 'train' file has"):
        load_image_dataset(data_files={"train": str(train), "test": str(renamed)}, image_size=8)


def test_string_and_negative_labels_are_refused_at_load_time(tmp_path):
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    images = [PILImage.fromarray(p) for p in _pixels(4)]
    strings = tmp_path / "strings.parquet"
    features = Features({"image": Image(), "label": Value("string")})
    Dataset.from_dict({"image": images, "label": ["a", "b", "a", "b"]}, features=features).to_parquet(str(strings))
    with pytest.raises(ValueError, match="labels must be integers 0 … K−1 \\(cast strings"):
        load_image_dataset(data_files={"train": str(strings)}, image_size=8, test_split=None)
    negative = tmp_path / "negative.parquet"
    features = Features({"image": Image(), "label": Value("int64")})
    Dataset.from_dict({"image": images, "label": [0, 1, -1, 2]}, features=features).to_parquet(str(negative))
    data = load_image_dataset(data_files={"train": str(negative)}, image_size=8, test_split=None)
    with pytest.raises(ValueError, match="row 2 has label -1"):
        dataset_to_tensors(data["train"])


def test_a_corrupt_image_row_is_named(tmp_path):
    from datasets import Dataset, Features, Image, Value

    good = write_image_parquet(tmp_path / "good.parquet", _pixels(5), [0, 1, 2, 3, 4])
    rows = Dataset.from_parquet(str(good)).cast_column("image", Image(decode=False)).to_list()
    rows[3]["image"] = {"bytes": b"\x89PNG\r\n\x1a\n truncated", "path": None}
    bad = tmp_path / "bad.parquet"
    features = Features({"image": Image(), "label": Value("int64")})
    Dataset.from_list(rows, features=features).to_parquet(str(bad))
    data = load_image_dataset(data_files={"train": str(bad)}, image_size=8, test_split=None)
    with pytest.raises(ValueError, match="row 3 of the data set cannot be decoded as an image"):
        dataset_to_tensors(data["train"], batch_size=2)
