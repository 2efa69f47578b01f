"""Data for hfgen: toy distributions in R^d with exact densities (``hfgen.data.toy``)."""

from .images import dataset_to_tensors, dynamic_binarize, load_image_dataset, prepare_image_dataset
from .toy import (
    TOY_DISTRIBUTIONS,
    Checkerboard,
    EightGaussians,
    SampleOnly,
    Shifted,
    StandardGaussian,
    ToyDistribution,
    TwoBalls,
    TwoMoons,
    get_toy_distribution,
    toy_from_config,
)

__all__ = [
    "TOY_DISTRIBUTIONS",
    "Checkerboard",
    "EightGaussians",
    "SampleOnly",
    "Shifted",
    "StandardGaussian",
    "ToyDistribution",
    "TwoBalls",
    "TwoMoons",
    "dataset_to_tensors",
    "dynamic_binarize",
    "get_toy_distribution",
    "load_image_dataset",
    "prepare_image_dataset",
    "toy_from_config",
]
