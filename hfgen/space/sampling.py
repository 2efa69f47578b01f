"""A draw from the demo app's sampling controls: the pipeline called with the chosen steps, solver, seed, number of
samples and bridge direction, and the pictures of what it drew."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.flow_matching import TORCHDIFFEQ_METHODS
from hfgen.pipelines.score_sde import SAMPLERS as SCORE_SDE_SAMPLERS
from hfgen.schedulers.constant_alpha_ddpm import ConstantAlphaDDPMScheduler
from hfgen.space.describe import SCHEDULER_SOLVER, ModelInfo, call_parameters, describe, point_dim
from hfgen.space.figures import image_grid, output_images, points_scatter, trajectory_gif, velocity_panels
from hfgen.space.messages import check_int

__all__ = ["MAX_SAMPLES", "MAX_SEED", "SampleResult", "sample"]

#: the most samples one press of "Sample" draws
MAX_SAMPLES = 5000
#: the largest seed a torch.Generator takes (2⁶⁴ − 1)
MAX_SEED = 2**64 - 1


@dataclass
class SampleResult:
    """``samples``: a scatter plot of the points or a grid of the images; ``trajectory``: the path of the GIF of the
    points moving (``None`` without a trajectory); ``velocity``: ``v(x, t)`` at several times (flow matching);
    ``message``: what was drawn, in how long."""

    samples: Image.Image
    trajectory: str | None = None
    velocity: Image.Image | None = None
    message: str = ""


def _for_call(pipe: HfgenPipeline, info: ModelInfo, solver: str | None) -> tuple[HfgenPipeline, dict[str, Any]]:
    """A shallow copy of ``pipe`` with a scheduler of its own (calls share no scheduler state, and the cached
    pipeline keeps its settings) set to ``solver``, and the ``__call__`` arguments the solver needs."""
    if solver is not None and solver not in info.solvers:
        choices = info.solvers or "none (this pipeline has no solver choice)"
        raise ValueError(f"solver must be one of {choices}, got {solver!r}")
    scheduler = getattr(pipe, "scheduler", None)
    fresh, kwargs = None, {}
    if isinstance(scheduler, ConstantAlphaDDPMScheduler):
        if solver is not None:
            fresh = ConstantAlphaDDPMScheduler.from_config(scheduler.config, sampler=solver)
    elif solver in SCORE_SDE_SAMPLERS:
        kwargs["sampler"] = solver
    elif solver not in (None, SCHEDULER_SOLVER):
        kwargs["ode_solver"] = TORCHDIFFEQ_METHODS.get(solver, solver)
    if fresh is None and callable(getattr(scheduler, "from_config", None)):
        fresh = type(scheduler).from_config(scheduler.config)
    clone = copy.copy(pipe)
    if fresh is not None:
        clone.scheduler = fresh
    return clone, kwargs


def _call_arguments(
    pipe: HfgenPipeline,
    info: ModelInfo,
    num_samples: int,
    num_inference_steps: int | None,
    solver: str | None,
    seed: int,
    direction: str | None,
) -> tuple[HfgenPipeline, dict[str, Any]]:
    """The pipeline to call (:func:`_for_call`) and its ``__call__`` arguments for checked ``num_samples`` and
    ``seed``; the other controls are checked here, by name."""
    if direction is not None and direction not in info.directions:
        raise ValueError(f"direction must be one of {info.directions or 'none (not a bridge)'}, got {direction!r}")
    call, kwargs = _for_call(pipe, info, solver)
    parameters = call_parameters(pipe)
    kwargs.update(num_samples=num_samples, generator=torch.Generator().manual_seed(seed))
    if "output_type" in parameters:
        kwargs["output_type"] = "pt"
    if num_inference_steps is not None:
        if info.steps is None:
            raise ValueError(f"{info.class_name} takes no choice of num_inference_steps, got {num_inference_steps!r}")
        kwargs["num_inference_steps"] = check_int(num_inference_steps, "num_inference_steps", 1, info.max_steps)
    if info.directions:
        kwargs["direction"] = direction or info.directions[0]
    if point_dim(pipe) is not None and "return_trajectory" in parameters:  # its grid t_i = i/n: the fixed solvers'
        kwargs["return_trajectory"] = True
    return call, kwargs


def _points_result(
    pipe: HfgenPipeline,
    info: ModelInfo,
    output: Any,
    direction: str | None,
    seed: int,
    gif_path: str | Path | None,
    cost: str,
) -> SampleResult:
    """The scatter, the velocity panels and the trajectory GIF (written at ``gif_path``) of an output of points;
    ``cost`` says how long the draw took."""
    points = torch.as_tensor(output.samples).detach().cpu().float()
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"the app plots points of shape (N, D >= 2) or images, got samples {tuple(points.shape)}")
    scatter = points_scatter(pipe, points, direction, seed)
    velocity = velocity_panels(pipe, points) if info.has_velocity else None
    trajectory = getattr(output, "trajectory", None)
    gif = None
    if gif_path is not None and isinstance(trajectory, torch.Tensor) and trajectory.ndim == 3:
        trajectory_gif(pipe, output, trajectory, direction, Path(gif_path))
        gif = str(gif_path)
    note = "" if points.shape[1] == 2 else f" (first two of {points.shape[1]} coordinates shown)"
    return SampleResult(scatter, gif, velocity, f"{points.shape[0]} samples{cost}{note}.")


def sample(
    pipe: HfgenPipeline,
    *,
    num_samples: int = 1000,
    num_inference_steps: int | None = None,
    solver: str | None = None,
    seed: int = 0,
    direction: str | None = None,
    gif_path: str | Path | None = None,
) -> SampleResult:
    """Draw ``num_samples`` from ``pipe`` with ``torch.Generator().manual_seed(seed)`` and plot them.

    ``num_inference_steps`` and ``solver`` apply where the pipeline takes them (:func:`describe`); ``None`` keeps
    its defaults. ``direction`` (``"forward"`` or ``"backward"``) is a bridge's. Points get a scatter plot (the
    first two coordinates), the velocity field over time where the pipeline has one, and, with ``gif_path``, an
    animated GIF of the trajectory written there; images get a grid.
    """
    info = describe(pipe)
    if not info.can_sample:
        raise ValueError(f"{info.class_name} draws no samples (its __call__ takes no num_samples)")
    num_samples = check_int(num_samples, "num_samples", 1, MAX_SAMPLES)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    call, kwargs = _call_arguments(pipe, info, num_samples, num_inference_steps, solver, seed, direction)
    start = time.perf_counter()
    output = call(**kwargs)
    seconds = time.perf_counter() - start
    nfe = getattr(output, "nfe", None)
    cost = f" in {seconds:.2f} s" + (f", {nfe} network evaluations" if isinstance(nfe, int) else "")
    images = output_images(output)
    if images is not None:
        return SampleResult(samples=image_grid(images), message=f"{images.shape[0]} images{cost}.")
    return _points_result(pipe, info, output, kwargs.get("direction"), seed, gif_path, cost)
