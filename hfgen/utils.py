"""What every layer shares: input checks, the counter-based randomness contract and small type aliases."""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from hfgen.checks import check_int

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


def batches_per_epoch(num_items: int, num_streams: int, batch_size: int) -> int:
    """Whole micro-batches of ``batch_size`` in one stream's share ``⌊num_items / num_streams⌋`` of an epoch's
    items (one stream per process); a ``ValueError`` when not even one fits."""
    per_epoch = (num_items // num_streams) // batch_size
    if per_epoch < 1:
        raise ValueError(
            f"`train_batch_size` {batch_size} is larger than one process's share of the {num_items} training "
            f"images ({num_streams} processes): pass --train_batch_size {max(1, num_items // num_streams)} or less"
        )
    return per_epoch


def check_num_samples(num_samples: object, name: str = "num_samples") -> int:
    """Return ``num_samples`` if it is an ``int >= 1`` (:func:`hfgen.checks.check_int`)."""
    return check_int(num_samples, name)


#: :func:`hfgen.checks.check_int` (an ``int >= 1`` by default), under the name the training modules import
check_positive_int = check_int


def check_batch_size(batch_size: object, num_items: int, name: str = "batch_size") -> int:
    """``batch_size`` (an ``int >= 1``, bools refused) capped at ``num_items``: the size of the chunks that
    ``num_items`` inputs are processed in (``Tensor.split`` overflows on a size past 2⁶³)."""
    return min(check_int(batch_size, name), max(num_items, 1))


#: tensors of the output's size a sampler holds at once: the state, the network's output and a two-stage solver's
#: stage point and derivative. The network's activations come on top, so the estimate is a lower bound.
SAMPLING_WORKING_COPIES = 4
#: bytes a scheduler's plan of ``n`` steps holds per step while it is built: the timesteps tensor and the grid as
#: Python floats (measured 19–89 bytes a step for hfgen's schedulers, 2·10⁶ steps)
SCHEDULE_BYTES_PER_STEP = 64


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes that can still be allocated on ``device``: free GPU memory (``torch.cuda.mem_get_info``), or on the
    CPU ``MemAvailable`` of ``/proc/meminfo`` capped by a cgroup v2 limit and by this process's address-space and
    data limits (``RLIMIT_AS``, ``RLIMIT_DATA``, as ``ulimit -v`` sets them), else free pages
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
    headroom = _process_limit_headroom()
    return found if headroom is None else min(found, headroom)


def _process_limit_headroom() -> int | None:
    """Bytes left under this process's soft ``RLIMIT_AS`` (minus ``VmSize``) and ``RLIMIT_DATA`` (minus ``VmData``)
    of ``/proc/self/status``; ``None`` when neither is set or the system does not say."""
    try:
        import resource

        limits = {
            "VmSize": resource.getrlimit(resource.RLIMIT_AS)[0],
            "VmData": resource.getrlimit(resource.RLIMIT_DATA)[0],
        }
        limits = {key: value for key, value in limits.items() if value != resource.RLIM_INFINITY}
        if not limits:
            return None
        with open("/proc/self/status", encoding="ascii") as file:
            used = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in file if line.split(":")[0] in limits}
    except (ImportError, OSError, ValueError, IndexError):
        return None
    return min(limit - used.get(key, 0) for key, limit in limits.items())


def check_memory(
    num_bytes: int,
    device: torch.device | str | None,
    request: str,
    remedy: str | Callable[[int], str],
    detail: str = "",
) -> None:
    """Refuse at once, with a ``ValueError`` "``request`` needs at least … ``detail``, but … is available on
    ``device``: ``remedy``", a computation whose estimate of ``num_bytes`` exceeds :func:`available_memory` of
    ``device``, instead of failing after a long allocation or being killed. ``remedy`` may be a function of the
    available bytes. Every memory refusal of hfgen goes through this one comparison."""
    free = available_memory(device)
    if free is None or num_bytes <= free:
        return
    free = max(free, 0)
    advice = remedy(free) if callable(remedy) else remedy
    where = torch.device("cpu" if device is None else device)
    raise ValueError(
        f"{request} needs at least {_size(num_bytes)}{detail}, but {_size(free)} is available on {where}: {advice}"
    )


