"""Figures of a 2-D latent space: the codes coloured by class, and decoded images placed at their latent points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from hfgen.plotting.images import images_hwc, plot_image_grid, plot_reconstructions, show_image
from hfgen.plotting.panels import new_figure, points_2d, scatter_points

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["latent_model_figures", "plot_latent_grid", "plot_latent_scatter"]


def _label_axes(ax: Axes, title: str | None) -> None:
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title is not None:
        ax.set_title(title)


def _scatter_by_class(ax: Axes, points: np.ndarray, labels: object, class_names: Sequence[str] | None) -> None:
    """One colour and legend entry per class present in ``labels`` (``(N,)``, one per point)."""
    if not isinstance(labels, Tensor) or labels.shape != (points.shape[0],):
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a tensor of shape ({points.shape[0]},), one per code, got {got}.")
    values = labels.detach().cpu().long().numpy()
    classes = np.unique(values)
    if class_names is not None and (classes.min() < 0 or classes.max() >= len(class_names)):
        raise ValueError(f"class_names has {len(class_names)} names but the labels span {classes.tolist()}.")
    for c in classes:
        mask = values == c
        name = str(c) if class_names is None else str(class_names[c])
        color = f"C{c % 10}" if len(classes) <= 10 else None
        ax.scatter(points[mask, 0], points[mask, 1], s=2, alpha=0.6, color=color, label=name, rasterized=True)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=5, fontsize="small", frameon=False)


def plot_latent_scatter(
    codes: Tensor,
    labels: Tensor | None = None,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Scatter of 2-D latent codes ``(N, 2)`` coloured by class label, one legend entry per class present.

    ``class_names[c]`` names label ``c`` in the legend (default: the label itself). Without labels all points
    share one colour.
    """
    points = points_2d("codes", codes)
    if ax is None:
        fig, (ax,) = new_figure(1)
        fig.set_size_inches(5, 4.5)
    else:
        fig = ax.figure
    if labels is None:
        scatter_points(ax, points)
    else:
        _scatter_by_class(ax, points, labels, class_names)
    _label_axes(ax, title)
    return fig


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of the cells around sorted centres: midpoints between neighbours, the ends mirrored outwards."""
    if centres.shape[0] == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mids = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mids[0]], mids, [2 * centres[-1] - mids[-1]]])


def plot_latent_grid(
    images: Tensor,
    x: Tensor,
    y: Tensor,
    *,
    codes: Tensor | None = None,
    labels: Tensor | None = None,
    title: str | None = None,
) -> Figure:
    """Decoded images of an ``n × n`` latent grid drawn at their latent coordinates.

    ``images`` ``(n², C, H, W)`` are row-major from the top-left, row ``r`` at ``z_2 = y[n − 1 − r]`` and column
    ``c`` at ``z_1 = x[c]`` (the layout of :meth:`VAEPipeline.latent_grid`). Image ``(r, c)`` fills the cell
    around its point bounded by the midpoints to the neighbouring grid points, so non-uniform grids (Gaussian
    quantiles) keep their geometry. ``codes`` (with ``labels``) are scattered on top, faintly.
    """
    xs = np.asarray(torch.as_tensor(x).detach().cpu().double()).reshape(-1)
    ys = np.asarray(torch.as_tensor(y).detach().cpu().double()).reshape(-1)
    pictures = images_hwc("images", images)
    if pictures.shape[0] != xs.size * ys.size:
        raise ValueError(f"images must hold len(x) * len(y) = {xs.size * ys.size} images, got {pictures.shape[0]}.")
    if np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) <= 0):
        raise ValueError("x and y must be strictly increasing grid coordinates.")
    x_edges, y_edges = _cell_edges(xs), _cell_edges(ys)
    fig, (ax,) = new_figure(1)
    fig.set_size_inches(6, 6)
    for i, image in enumerate(pictures):
        r, c = divmod(i, xs.size)
        j = ys.size - 1 - r
        show_image(ax, image, extent=(x_edges[c], x_edges[c + 1], y_edges[j], y_edges[j + 1]))
    if codes is not None:
        points = points_2d("codes", codes)
        colors = None if labels is None else [f"C{int(v) % 10}" for v in labels.detach().cpu().tolist()]
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.15, c=colors or "tab:blue", rasterized=True)
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    _label_axes(ax, title)
    return fig


def latent_model_figures(
    pipeline: Any, images: Tensor, labels: Tensor, samples: Tensor | None, is_vae: bool
) -> dict[str, Figure]:
    """The figures of an autoencoder or VAE ``pipeline`` (``encode``, ``decode``, ``latent_grid``) on held-out
    ``images`` with their ``labels``: the codes by class, the decoded 10 × 10 latent grid, ten reconstructions and,
    given ``samples``, a grid of 64 of them."""
    codes = pipeline.encode(images)
    kind = "VAE posterior means μ(x)" if is_vae else "autoencoder codes e(x)"
    grid = pipeline.latent_grid(n=10) if is_vae else pipeline.latent_grid(n=10, codes=codes)
    figures = {
        "latent_scatter.png": plot_latent_scatter(codes, labels, title=f"test images: {kind}"),
        "latent_grid.png": plot_latent_grid(
            grid.images, grid.x, grid.y, codes=codes, labels=labels, title="decoded 10 × 10 latent grid"
        ),
        "reconstructions.png": plot_reconstructions(images[:10], pipeline.decode(codes[:10])),
    }
    if samples is not None:
        title = "prior samples E[x | z], z ~ N(0, I)" if is_vae else "decoded z ~ N(mean, cov of the codes)"
        figures["samples.png"] = plot_image_grid(samples[:64], title=title)
    return figures
