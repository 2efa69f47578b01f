"""What every layer shares: input checks, the counter-based randomness contract and small type aliases."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

VelocityField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``velocity(x, t) -> (N, D)``: a field at points ``x`` ``(N, D)`` and time ``t`` (a scalar or ``(N,)`` tensor)."""
Sampler = Callable[[int, torch.Generator | None], torch.Tensor]
"""``sampler(num_samples, generator) -> (num_samples, D)``, e.g. ``ToyDistribution.sample``."""


def batch_generator(seed: int, stream: int, index: int) -> torch.Generator:
    """The generator of batch ``index`` of stream ``stream`` (one per process) of a run seeded ``seed``.

    Counter-based randomness: every batch has its own seed, a hash of ``(seed, stream, index)``, so batch ``k``
    is the same whether the run reaches it directly, after a resume, or with any prefetch depth.
    """
    digest = hashlib.blake2b(f"{seed}:{stream}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def check_num_samples(num_samples: object, name: str = "num_samples") -> int:
    """Return ``num_samples`` if it is an ``int >= 1`` (bools rejected), else raise a clear error."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise TypeError(f"`{name}` must be an int >= 1, got {num_samples!r} ({type(num_samples).__name__})")
    if num_samples < 1:
        raise ValueError(f"`{name}` must be >= 1, got {num_samples}")
    return num_samples


#: tensors of the output's size a sampler holds at once: the state, the network's output and a two-stage solver's
#: stage point and derivative. The network's activations come on top, so the estimate is a lower bound.
SAMPLING_WORKING_COPIES = 4


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes that can still be allocated on ``device``: free GPU memory (``torch.cuda.mem_get_info``), or on the
    CPU ``MemAvailable`` of ``/proc/meminfo`` capped by a cgroup v2 limit, else free pages
    (``os.sysconf('SC_AVPHYS_PAGES')``); ``None`` when the system does not say."""
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    found = None
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    try:
        with (
            open("/sys/fs/cgroup/memory.max", encoding="ascii") as limit,
            open("/sys/fs/cgroup/memory.current", encoding="ascii") as used,
        ):
            cap = limit.read().strip()
            if cap != "max":
                found = min(found, int(cap) - int(used.read().strip()))
    except (OSError, ValueError):
        pass
    return found


def check_sampling_memory(
    num_samples: int,
    values_per_sample: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    copies: int = SAMPLING_WORKING_COPIES,
    name: str = "num_samples",
) -> int:
    """Return ``num_samples`` if sampling them fits in memory, else raise a ``ValueError`` saying what it needs.

    The estimate is ``bytes = num_samples × values_per_sample × itemsize(dtype) × copies`` (by default
    :data:`SAMPLING_WORKING_COPIES`; add the states a returned trajectory keeps), compared with
    :func:`available_memory` of ``device``: a lower bound, so the check refuses at once what cannot fit instead of
    failing after a long allocation.
    """
    needed = num_samples * values_per_sample * dtype.itemsize * copies
    free = available_memory(device)
    if free is not None and needed > free:
        where = torch.device("cpu" if device is None else device)
        raise ValueError(
            f"`{name}`={num_samples:,} needs at least {_size(needed)} to sample ({values_per_sample:,} values per "
            f"sample × {copies} copies × {dtype.itemsize} bytes), but {_size(max(free, 0))} is available on {where}: "
            f"sample in batches of at most {max(1, num_samples * free // needed):,} and concatenate them"
        )
    return num_samples


def _size(num_bytes: int) -> str:
    """``num_bytes`` in GiB, MiB or KiB, one decimal."""
    for unit, power in (("GiB", 30), ("MiB", 20)):
        if num_bytes >= 2**power:
            return f"{num_bytes / 2**power:,.1f} {unit}"
    return f"{num_bytes / 2**10:,.1f} KiB"


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """Return ``generator`` if it is a ``torch.Generator`` or None, else raise a ``TypeError`` naming ``name``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`{name}` must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an ``int >= 1`` (bools rejected), else raise a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
    return value


def check_points(x: object, dim: int | None = None, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a finite floating ``(N, D)`` tensor with ``N >= 1`` (and ``D == dim`` if given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    expected = f"(N, {dim})" if dim is not None else "(N, D)"
    if x.ndim != 2 or x.shape[0] < 1 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"`{name}` must be a non-empty tensor of shape {expected}, got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {x.dtype}")
    bad = ~torch.isfinite(x).all(dim=1)
    if bad.any():
        raise ValueError(
            f"`{name}` has {int(bad.sum())} of {x.shape[0]} rows with NaN or inf values; all values must be finite"
        )
    return x


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling of its own and a rename (``os.replace``): a reader sees
    the old file or the new one, never a half-written file, even while several processes write it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
