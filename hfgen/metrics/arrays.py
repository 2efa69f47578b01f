"""Validation of the metrics' inputs: real tensors or numpy arrays as finite float64 numpy arrays."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def to_float64(value: ArrayLike, name: str, shape: str) -> np.ndarray:
    """Convert a real tensor or numpy array to a float64 numpy array, or raise TypeError naming ``name``."""
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {value.dtype}")
        return value.detach().to(device="cpu", dtype=torch.float64).numpy()
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
            raise TypeError(f"{name} must hold real numbers, got an array of dtype {value.dtype}")
        return value.astype(np.float64, copy=False)
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray of shape {shape}, got {type(value).__name__}")


def as_points(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a finite, non-empty ``(N, D)`` float64 numpy array, or raise naming ``name``."""
    array = to_float64(x, name, "(N, D)")
    if array.ndim != 2:
        raise ValueError(
            f"{name} must have shape (N, D), got shape {tuple(array.shape)}; reshape 1-D data with .reshape(-1, 1)"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point of dimension >= 1, got shape {array.shape}")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} NaN/inf entries in shape {array.shape}")
    return array


def as_pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate two point sets of the same dimension."""
    xa, ya = as_points(x, "x"), as_points(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x and y must have the same dimension D, got x of shape {xa.shape} and y of shape {ya.shape}")
    return xa, ya


def as_weights(w: ArrayLike | None, n: int, name: str) -> np.ndarray:
    """Return the weights ``w`` (uniform when None) as a float64 probability vector of length ``n``."""
    if w is None:
        return np.full(n, 1.0 / n)
    weights = to_float64(w, name, f"({n},)")
    if weights.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the points, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"{name} must be finite, non-negative and have a positive sum, got {weights}")
    return weights / weights.sum()


def as_log_prob(log_prob: ArrayLike) -> np.ndarray:
    """Validate per-sample log-densities: a non-empty finite 1-D array, returned as float64."""
    values = to_float64(log_prob, "log_prob", "(N,)")
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(f"log_prob must have shape (N,) with N >= 1, got shape {values.shape}")
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ValueError(f"log_prob must be finite, got {bad} non-finite values (NaN/inf) of {values.shape[0]}")
    return values
