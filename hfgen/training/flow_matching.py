"""Flow matching as a :class:`~hfgen.training.task.TrainingTask`: arguments, the coupled batch stream, loss,
metrics, figures and the model card."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

import torch

from hfgen.arguments.flow_matching import FlowMatchingArguments
from hfgen.checks import check_int
from hfgen.data import ToyDistribution, get_toy_distribution
from hfgen.methods.cnf import cnf_log_prob
from hfgen.methods.couplings import couple
from hfgen.methods.flow_matching import cfm_loss, sample_times
from hfgen.model_cards.flow_matching import flow_matching_card
from hfgen.models import TimeMLP
from hfgen.pipelines import FlowMatchingPipeline
from hfgen.schedulers.flow_match_solvers import flow_match_scheduler
from hfgen.training.evaluation import evaluate_in_process
from hfgen.training.points import PointLikelihoodTask
from hfgen.training.task import IndexedBatches
from hfgen.training.trainer import train_in_process
from hfgen.utils import batch_generator

__all__ = ["evaluate_flow_matching", "FlowMatchingTask", "train_flow_matching"]


class CoupledPairs(IndexedBatches):
    r"""Iterator of batches ``(x_0, x_1, t, generator)``: ``x_0 ~ source``, ``x_1 ~ target``, coupled by
    ``coupling`` (:func:`~hfgen.methods.couplings.couple`; ``sigma`` is the entropic coupling's σ, regularisation
    2σ²), ``t ~ Beta(1, b)`` (:func:`~hfgen.methods.flow_matching.sample_times`), and the batch's generator,
    positioned after those draws, for any further randomness of the step (the Brownian-bridge path's ε).

    Batch ``k`` is drawn from :func:`~hfgen.utils.batch_generator` ``(seed, stream, k)``: a pure function of its
    index, so a resumed run (``start = k``) sees exactly the batches an uninterrupted one would. With
    ``prefetch = p > 0`` the next ``p`` batches are drawn and coupled ahead while the caller trains on the current
    one: in a background thread with ``workers = 0`` (the OT solve, POT's network simplex, releases the GIL, but
    the sampling and bookkeeping around it contend with the training thread for it), else in ``workers`` processes
    that solve batches side by side (each with one torch thread, forked from a fork server; a batch comes back as
    arrays and its generator as its state). Either way batch ``k`` is :meth:`draw` ``(k)``, bit for bit. Workers
    start in a few seconds, once (the fork server imports torch), and import the caller's main module as every
    start method but a plain fork does: a script that asks for them runs its work under
    ``if __name__ == "__main__":``, as the training scripts do.
    """

    def __init__(
        self,
        source: ToyDistribution,
        target: ToyDistribution,
        batch_size: int,
        coupling: str = "independent",
        seed: int = 0,
        time_beta: float = 1.0,
        prefetch: int = 0,
        stream: int = 0,
        start: int = 0,
        sigma: float = 1.0,
        workers: int = 0,
    ):
        if source.dim != target.dim:
            raise ValueError(f"source dim {source.dim} differs from target dim {target.dim}")
        if prefetch < 0:
            raise ValueError(f"`prefetch` must be >= 0, got {prefetch}")
        super().__init__(start)
        check_int(workers, "workers", low=0)
        if workers and not prefetch:
            raise ValueError(f"`workers` = {workers} processes need `prefetch` >= 1 batches to solve ahead, got 0")
        self.source, self.target, self.batch_size = source, target, batch_size
        self.coupling, self.seed, self.time_beta = coupling, seed, time_beta
        self.prefetch, self.stream, self.sigma = prefetch, stream, sigma
        self.workers = workers
        self._background: _Thread | _Processes | None = None
        if prefetch:
            self._background = _Processes(workers, self._arguments()) if workers else _Thread(self.draw)
        self._submitted = start

    def _arguments(self) -> dict[str, Any]:
        """The arguments of an in-process copy of this stream (a worker process's)."""
        names = ("source", "target", "batch_size", "coupling", "seed", "time_beta", "stream", "sigma")
        return {name: getattr(self, name) for name in names}

    def draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
        """Batch number ``index``, drawn now in the calling thread."""
        generator = batch_generator(self.seed, self.stream, index)
        x1 = self.target.sample(self.batch_size, generator)
        x0 = self.source.sample(self.batch_size, generator)
        x0, x1 = couple(x0, x1, self.coupling, generator=generator, sigma=self.sigma)
        return x0, x1, sample_times(self.batch_size, generator, self.time_beta), generator

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
        index, self.next_index = self.next_index, self.next_index + 1
        if self._background is None:
            return self.draw(index)
        while self._submitted <= index + self.prefetch:
            self._background.submit(self._submitted)
            self._submitted += 1
        return self._background.receive(index)

    def close(self) -> None:
        """Stop the background thread or processes (pending batches are discarded)."""
        if self._background is not None:
            self._background.close()
            self._background = None

    def __enter__(self) -> CoupledPairs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]


class _Thread:
    """Draws the submitted batches, in order, in one background thread."""

    def __init__(self, draw: Callable[[int], Batch]):
        self._draw = draw
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfgen-pairs")
        self._pending: deque[Future] = deque()

    def submit(self, index: int) -> None:
        self._pending.append(self._executor.submit(self._draw, index))

    def receive(self, index: int) -> Batch:
        """The oldest submitted batch (``index``)."""
        return self._pending.popleft().result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class _Processes:
    """``count`` worker processes, each with its own copy of the stream, ``CoupledPairs(**arguments)``: batch ``k``
    is drawn by process ``k mod count``. Each talks to the caller over its own pipe (one message each way per
    batch, no helper threads in the caller). They are forked from a fork server, a single-threaded process that
    imported this module once (spawned where there is none): a fork of the caller itself, whose torch threads may
    hold a lock of the allocator or of OpenMP at that moment, can leave the worker spinning forever."""

    def __init__(self, count: int, arguments: dict[str, Any]):
        context = _worker_context()
        self._workers: list[tuple[Connection, multiprocessing.process.BaseProcess]] = []
        for _ in range(count):
            here, there = context.Pipe()
            process = context.Process(target=_serve, args=(there, here, arguments), name="hfgen-pairs", daemon=True)
            process.start()
            there.close()
            self._workers.append((here, process))

    def submit(self, index: int) -> None:
        connection, process = self._workers[index % len(self._workers)]
        try:
            connection.send(index)
        except OSError as error:  # nobody reads the pipe any more
            raise _ended(process, index) from error

    def receive(self, index: int) -> Batch:
        """Batch ``index`` (submitted earlier), from the process that drew it; its error if it raised one."""
        connection, process = self._workers[index % len(self._workers)]
        try:
            while not connection.poll(1.0):
                if not process.is_alive():
                    raise _ended(process, index)
            error, arrays = connection.recv()
        except (EOFError, OSError) as error:  # the process ended while drawing
            raise _ended(process, index) from error
        if error is not None:
            raise error
        x0, x1, t, state = arrays
        generator = torch.Generator()
        generator.set_state(torch.from_numpy(state))
        return torch.from_numpy(x0), torch.from_numpy(x1), torch.from_numpy(t), generator

    def close(self) -> None:
        """Ask each process to end, then wait for it (a process still busy after a second is terminated)."""
        for connection, _ in self._workers:
            try:
                connection.send(None)
            except OSError:  # the process has ended already
                pass
            connection.close()
        for _, process in self._workers:
            process.join(timeout=1)
            if process.is_alive():
                process.terminate()
                process.join()


def _worker_context() -> multiprocessing.context.BaseContext:
    """The fork server's context, which imports this module before it forks the first worker, or ``spawn``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _ended(process: multiprocessing.process.BaseProcess, index: int) -> RuntimeError:
    process.join(timeout=1)
    return RuntimeError(f"the pairs worker process ended (exit code {process.exitcode}) before batch {index}")


def _serve(connection: Connection, callers_end: Connection, arguments: dict[str, Any]) -> None:
    """A worker process: with one torch thread, draw each batch index received on ``connection`` and send back
    ``(None, (x_0, x_1, t, generator state))`` as arrays (pickled by value), or ``(error, None)``; end on ``None``
    or when the caller is gone (this process closes its copy of the caller's end, so that the pipe can report
    that)."""
    callers_end.close()
    torch.set_num_threads(1)
    pairs = CoupledPairs(**arguments)
    while True:
        try:
            index = connection.recv()
        except (EOFError, OSError):
            return
        if index is None:
            return
        try:
            x0, x1, t, generator = pairs.draw(index)
            reply: tuple[Any, Any] = (None, (x0.numpy(), x1.numpy(), t.numpy(), generator.get_state().numpy()))
        except Exception as error:  # the caller raises it
            reply = (error, None)
        try:
            connection.send(reply)
        except (BrokenPipeError, OSError):
            return


NLL_RK4_STEPS = 32  # held-out NLL: bias 5e-4 nats against dopri5 1e-5, 0.05 of its standard error
DENSITY_RK4_STEPS = 16  # the density figure
DENSITY_GRID_SIZES = {False: 60, True: 30}  # the density figure's grid: full and fast evaluation


class FlowMatchingTask(PointLikelihoodTask):
    r"""Conditional flow matching from ``args.source`` to ``args.dataset``.

    Each micro-batch draws fresh pairs ``x_0 ~ source``, ``x_1 ~ target``, couples them (independent, exact
    minibatch OT, or entropic OT — SB-CFM with the brownian path — within this process's batch, solved batches
    ahead in ``coupling_workers`` worker processes) and minimises
    ``‖v_θ(x_t, t) − u_t‖²`` on the chosen path (:func:`hfgen.methods.flow_matching.cfm_loss`), ``t ~ Beta(1, b)``.
    """

    name = "flow_matching"
    card = staticmethod(flow_matching_card)
    evaluation_fields = ("num_eval_samples", "num_nll_samples")
    args: FlowMatchingArguments

    def __init__(self, args: FlowMatchingArguments):
        super().__init__(args)
        self.source = get_toy_distribution(args.source)
        if self.source.dim != self.target.dim:
            raise ValueError(
                f"source {args.source!r} has dimension {self.source.dim} but dataset {args.dataset!r} has "
                f"{self.target.dim}"
            )
        self.path = args.probability_path()

    @contextmanager
    def batches(self, start: int, stream: int, phase: int = 0) -> Iterator[CoupledPairs]:
        args = self.args
        coupled = args.coupling != "independent"
        workers = args.coupling_workers if coupled else 0
        with CoupledPairs(
            self.source,
            self.target,
            args.train_batch_size,
            args.coupling,
            seed=args.seed,
            time_beta=args.time_beta,
            prefetch=2 * max(workers, 1) if coupled else 0,
            stream=stream,
            start=start,
            sigma=args.sigma,
            workers=workers,
        ) as pairs:
            yield pairs

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        x0, x1, t, generator = batch
        return cfm_loss(model, x0.to(device), x1.to(device), self.path, t=t.to(device), generator=generator)

    def pipeline(self, model: TimeMLP) -> FlowMatchingPipeline:
        return FlowMatchingPipeline(model, flow_match_scheduler(self.args.solver), source=self.source)

    def sample(self, pipeline: FlowMatchingPipeline, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return pipeline(num_samples, self.args.num_inference_steps, generator=generator).samples

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> torch.Tensor | None:
        if not self.source.has_log_prob:  # the change of variables needs the source's density too
            return None
        return super().log_likelihood_points(num_points, generator)

    def log_likelihood(self, pipeline: FlowMatchingPipeline, points: torch.Tensor) -> torch.Tensor:
        return _rk4_log_prob(pipeline, points, NLL_RK4_STEPS)

    def validation_figures(self, pipeline: FlowMatchingPipeline, samples: torch.Tensor) -> dict[str, Any]:
        from hfgen import plotting

        generator = torch.Generator().manual_seed(3)
        out = pipeline(500, self.args.num_inference_steps, generator=generator, return_trajectory=True)
        reference = self.target.sample(samples.shape[0], generator)
        times = torch.linspace(0, 1, self.args.num_inference_steps + 1)
        return {
            "samples.png": plotting.plot_samples(samples, reference=reference, title="EMA samples"),
            "trajectory.png": plotting.plot_trajectory(out.trajectory, times),
        }

    def final_figures(self, pipeline: FlowMatchingPipeline) -> dict[str, Any]:
        from hfgen import plotting

        generator = torch.Generator().manual_seed(2)
        out = pipeline(2000, self.args.num_inference_steps, generator=generator, return_trajectory=True)
        # At t = 0 the CFM minimiser is v*(x, 0) = E[x_1] − x (x_0 carries no information about x_1).
        target_mean = self.target.sample(100_000, generator).mean(0)
        times = torch.linspace(0, 1, self.args.num_inference_steps + 1)
        figures = {
            "samples.png": plotting.plot_samples(
                out.samples, reference=self.target.sample(2000, generator), title="samples"
            ),
            "trajectory.png": plotting.plot_trajectory(out.trajectory, times),
            "trajectory.gif": plotting.trajectory_animation(out.trajectory[:, :500], times, bounds=(-3.5, 3.5)),
            "velocity_over_time.png": plotting.plot_velocity_over_time(pipeline.velocity_field),
            "velocity_field.png": plotting.plot_velocity_field(
                pipeline.velocity_field,
                t=0.0,
                reference=lambda x, t: target_mean - x,
                titles=("learned v(x, 0)", "optimal E[x_1] − x"),
            ),
        }
        if self.source.has_log_prob and self.target.dim == 2:
            figures["density.png"] = plotting.plot_density(
                lambda x: _rk4_log_prob(pipeline, x, DENSITY_RK4_STEPS),
                bounds=(-2.5, 2.5),
                grid_size=DENSITY_GRID_SIZES[self.args.fast_evaluation()],
            )
        return figures


def _rk4_log_prob(pipeline: FlowMatchingPipeline, points: torch.Tensor, num_steps: int) -> torch.Tensor:
    """``log p_1`` by the CNF change of variables with ``num_steps`` RK4 steps (its error against dopri5 at 1e-5:
    ``benchmarks/EVALUATION_RESULTS.md``)."""

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return pipeline.velocity(x, t, return_dict=False)[0]

    with torch.no_grad():
        return cnf_log_prob(field, points, pipeline.source_distribution.log_prob, "rk4", num_steps)


def train_flow_matching(args: FlowMatchingArguments) -> tuple[FlowMatchingPipeline, dict[str, Any]]:
    """Train in this process without writing outputs (benchmarks, notebooks); returns the EMA pipeline and the
    training numbers."""
    result = train_in_process(FlowMatchingTask(args))
    return result.pipeline, result.metrics


def evaluate_flow_matching(
    pipeline: FlowMatchingPipeline, args: FlowMatchingArguments, seed: int = 1
) -> dict[str, Any]:
    """Final metrics of a trained pipeline in this process: W2 and its floor, MMD, support, and the NLL."""
    return evaluate_in_process(FlowMatchingTask(args), pipeline, args.num_eval_samples, args.num_nll_samples, seed)
