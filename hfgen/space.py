"""The demo Space: load any saved hfgen pipeline and sample it in a Gradio app (``app.py`` at the repository root).

The callbacks are plain functions of a pipeline, without Gradio. :func:`describe` finds what a pipeline offers
(steps, solvers, bridge directions, velocity field, density, 2-D latent) from its ``__call__`` signature, its
scheduler, its methods and its output, so a new pipeline needs no change here: one whose output has ``images``
shows them as a grid. :func:`sample`, :func:`density_image`, :func:`decode_latent` and :func:`latent_map` draw
with :mod:`hfgen.plotting`. :func:`build_demo` lays out the ``gr.Blocks`` interface; Gradio is imported there only.
"""

from __future__ import annotations

import copy
import functools
import inspect
import io
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageSequence

from hfgen.hub import upload_files
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.flow_matching import TORCHDIFFEQ_METHODS
from hfgen.pipelines.score_sde import SAMPLERS as SCORE_SDE_SAMPLERS
from hfgen.plotting import (
    plot_density,
    plot_image_grid,
    plot_latent_grid,
    plot_samples,
    plot_velocity_over_time,
    trajectory_animation,
)
from hfgen.schedulers.constant_alpha_ddpm import SAMPLERS as DDPM_SAMPLERS
from hfgen.schedulers.constant_alpha_ddpm import ConstantAlphaDDPMScheduler

if TYPE_CHECKING:
    import gradio as gr
    from matplotlib.figure import Figure

__all__ = [
    "ModelInfo",
    "SampleResult",
    "build_demo",
    "clear_cache",
    "decode_latent",
    "density_image",
    "describe",
    "latent_map",
    "load_model",
    "load_pipeline",
    "sample",
    "sample_controls",
]

#: the solver choice that keeps the pipeline's own (saved) scheduler
SCHEDULER_SOLVER = "scheduler"
#: the adaptive torchdiffeq solver offered for ODE pipelines
ADAPTIVE_SOLVER = "dopri5"
#: directions of a Schrödinger bridge's transport
DIRECTIONS = ("forward", "backward")
#: a trajectory GIF shows at most this many states (frames) of at most this many points
MAX_FRAMES = 26
MAX_ANIMATED_POINTS = 1000
#: the GIF rests this many milliseconds on its last state (the samples) before it loops
HOLD_MILLISECONDS = 1500
#: an image grid shows at most this many samples
MAX_GRID_IMAGES = 64
#: the most samples one press of "Sample" draws
MAX_SAMPLES = 5000
#: the latent sliders and the latent map span [−LATENT_RANGE, LATENT_RANGE]² (±3 standard deviations of the prior)
LATENT_RANGE = 3.0
#: times of the velocity-field panels (t = 0 source, t = 1 data)
VELOCITY_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the widest density map: ``half_width`` at most this (far beyond any toy data set; much wider, float32 grid points
#: and ODE steps lose their meaning)
MAX_HALF_WIDTH = 1e6
#: the largest seed a torch.Generator takes (2⁶⁴ − 1)
MAX_SEED = 2**64 - 1
#: rtol and atol of an ODE log-density for the heat map (a picture needs no more; the default 1e-5 is 10x slower)
DENSITY_TOLERANCE = 1e-3
#: side in pixels of the decoded digit shown for a latent point
DIGIT_SIZE = 224
_DPI = 90


@dataclass(frozen=True)
class ModelInfo:
    """What the app offers for a pipeline.

    ``steps`` is the default number of inference steps (``None`` when the pipeline takes none, or a fixed number
    such as a bridge's chain length) and ``max_steps`` the largest; ``solvers`` the solver or sampler names (empty:
    no choice); ``directions`` the transport directions of a bridge; ``has_trajectory``: points whose path is
    returned (animated); ``summary`` a line of Markdown.
    """

    name: str
    class_name: str
    can_sample: bool
    steps: int | None = None
    max_steps: int = 1000
    solvers: tuple[str, ...] = ()
    default_solver: str | None = None
    directions: tuple[str, ...] = ()
    has_trajectory: bool = False
    has_velocity: bool = False
    has_density: bool = False
    has_latent: bool = False
    summary: str = ""


@dataclass
class SampleResult:
    """``samples``: a scatter plot of the points or a grid of the images; ``trajectory``: the path of the GIF of the
    points moving (``None`` without a trajectory); ``velocity``: ``v(x, t)`` at several times (flow matching);
    ``message``: what was drawn, in how long."""

    samples: Image.Image
    trajectory: str | None = None
    velocity: Image.Image | None = None
    message: str = ""


def _call_parameters(pipe: HfgenPipeline) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(pipe.__call__).parameters)


