"""Data for hfgen: toy distributions in R^d with exact densities (``hfgen.data.toy``)."""

from .pairs import CoupledPairs
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
    "CoupledPairs",
    "TOY_DISTRIBUTIONS",
    "Checkerboard",
    "EightGaussians",
    "SampleOnly",
    "Shifted",
    "StandardGaussian",
    "ToyDistribution",
    "TwoBalls",
    "TwoMoons",
    "get_toy_distribution",
    "toy_from_config",
]