def check_sampling_memory(
    num_samples: int,
    values_per_sample: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    copies: int = SAMPLING_WORKING_COPIES,
    name: str = "num_samples",
    num_steps: int = 0,
    return_trajectory: bool = False,
) -> int:
    """Return ``num_samples`` if sampling them fits in memory, else raise a ``ValueError`` saying what it needs.

    The estimate, one for every sampling path (noise start, given start points or images, SDEdit, trajectories), is
    ``bytes = num_samples × values_per_sample × itemsize(dtype) × (copies + kept) + num_steps × b``: ``copies``
    working tensors of the output's size (:data:`SAMPLING_WORKING_COPIES`), the ``kept = num_steps + 1`` states a
    returned trajectory holds, and the scheduler's plan of ``num_steps`` steps at ``b =``
    :data:`SCHEDULE_BYTES_PER_STEP` (the network's activations come on top: a lower bound).
    :func:`check_memory` compares it with the memory available on ``device``.
    """
    kept = num_steps + 1 if return_trajectory else 0
    per_sample = values_per_sample * dtype.itemsize * (copies + kept)
    schedule = num_steps * SCHEDULE_BYTES_PER_STEP
    states = f": {copies} working, {kept:,} of the trajectory" if kept else ""
    plan = f"; plus {_size(schedule)} for the plan of {num_steps:,} steps" if num_steps else ""
    detail = (
        f" to sample ({values_per_sample:,} values per sample × {copies + kept:,} copies × {dtype.itemsize} bytes"
        f"{states}{plan})"
    )

    def remedy(free: int) -> str:
        batch = (free - schedule) // per_sample
        if batch >= 1:
            return f"sample in batches of at most {batch:,} and concatenate them"
        fewer = "use fewer `num_inference_steps`"
        return f"{fewer} or leave out `return_trajectory`" if kept else fewer

    check_memory(num_samples * per_sample + schedule, device, f"`{name}`={num_samples:,}", remedy, detail)
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


def check_points(x: object, dim: int | None = None, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a finite floating ``(N, D)`` tensor with ``N >= 1`` (and ``D == dim`` if given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    expected = f"(N, {dim})" if dim is not None else "(N, D)"
    if x.ndim != 2 or x.shape[0] < 1 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"`{name}` must be a non-empty tensor of shape {expected}, got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {x.dtype}")
    check_has_values(x, name)
    bad = ~torch.isfinite(x).all(dim=1)
    if bad.any():
        raise ValueError(
            f"`{name}` has {int(bad.sum())} of {x.shape[0]} rows with NaN or inf values; all values must be finite"
        )
    return x


def check_point_shape(x: object, dim: int, name: str = "sample") -> torch.Tensor:
    """Return ``x`` if it is a tensor of shape ``(N, dim)`` (its values are not read)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != dim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"`{name}` must have shape (N, {dim}), got {shape}")
    return x


def check_data_points(data_points: object, name: str = "data_points") -> torch.Tensor:
    """``data_points`` (a list of ``M`` points of one dimension ``D``) as a finite float64 ``(M, D)`` tensor,
    ``M, D >= 1``."""
    points = torch.as_tensor(data_points, dtype=torch.float64)
    if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] < 1:
        raise ValueError(
            f"`{name}` must be a non-empty list of points of equal dimension (M, D), got shape {tuple(points.shape)}"
        )
    if not torch.isfinite(points).all():
        raise ValueError(f"`{name}` must be finite (no NaN or inf)")
    return points


def check_images(
    images: object, shape: tuple[int, ...], name: str = "images", unit_range: bool = False
) -> torch.Tensor:
    """Check that ``images`` is a finite floating ``(N, C, H, W)`` tensor with ``N >= 1`` and ``(C, H, W) == shape``
    (with values in ``[0, 1]`` if ``unit_range``); return it."""
    expected = f"(N, {', '.join(map(str, shape))})"
    values = " in [0, 1]" if unit_range else ""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape {expected}{values}, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] < 1 or tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(
            f"`{name}` must be a non-empty tensor of shape {expected} (channels, height, width), got "
            f"{tuple(images.shape)}"
        )
    if not torch.is_floating_point(images):
        raise TypeError(f"`{name}` must be a floating-point tensor{values}, got dtype {images.dtype}")
    check_has_values(images, name)
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"`{name}` must be finite, got NaN or infinite values")
    if unit_range:
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"`{name}` must lie in [0, 1], got values from {low:g} to {high:g}")
    return images


def check_has_values(x: torch.Tensor, name: str) -> torch.Tensor:
    """Refuse a meta tensor (a shape and dtype without values): nothing can be computed from it."""
    if x.is_meta:
        raise ValueError(
            f"`{name}` is a meta tensor (a shape without values); give a tensor on a device that holds its values "
            "(cpu, cuda)"
        )
    return x


def check_same_shape(
    x: torch.Tensor, like: torch.Tensor, name: str, like_name: str = "`sample`", note: str = ""
) -> torch.Tensor:
    """Return ``x`` if it has the shape of ``like``; the refusal names both (``note`` says what ``x`` is)."""
    if x.shape != like.shape:
        what = f"`{name}`{f' ({note})' if note else ''}"
        raise ValueError(f"{what} must have the shape of {like_name} {tuple(like.shape)}, got {tuple(x.shape)}")
    return x


def per_sample(values: torch.Tensor, like: torch.Tensor, name: str = "timesteps") -> torch.Tensor:
    """Coefficients at the timesteps ``name``, a scalar or one per sample ``(N,)``, in the device and dtype of
    ``like`` ``(N, …)`` and shaped to multiply it."""
    values = values.to(device=like.device, dtype=like.dtype)
    if values.ndim > 1:
        raise ValueError(f"`{name}` must be a scalar or a 1-D tensor, got shape {tuple(values.shape)}")
    if values.ndim == 1:
        if values.shape[0] not in (1, like.shape[0]):
            raise ValueError(
                f"`{name}` must be a scalar or have one entry per sample ({like.shape[0]}), "
                f"got shape {tuple(values.shape)}"
            )
        values = values.reshape(-1, *([1] * (like.ndim - 1)))
    return values


def check_times(
    t: object,
    num_points: int,
    name: str = "t",
    low: float = 0.0,
    high: float = 1.0,
    low_open: bool = False,
    network: str = "network",
) -> torch.Tensor:
    """``t`` as a tensor: a real number or a ``(num_points,)`` tensor of times in ``[low, high]`` (``(low, high]``
    if ``low_open``), the times the ``network`` is trained on; NaN and inf are refused."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if isinstance(t, bool) or not isinstance(t, int | float | torch.Tensor):
        raise TypeError(f"`{name}` must be a float or a tensor of times in {interval}, got {type(t).__name__}")
    t = t if isinstance(t, torch.Tensor) else torch.tensor(float(t), dtype=torch.float64)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"`{name}` must hold real times in {interval}, got dtype {t.dtype}")
    check_has_values(t, name)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != num_points):
        raise ValueError(f"`{name}` must be a scalar or a tensor of shape ({num_points},), got shape {tuple(t.shape)}")
    inside = ((t > low) if low_open else (t >= low)) & (t <= high)  # False for NaN
    outside = ~inside.reshape(-1)
    if outside.any():
        bad = t.reshape(-1)[outside][0].item()
        raise ValueError(f"`{name}` must lie in {interval}, the times the {network} is trained on, got {bad}")
    return t


