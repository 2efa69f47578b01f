"""Matplotlib figures for 2-D generative models: samples, trajectories, velocity fields and densities.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so nothing is shown, nothing
leaks into pyplot's figure registry, and any backend, Agg included, works); callers save it with
``fig.savefig(path)``. Points are ``(N, 2)`` tensors; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from hfgen.methods.continuous_flows import VelocityField

__all__ = [
    "plot_density",
    "plot_diffusion_forward",
    "plot_diffusion_reverse",
    "plot_histograms_over_time",
    "plot_image_grid",
    "plot_latent_grid",
    "plot_latent_scatter",
    "plot_reconstructions",
    "plot_samples",
    "plot_trajectory",
    "plot_velocity_field",
]

_PANEL_SIZE = 3.2


def _points_2d(name: str, points: object) -> np.ndarray:
    """Check that ``points`` is an ``(N, 2)`` tensor and return it as a NumPy array."""
    if not isinstance(points, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, 2), got {type(points).__name__}.")
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) (2-D points), got shape {tuple(points.shape)}.")
    return points.detach().cpu().double().numpy()


def _check_bounds(name: str, bounds: tuple[float, float]) -> tuple[float, float]:
    """Check that ``bounds`` is a pair ``(low, high)`` with ``low < high``."""
    if len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
        raise ValueError(f"{name} must be a pair (low, high) with low < high, got {bounds!r}.")
    return float(bounds[0]), float(bounds[1])


def _check_grid_size(grid_size: int) -> None:
    if not isinstance(grid_size, int) or grid_size < 2:
        raise ValueError(f"grid_size must be an integer ≥ 2, got {grid_size!r}.")


def _new_figure(num_panels: int) -> tuple[Figure, list[Axes]]:
    """A pyplot-free figure with a row of ``num_panels`` axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_PANEL_SIZE * num_panels, _PANEL_SIZE), layout="constrained")
    axes = fig.subplots(1, num_panels, squeeze=False)[0]
    return fig, list(axes)


def _set_square(ax: Axes, bounds: tuple[float, float] | None) -> None:
    if bounds is not None:
        ax.set_xlim(*bounds)
        ax.set_ylim(*bounds)
    ax.set_aspect("equal")


