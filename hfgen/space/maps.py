"""The Density and Latent tabs of the demo app: a heat map of a 2-D model density, and a 2-D latent space decoded
at a point and over a grid."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import torch
from PIL import Image

from hfgen.pipelines.base import HfgenPipeline
from hfgen.plotting import plot_density, plot_latent_grid
from hfgen.space.describe import describe
from hfgen.space.figures import figure_image, image_tensor
from hfgen.space.messages import check_int

__all__ = ["DIGIT_SIZE", "LATENT_RANGE", "decode_latent", "density_image", "latent_map"]

#: the latent sliders and the latent map span [−LATENT_RANGE, LATENT_RANGE]² (±3 standard deviations of the prior)
LATENT_RANGE = 3.0
#: the widest density map: ``half_width`` at most this (far beyond any toy data set; much wider, float32 grid points
#: and ODE steps lose their meaning)
MAX_HALF_WIDTH = 1e6
#: rtol and atol of an ODE log-density for the heat map (a picture needs no more; the default 1e-5 is 10x slower)
DENSITY_TOLERANCE = 1e-3
#: side in pixels of the decoded digit shown for a latent point
DIGIT_SIZE = 224


def density_image(pipe: HfgenPipeline, *, grid_size: int = 30, half_width: float = 3.0) -> Image.Image:
    """Heat map of the model density ``exp(log_prob(x))`` on a ``grid_size²`` grid over ``[−h, h]²``
    (:func:`hfgen.plotting.plot_density`), for a pipeline with ``log_prob`` over 2-D points; an ODE log-density
    is solved with ``rtol = atol = DENSITY_TOLERANCE``."""
    info = describe(pipe)
    if not info.has_density:
        raise ValueError(f"{info.class_name} has no log_prob over 2-D points to draw a density of")
    grid_size = check_int(grid_size, "grid_size", 2, 100)
    if isinstance(half_width, bool) or not isinstance(half_width, int | float) or not 0 < half_width <= MAX_HALF_WIDTH:
        raise ValueError(f"half_width must be a number in (0, {MAX_HALF_WIDTH:g}], got {half_width!r}")
    log_prob = pipe.log_prob
    if {"rtol", "atol"} <= inspect.signature(log_prob).parameters.keys():
        log_prob = functools.partial(log_prob, rtol=DENSITY_TOLERANCE, atol=DENSITY_TOLERANCE)
    bounds = (-float(half_width), float(half_width))
    figure = plot_density(log_prob, bounds=bounds, grid_size=grid_size, batch_size=grid_size**2)
    return figure_image(figure)


def _check_latent_pipeline(pipe: HfgenPipeline) -> None:
    info = describe(pipe)
    if not info.has_latent:
        raise ValueError(f"{info.class_name} has no decode of a 2-D latent space")


def decode_latent(pipe: HfgenPipeline, z1: float, z2: float) -> Image.Image:
    """The image ``E[x | z]`` decoded at the latent point ``z = (z1, z2)``, scaled up to ``DIGIT_SIZE`` pixels."""
    _check_latent_pipeline(pipe)
    for name, value in (("z1", z1), ("z2", z2)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    images = image_tensor(pipe.decode(torch.tensor([[float(z1), float(z2)]])))
    pixels = (images[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0], "L") if pixels.shape[-1] == 1 else Image.fromarray(pixels, "RGB")
    return picture.resize((DIGIT_SIZE, DIGIT_SIZE), Image.Resampling.NEAREST)


def latent_map(pipe: HfgenPipeline, n: int = 12) -> Image.Image:
    """The decoded ``n × n`` grid over the sliders' square ``[−3, 3]²`` (:meth:`latent_grid`, drawn by
    :func:`hfgen.plotting.plot_latent_grid`): where each digit lives in the latent plane."""
    _check_latent_pipeline(pipe)
    n = check_int(n, "n", 2, 30)
    bounds = ((-LATENT_RANGE, LATENT_RANGE), (-LATENT_RANGE, LATENT_RANGE))
    grid = pipe.latent_grid(n=n, bounds=bounds)
    return figure_image(plot_latent_grid(grid.images, grid.x, grid.y, title="decoded latent grid"))
