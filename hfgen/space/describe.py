"""What a saved pipeline offers in the demo app, found from its ``__call__`` signature, its scheduler, its methods
and its components' configs, so that a new pipeline needs no change here."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.flow_matching import TORCHDIFFEQ_METHODS
from hfgen.pipelines.score_sde import SAMPLERS as SCORE_SDE_SAMPLERS
from hfgen.schedulers.constant_alpha_ddpm import SAMPLERS as DDPM_SAMPLERS
from hfgen.schedulers.constant_alpha_ddpm import ConstantAlphaDDPMScheduler

__all__ = ["ADAPTIVE_SOLVER", "DIRECTIONS", "SCHEDULER_SOLVER", "ModelInfo", "describe"]

#: the solver choice that keeps the pipeline's own (saved) scheduler
SCHEDULER_SOLVER = "scheduler"
#: the adaptive torchdiffeq solver offered for ODE pipelines
ADAPTIVE_SOLVER = "dopri5"
#: directions of a Schrödinger bridge's transport
DIRECTIONS = ("forward", "backward")


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


def call_parameters(pipe: HfgenPipeline) -> dict[str, inspect.Parameter]:
    """The parameters of ``pipe.__call__``, by name."""
    return dict(inspect.signature(pipe.__call__).parameters)


def config_value(pipe: HfgenPipeline, key: str) -> Any:
    """``key`` of the first component config that has it (``None`` when none has)."""
    for component in pipe.components.values():
        config = getattr(component, "config", None)
        if config is not None and key in config:
            return config[key]
    return None


def point_dim(pipe: HfgenPipeline) -> int | None:
    """Dimension ``D`` of the points a pipeline draws (``None`` for an image model)."""
    if getattr(pipe, "image_shape", None) is not None:
        return None
    dim = getattr(pipe, "dim", None)
    if isinstance(dim, int):
        return dim
    if config_value(pipe, "image_shape") or config_value(pipe, "image_size"):
        return None
    dim = config_value(pipe, "dim")
    return dim if isinstance(dim, int) else None


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
    train_steps = config_value(pipe, "num_train_timesteps")
    if isinstance(train_steps, int):  # DDPM: at most T steps, all T by default
        return steps if isinstance(steps, int) else train_steps, train_steps
    if not isinstance(steps, int):
        return None, 1000
    return steps, max(1000, steps)


def _summary(pipe: HfgenPipeline, info: ModelInfo, dim: int | None) -> str:
    """A line of Markdown: the class, its components and what it draws."""
    components = ", ".join(
        f"{key} {type(value).__name__}" for key, value in pipe.components.items() if value is not None
    )
    summary = f"**{info.class_name}** ({components}) on {f'{dim}-D points' if dim else 'images'}."
    if not info.can_sample:
        summary += " It draws no samples of its own: explore its latent space."
    return summary


def describe(pipe: HfgenPipeline, name: str = "") -> ModelInfo:
    """What ``pipe`` offers in the app (see :class:`ModelInfo`); ``name`` is the folder or repo id it came from."""
    if not isinstance(pipe, HfgenPipeline):
        raise TypeError(f"pipe must be an hfgen pipeline (HfgenPipeline), got {type(pipe).__name__}")
    parameters = call_parameters(pipe)
    dim = point_dim(pipe)
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
        has_latent=callable(getattr(pipe, "decode", None)) and config_value(pipe, "latent_dim") == 2,
    )
    return replace(info, summary=_summary(pipe, info, dim))
