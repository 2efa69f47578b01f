"""The registry of toy distributions by name, and their configs: ``toy_from_config(d.to_config())`` rebuilds ``d``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hfgen.data.toy.base import ToyDistribution
from hfgen.data.toy.laws import Checkerboard, EightGaussians, StandardGaussian, TwoBalls, TwoMoons
from hfgen.data.toy.wrappers import Shifted

__all__ = ["TOY_DISTRIBUTIONS", "get_toy_distribution", "toy_from_config"]

TOY_DISTRIBUTIONS: dict[str, type[ToyDistribution]] = {
    cls.name: cls for cls in (StandardGaussian, Checkerboard, EightGaussians, TwoMoons, TwoBalls, Shifted)
}


def get_toy_distribution(name: str, **kwargs: Any) -> ToyDistribution:
    """Build registered distribution ``name`` (a ``TOY_DISTRIBUTIONS`` key) with constructor ``kwargs``."""
    if not isinstance(name, str) or name not in TOY_DISTRIBUTIONS:
        raise ValueError(f"unknown toy distribution {name!r}; available: {sorted(TOY_DISTRIBUTIONS)}")
    cls = TOY_DISTRIBUTIONS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise TypeError(f"unexpected arguments {unexpected} for toy distribution {name!r}; accepted: {accepted}")
    return cls(**kwargs)


def toy_from_config(config: Mapping[str, Any]) -> ToyDistribution:
    """Inverse of ``ToyDistribution.to_config``: ``{"name": ..., **kwargs}``, nested ``base`` for shifted."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    if "name" not in config:
        raise ValueError(f"config must have a 'name' key (one of {sorted(TOY_DISTRIBUTIONS)}), got {dict(config)!r}")
    kwargs = {key: value for key, value in config.items() if key != "name"}
    if config["name"] == Shifted.name and isinstance(kwargs.get("base"), Mapping):
        kwargs["base"] = toy_from_config(kwargs["base"])
    return get_toy_distribution(config["name"], **kwargs)
