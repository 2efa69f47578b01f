"""Figures of images ``(N, C, H, W)`` in ``[0, 1]``: a tiled grid of samples and originals above their
reconstructions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from hfgen.checks import check_int
from hfgen.plotting.panels import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_image_grid", "plot_reconstructions"]


def images_hwc(name: str, images: object) -> np.ndarray:
    """Check that ``images`` is an ``(N, C, H, W)`` tensor with ``C`` in {1, 3}; return ``(N, H, W, C)`` in [0, 1]."""
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a non-empty (N, C, H, W) tensor with C = 1 or 3, got {shape}.")
    return images.detach().cpu().double().clamp(0, 1).permute(0, 2, 3, 1).numpy()


def show_image(ax: Axes, image: np.ndarray, extent: tuple[float, float, float, float] | None = None) -> None:
    """Draw one ``(H, W, C)`` image in [0, 1]: grey levels (black 0, white 1) for one channel, RGB for three."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    else:
        ax.imshow(image, extent=extent, interpolation="nearest")


def _mosaic(images: np.ndarray, ncols: int) -> np.ndarray:
    """Tile ``(N, H, W, C)`` images row by row into one ``(rows·H, ncols·W, C)`` image (blank cells are 0)."""
    n, h, w, c = images.shape
    rows = -(-n // ncols)
    canvas = np.zeros((rows * h, ncols * w, c))
    for i, image in enumerate(images):
        r, col = divmod(i, ncols)
        canvas[r * h : (r + 1) * h, col * w : (col + 1) * w] = image
    return canvas


def plot_reconstructions(originals: Tensor, reconstructions: Tensor, *, num_images: int = 10) -> Figure:
    """Two rows: the first ``num_images`` originals (top) above their reconstructions (bottom)."""
    top, bottom = images_hwc("originals", originals), images_hwc("reconstructions", reconstructions)
    if top.shape != bottom.shape:
        raise ValueError(f"originals and reconstructions must have the same shape, got {top.shape} and {bottom.shape}.")
    check_int(num_images, "num_images")
    k = min(num_images, top.shape[0])
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.0 * k, 2.2), layout="constrained")
    axes = fig.subplots(2, k, squeeze=False)
    for row, (images, name) in enumerate(((top, "original"), (bottom, "reconstruction"))):
        for col in range(k):
            show_image(axes[row, col], images[col])
            axes[row, col].set_axis_off()
        axes[row, 0].set_title(name, loc="left", fontsize="small")
    return fig


def plot_image_grid(images: Tensor, *, ncols: int | None = None, title: str | None = None) -> Figure:
    """Images ``(N, C, H, W)`` in [0, 1] tiled in one picture, ``ncols`` per row (default ``⌈√N⌉``): samples."""
    pictures = images_hwc("images", images)
    if ncols is None:
        ncols = int(np.ceil(np.sqrt(pictures.shape[0])))
    check_int(ncols, "ncols")
    fig, (ax,) = new_figure(1)
    fig.set_size_inches(5, 5 * -(-pictures.shape[0] // ncols) / ncols)
    show_image(ax, _mosaic(pictures, ncols))
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return fig
