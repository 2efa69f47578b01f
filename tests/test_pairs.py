"""CoupledPairs: the stream of coupled training batches is the same with and without background prefetch."""

import pytest
import torch

from hfgen.data import Checkerboard, StandardGaussian
from hfgen.methods.couplings import ot_assignment
from hfgen.training.flow_matching import CoupledPairs


@pytest.mark.parametrize("coupling", ["independent", "ot", "sinkhorn"])
def test_prefetch_gives_the_same_stream(coupling):
    def take(prefetch):
        with CoupledPairs(
            StandardGaussian(2), Checkerboard(), 32, coupling, seed=0, time_beta=0.5, prefetch=prefetch
        ) as pairs:
            return [next(pairs) for _ in range(5)]

    for (*a, ga), (*b, gb) in zip(take(0), take(2), strict=True):
        for u, v in zip(a, b, strict=True):
            assert torch.equal(u, v)
        assert torch.equal(torch.randn(3, generator=ga), torch.randn(3, generator=gb))  # the step's further draws


def test_ot_batches_are_optimally_matched_and_times_follow_the_beta_law():
    with CoupledPairs(StandardGaussian(2), Checkerboard(), 64, "ot", seed=1, time_beta=0.5) as pairs:
        x0, x1, t, _ = next(pairs)
        # An optimal matching is its own optimum: re-solving returns the identity permutation.
        assert torch.equal(ot_assignment(x0, x1), torch.arange(64))
        times = torch.cat([next(pairs)[2] for _ in range(200)])
    # t ~ Beta(1, 1/2): P(t ≤ s) = 1 − √(1 − s); mean 2/3.
    assert abs(times.mean().item() - 2 / 3) < 0.01
    assert abs((times <= 0.75).double().mean().item() - 0.5) < 0.01


def test_a_stream_started_at_k_continues_the_full_stream_exactly():
    def take(start, count, prefetch):
        with CoupledPairs(StandardGaussian(2), Checkerboard(), 16, "ot", seed=3, prefetch=prefetch, start=start) as p:
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
