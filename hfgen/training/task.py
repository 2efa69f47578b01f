"""What a model family tells the :class:`~hfgen.training.trainer.Trainer`: a :class:`TrainingTask` (its networks,
the :class:`Phase` plan that optimises them, batches, loss, pipeline, evaluation, figures and card), and where a run
stands (:class:`Progress`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from diffusers.models.modeling_utils import ModelMixin

from hfgen.arguments import TrainingArguments

__all__ = ["Phase", "TrainingTask"]


@dataclass(frozen=True)
class Phase:
    """``num_steps`` optimizer steps on the task's model ``model`` with a fresh optimizer, schedule and EMA; with
    ``optimize=False`` the steps are the task's own closed-form updates (:meth:`TrainingTask.update`, e.g. EM)."""

    model: str
    num_steps: int
    name: str = "train"
    optimize: bool = True


@dataclass(frozen=True)
class Progress:
    """Where a run stands after an optimizer step: ``step`` counts all phases' steps, ``phase`` is the index of the
    current phase and ``phase_step`` its steps done; ``phase_done`` is true after its last step."""

    step: int
    phase: int
    phase_step: int
    phase_done: bool
    run_done: bool


class IndexedBatches:
    """An endless iterator of batches ``draw(start), draw(start + 1), …``: where batch ``k`` is a pure function of
    ``k`` (drawn from ``batch_generator(seed, stream, k)``), a run resumed at ``start = k`` sees exactly the batches
    an uninterrupted one would."""

    def __init__(self, start: int = 0):
        if start < 0:
            raise ValueError(f"`start` must be >= 0, got {start}")
        self.next_index = start

    def draw(self, index: int) -> Any:
        """Batch number ``index``."""
        raise NotImplementedError

    def __iter__(self) -> IndexedBatches:
        return self

    def __next__(self) -> Any:
        index, self.next_index = self.next_index, self.next_index + 1
        return self.draw(index)