def check_integer_steps(timestep: object, num_points: int, low: int, high: int, name: str = "timestep") -> torch.Tensor:
    """``timestep`` as a long tensor: an int, or an integer tensor (a scalar or ``(num_points,)``), of steps in
    ``low … high`` (floats, bools, NaN and steps out of range are refused)."""
    expected = f"an int or an integer tensor of steps in {low} … {high}"
    if isinstance(timestep, bool) or not isinstance(timestep, numbers.Integral | torch.Tensor):
        raise TypeError(f"`{name}` must be {expected}, got {timestep!r} ({type(timestep).__name__})")
    if isinstance(timestep, numbers.Integral):
        if not low <= timestep <= high:
            raise ValueError(f"`{name}` must be {expected}, got {timestep}")
        return torch.tensor(int(timestep))
    if timestep.dtype.is_floating_point or timestep.is_complex() or timestep.dtype == torch.bool:
        raise TypeError(f"`{name}` must be {expected}, got dtype {timestep.dtype}")
    check_has_values(timestep, name)
    if timestep.ndim > 1 or (timestep.ndim == 1 and timestep.shape[0] != num_points):
        raise ValueError(
            f"`{name}` must be a scalar or a tensor of shape ({num_points},), got shape {tuple(timestep.shape)}"
        )
    if timestep.numel() and (int(timestep.min()) < low or int(timestep.max()) > high):
        raise ValueError(f"`{name}` must be {expected}, got values from {int(timestep.min())} to {int(timestep.max())}")
    return timestep.long()


def check_tolerances(rtol: object, atol: object) -> tuple[float, float]:
    """An adaptive ODE solver's relative and absolute tolerances: finite real numbers > 0."""
    for value in (rtol, atol):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise ValueError(f"`rtol` and `atol` must be finite numbers > 0, got rtol={rtol!r}, atol={atol!r}")
    return float(rtol), float(atol)


def check_ode_solver(method: object, allowed: Sequence[str] | None = None, name: str = "ode_solver") -> str:
    """``method``, a torchdiffeq solver name among ``allowed`` (default: every method of ``torchdiffeq.odeint``)."""
    if allowed is None:
        from torchdiffeq._impl.odeint import SOLVERS

        allowed = tuple(SOLVERS)
    if not isinstance(method, str) or method not in allowed:
        raise ValueError(f"`{name}` must be a torchdiffeq method among {tuple(allowed)}, got {method!r}")
    return method


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
