"""The shared base of the tasks that train a :class:`~hfgen.models.TimeMLP` on a toy target of :mod:`hfgen.data`
(DDPM on points, score SDEs, flow matching): the target, the network, the sample-quality score and the samples
figure; :class:`PointLikelihoodTask` adds the held-out NLL of a model with a log-density."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hfgen.data import get_toy_distribution
from hfgen.metrics import nll_report, sample_quality_report
from hfgen.models import TimeMLP
from hfgen.training.task import TrainingTask


class PointTask(TrainingTask):
    """A task on the toy target ``args.dataset`` with a :class:`TimeMLP` network (width, depth, activation, time
    embedding and position frequencies from the arguments)."""

    #: the file name of :meth:`trajectory_figure`
    trajectory_file: ClassVar[str] = "trajectory.png"

    def __init__(self, args: Any):
        super().__init__(args)
        self.target = get_toy_distribution(args.dataset)

    def build_model(self, **options: Any) -> TimeMLP:
        """The network; ``options`` are further :class:`TimeMLP` arguments (``time_scale``, say)."""
        args = self.args
        return TimeMLP(
            dim=self.target.dim,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            activation=args.activation,
            time_embedding=args.time_embedding,
            num_position_frequencies=args.num_position_frequencies,
            **options,
        )

    def score(self, samples: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        report = sample_quality_report(samples, self.target, generator=generator)
        return {f"samples_{key}": value for key, value in report.items()}

    def trajectory_figure(self, pipeline: Any, num_samples: int, seed: int) -> Any:
        """The sampler's trajectories of ``num_samples`` samples drawn from ``seed`` (the file
        :attr:`trajectory_file`)."""
        raise NotImplementedError

    def validation_figures(self, pipeline: Any, samples: torch.Tensor) -> dict[str, Any]:
        """On a 2-D target: :meth:`samples_figure` and the trajectories of 500 samples (seed 3)."""
        if self.target.dim != 2:
            return {}
        return {**self.samples_figure(samples), self.trajectory_file: self.trajectory_figure(pipeline, 500, seed=3)}

    def samples_figure(self, samples: torch.Tensor) -> dict[str, Any]:
        """``samples.png``: the validation's EMA samples beside as many target samples (seed 3)."""
        from hfgen import plotting

        reference = self.target.sample(samples.shape[0], torch.Generator().manual_seed(3))
        return {"samples.png": plotting.plot_samples(samples, reference=reference, title="EMA samples")}


class PointLikelihoodTask(PointTask):
    """A :class:`PointTask` whose pipeline has a log-density: the NLL of held-out target points, against the
    target's entropy, where the target has a log-density."""

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> torch.Tensor | None:
        if not self.target.has_log_prob:
            return None
        return self.target.sample(num_points, generator=generator)

    def log_likelihood(self, pipeline: Any, points: torch.Tensor) -> torch.Tensor:
        return pipeline.log_prob(points)

    def score_log_likelihood(self, log_prob: torch.Tensor) -> dict[str, float]:
        return nll_report(log_prob, self.target.entropy)