def _config_value(pipe: HfgenPipeline, key: str) -> Any:
    """``key`` of the first component config that has it (``None`` when none has)."""
    for component in pipe.components.values():
        config = getattr(component, "config", None)
        if config is not None and key in config:
            return config[key]
    return None


def _point_dim(pipe: HfgenPipeline) -> int | None:
    """Dimension ``D`` of the points a pipeline draws (``None`` for an image model)."""
    if getattr(pipe, "image_shape", None) is not None:
        return None
    dim = getattr(pipe, "dim", None)
    if isinstance(dim, int):
        return dim
    if _config_value(pipe, "image_shape") or _config_value(pipe, "image_size"):
        return None
    dim = _config_value(pipe, "dim")
    return dim if isinstance(dim, int) else None


#: what the app says of a name that is not a saved pipeline it can read: the same whether or not a folder of that
#: name exists on the server, so the page reveals nothing of the server's folders
NOT_A_PIPELINE = (
    "{name!r} is not a saved hfgen pipeline: enter a folder written by save_pretrained (with its model_index.json) or "
    "the id of a Hub repo ('user/name') that holds one"
)


def load_pipeline(name: str) -> HfgenPipeline:
    """The pipeline saved in folder or Hub repo ``name`` (``HfgenPipeline.from_pretrained``), progress bars off.

    The last four are cached, and a folder is loaded again when one of its pipeline's files has changed (a new save
    replaces them). A name that is neither a pipeline folder nor a Hub repo gets :data:`NOT_A_PIPELINE`; other
    loading errors propagate with the loader's message."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a folder or a Hub repo id ('user/name'), got {name!r}")
    name = name.strip()
    return _cached_pipeline(name, _folder_version(name))


def clear_cache() -> None:
    """Forget every cached pipeline."""
    _cached_pipeline.cache_clear()


def _folder_version(name: str) -> tuple[tuple[str, int, int, int], ...] | None:
    """Identity (inode, modification time, size) of every file of the pipeline saved in folder ``name`` (the files an
    upload sends, :func:`hfgen.hub.upload_files`); None for a Hub repo id or a folder that holds no pipeline."""
    try:
        files = upload_files(name)
        stats = [(file, os.stat(os.path.join(name, file))) for file in files]
    except (OSError, ValueError):
        return None
    return tuple((file, stat.st_ino, stat.st_mtime_ns, stat.st_size) for file, stat in stats)


@functools.lru_cache(maxsize=4)
def _cached_pipeline(name: str, version: tuple | None) -> HfgenPipeline:
    """The pipeline of ``name`` as it was at ``version`` (:func:`_folder_version`)."""
    try:
        pipe = HfgenPipeline.from_pretrained(name)
    except FileNotFoundError as error:  # no such folder, a folder without a pipeline, no such repo: one message
        raise FileNotFoundError(NOT_A_PIPELINE.format(name=name)) from error
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_model(name: str, current: str | None = None) -> tuple[ModelInfo | None, str]:
    """What the app shows after "Load": the :class:`ModelInfo` of the pipeline ``name`` and a line of Markdown; when
    ``name`` does not load, its error, and the pipeline ``current`` (the one loaded before) stays in use."""
    try:
        info = describe(load_pipeline(name), name.strip())
    except Exception as error:  # shown in the page: a bad folder or repo id is the user's to fix
        text = _error_text(f"load `{name}`", error)
        if not current:
            return None, text
        try:
            kept = describe(load_pipeline(current), current)
        except Exception:  # noqa: BLE001 (the model loaded before is gone too: nothing to keep)
            return None, text
        return kept, f"{text}\n\nStill loaded: `{current}`: {kept.summary}"
    return info, f"Loaded `{info.name}`: {info.summary}"


def _solver_choices(
    pipe: HfgenPipeline, parameters: dict[str, inspect.Parameter], points: bool
) -> tuple[tuple[str, ...], str]:
    """The solver names a pipeline offers and its default.

    An ODE pipeline (``__call__`` takes ``ode_solver``): its saved scheduler, the fixed-step solvers euler, heun
    and midpoint (for points: torchdiffeq's fixed-grid methods on the uniform grid ``t_i = i/n``, the steps the
    schedulers take) and the adaptive dopri5. Constant-α DDPM: its samplers. A ``sampler`` argument: its values.
    """
    scheduler = getattr(pipe, "scheduler", None)
    if isinstance(scheduler, ConstantAlphaDDPMScheduler):
        return DDPM_SAMPLERS, scheduler.config.sampler
    if "sampler" in parameters:
        default = parameters["sampler"].default
        return (SCORE_SDE_SAMPLERS, default) if default in SCORE_SDE_SAMPLERS else ((), "")
    if "ode_solver" in parameters:
        fixed = tuple(TORCHDIFFEQ_METHODS) if points else ()
        return (SCHEDULER_SOLVER, *fixed, ADAPTIVE_SOLVER), SCHEDULER_SOLVER
    return (), ""


def _step_range(pipe: HfgenPipeline, parameters: dict[str, inspect.Parameter]) -> tuple[int | None, int]:
    """Default and largest number of inference steps; ``None`` when the pipeline takes no choice of steps."""
    if "num_inference_steps" not in parameters or "direction" in parameters:  # a bridge's chain length is fixed
        return None, 1000
    steps = parameters["num_inference_steps"].default
    train_steps = _config_value(pipe, "num_train_timesteps")
    if isinstance(train_steps, int):  # DDPM: at most T steps, all T by default
        return steps if isinstance(steps, int) else train_steps, train_steps
    if not isinstance(steps, int):
        return None, 1000
    return steps, max(1000, steps)


def describe(pipe: HfgenPipeline, name: str = "") -> ModelInfo:
    """What ``pipe`` offers in the app (see :class:`ModelInfo`); ``name`` is the folder or repo id it came from."""
    if not isinstance(pipe, HfgenPipeline):
        raise TypeError(f"pipe must be an hfgen pipeline (HfgenPipeline), got {type(pipe).__name__}")
    parameters = _call_parameters(pipe)
    dim = _point_dim(pipe)
    steps, max_steps = _step_range(pipe, parameters)
    solvers, default_solver = _solver_choices(pipe, parameters, dim is not None)
    info = ModelInfo(
        name=name,
        class_name=type(pipe).__name__,
        can_sample="num_samples" in parameters,
        steps=steps,
        max_steps=max_steps,
        solvers=solvers,
        default_solver=default_solver or None,
        directions=DIRECTIONS if "direction" in parameters else (),
        has_trajectory=dim is not None and "return_trajectory" in parameters,
        has_velocity=callable(getattr(pipe, "velocity_field", None)) and dim == 2,
        has_density=callable(getattr(pipe, "log_prob", None)) and dim == 2,
        has_latent=callable(getattr(pipe, "decode", None)) and _config_value(pipe, "latent_dim") == 2,
    )
    components = ", ".join(
        f"{key} {type(value).__name__}" for key, value in pipe.components.items() if value is not None
    )
    summary = f"**{info.class_name}** ({components}) on {f'{dim}-D points' if dim else 'images'}."
    if not info.can_sample:
        summary += " It draws no samples of its own: explore its latent space."
    return replace(info, summary=summary)


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


def _check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (a float with an integer value, as sliders send, is accepted)."""
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < low or (high is not None and number > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return number


def _figure_image(fig: Figure) -> Image.Image:
    """A matplotlib figure rendered as an RGB PIL image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def _image_tensor(value: object) -> torch.Tensor:
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


def _output_images(output: Any) -> torch.Tensor | None:
    """The images of a pipeline output: its ``images``, or ``samples`` of shape ``(N, C, H, W)``."""
    images = getattr(output, "images", None)
    if images is None:
        samples = getattr(output, "samples", None)
        images = samples if isinstance(samples, torch.Tensor) and samples.ndim == 4 else None
    return None if images is None else _image_tensor(images)


def _box(points: torch.Tensor) -> tuple[float, float]:
    """A square ``(low, high)`` over the 0.5 % to 99.5 % quantiles of the finite points (a few far-out samples
    would squeeze the rest), with a 10 % margin."""
    finite = points[torch.isfinite(points).all(dim=1)][:, :2].double()
    if not finite.numel():
        return -3.0, 3.0
    low, high = torch.quantile(finite.reshape(-1), torch.tensor([0.005, 0.995], dtype=torch.float64)).tolist()
    margin = 0.1 * (high - low) or 1.0
    return low - margin, high + margin


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


def _write_trajectory_gif(
    pipe: HfgenPipeline, output: Any, trajectory: torch.Tensor, direction: str | None, path: Path
) -> None:
    num_states = trajectory.shape[0]
    times = _trajectory_times(pipe, output, num_states, direction)
    frames = np.unique(np.rint(np.linspace(0, num_states - 1, min(MAX_FRAMES, num_states))).astype(int))
    states = trajectory[torch.as_tensor(frames)][:, :MAX_ANIMATED_POINTS, :2].detach().cpu().float()
    animation = trajectory_animation(states, [times[k] for k in frames])
    animation.figure.canvas.draw()  # lay the figure out once: constrained layout per frame doubles the cost
    animation.figure.set_layout_engine("none")
    animation.save(path)
    with Image.open(path) as gif:
        pictures = [picture.copy() for picture in ImageSequence.Iterator(gif)]
        step = gif.info.get("duration", 80)
    durations = [step] * (len(pictures) - 1) + [HOLD_MILLISECONDS]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)


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
    num_samples = _check_int(num_samples, "num_samples", 1, MAX_SAMPLES)
    seed = _check_int(seed, "seed", 0, MAX_SEED)
    if direction is not None and direction not in info.directions:
        raise ValueError(f"direction must be one of {info.directions or 'none (not a bridge)'}, got {direction!r}")
    call, kwargs = _for_call(pipe, info, solver)
    parameters = _call_parameters(pipe)
    kwargs.update(num_samples=num_samples, generator=torch.Generator().manual_seed(seed))
    if "output_type" in parameters:
        kwargs["output_type"] = "pt"
    if num_inference_steps is not None:
        if info.steps is None:
            raise ValueError(f"{info.class_name} takes no choice of num_inference_steps, got {num_inference_steps!r}")
        kwargs["num_inference_steps"] = _check_int(num_inference_steps, "num_inference_steps", 1, info.max_steps)
    if info.directions:
        direction = direction or info.directions[0]
        kwargs["direction"] = direction
    points_model = _point_dim(pipe) is not None
    if points_model and "return_trajectory" in parameters:  # its grid t_i = i/n is also the fixed-step solvers'
        kwargs["return_trajectory"] = True

    start = time.perf_counter()
    output = call(**kwargs)
    seconds = time.perf_counter() - start
    nfe = getattr(output, "nfe", None)
    cost = f" in {seconds:.2f} s" + (f", {nfe} network evaluations" if isinstance(nfe, int) else "")

    images = _output_images(output)
    if images is not None:
        shown = images[:MAX_GRID_IMAGES]
        title = f"{shown.shape[0]} of {images.shape[0]} samples" if shown.shape[0] < images.shape[0] else None
        grid = _figure_image(plot_image_grid(shown, title=title))
        return SampleResult(samples=grid, message=f"{images.shape[0]} images{cost}.")

    points = torch.as_tensor(output.samples).detach().cpu().float()
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"the app plots points of shape (N, D >= 2) or images, got samples {tuple(points.shape)}")
    reference, title = None, f"{points.shape[0]} samples"
    if info.directions:  # a bridge: the transported points over samples of the marginal they should match
        marginal = getattr(pipe, "target_distribution" if direction == "forward" else "source_distribution", None)
        if marginal is not None:
            reference = marginal.sample(points.shape[0], generator=torch.Generator().manual_seed(seed + 1))
            reference = reference.detach().cpu().float()[:, :2]
        title = f"{direction}: X_0 → X_N" if direction == "forward" else f"{direction}: X_N → X_0"
    scatter = _figure_image(plot_samples(points[:, :2], reference=reference, title=title))
    velocity = None
    if info.has_velocity:
        velocity = _figure_image(plot_velocity_over_time(pipe.velocity_field, VELOCITY_TIMES, bounds=_box(points)))
    trajectory = getattr(output, "trajectory", None)
    gif = None
    if gif_path is not None and isinstance(trajectory, torch.Tensor) and trajectory.ndim == 3:
        _write_trajectory_gif(pipe, output, trajectory, direction, Path(gif_path))
        gif = str(gif_path)
    note = "" if points.shape[1] == 2 else f" (first two of {points.shape[1]} coordinates shown)"
    return SampleResult(scatter, gif, velocity, f"{points.shape[0]} samples{cost}{note}.")


def density_image(pipe: HfgenPipeline, *, grid_size: int = 30, half_width: float = 3.0) -> Image.Image:
    """Heat map of the model density ``exp(log_prob(x))`` on a ``grid_size²`` grid over ``[−h, h]²``
    (:func:`hfgen.plotting.plot_density`), for a pipeline with ``log_prob`` over 2-D points; an ODE log-density
    is solved with ``rtol = atol = DENSITY_TOLERANCE``."""
    info = describe(pipe)
    if not info.has_density:
        raise ValueError(f"{info.class_name} has no log_prob over 2-D points to draw a density of")
    grid_size = _check_int(grid_size, "grid_size", 2, 100)
    if isinstance(half_width, bool) or not isinstance(half_width, int | float) or not 0 < half_width <= MAX_HALF_WIDTH:
        raise ValueError(f"half_width must be a number in (0, {MAX_HALF_WIDTH:g}], got {half_width!r}")
    log_prob = pipe.log_prob
    if {"rtol", "atol"} <= inspect.signature(log_prob).parameters.keys():
        log_prob = functools.partial(log_prob, rtol=DENSITY_TOLERANCE, atol=DENSITY_TOLERANCE)
    bounds = (-float(half_width), float(half_width))
    figure = plot_density(log_prob, bounds=bounds, grid_size=grid_size, batch_size=grid_size**2)
    return _figure_image(figure)


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
    images = _image_tensor(pipe.decode(torch.tensor([[float(z1), float(z2)]])))
    pixels = (images[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0], "L") if pixels.shape[-1] == 1 else Image.fromarray(pixels, "RGB")
    return picture.resize((DIGIT_SIZE, DIGIT_SIZE), Image.Resampling.NEAREST)


def latent_map(pipe: HfgenPipeline, n: int = 12) -> Image.Image:
    """The decoded ``n × n`` grid over the sliders' square ``[−3, 3]²`` (:meth:`latent_grid`, drawn by
    :func:`hfgen.plotting.plot_latent_grid`): where each digit lives in the latent plane."""
    _check_latent_pipeline(pipe)
    n = _check_int(n, "n", 2, 30)
    bounds = ((-LATENT_RANGE, LATENT_RANGE), (-LATENT_RANGE, LATENT_RANGE))
    grid = pipe.latent_grid(n=n, bounds=bounds)
    return _figure_image(plot_latent_grid(grid.images, grid.x, grid.y, title="decoded latent grid"))


# The Gradio interface: one model per browser session (its name in a gr.State), pipelines shared through the cache.


def _error_text(action: str, error: Exception) -> str:
    return f"**Could not {action}:** {type(error).__name__}: {error}"


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
        return None, None, None, "Load a model first."
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
        return None, None, None, _error_text("sample", error)
    return result.samples, result.trajectory, result.velocity, result.message


def build_demo(model: str | None = None) -> gr.Blocks:
    """The Gradio app: a model box (folder or Hub repo id) with "Load"; a "Sample" tab (steps, solver, seed, number
    of samples, bridge direction → samples, animated trajectory, velocity field over time), a "Density" tab and a
    "Latent" tab (two sliders → the decoded image), each shown when the loaded pipeline supports it. ``model`` is
    loaded at start; a folder that fails to load shows its error in the page, and the model loaded before stays."""
    import gradio as gr

    gif_dir = Path(tempfile.mkdtemp(prefix="hfgen-space-"))

    def controls(info: ModelInfo | None, model_text: str) -> list[Any]:
        steps = info is not None and info.steps is not None
        latent = None
        if info is not None and info.has_latent:
            latent = latent_map(load_pipeline(info.name))
        return [
            info.name if info is not None else None,
            model_text,
            "",
            gr.Tab(visible=info is not None and info.can_sample),
            gr.Slider(
                minimum=1,
                maximum=info.max_steps if steps else 1000,
                value=info.steps if steps else 1,
                visible=steps,
            ),
            gr.Dropdown(
                choices=list(info.solvers) if info else [],
                value=info.default_solver if info else None,
                visible=bool(info and info.solvers),
            ),
            gr.Radio(value=DIRECTIONS[0], visible=bool(info and info.directions)),
            gr.Tab(visible=bool(info and info.has_density)),
            gr.Tab(visible=bool(info and info.has_latent)),
            latent,
            None,
            gr.Image(value=None, visible=bool(info and info.has_trajectory)),
            gr.Image(value=None, visible=bool(info and info.has_velocity)),
            None,
            None,
        ]

    def on_load(name: str, current: str | None) -> list[Any]:
        return controls(*load_model(name, current))

    def on_sample(
        name: str | None, steps: float, solver: str | None, seed: float, num_samples: float, direction: str
    ) -> tuple[Image.Image | None, str | None, Image.Image | None, str]:
        return sample_controls(name, steps, solver, seed, num_samples, direction, gif_dir)

    def on_density(name: str | None, grid_size: float, half_width: float) -> tuple[Image.Image | None, str]:
        if not name:
            return None, "Load a model first."
        try:
            start = time.perf_counter()
            image = density_image(load_pipeline(name), grid_size=grid_size, half_width=half_width)
        except Exception as error:  # shown in the page, not as a traceback
            return None, _error_text("draw the density", error)
        return image, f"Density on a {int(grid_size)}² grid in {time.perf_counter() - start:.2f} s."

    def on_latent(name: str | None, z1: float, z2: float) -> tuple[Image.Image | None, str]:
        if not name:
            return None, "Load a model first."
        try:
            image = decode_latent(load_pipeline(name), z1, z2)
        except Exception as error:  # shown in the page, not as a traceback
            return None, _error_text("decode", error)
        return image, f"Decoded z = ({z1:.2f}, {z2:.2f})."

    info, model_text = (
        load_model(model) if model else (None, "Enter a saved pipeline's folder or Hub repo id, press Load.")
    )
    with gr.Blocks(title="hfgen demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# hfgen\nSample a saved hfgen pipeline: flow matching, diffusion, bridges, VAEs and more.")
        with gr.Row():
            model_box = gr.Textbox(
                value=model or "", label="Model: folder or Hub repo id", placeholder="out/fm-checkerboard", scale=4
            )
            load_button = gr.Button("Load", scale=1)
        model_summary = gr.Markdown(model_text, elem_id="model")
        status_box = gr.Markdown("", elem_id="status")
        current = gr.State(info.name if info else None)
        with gr.Tabs():
            with gr.Tab("Sample", visible=bool(info and info.can_sample)) as sample_tab:
                with gr.Row():
                    steps_slider = gr.Slider(
                        1,
                        info.max_steps if info and info.steps else 1000,
                        value=info.steps if info and info.steps else 1,
                        step=1,
                        label="steps",
                        visible=bool(info and info.steps),
                    )
                    solver_box = gr.Dropdown(
                        choices=list(info.solvers) if info else [],
                        value=info.default_solver if info else None,
                        label="solver",
                        info="sampler or ODE solver; 'scheduler' keeps the saved one",
                        visible=bool(info and info.solvers),
                    )
                    direction_box = gr.Radio(
                        list(DIRECTIONS), value=DIRECTIONS[0], label="direction", visible=bool(info and info.directions)
                    )
                with gr.Row():
                    seed_box = gr.Number(0, label="seed", precision=0, minimum=0)
                    count_slider = gr.Slider(1, MAX_SAMPLES, value=1000, step=1, label="number of samples")
                sample_button = gr.Button("Sample", variant="primary", elem_id="sample-button")
                with gr.Row():
                    samples_image = gr.Image(label="samples", type="pil", elem_id="samples", interactive=False)
                    trajectory_image = gr.Image(
                        label="trajectory",
                        type="filepath",
                        elem_id="trajectory",
                        interactive=False,
                        visible=bool(info and info.has_trajectory),
                    )
                velocity_image = gr.Image(
                    label="velocity field v(x, t) over time",
                    show_label=False,
                    type="pil",
                    elem_id="velocity",
                    interactive=False,
                    visible=bool(info and info.has_velocity),
                )
            with gr.Tab("Density", visible=bool(info and info.has_density)) as density_tab:
                with gr.Row():
                    grid_slider = gr.Slider(10, 100, value=30, step=1, label="grid size (the cost grows as its square)")
                    width_slider = gr.Slider(0.5, 10, value=3, step=0.5, label="half-width h of the square [−h, h]²")
                density_button = gr.Button("Density")
                density_output = gr.Image(label="density", type="pil", elem_id="density", interactive=False)
            with gr.Tab("Latent", visible=bool(info and info.has_latent)) as latent_tab:
                with gr.Row():
                    z1_slider = gr.Slider(-LATENT_RANGE, LATENT_RANGE, value=0, step=0.05, label="z₁")
                    z2_slider = gr.Slider(-LATENT_RANGE, LATENT_RANGE, value=0, step=0.05, label="z₂")
                with gr.Row():
                    digit_image = gr.Image(label="decoded image", type="pil", elem_id="digit", interactive=False)
                    map_image = gr.Image(
                        value=latent_map(load_pipeline(info.name)) if info and info.has_latent else None,
                        label="latent map",
                        type="pil",
                        interactive=False,
                    )

        load_outputs = [
            current,
            model_summary,
            status_box,
            sample_tab,
            steps_slider,
            solver_box,
            direction_box,
            density_tab,
            latent_tab,
            map_image,
            samples_image,
            trajectory_image,
            velocity_image,
            density_output,
            digit_image,
        ]
        load_button.click(on_load, inputs=[model_box, current], outputs=load_outputs)
        model_box.submit(on_load, inputs=[model_box, current], outputs=load_outputs)
        sample_button.click(
            on_sample,
            inputs=[current, steps_slider, solver_box, seed_box, count_slider, direction_box],
            outputs=[samples_image, trajectory_image, velocity_image, status_box],
        )
        density_button.click(
            on_density, inputs=[current, grid_slider, width_slider], outputs=[density_output, status_box]
        )
        for slider in (z1_slider, z2_slider):
            slider.change(on_latent, inputs=[current, z1_slider, z2_slider], outputs=[digit_image, status_box])
    return demo
