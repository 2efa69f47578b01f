"""Toy distributions in R^d with exact densities, for flow matching, diffusion and bridge experiments.

Every distribution samples ``(N, dim)`` float32 tensors from a ``torch.Generator`` (same seed, same samples)
and, where a closed form exists, evaluates the exact log-density ``log_prob(x)`` in nats and the differential
entropy ``H(p) = -∫ p log p``. The geometry of each distribution is stated exactly in its docstring, because
peer libraries scale the same names differently.

The checkerboard follows Lipman et al. 2022, "Flow Matching for Generative Modeling", Fig. 4; the two moons
follow scikit-learn's ``make_moons``; the eight Gaussians are the ring used by Grathwohl et al. 2019 (FFJORD),
with radius and std as parameters (FFJORD's own scaling differs).
"""

from hfgen.data.toy.base import ToyDistribution
from hfgen.data.toy.laws import Checkerboard, EightGaussians, StandardGaussian, TwoBalls, TwoMoons
from hfgen.data.toy.registry import TOY_DISTRIBUTIONS, get_toy_distribution, toy_from_config
from hfgen.data.toy.wrappers import SampleOnly, Shifted

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
    "get_toy_distribution",
    "toy_from_config",
]