def plot_samples(
    samples: Tensor,
    *,
    reference: Tensor | None = None,
    bounds: tuple[float, float] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Scatter plot of 2-D samples, optionally over reference samples (say, the data) in another colour.

    ``bounds = (low, high)`` fixes both axes to ``[low, high]``; the aspect is equal. When ``ax`` is given the
    plot is drawn into it and its figure is returned.
    """
    points = _points_2d("samples", samples)
    ref = None if reference is None else _points_2d("reference", reference)
    box = None if bounds is None else _check_bounds("bounds", bounds)
    if ax is None:
        fig, (ax,) = _new_figure(1)
    else:
        fig = ax.figure
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], s=2, alpha=0.3, color="tab:gray", label="reference", rasterized=True)
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", label="samples", rasterized=True)
    if ref is not None:  # below the axes: inside, it would hide part of the data (a checkerboard cell)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, markerscale=4, frameon=False)
    _set_square(ax, box)
    if title is not None:
        ax.set_title(title)
    return fig


def plot_trajectory(
    trajectory: Tensor,
    times: Sequence[float] | Tensor,
    num_snapshots: int = 6,
    bounds: tuple[float, float] | None = None,
) -> Figure:
    """A row of scatter plots of ``x_t`` at evenly spaced snapshots of a sampled trajectory.

    ``trajectory[k]`` holds the ``(N, 2)`` points at time ``times[k]``; the snapshots are the indices
    ``round(j (S − 1) / (num_snapshots − 1))``, ``j = 0 … num_snapshots − 1``, so the first (``t = 0``, the
    source) and last (``t = 1``, the data) are always shown. Without ``bounds`` all panels share the data's
    range.
    """
    if not isinstance(trajectory, Tensor) or trajectory.dim() != 3 or trajectory.shape[2] != 2:
        shape = tuple(trajectory.shape) if isinstance(trajectory, Tensor) else type(trajectory).__name__
        raise ValueError(f"trajectory must have shape (S, N, 2) (steps, points, 2), got {shape}.")
    times = [float(s) for s in times]
    num_steps = trajectory.shape[0]
    if len(times) != num_steps:
        raise ValueError(f"times must have one entry per step of trajectory ({num_steps}), got {len(times)}.")
    if not isinstance(num_snapshots, int) or num_snapshots < 2:
        raise ValueError(f"num_snapshots must be an integer ≥ 2 (first and last), got {num_snapshots!r}.")
    if bounds is None:
        finite = trajectory[torch.isfinite(trajectory).all(dim=-1)]
        low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (-1.0, 1.0)
        margin = 0.05 * (high - low) or 1.0
        box = (low - margin, high + margin)
    else:
        box = _check_bounds("bounds", bounds)

    indices = np.unique(np.rint(np.linspace(0, num_steps - 1, min(num_snapshots, num_steps))).astype(int))
    fig, axes = _new_figure(len(indices))
    for ax, k in zip(axes, indices, strict=True):
        points = _points_2d("trajectory[k]", trajectory[k])
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", rasterized=True)
        _set_square(ax, box)
        ax.set_title(f"t = {times[k]:.2f}")
    return fig


def _quiver_grid(bounds: tuple[float, float], grid_size: int) -> Tensor:
    """The ``grid_size²`` points of a regular grid over ``bounds²``, as an ``(grid_size², 2)`` tensor."""
    axis = torch.linspace(bounds[0], bounds[1], grid_size)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


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
    box = _check_bounds("bounds", bounds)
    _check_grid_size(grid_size)
    if len(titles) != 2:
        raise ValueError(f"titles must be a pair (learned, reference) of strings, got {titles!r}.")
    grid = _quiver_grid(box, grid_size)
    panels = [("velocity", velocity, titles[0])]
    if reference is not None:
        panels.append(("reference", reference, titles[1]))
    fig, axes = _new_figure(len(panels))
    xy = grid.double().numpy()
    for ax, (name, field, title) in zip(axes, panels, strict=True):
        with torch.no_grad():
            arrows = field(grid, torch.tensor(float(t)))
        uv = _points_2d(f"{name}(x, t)", arrows)
        if uv.shape[0] != grid.shape[0]:
            raise ValueError(
                f"{name}(x, t) must return one vector per grid point ({grid.shape[0]}), got {uv.shape[0]}."
            )
        ax.quiver(xy[:, 0], xy[:, 1], uv[:, 0], uv[:, 1], color="tab:blue", angles="xy")
        _set_square(ax, box)
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
    box = _check_bounds("bounds", bounds)
    _check_grid_size(grid_size)
    times = [float(t) for t in times]
    if not times:
        raise ValueError("times must name at least one time")
    grid = _quiver_grid(box, grid_size)
    xy = grid.double().numpy()
    fig, axes = _new_figure(len(times))
    for ax, t in zip(axes, times, strict=True):
        with torch.no_grad():
            uv = _points_2d("velocity(x, t)", velocity(grid, torch.tensor(t)))
        ax.quiver(xy[:, 0], xy[:, 1], uv[:, 0], uv[:, 1], color="tab:blue", angles="xy")
        _set_square(ax, box)
        ax.set_title(f"v(x, t), t = {t:.2f}")
    return fig


@dataclass
class Animation:
    """A matplotlib animation and its figure; :meth:`save` writes a GIF (Pillow) and frees the figure."""

    figure: Figure
    animation: Any

    def save(self, path: str | Path, fps: int = 12) -> None:
        import matplotlib.pyplot as plt

        self.animation.save(path, writer="pillow", fps=fps, dpi=80)
        plt.close(self.figure)


def trajectory_animation(
    trajectory: Tensor, times: Sequence[float] | Tensor, *, bounds: tuple[float, float] | None = None
) -> Animation:
    """An :class:`Animation` of 2-D points moving along ``trajectory`` ``(S + 1, N, 2)``, one frame per state,
    titled with its time."""
    from matplotlib.animation import FuncAnimation

    if not isinstance(trajectory, Tensor) or trajectory.ndim != 3 or trajectory.shape[-1] != 2:
        got = tuple(trajectory.shape) if isinstance(trajectory, Tensor) else type(trajectory).__name__
        raise ValueError(f"trajectory must be a tensor of shape (S + 1, N, 2), got {got}.")
    times = [float(t) for t in times]
    if len(times) != trajectory.shape[0]:
        raise ValueError(f"times must have one entry per state ({trajectory.shape[0]}), got {len(times)}.")
    states = trajectory.detach().cpu().double().numpy()
    low, high = (float(states.min()), float(states.max())) if bounds is None else _check_bounds("bounds", bounds)
    fig, (ax,) = _new_figure(1)
    dots = ax.scatter(states[0, :, 0], states[0, :, 1], s=2, alpha=0.5, color="tab:blue", rasterized=True)
    _set_square(ax, (low, high))

    def draw(frame: int) -> tuple[Any, ...]:
        dots.set_offsets(states[frame])
        ax.set_title(f"t = {times[frame]:.2f}")
        return (dots,)

    return Animation(fig, FuncAnimation(fig, draw, frames=len(times), interval=80, blit=False))


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
    box = _check_bounds("bounds", bounds)
    _check_grid_size(grid_size)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
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
    image = torch.cat(values).reshape(grid_size, grid_size).numpy()

    if ax is None:
        fig, (ax,) = _new_figure(1)
    else:
        fig = ax.figure
    # robust colour limits: one very bright pixel (a sharp mode) would otherwise wash out the rest of the map
    top = float(np.quantile(image, 0.995)) or float(image.max()) or 1.0
    im = ax.imshow(image, extent=(box[0], box[1], box[0], box[1]), origin="lower", cmap="viridis", vmin=0.0, vmax=top)
    fig.colorbar(im, ax=ax, label="density (clipped at its 99.5 % quantile)", fraction=0.046, pad=0.04)
    ax.set_title(title if title is not None else "model density p(x)")
    return fig


def plot_histograms_over_time(
    samples_by_time: Mapping[float, Tensor],
    bins: int = 100,
    bounds: tuple[float, float] = (-3, 3),
) -> Figure:
    """A row of 2-D histograms of samples at several times, one panel per time in increasing order.

    The course's figure of ``N(0, I)`` deformed by ``dz/dt = tanh(z³)`` at ``t = 0, 0.1, …, 0.5`` (see
    :func:`hfgen.methods.continuous_flows.deform_gaussian_example`).
    """
    if not samples_by_time:
        raise ValueError("samples_by_time must map at least one time to an (N, 2) tensor, got an empty one.")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}.")
    box = _check_bounds("bounds", bounds)
    panels = [(float(s), _points_2d(f"samples_by_time[{s}]", x)) for s, x in sorted(samples_by_time.items())]
    fig, axes = _new_figure(len(panels))
    for ax, (s, points) in zip(axes, panels, strict=True):
        ax.hist2d(points[:, 0], points[:, 1], bins=bins, range=[box, box], cmap="viridis")
        _set_square(ax, box)
        ax.set_title(f"t = {s:.2f}")
    return fig


def _diffusion_panels(
    trajectory: Tensor,
    timesteps: Sequence[int] | Tensor,
    alpha: float,
    indices: Sequence[int],
    bounds: tuple[float, float] | None,
) -> Figure:
    """Scatter plots of ``trajectory[k]`` for ``k`` in ``indices``, titled with ``t`` and ``ᾱ_t = α^t``."""
    panels = [_points_2d(f"trajectory[{k}]", trajectory[k]) for k in indices]
    if bounds is None:
        finite = trajectory[torch.isfinite(trajectory).all(dim=-1)]
        low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (-1.0, 1.0)
        margin = 0.05 * (high - low) or 1.0
        box = (low - margin, high + margin)
    else:
        box = _check_bounds("bounds", bounds)
    fig, axes = _new_figure(len(indices))
    for ax, k, points in zip(axes, indices, panels, strict=True):
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", rasterized=True)
        _set_square(ax, box)
        t = int(timesteps[k])
        ax.set_title(f"t = {t}, ᾱ_t = {alpha**t:.3g}")
    return fig


def _check_diffusion_inputs(trajectory: Tensor, timesteps: Sequence[int] | Tensor, alpha: float) -> list[int]:
    if not isinstance(trajectory, Tensor) or trajectory.dim() != 3 or trajectory.shape[2] != 2:
        shape = tuple(trajectory.shape) if isinstance(trajectory, Tensor) else type(trajectory).__name__
        raise ValueError(f"trajectory must have shape (K, N, 2) (states, points, 2), got {shape}.")
    steps = [int(t) for t in timesteps]
    if len(steps) != trajectory.shape[0] or any(t < 0 for t in steps):
        raise ValueError(
            f"timesteps must hold one step t >= 0 per state of trajectory ({trajectory.shape[0]}), got {steps}."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a float in the open interval (0, 1), got {alpha!r}.")
    return steps


def plot_diffusion_forward(
    trajectory: Tensor,
    timesteps: Sequence[int] | Tensor,
    alpha: float,
    *,
    bounds: tuple[float, float] | None = None,
) -> Figure:
    r"""The DDPM forward process as a row of scatter plots, one per state ``x_t``, titled with ``t`` and ``ᾱ_t``.

    ``trajectory[k]`` holds the ``(N, 2)`` points at step ``timesteps[k]`` of ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z``,
    ``ᾱ_t = α^t`` (for example :meth:`hfgen.pipelines.DDPMPointsPipeline.forward_trajectory`): the course's
    "tuning T and α" figure, where the data should turn into ``N(0, I)`` slowly and be noise by ``t = T``.
    Without ``bounds`` all panels share the range of the points.
    """
    _check_diffusion_inputs(trajectory, timesteps, alpha)
    return _diffusion_panels(trajectory, timesteps, float(alpha), list(range(trajectory.shape[0])), bounds)


def plot_diffusion_reverse(
    trajectory: Tensor,
    timesteps: Sequence[int] | Tensor,
    alpha: float,
    *,
    num_snapshots: int = 6,
    bounds: tuple[float, float] | None = None,
) -> Figure:
    r"""The DDPM reverse process ``x_T → … → x_0`` at evenly spaced snapshots, titled with ``t`` and ``ᾱ_t = α^t``.

    ``trajectory`` ``(S + 1, N, 2)`` and ``timesteps`` (``T, …, 0``) are what
    :class:`hfgen.pipelines.DDPMPointsPipeline` returns with ``return_trajectory=True``; the snapshots are the
    states ``round(j S / (num_snapshots − 1))``, ``j = 0 … num_snapshots − 1``, so ``x_T`` and ``x_0`` are shown.
    """
    _check_diffusion_inputs(trajectory, timesteps, alpha)
    if isinstance(num_snapshots, bool) or not isinstance(num_snapshots, int) or num_snapshots < 2:
        raise ValueError(f"num_snapshots must be an integer ≥ 2 (first and last), got {num_snapshots!r}.")
    num_states = trajectory.shape[0]
    indices = np.unique(np.rint(np.linspace(0, num_states - 1, min(num_snapshots, num_states))).astype(int))
    return _diffusion_panels(trajectory, timesteps, float(alpha), indices.tolist(), bounds)


# Images: latent spaces of autoencoders and VAEs, reconstructions and samples.


def _images_hwc(name: str, images: object) -> np.ndarray:
    """Check that ``images`` is an ``(N, C, H, W)`` tensor with ``C`` in {1, 3}; return ``(N, H, W, C)`` in [0, 1]."""
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a non-empty (N, C, H, W) tensor with C = 1 or 3, got {shape}.")
    return images.detach().cpu().double().clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _show_image(ax: Axes, image: np.ndarray, extent: tuple[float, float, float, float] | None = None) -> None:
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
    points = _points_2d("codes", codes)
    if ax is None:
        fig, (ax,) = _new_figure(1)
        fig.set_size_inches(5, 4.5)
    else:
        fig = ax.figure
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", rasterized=True)
    else:
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
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title is not None:
        ax.set_title(title)
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
    pictures = _images_hwc("images", images)
    if pictures.shape[0] != xs.size * ys.size:
        raise ValueError(f"images must hold len(x) * len(y) = {xs.size * ys.size} images, got {pictures.shape[0]}.")
    if np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) <= 0):
        raise ValueError("x and y must be strictly increasing grid coordinates.")
    x_edges, y_edges = _cell_edges(xs), _cell_edges(ys)
    fig, (ax,) = _new_figure(1)
    fig.set_size_inches(6, 6)
    for i, image in enumerate(pictures):
        r, c = divmod(i, xs.size)
        j = ys.size - 1 - r
        _show_image(ax, image, extent=(x_edges[c], x_edges[c + 1], y_edges[j], y_edges[j + 1]))
    if codes is not None:
        points = _points_2d("codes", codes)
        colors = None if labels is None else [f"C{int(v) % 10}" for v in labels.detach().cpu().tolist()]
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.15, c=colors or "tab:blue", rasterized=True)
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title is not None:
        ax.set_title(title)
    return fig


def plot_reconstructions(originals: Tensor, reconstructions: Tensor, *, num_images: int = 10) -> Figure:
    """Two rows: the first ``num_images`` originals (top) above their reconstructions (bottom)."""
    top, bottom = _images_hwc("originals", originals), _images_hwc("reconstructions", reconstructions)
    if top.shape != bottom.shape:
        raise ValueError(f"originals and reconstructions must have the same shape, got {top.shape} and {bottom.shape}.")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}.")
    k = min(num_images, top.shape[0])
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.0 * k, 2.2), layout="constrained")
    axes = fig.subplots(2, k, squeeze=False)
    for row, (images, name) in enumerate(((top, "original"), (bottom, "reconstruction"))):
        for col in range(k):
            _show_image(axes[row, col], images[col])
            axes[row, col].set_axis_off()
        axes[row, 0].set_title(name, loc="left", fontsize="small")
    return fig


def plot_image_grid(images: Tensor, *, ncols: int | None = None, title: str | None = None) -> Figure:
    """Images ``(N, C, H, W)`` in [0, 1] tiled in one picture, ``ncols`` per row (default ``⌈√N⌉``): samples."""
    pictures = _images_hwc("images", images)
    if ncols is None:
        ncols = int(np.ceil(np.sqrt(pictures.shape[0])))
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    fig, (ax,) = _new_figure(1)
    fig.set_size_inches(5, 5 * -(-pictures.shape[0] // ncols) / ncols)
    _show_image(ax, _mosaic(pictures, ncols))
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return fig
