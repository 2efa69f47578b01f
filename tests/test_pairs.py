"""CoupledPairs: the stream of coupled training batches is the same with and without background prefetch, in a
thread or in a worker process."""

import os
import signal

import pytest
import torch
from factories import tiny_args

from hfgen.data import Checkerboard, StandardGaussian
from hfgen.methods.couplings import ot_assignment
from hfgen.training import FlowMatchingTask
from hfgen.training.flow_matching import CoupledPairs


@pytest.mark.parametrize("workers", [0, 1, 2], ids=["thread", "process", "two-processes"])
@pytest.mark.parametrize("coupling", ["independent", "ot", "sinkhorn"])
def test_prefetch_gives_the_same_stream(coupling, workers):
    def take(prefetch):
        with CoupledPairs(
            StandardGaussian(2),
            Checkerboard(),
            32,
            coupling,
            seed=0,
            time_beta=0.5,
            prefetch=prefetch,
            workers=workers if prefetch else 0,
        ) as pairs:
            return [next(pairs) for _ in range(5)]

    for (*a, ga), (*b, gb) in zip(take(0), take(2), strict=True):
        for u, v in zip(a, b, strict=True):
            assert torch.equal(u, v)
        assert torch.equal(torch.randn(3, generator=ga), torch.randn(3, generator=gb))  # the step's further draws


def test_worker_processes_solve_the_exact_ot_of_the_in_process_batches_at_batch_256():
    # The training process here runs two torch threads, each worker one: the batches are the same bit for bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with CoupledPairs(StandardGaussian(2), Checkerboard(), 256, "ot", seed=5, prefetch=3, workers=2) as p:
            ahead = [next(p) for _ in range(6)]
        in_process = CoupledPairs(StandardGaussian(2), Checkerboard(), 256, "ot", seed=5)
        for index, (x0, x1, t, generator) in enumerate(ahead):
            y0, y1, s, expected = in_process.draw(index)
            assert torch.equal(x0, y0) and torch.equal(x1, y1) and torch.equal(t, s)
            assert torch.equal(generator.get_state(), expected.get_state())
            assert torch.equal(ot_assignment(x0, x1), torch.arange(256))  # optimally matched already
    finally:
        torch.set_num_threads(threads)


def test_a_worker_process_that_died_is_reported_not_waited_for():
    with CoupledPairs(StandardGaussian(2), Checkerboard(), 8, "ot", prefetch=1, workers=1) as pairs:
        next(pairs)
        process = pairs._background._workers[0][1]
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        with pytest.raises(RuntimeError, match="worker process ended \\(exit code -9\\) before batch 2"):
            next(pairs)


def test_a_worker_process_error_reaches_the_caller():
    with CoupledPairs(StandardGaussian(2), Checkerboard(), 8, "bogus", prefetch=1, workers=1) as pairs:
        with pytest.raises(ValueError, match="unknown coupling 'bogus'"):
            next(pairs)


def test_ot_batches_are_optimally_matched_and_times_follow_the_beta_law():
    with CoupledPairs(StandardGaussian(2), Checkerboard(), 64, "ot", seed=1, time_beta=0.5) as pairs:
        x0, x1, t, _ = next(pairs)
        # An optimal matching is its own optimum: re-solving returns the identity permutation.
        assert torch.equal(ot_assignment(x0, x1), torch.arange(64))
        times = torch.cat([next(pairs)[2] for _ in range(200)])
    # t ~ Beta(1, 1/2): P(t ≤ s) = 1 − √(1 − s); mean 2/3.
    assert abs(times.mean().item() - 2 / 3) < 0.01
    assert abs((times <= 0.75).double().mean().item() - 0.5) < 0.01


@pytest.mark.parametrize("workers", [0, 1], ids=["thread", "process"])
def test_a_stream_started_at_k_continues_the_full_stream_exactly(workers):
    def take(start, count, prefetch):
        with CoupledPairs(
            StandardGaussian(2), Checkerboard(), 16, "ot", seed=3, prefetch=prefetch, start=start, workers=workers
        ) as p:
            return [next(p) for _ in range(count)]

    full, resumed = take(0, 6, 2), take(4, 2, 1)
    for a, b in zip(full[4:], resumed, strict=True):
        for u, v in zip(a[:3], b[:3], strict=True):
            assert torch.equal(u, v)


def test_streams_of_different_processes_differ():
    def first(stream):
        with CoupledPairs(StandardGaussian(2), Checkerboard(), 16, seed=0, stream=stream) as pairs:
            return next(pairs)[1]

    assert not torch.equal(first(0), first(1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="dim"):
        CoupledPairs(StandardGaussian(3), Checkerboard(), 8)
    with pytest.raises(ValueError, match="prefetch"):
        CoupledPairs(StandardGaussian(2), Checkerboard(), 8, prefetch=-1)
    with pytest.raises(ValueError, match="start"):
        CoupledPairs(StandardGaussian(2), Checkerboard(), 8, start=-1)
    with pytest.raises(ValueError, match="`workers` must be an int >= 0, got -1"):
        CoupledPairs(StandardGaussian(2), Checkerboard(), 8, prefetch=1, workers=-1)
    with pytest.raises(ValueError, match="`workers` = 2 processes need `prefetch` >= 1"):
        CoupledPairs(StandardGaussian(2), Checkerboard(), 8, workers=2)


@pytest.mark.parametrize("coupling", ["ot", "sinkhorn"])
def test_a_run_s_coupling_workers_solve_its_batches_and_change_none_of_them(tmp_path, coupling):
    def take(coupling_workers):
        task = FlowMatchingTask(tiny_args(tmp_path, coupling=coupling, coupling_workers=coupling_workers, seed=4))
        with task.batches(start=3, stream=1) as batches:
            assert (batches.workers, batches.prefetch) == (coupling_workers, 2 * max(coupling_workers, 1))
            return [next(batches) for _ in range(5)]

    for (*a, ga), (*b, gb) in zip(take(0), take(2), strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
        assert torch.equal(ga.get_state(), gb.get_state())
    # independent pairs need no solve: they are drawn in the training thread whatever the setting
    with FlowMatchingTask(tiny_args(tmp_path, coupling_workers=2)).batches(start=0, stream=0) as batches:
        assert (batches.workers, batches.prefetch) == (0, 0)


def test_worker_processes_come_from_a_fork_server_not_from_the_training_process():
    # A fork of the caller, whose torch threads may hold the allocator's or OpenMP's lock at that moment, can leave
    # a worker spinning forever; a fork server is a single-threaded process that imported the module once.
    import multiprocessing

    from hfgen.training.flow_matching import _worker_context

    expected = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    assert _worker_context().get_start_method() == expected
