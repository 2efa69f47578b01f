r"""Energy-based models of 2-D toy data as a :class:`~hfgen.training.task.TrainingTask`: arguments,
maximum-likelihood training with short-run persistent Langevin chains and a replay buffer kept in the checkpoint,
metrics (NLL by quadrature, W2 of Langevin samples), figures (energy landscape, samples, chains) and the model card.

One step (Du & Mordatch 2019, "Implicit Generation and Generalization in Energy-Based Models"): draw ``B`` chain
starts from the replay buffer (each restarted from uniform noise with probability ``reinit_fraction``), run
``langevin_steps`` steps of the training sampler on ``E_θ``, write the ends back, and minimise
``mean E_θ(x⁺) − mean E_θ(x⁻) + α (mean E_θ(x⁺)² + mean E_θ(x⁻)²)`` with ``x⁺`` data and ``x⁻`` the chain ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from hfgen.arguments.energy import EnergyArguments
from hfgen.cli.errors import TrainingDivergedError
from hfgen.data import get_toy_distribution
from hfgen.methods.energy import ReplayBuffer, langevin_chain, maximum_likelihood_loss
from hfgen.metrics import nll_report, sample_quality_report
from hfgen.model_cards.energy import energy_card
from hfgen.models.energy import EnergyMLP
from hfgen.pipelines.energy import EnergyPipeline
from hfgen.schedulers.langevin import LANGEVIN_SCHEDULERS, LangevinScheduler, MALAScheduler
from hfgen.training.checkpoints import list_checkpoints
from hfgen.training.task import TrainingTask
from hfgen.training.trainer import train_in_process
from hfgen.utils import batch_generator

__all__ = ["EnergyTask", "train_energy"]

#: stream index of ``batch_generator`` for the replay buffers' initial noise (process streams are 0, 1, …)
BUFFER_STREAM = -1


class EnergyTask(TrainingTask):
    r"""Maximum-likelihood training of an :class:`~hfgen.models.energy.EnergyMLP` on a 2-D toy distribution.

    Micro-batch ``k`` of process ``s`` draws the data ``x⁺ ~ p`` from ``batch_generator(seed, s, k)``; the same
    generator then picks the replay slots, the restarts and every Langevin noise, so a batch is a pure function of
    ``(seed, s, k)`` and of the replay buffer. The buffer starts uniform on ``[buffer_low, buffer_high]²`` from
    ``batch_generator(seed, −1, s)`` and is the task's state: saved in every checkpoint (all processes' buffers)
    and restored on resume, so a resumed run ends bit for bit where an uninterrupted one ends. A chain that leaves
    the finite numbers stops the run with ``FloatingPointError`` naming the step.
    """

    name = "energy"
    card = staticmethod(energy_card)
    evaluation_fields = ("num_eval_samples", "num_nll_samples")
    args: EnergyArguments

    def __init__(self, args: EnergyArguments):
        super().__init__(args)
        self.target = get_toy_distribution(args.dataset)
        self.buffer: ReplayBuffer | None = None

    def build_model(self) -> EnergyMLP:
        return EnergyMLP(**self.args.model_kwargs())

    def new_buffer(self, stream: int) -> ReplayBuffer:
        args = self.args
        return ReplayBuffer(
            args.buffer_size,
            2,
            args.buffer_low,
            args.buffer_high,
            args.reinit_fraction,
            generator=batch_generator(args.seed, BUFFER_STREAM, stream),
        )

    def training_scheduler(self) -> LangevinScheduler | MALAScheduler:
        return LANGEVIN_SCHEDULERS[self.args.training_sampler](step_size=self.args.step_size)

    @contextmanager
    def batches(
        self, start: int, stream: int, phase: int = 0
    ) -> Iterator[Iterator[tuple[Tensor, torch.Generator, int]]]:
        if self.buffer is None:
            self.buffer = self.new_buffer(stream)
        size, seed = self.args.train_batch_size, self.args.seed

        def stream_of_batches() -> Iterator[tuple[Tensor, torch.Generator, int]]:
            index = start
            while True:
                generator = batch_generator(seed, stream, index)
                yield self.target.sample(size, generator), generator, index
                index += 1

        yield stream_of_batches()

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> Tensor:
        """Replay-buffer starts → ``langevin_steps`` steps on ``E_θ`` → buffer update → the ML loss. A chain that
        reaches NaN or inf stops the run (:class:`TrainingDivergedError` with the step and the last checkpoint)."""
        data, generator, index = batch
        starts = self.buffer.sample(self.args.train_batch_size, generator)
        if device.type != "cpu":  # the chain noise is drawn on the device, seeded from the batch's generator
            generator = torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        try:
            chains = langevin_chain(
                model, starts.samples.to(device), self.training_scheduler(), self.args.langevin_steps, generator
            ).sample
        except FloatingPointError as error:
            raise self._diverged(index, error) from error
        self.buffer.update(starts.indices, chains)
        return maximum_likelihood_loss(model, data.to(device), chains, self.args.regularization).loss

    def _diverged(self, index: int, error: FloatingPointError) -> TrainingDivergedError:
        step = index // self.args.gradient_accumulation_steps + 1
        found = list_checkpoints(self.args.output_dir)
        last = f"the last good checkpoint is {found[-1][1]}" if found else "no checkpoint was saved yet"
        return TrainingDivergedError(
            f"the training chains diverged at optimizer step {step} ({error}): stopping; {last}. Lower `step_size` "
            "or the learning rate and resume with --resume_from_checkpoint"
        )

    def state_dict(self) -> dict[str, Tensor]:
        """``{"buffer": (P · buffer_size, 2)}``: every process's replay buffer, process ``s`` in rows block ``s``."""
        if self.buffer is None:
            return {}
        from accelerate import PartialState
        from accelerate.utils import gather

        state = PartialState()
        chains = self.buffer.chains
        if state.num_processes > 1:
            chains = gather(chains.to(state.device)).cpu()
        return {"buffer": chains.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        from accelerate import PartialState

        process = PartialState()
        chains = state.get("buffer")
        expected = (process.num_processes * self.args.buffer_size, 2)
        if chains is None or tuple(chains.shape) != expected:
            got = None if chains is None else tuple(chains.shape)
            raise ValueError(f"the checkpoint's replay buffer must have shape {expected}, got {got}")
        if not bool(torch.isfinite(chains).all()):
            raise ValueError("the checkpoint's replay buffer holds NaN or infinite points")
        self.buffer = self.new_buffer(process.process_index)
        mine = chains.reshape(process.num_processes, self.args.buffer_size, 2)[process.process_index]
        self.buffer.load_state_dict({"chains": mine})

    def pipeline(self, model: EnergyMLP) -> EnergyPipeline:
        args = self.args
        scheduler = LANGEVIN_SCHEDULERS[args.sample_sampler](step_size=args.sample_step_size)
        return EnergyPipeline(model, scheduler, start_low=args.buffer_low, start_high=args.buffer_high)

    def sample(self, pipeline: EnergyPipeline, num_samples: int, generator: torch.Generator) -> Tensor:
        """``num_sample_steps`` steps of the pipeline's sampler from uniform noise."""
        return pipeline(num_samples, self.args.num_sample_steps, generator=generator).samples.cpu()

    def score(self, samples: Tensor, generator: torch.Generator) -> dict[str, float]:
        report = sample_quality_report(samples, self.target, generator=generator)
        return {f"samples_{key}": value for key, value in report.items()}

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> Tensor | None:
        return self.target.sample(num_points, generator=generator)

    def log_likelihood(self, pipeline: EnergyPipeline, points: Tensor) -> Tensor:
        """``log p(x) = −E(x) − log Z``, ``log Z`` by the midpoint rule on ``grid_size²`` cells of ``[−b, b]²``."""
        return pipeline.log_prob(points, self.args.bounds, self.args.grid_size)

    def score_log_likelihood(self, log_prob: Tensor) -> dict[str, float]:
        return nll_report(log_prob, self.target.entropy)

    def figures(self, pipeline: EnergyPipeline, samples: Tensor) -> dict[str, Any]:
        from hfgen import plotting

        args = self.args
        reference = self.target.sample(samples.shape[0], torch.Generator().manual_seed(3))
        trajectory = pipeline(
            200, args.num_sample_steps, generator=torch.Generator().manual_seed(4), return_trajectory=True
        ).trajectory
        times = torch.arange(trajectory.shape[0], dtype=torch.float64)
        bound = args.grid_bound
        figures = {
            "samples.png": plotting.plot_samples(samples, reference=reference, title=f"{args.sample_sampler} samples"),
            "chains.png": plotting.plot_trajectory(trajectory, times),
            "energy.png": plotting.plot_density(
                lambda x: -pipeline.energy(x), bounds=(-bound, bound), grid_size=200, title="exp(−E(x)), unnormalised"
            ),
        }
        if self.buffer is not None:
            figures["replay_buffer.png"] = plotting.plot_samples(
                self.buffer.chains[:5_000], reference=reference, title="replay buffer (training chains)"
            )
        return figures

    def validation_figures(self, pipeline: EnergyPipeline, samples: Tensor | None) -> dict[str, Any]:
        return self.figures(pipeline, samples) if samples is not None else {}

    def final_figures(self, pipeline: EnergyPipeline) -> dict[str, Any]:
        return self.figures(pipeline, self.sample(pipeline, 2_000, torch.Generator().manual_seed(2)))


def train_energy(args: EnergyArguments) -> tuple[EnergyPipeline, dict[str, Any], EnergyTask]:
    """Train in this process without writing outputs (benchmarks, notebooks); returns the pipeline, the training
    numbers and the task (which holds the replay buffer)."""
    task = EnergyTask(args)
    result = train_in_process(task)
    return result.pipeline, result.metrics, task
