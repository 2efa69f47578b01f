"""A stream of coupled training pairs ``(x_0, x_1, t)`` whose coupling can run in a background thread."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from hfgen.data.toy import ToyDistribution
from hfgen.paths import couple, sample_times


class CoupledPairs:
    r"""Endless iterator of batches ``(x_0, x_1, t)``: ``x_0 ~ source``, ``x_1 ~ target``, coupled by
    ``coupling`` (:func:`hfgen.paths.couple`), and ``t ~ Beta(1, b)`` (:func:`hfgen.paths.sample_times`).

    With ``prefetch = k > 0`` the next ``k`` batches are drawn and coupled in one background thread while the
    caller trains on the current one. The exact minibatch OT solve (POT's network simplex) releases the GIL,
    so its cost overlaps with the network's forward and backward passes. All random draws happen in that one
    thread, batch after batch, so the stream is the same for a given generator state whatever ``prefetch`` is.
    """

    def __init__(
        self,
        source: ToyDistribution,
        target: ToyDistribution,
        batch_size: int,
        coupling: str = "independent",
        generator: torch.Generator | None = None,
        time_beta: float = 1.0,
        prefetch: int = 0,
    ):
        if source.dim != target.dim:
            raise ValueError(f"source dim {source.dim} differs from target dim {target.dim}")
        if prefetch < 0:
            raise ValueError(f"`prefetch` must be >= 0, got {prefetch}")
        self.source, self.target, self.batch_size = source, target, batch_size
        self.coupling, self.generator, self.time_beta = coupling, generator, time_beta
        self.prefetch = prefetch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfgen-pairs") if prefetch else None
        self._pending: deque[Future] = deque()

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One coupled batch, drawn now in the calling thread."""
        x1 = self.target.sample(self.batch_size, self.generator)
        x0 = self.source.sample(self.batch_size, self.generator)
        x0, x1 = couple(x0, x1, self.coupling)
        return x0, x1, sample_times(self.batch_size, self.generator, self.time_beta)

    def __iter__(self) -> CoupledPairs:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._executor is None:
            return self.draw()
        while len(self._pending) <= self.prefetch:
            self._pending.append(self._executor.submit(self.draw))
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
