"""What every figure of :mod:`hfgen.plotting` shares: input checks, a pyplot-free row of square panels, the box the
points span and the states a row of snapshots shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from hfgen.checks import check_int

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: side in inches of one panel
PANEL_SIZE = 3.2


def points_2d(name: str, points: object) -> np.ndarray:
    """Check that ``points`` is an ``(N, 2)`` tensor and return it as a NumPy array."""
    if not isinstance(points, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, 2), got {type(points).__name__}.")
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) (2-D points), got shape {tuple(points.shape)}.")
    return points.detach().cpu().double().numpy()


def check_bounds(name: str, bounds: tuple[float, float]) -> tuple[float, float]:
    """Check that ``bounds`` is a pair ``(low, high)`` with ``low < high``."""
    if len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
        raise ValueError(f"{name} must be a pair (low, high) with low < high, got {bounds!r}.")
    return float(bounds[0]), float(bounds[1])


def check_grid_size(grid_size: int) -> None:
    if not isinstance(grid_size, int) or grid_size < 2:
        raise ValueError(f"grid_size must be an integer ≥ 2, got {grid_size!r}.")


def check_num_snapshots(num_snapshots: int) -> None:
    check_int(num_snapshots, "num_snapshots", 2, note="first and last")


def new_figure(num_panels: int) -> tuple[Figure, list[Axes]]:
    """A pyplot-free figure with a row of ``num_panels`` axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(PANEL_SIZE * num_panels, PANEL_SIZE), layout="constrained")
    axes = fig.subplots(1, num_panels, squeeze=False)[0]
    return fig, list(axes)


def figure_and_axes(ax: Axes | None) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new one-panel figure when ``ax`` is None."""
    if ax is None:
        fig, (ax,) = new_figure(1)
        return fig, ax
    return ax.figure, ax


def set_square(ax: Axes, bounds: tuple[float, float] | None) -> None:
    if bounds is not None:
        ax.set_xlim(*bounds)
        ax.set_ylim(*bounds)
    ax.set_aspect("equal")


def scatter_points(ax: Axes, points: np.ndarray) -> None:
    """The plain scatter of every point figure: small blue dots, half transparent."""
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", rasterized=True)


def data_box(trajectory: Tensor, bounds: tuple[float, float] | None) -> tuple[float, float]:
    """``bounds`` checked, or the range ``[min, max]`` of the finite points of ``trajectory`` widened by 5 % on each
    side (``(−1, 1)`` before the margin when no point is finite)."""
    if bounds is not None:
        return check_bounds("bounds", bounds)
    finite = trajectory[torch.isfinite(trajectory).all(dim=-1)]
    low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (-1.0, 1.0)
    margin = 0.05 * (high - low) or 1.0
    return low - margin, high + margin


def snapshot_indices(num_states: int, num_snapshots: int) -> np.ndarray:
    """Indices ``round(j (S − 1) / (k − 1))``, ``j = 0 … k − 1``, ``k = min(num_snapshots, S)`` of ``S`` states,
    without repeats: evenly spaced, the first and the last always among them."""
    return np.unique(np.rint(np.linspace(0, num_states - 1, min(num_snapshots, num_states))).astype(int))


def check_trajectory(trajectory: object, expected: str) -> None:
    """Check that ``trajectory`` is a ``(states, points, 2)`` tensor; ``expected`` ends the message ("trajectory
    must {expected}, got …")."""
    if not isinstance(trajectory, Tensor) or trajectory.dim() != 3 or trajectory.shape[2] != 2:
        shape = tuple(trajectory.shape) if isinstance(trajectory, Tensor) else type(trajectory).__name__
        raise ValueError(f"trajectory must {expected}, got {shape}.")
