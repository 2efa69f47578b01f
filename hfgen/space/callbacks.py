"""What the demo app's buttons and sliders do, as plain functions of the page's values (no Gradio): each returns
what the page shows, an error as a line of text instead of a traceback. One model per browser session (its name
in a ``gr.State``); pipelines are shared through the cache of :func:`~hfgen.space.loading.load_pipeline`."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from PIL import Image

from hfgen.space.describe import describe
from hfgen.space.loading import load_pipeline
from hfgen.space.maps import decode_latent, density_image
from hfgen.space.messages import error_text
from hfgen.space.sampling import sample

__all__ = ["on_density", "on_latent", "sample_controls"]

#: the status line of a button pressed before any model is loaded
NO_MODEL = "Load a model first."


def _prune(folder: Path, age_seconds: float = 120.0) -> None:
    """Remove the GIFs older than ``age_seconds`` (Gradio has copied them into its own cache by then)."""
    cutoff = time.time() - age_seconds
    for path in folder.glob("*.gif"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def sample_controls(
    name: str | None,
    steps: float,
    solver: str | None,
    seed: float,
    num_samples: float,
    direction: str,
    gif_dir: Path,
) -> tuple[Image.Image | None, str | None, Image.Image | None, str]:
    """The "Sample" button: :func:`sample` of the loaded pipeline ``name`` with the page's controls (those the
    pipeline takes), a trajectory GIF written in ``gif_dir``; the samples, the GIF's path, the velocity panels and
    the status line, or an error as text."""
    if not name:
        return None, None, None, NO_MODEL
    try:
        pipe = load_pipeline(name)
        info = describe(pipe, name)
        _prune(gif_dir)
        result = sample(
            pipe,
            num_samples=num_samples,
            num_inference_steps=steps if info.steps is not None else None,
            solver=solver if info.solvers else None,
            seed=seed,
            direction=direction if info.directions else None,
            gif_path=gif_dir / f"trajectory-{uuid.uuid4().hex}.gif",
        )
    except Exception as error:  # shown in the page, not as a traceback
        return None, None, None, error_text("sample", error)
    return result.samples, result.trajectory, result.velocity, result.message


def on_density(name: str | None, grid_size: float, half_width: float) -> tuple[Image.Image | None, str]:
    """The "Density" button: the heat map of the loaded model's density (:func:`density_image`) and how long it
    took, or an error as text."""
    if not name:
        return None, NO_MODEL
    try:
        start = time.perf_counter()
        image = density_image(load_pipeline(name), grid_size=grid_size, half_width=half_width)
    except Exception as error:  # shown in the page, not as a traceback
        return None, error_text("draw the density", error)
    return image, f"Density on a {int(grid_size)}² grid in {time.perf_counter() - start:.2f} s."


def on_latent(name: str | None, z1: float, z2: float) -> tuple[Image.Image | None, str]:
    """The latent sliders: the image the loaded model decodes at ``(z1, z2)`` (:func:`decode_latent`), or an error
    as text."""
    if not name:
        return None, NO_MODEL
    try:
        image = decode_latent(load_pipeline(name), z1, z2)
    except Exception as error:  # shown in the page, not as a traceback
        return None, error_text("decode", error)
    return image, f"Decoded z = ({z1:.2f}, {z2:.2f})."
