"""The pictures of a draw in the demo app: a grid of images, or a scatter of the points, the velocity field over time
and a GIF of the points moving along their trajectory, drawn with :mod:`hfgen.plotting`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageSequence

from hfgen.pipelines.base import HfgenPipeline
from hfgen.plotting import plot_image_grid, plot_samples, plot_velocity_over_time, trajectory_animation
from hfgen.plotting.panels import snapshot_indices

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_image", "image_grid", "output_images", "points_scatter", "trajectory_gif", "velocity_panels"]

#: a trajectory GIF shows at most this many states (frames) of at most this many points
MAX_FRAMES = 26
MAX_ANIMATED_POINTS = 1000
#: the GIF rests this many milliseconds on its last state (the samples) before it loops
HOLD_MILLISECONDS = 1500
#: an image grid shows at most this many samples
MAX_GRID_IMAGES = 64
#: times of the velocity-field panels (t = 0 source, t = 1 data)
VELOCITY_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)
_DPI = 90


def figure_image(fig: Figure) -> Image.Image:
    """A matplotlib figure rendered as an RGB PIL image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def image_tensor(value: object) -> torch.Tensor:
    """Images as a float ``(N, C, H, W)`` tensor in ``[0, 1]``, from a tensor, a NumPy ``(N, H, W[, C])`` array or a
    list of PIL images (the three ``output_type`` of diffusers pipelines)."""
    if isinstance(value, list) and value and all(isinstance(item, Image.Image) for item in value):
        value = np.stack([np.asarray(item, dtype=np.float32) / 255.0 for item in value])
    if isinstance(value, np.ndarray):
        array = value[..., None] if value.ndim == 3 else value
        value = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise TypeError(f"images must be (N, C, H, W) tensors, (N, H, W, C) arrays or PIL images, got {got}")
    return value.detach().cpu().float()


def output_images(output: Any) -> torch.Tensor | None:
    """The images of a pipeline output: its ``images``, or ``samples`` of shape ``(N, C, H, W)``."""
    images = getattr(output, "images", None)
    if images is None:
        samples = getattr(output, "samples", None)
        images = samples if isinstance(samples, torch.Tensor) and samples.ndim == 4 else None
    return None if images is None else image_tensor(images)


def image_grid(images: torch.Tensor) -> Image.Image:
    """The first :data:`MAX_GRID_IMAGES` images tiled in one picture, titled with how many are shown when not all."""
    shown = images[:MAX_GRID_IMAGES]
    title = f"{shown.shape[0]} of {images.shape[0]} samples" if shown.shape[0] < images.shape[0] else None
    return figure_image(plot_image_grid(shown, title=title))


def points_scatter(pipe: HfgenPipeline, points: torch.Tensor, direction: str | None, seed: int) -> Image.Image:
    """The first two coordinates of ``points``; for a bridge (``direction`` given) over as many samples of the
    marginal they should match (drawn with seed ``seed + 1``), titled with the direction."""
    reference, title = None, f"{points.shape[0]} samples"
    if direction is not None:
        marginal = getattr(pipe, "target_distribution" if direction == "forward" else "source_distribution", None)
        if marginal is not None:
            reference = marginal.sample(points.shape[0], generator=torch.Generator().manual_seed(seed + 1))
            reference = reference.detach().cpu().float()[:, :2]
        title = f"{direction}: X_0 → X_N" if direction == "forward" else f"{direction}: X_N → X_0"
    return figure_image(plot_samples(points[:, :2], reference=reference, title=title))


def _box(points: torch.Tensor) -> tuple[float, float]:
    """A square ``(low, high)`` over the 0.5 % to 99.5 % quantiles of the finite points (a few far-out samples
    would squeeze the rest), with a 10 % margin."""
    finite = points[torch.isfinite(points).all(dim=1)][:, :2].double()
    if not finite.numel():
        return -3.0, 3.0
    low, high = torch.quantile(finite.reshape(-1), torch.tensor([0.005, 0.995], dtype=torch.float64)).tolist()
    margin = 0.1 * (high - low) or 1.0
    return low - margin, high + margin


def velocity_panels(pipe: HfgenPipeline, points: torch.Tensor) -> Image.Image:
    """The field ``v(x, t)`` at :data:`VELOCITY_TIMES` over the square the ``points`` span."""
    return figure_image(plot_velocity_over_time(pipe.velocity_field, VELOCITY_TIMES, bounds=_box(points)))


def _trajectory_times(pipe: HfgenPipeline, output: Any, num_states: int, direction: str | None) -> list[float]:
    """Time of each state: the output's ``timesteps`` (DDPM levels, SDE times), ``t = i/n`` for a flow, else the
    step index (a bridge's ``k``, counted down backward)."""
    timesteps = getattr(output, "timesteps", None)
    if timesteps is not None and len(timesteps) == num_states:
        return [float(t) for t in timesteps]
    if callable(getattr(pipe, "velocity_field", None)):
        return np.linspace(0.0, 1.0, num_states).tolist()
    steps = range(num_states - 1, -1, -1) if direction == "backward" else range(num_states)
    return [float(k) for k in steps]


def _hold_last_frame(path: Path) -> None:
    """Rewrite the GIF at ``path`` so that it rests :data:`HOLD_MILLISECONDS` on its last frame."""
    with Image.open(path) as gif:
        pictures = [picture.copy() for picture in ImageSequence.Iterator(gif)]
        step = gif.info.get("duration", 80)
    durations = [step] * (len(pictures) - 1) + [HOLD_MILLISECONDS]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)


def trajectory_gif(
    pipe: HfgenPipeline, output: Any, trajectory: torch.Tensor, direction: str | None, path: Path
) -> None:
    """An animated GIF at ``path`` of at most :data:`MAX_ANIMATED_POINTS` points moving along ``trajectory``
    ``(S + 1, N, D)`` (first two coordinates), at most :data:`MAX_FRAMES` evenly spaced states."""
    num_states = trajectory.shape[0]
    times = _trajectory_times(pipe, output, num_states, direction)
    frames = snapshot_indices(num_states, MAX_FRAMES)
    states = trajectory[torch.as_tensor(frames)][:, :MAX_ANIMATED_POINTS, :2].detach().cpu().float()
    animation = trajectory_animation(states, [times[k] for k in frames])
    animation.figure.canvas.draw()  # lay the figure out once: constrained layout per frame doubles the cost
    animation.figure.set_layout_engine("none")
    animation.save(path)
    _hold_last_frame(path)