class TrainingTask(ABC):
    """What a model family tells the ``Trainer``: its networks, phases, data, loss, pipeline, metrics and figures.

    A one-network task implements :meth:`build_model`; a task with several overrides :meth:`build_models` and
    :meth:`phases`. :meth:`pipeline` receives the task's models as keyword arguments (``pipeline(model=…)`` for
    one network).
    """

    #: tracker project name and the card's template in ``model_cards/``
    name: str = "hfgen"
    #: the arguments that size the full final evaluation: ``(samples scored, held-out points whose likelihood is
    #: scored)``; ``None``: none (a task without either has no final evaluation)
    evaluation_fields: ClassVar[tuple[str | None, str | None]] = (None, None)
    #: the fast final evaluation's sizes: each full size capped at these
    fast_evaluation_sizes: ClassVar[tuple[int, int]] = (2_000, 200)
    #: the family's card renderer, ``card(args, metrics, repo_id)`` (``hfgen.model_cards.<family>``)
    card: ClassVar[Callable[..., Any]]

    def __init__(self, args: TrainingArguments):
        self.args = args

    def check_processes(self, num_processes: int) -> None:
        """Refuse (``ValueError``) a run that cannot go on ``num_processes`` processes, before its folder is touched
        (a task whose data each process shares checks that a micro-batch fits one process's share)."""
        return None

    def build_model(self) -> ModelMixin:
        """The trainable network of a one-network task (seeded by the caller)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_model or build_models")

    def build_models(self) -> dict[str, ModelMixin]:
        """The task's networks by name (built in this order, after the seed is set)."""
        return {"model": self.build_model()}

    def phases(self) -> list[Phase]:
        """The optimisation plan (called after :meth:`build_models`); one phase of ``max_train_steps`` steps by
        default."""
        return [Phase("model", self.args.max_train_steps)]

    @abstractmethod
    def batches(self, start: int, stream: int, phase: int = 0) -> AbstractContextManager[Iterator[Any]]:
        """Context manager over the micro-batches ``start, start + 1, …`` of process ``stream`` in phase ``phase``.
        Resuming is exact when batch ``k`` is a pure function of ``(seed, stream, phase, k)``, or when the task keeps
        what it needs in :meth:`state_dict`."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        """The scalar training loss of one micro-batch."""

    def update(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        """One closed-form step of a ``Phase(optimize=False)`` (an EM iteration, say), run without gradients;
        returns the scalar to log (the objective before or after the step)."""
        raise NotImplementedError(f"{type(self).__name__} has a phase with optimize=False but no update()")

    @abstractmethod
    def pipeline(self, **models: ModelMixin) -> Any:
        """The inference pipeline around the task's models (which hold the weights to use)."""

    def sample(self, pipeline: Any, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """``num_samples`` model samples, for validation and evaluation."""
        raise NotImplementedError

    def score(self, samples: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """Metrics of (all processes') samples against held-out data drawn from ``generator`` (seeded the same at
        every evaluation, so the reference set is fixed)."""
        raise NotImplementedError

    def evaluation_sizes(self) -> tuple[int, int]:
        """``(samples, held-out likelihood points)`` of the final evaluation: the arguments named by
        :attr:`evaluation_fields`, capped at :attr:`fast_evaluation_sizes` when
        :meth:`~hfgen.arguments.TrainingArguments.fast_evaluation` says so."""
        full = [getattr(self.args, name) if name else 0 for name in self.evaluation_fields]
        if any(full) and self.args.fast_evaluation():
            return min(full[0], self.fast_evaluation_sizes[0]), min(full[1], self.fast_evaluation_sizes[1])
        return full[0], full[1]

    def evaluate(
        self, trainer: Any, pipeline: Any, num_samples: int, num_likelihood_points: int, seed: int
    ) -> tuple[dict[str, Any], torch.Tensor | None]:
        """Metrics of ``pipeline`` and the samples they came from: by default :meth:`Trainer.evaluate_pipeline`
        (samples across processes scored by :meth:`score`, and the likelihood of held-out points)."""
        return trainer.evaluate_pipeline(pipeline, num_samples, num_likelihood_points, seed)

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> torch.Tensor | None:
        """Held-out data points whose model log-density is scored (``None``: no likelihood for this task)."""
        return None

    def log_likelihood(self, pipeline: Any, points: torch.Tensor) -> torch.Tensor:
        """Model log-density of ``points`` (only called when :meth:`log_likelihood_points` gives points)."""
        raise NotImplementedError

    def score_log_likelihood(self, log_prob: torch.Tensor) -> dict[str, float]:
        """Metrics of the gathered log-densities."""
        raise NotImplementedError

    def validation_due(self, progress: Progress) -> bool:
        """Validate now? Every ``validation_steps`` optimizer steps by default."""
        every = self.args.validation_steps
        return bool(every) and progress.step % every == 0

    def checkpoint_due(self, progress: Progress) -> bool:
        """Save a checkpoint now? Every ``checkpointing_steps`` optimizer steps by default."""
        every = self.args.checkpointing_steps
        return bool(every) and progress.step % every == 0

    def end_phase(self, phase: int, losses: list[float]) -> dict[str, Any]:
        """Called when phase ``phase`` ends, with the loss of each of its steps; returns numbers to log."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors the task keeps across steps (persistent Markov chains, replay buffers …), saved in checkpoints
        and given back to :meth:`load_state_dict` on resume."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, but the checkpoint holds {sorted(state)}")

    def validation_figures(self, pipeline: Any, samples: torch.Tensor | None) -> dict[str, Any]:
        """Figures saved at each validation (file name → matplotlib Figure)."""
        return {}

    def final_figures(self, pipeline: Any) -> dict[str, Any]:
        """Figures saved with the final pipeline (file name → matplotlib Figure)."""
        return {}

    def model_card(self, metrics: dict[str, Any], repo_id: str | None) -> Any:
        """The run's ``huggingface_hub.ModelCard``: the family's :attr:`card` of its arguments and ``metrics``."""
        return self.card(self.args, metrics, repo_id)
