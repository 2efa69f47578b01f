"""The thread policy: a small network runs with one intra-op thread unless the user chose a thread count.

A 2-D pipeline's call or a small network's training step is a long series of tiny matrix products. Splitting each one
over several intra-op threads gains nothing, and when another process shares the cores each product waits for a
thread that is not running: on a 2-core machine beside busy processes, 1,000 flow-matching samples (a 4 × 256 MLP,
100 Euler steps) took 0.8–1.0 s with one thread and 4.4–7.4 s with torch's default two (``benchmarks/bench_cost.py``
measures it). So hfgen runs a pipeline whose networks hold at most :data:`SMALL_NETWORK_PARAMETERS` parameters and no
convolution with one thread for the length of the call and gives the caller's setting back afterwards; a large or
convolutional network (an image UNet) keeps the cores. The user's choice wins: with ``OMP_NUM_THREADS`` (or
``MKL_NUM_THREADS``) set, or ``torch.set_num_threads`` called after hfgen was imported, nothing is changed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

#: networks with at most this many parameters in all run with one intra-op thread (a 4 × 256 MLP has 2.2·10⁵)
SMALL_NETWORK_PARAMETERS = 2_000_000
#: environment variables by which a user sets the thread count
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_THREADS_AT_IMPORT = torch.get_num_threads()

Method = TypeVar("Method", bound=Callable[..., Any])


def user_chose_threads() -> bool:
    """Whether the user set the intra-op thread count: an environment variable of :data:`THREAD_VARIABLES`, or a
    ``torch.set_num_threads`` since hfgen was imported."""
    return any(name in os.environ for name in THREAD_VARIABLES) or torch.get_num_threads() != _THREADS_AT_IMPORT


@contextmanager
def threads_for(num_parameters: int) -> Iterator[None]:
    """One intra-op thread while the block runs, for networks of ``num_parameters`` parameters in all, when they are
    small (:data:`SMALL_NETWORK_PARAMETERS`) and the user did not choose a thread count; the caller's setting is
    given back afterwards, however the block ends."""
    previous = torch.get_num_threads()
    if previous == 1 or num_parameters > SMALL_NETWORK_PARAMETERS or user_chose_threads():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def one_thread_for_small_networks(method: Method) -> Method:
    """Run a pipeline method under :func:`threads_for` the pipeline's ``num_parameters`` (a pipeline whose
    ``small_network_threads`` is false, one with convolutions, is left alone)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.small_network_threads:
            return method(self, *args, **kwargs)
        with threads_for(self.num_parameters):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
