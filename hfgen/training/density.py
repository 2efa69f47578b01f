r"""The task of each ``--model`` of ``training/train_density.py`` (:data:`DENSITY_TASKS`; the arguments and
recipes: :mod:`hfgen.arguments.density`): a Gaussian mixture fitted by EM and a kernel density estimate
(:mod:`hfgen.training.density_closed_form`), MADE, a coupling flow (RealNVP or neural spline) and a continuous
normalising flow trained by maximum likelihood (:mod:`hfgen.training.density_tasks`), on the toy targets of
:mod:`hfgen.data` or, for MADE, on binarised MNIST-family images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from hfgen.arguments.density import DensityArguments
from hfgen.training.density_closed_form import GMMTask, KDETask
from hfgen.training.density_tasks import CNFTask, CouplingTask, DensityTask, MADETask
from hfgen.training.evaluation import evaluate_in_process
from hfgen.training.trainer import train_in_process

__all__ = ["DensityTask", "evaluate_density", "train_density"]

#: the task of each ``--model``; its ``recipe`` (and MADE's ``image_recipe``) holds the model's benchmark recipe
DENSITY_TASKS: dict[str, type[DensityTask]] = {
    "gmm": GMMTask,
    "kde": KDETask,
    "made": MADETask,
    "coupling": CouplingTask,
    "cnf": CNFTask,
}


def density_task(args: DensityArguments, data: Mapping[str, Tensor] | None = None) -> DensityTask:
    """The task of ``args.model`` (:data:`DENSITY_TASKS`); ``data`` as :class:`DensityTask` takes it."""
    return DENSITY_TASKS[args.model](args, data)


def train_density(
    args: DensityArguments, data: Mapping[str, Tensor] | None = None
) -> tuple[Any, dict[str, Any], DensityTask]:
    """Train in this process without writing outputs (benchmarks, notebooks); returns the pipeline, the training
    numbers and the task (which holds the data)."""
    task = density_task(args, data)
    result = train_in_process(task)
    return result.pipeline, result.metrics, task


def evaluate_density(pipeline: Any, task: DensityTask, seed: int = 1) -> dict[str, Any]:
    """Final metrics of a trained pipeline in this process: sample quality of ``num_eval_samples`` samples (points)
    and the NLL of ``num_nll_samples`` held-out points or test images."""
    num_samples = task.args.num_eval_samples if task.test is None else 1
    return evaluate_in_process(task, pipeline, num_samples, task.args.num_nll_samples, seed)
