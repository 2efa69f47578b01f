"""Figures of functions on the plane: velocity fields as arrows and densities as heat maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from hfgen.plotting.panels import check_bounds, check_grid_size, figure_and_axes, new_figure, points_2d, set_square

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from hfgen.methods.continuous_flows import VelocityField

__all__ = ["plot_density", "plot_velocity_field", "plot_velocity_over_time"]


def _quiver_grid(bounds: tuple[float, float], grid_size: int) -> Tensor:
    """The ``grid_size²`` points of a regular grid over ``bounds²``, as an ``(grid_size², 2)`` tensor."""
    axis = torch.linspace(bounds[0], bounds[1], grid_size)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def _quiver_panel(ax: Axes, field: VelocityField, name: str, t: float, grid: Tensor, box: tuple[float, float]) -> None:
    """Arrows of ``field(x, t)`` at the ``grid`` points, over ``box²``; ``name`` names the field in errors."""
    with torch.no_grad():
        uv = points_2d(f"{name}(x, t)", field(grid, torch.tensor(t)))
    if uv.shape[0] != grid.shape[0]:
        raise ValueError(f"{name}(x, t) must return one vector per grid point ({grid.shape[0]}), got {uv.shape[0]}.")
    xy = grid.double().numpy()
    ax.quiver(xy[:, 0], xy[:, 1], uv[:, 0], uv[:, 1], color="tab:blue", angles="xy")
    set_square(ax, box)


def plot_velocity_field(
    velocity: VelocityField,
    t: float = 0.0,
    *,
    bounds: tuple[float, float] = (-0.5, 0.5),
    grid_size: int = 15,
    reference: VelocityField | None = None,
    titles: tuple[str, str] = ("learned", "reference"),
) -> Figure:
    """Quiver plot of the velocity field ``v(x, t)`` on a ``grid_size × grid_size`` grid over ``bounds²``.

    With ``reference`` a second panel shows it side by side, for example the field a flow-matching model
    learns at ``t = 0`` against the optimal one ``v*(x, 0) = E[x_1] − x`` (Lipman et al. 2022), which points
    at the data mean.
    """
    box = check_bounds("bounds", bounds)
    check_grid_size(grid_size)
    if len(titles) != 2:
        raise ValueError(f"titles must be a pair (learned, reference) of strings, got {titles!r}.")
    grid = _quiver_grid(box, grid_size)
    panels = [("velocity", velocity, titles[0])]
    if reference is not None:
        panels.append(("reference", reference, titles[1]))
    fig, axes = new_figure(len(panels))
    for ax, (name, field, title) in zip(axes, panels, strict=True):
        _quiver_panel(ax, field, name, float(t), grid, box)
        ax.set_title(f"{title}, t = {float(t):.2f}")
    return fig


def plot_velocity_over_time(
    velocity: VelocityField,
    times: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 0.95),
    *,
    bounds: tuple[float, float] = (-3, 3),
    grid_size: int = 17,
) -> Figure:
    """Quiver plots of the field ``v(x, t)`` at several ``times`` over ``bounds²`` (the data range), one panel per
    time: how the flow carries the source to the data (``t = 0`` source, ``t = 1`` data)."""
    box = check_bounds("bounds", bounds)
    check_grid_size(grid_size)
    times = [float(t) for t in times]
    if not times:
        raise ValueError("times must name at least one time")
    grid = _quiver_grid(box, grid_size)
    fig, axes = new_figure(len(times))
    for ax, t in zip(axes, times, strict=True):
        _quiver_panel(ax, velocity, "velocity", t, grid, box)
        ax.set_title(f"v(x, t), t = {t:.2f}")
    return fig


def _density_grid(
    log_prob_fn: Callable[[Tensor], Tensor], box: tuple[float, float], grid_size: int, batch_size: int
) -> np.ndarray:
    """``p(x) = exp(log p(x))`` at the pixel centres ``low + (k + ½)(high − low) / grid_size``, ``[i, j] = p(x_j,
    y_i)``, evaluated ``batch_size`` points at a time."""
    step = (box[1] - box[0]) / grid_size
    centres = box[0] + (torch.arange(grid_size, dtype=torch.float64) + 0.5) * step
    gx, gy = torch.meshgrid(centres, centres, indexing="xy")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(torch.get_default_dtype())
    values = []
    with torch.no_grad():
        for batch in points.split(batch_size):
            log_p = log_prob_fn(batch)
            if not isinstance(log_p, Tensor) or log_p.shape != batch.shape[:1]:
                got = tuple(log_p.shape) if isinstance(log_p, Tensor) else type(log_p).__name__
                raise ValueError(f"log_prob_fn must return a tensor of shape ({batch.shape[0]},), got {got}.")
            values.append(log_p.detach().cpu().double().exp())
    return torch.cat(values).reshape(grid_size, grid_size).numpy()


def plot_density(
    log_prob_fn: Callable[[Tensor], Tensor],
    *,
    bounds: tuple[float, float] = (-3, 3),
    grid_size: int = 200,
    ax: Axes | None = None,
    title: str | None = None,
    batch_size: int = 10_000,
) -> Figure:
    """Heat map of the density ``p(x) = exp(log p(x))`` over ``bounds²`` with a colour bar.

    The density is evaluated at the centres ``low + (k + ½)(high − low) / grid_size`` of the image's pixels,
    in batches of ``batch_size`` points; pixel ``[i, j]`` holds ``p(x_j, y_i)`` (row ``i`` is the ``i``-th y
    value, ``origin="lower"``).
    """
    box = check_bounds("bounds", bounds)
    check_grid_size(grid_size)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    image = _density_grid(log_prob_fn, box, grid_size, batch_size)
    fig, ax = figure_and_axes(ax)
    # robust colour limits: one very bright pixel (a sharp mode) would otherwise wash out the rest of the map
    top = float(np.quantile(image, 0.995)) or float(image.max()) or 1.0
    im = ax.imshow(image, extent=(box[0], box[1], box[0], box[1]), origin="lower", cmap="viridis", vmin=0.0, vmax=top)
    fig.colorbar(im, ax=ax, label="density (clipped at its 99.5 % quantile)", fraction=0.046, pad=0.04)
    ax.set_title(title if title is not None else "model density p(x)")
    return fig
