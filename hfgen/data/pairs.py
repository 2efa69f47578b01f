"""A stream of coupled training pairs ``(x_0, x_1, t)`` whose coupling can run in a background thread."""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from hfgen.data.toy import ToyDistribution
from hfgen.paths import couple, sample_times


def batch_generator(seed: int, stream: int, index: int) -> torch.Generator:
    """The generator of batch ``index`` of stream ``stream`` (one per process) of a run seeded ``seed``.

    Counter-based randomness: every batch has its own seed, a hash of ``(seed, stream, index)``, so batch ``k``
    is the same whether the run reaches it directly, after a resume, or with any prefetch depth.
    """
    digest = hashlib.blake2b(f"{seed}:{stream}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class CoupledPairs:
    r"""Iterator of batches ``(x_0, x_1, t, generator)``: ``x_0 ~ source``, ``x_1 ~ target``, coupled by
    ``coupling`` (:func:`hfgen.paths.couple`; ``sigma`` is the entropic coupling's σ, regularisation 2σ²),
    ``t ~ Beta(1, b)`` (:func:`hfgen.paths.sample_times`), and the batch's generator, positioned after those
    draws, for any further randomness of the step (the Brownian-bridge path's ε).

    Batch ``k`` is drawn from :func:`batch_generator` ``(seed, stream, k)``: a pure function of its index, so a
    resumed run (``start = k``) sees exactly the batches an uninterrupted one would. With ``prefetch = p > 0``
    the next ``p`` batches are drawn and coupled in one background thread while the caller trains on the current
    one: the exact minibatch OT solve (POT's network simplex) releases the GIL, so its cost overlaps with the
    network's forward and backward passes.
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
    ):
        if source.dim != target.dim:
            raise ValueError(f"source dim {source.dim} differs from target dim {target.dim}")
        if prefetch < 0:
            raise ValueError(f"`prefetch` must be >= 0, got {prefetch}")
        if start < 0:
            raise ValueError(f"`start` must be >= 0, got {start}")
        self.source, self.target, self.batch_size = source, target, batch_size
        self.coupling, self.seed, self.time_beta = coupling, seed, time_beta
        self.prefetch, self.stream, self.next_index, self.sigma = prefetch, stream, start, sigma
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfgen-pairs") if prefetch else None
        self._pending: deque[Future] = deque()
        self._submitted = start

    def draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
        """Batch number ``index``, drawn now in the calling thread."""
        generator = batch_generator(self.seed, self.stream, index)
        x1 = self.target.sample(self.batch_size, generator)
        x0 = self.source.sample(self.batch_size, generator)
        x0, x1 = couple(x0, x1, self.coupling, generator=generator, sigma=self.sigma)
        return x0, x1, sample_times(self.batch_size, generator, self.time_beta), generator

    def __iter__(self) -> CoupledPairs:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator]:
        index, self.next_index = self.next_index, self.next_index + 1
        if self._executor is None:
            return self.draw(index)
        while len(self._pending) <= self.prefetch:
            self._pending.append(self._executor.submit(self.draw, self._submitted))
            self._submitted += 1
        return self._pending.popleft().result()

    def close(self) -> None:
        """Stop the background thread (pending batches are discarded)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._pending.clear()

    def __enter__(self) -> CoupledPairs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
