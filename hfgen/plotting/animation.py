"""Animations of 2-D points moving along a trajectory, saved as GIFs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from hfgen.checks import check_int
from hfgen.plotting.panels import check_bounds, check_trajectory, new_figure, set_square

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Animation", "trajectory_animation"]

#: frames of a trajectory GIF at most: each frame is a full figure render (about 0.1 CPU s), and 51 states of a
#: 100-step trajectory show its motion as well as 101
MAX_FRAMES = 51


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
    trajectory: Tensor,
    times: Sequence[float] | Tensor,
    *,
    bounds: tuple[float, float] | None = None,
    max_frames: int = MAX_FRAMES,
) -> Animation:
    """An :class:`Animation` of 2-D points moving along ``trajectory`` ``(S + 1, N, 2)``, one frame per state (at
    most ``max_frames`` evenly spaced states, the first and the last among them), titled with its time."""
    from matplotlib.animation import FuncAnimation

    check_trajectory(trajectory, "be a tensor of shape (S + 1, N, 2)")
    check_int(max_frames, "max_frames", 2)
    times = [float(t) for t in times]
    if len(times) != trajectory.shape[0]:
        raise ValueError(f"times must have one entry per state ({trajectory.shape[0]}), got {len(times)}.")
    kept = sorted({round(k * (len(times) - 1) / (max_frames - 1)) for k in range(max_frames)})
    times = [times[k] for k in kept]
    states = trajectory[kept].detach().cpu().double().numpy()
    low, high = (float(states.min()), float(states.max())) if bounds is None else check_bounds("bounds", bounds)
    fig, (ax,) = new_figure(1)
    dots = ax.scatter(states[0, :, 0], states[0, :, 1], s=2, alpha=0.5, color="tab:blue", rasterized=True)
    set_square(ax, (low, high))

    def draw(frame: int) -> tuple[Any, ...]:
        dots.set_offsets(states[frame])
        ax.set_title(f"t = {times[frame]:.2f}")
        return (dots,)

    return Animation(fig, FuncAnimation(fig, draw, frames=len(times), interval=80, blit=False))
