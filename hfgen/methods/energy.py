r"""Energy-based models of points: the maximum-likelihood loss, persistent chains, Langevin runs, ``log Z`` in 2-D.

A model ``E_θ`` (any module with ``model(x, return_dict=False)[0] = E_θ(x)`` of shape ``(N,)``) defines
``p_θ(x) = exp(−E_θ(x)) / Z_θ``. Since ``∇_θ log Z_θ = −E_{p_θ}[∇_θ E_θ]``, the gradient of the mean log-likelihood
is ``−E_data[∇_θ E_θ] + E_{p_θ}[∇_θ E_θ]``, estimated with samples of ``p_θ`` from Langevin chains (Du & Mordatch
2019, "Implicit Generation and Generalization in Energy-Based Models"). One training step reads::

    batch = buffer.sample(batch_size, generator)
    chains = langevin_chain(model, batch.samples, scheduler, num_steps, generator)
    buffer.update(batch.indices, chains.sample)
    loss = maximum_likelihood_loss(model, data, chains.sample, regularization=alpha).loss
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hfgen.checks import check_int, check_number
from hfgen.schedulers.langevin import LangevinScheduler, MALAScheduler
from hfgen.utils import check_memory, check_points

EnergyFunction = Callable[[Tensor], Tensor]
"""``energy(x) -> (N,)``: the energy of points ``x`` ``(N, D)``."""
#: bytes the quadrature holds per grid cell: the float64 cell centres ``(n², 2)``, their two columns while they are
#: stacked, and the log-density ``(n²,)`` with the chunks it is concatenated from (measured: 40 bytes a cell)
QUADRATURE_BYTES_PER_CELL = 40


@dataclass
class EBMLossOutput:
    """``loss`` (differentiable) and the mean energies of the data and of the model samples (detached)."""

    loss: Tensor
    data_energy: Tensor
    sample_energy: Tensor


@dataclass
class LangevinChainOutput:
    """End states ``sample`` ``(N, D)``; ``trajectory`` ``(S + 1, N, D)`` when asked; ``acceptance_rate`` (MALA
    only); ``num_evaluations``: energy-and-gradient evaluations used (``S`` for ULA, ``2S`` for MALA)."""

    sample: Tensor
    trajectory: Tensor | None
    acceptance_rate: float | None
    num_evaluations: int


@dataclass
class ReplayBatch:
    """Chain starts ``samples`` ``(B, D)``, the buffer slots ``indices`` ``(B,)`` they came from, and the mask
    ``reinitialized`` ``(B,)`` of those replaced by fresh noise."""

    samples: Tensor
    indices: Tensor
    reinitialized: Tensor


@dataclass
class QuadratureOutput:
    """``log_partition``: ``log Z`` on the grid (float64, differentiable in the energy's parameters);
    ``error_estimate``: ``|log Z_n − log Z_{n/2}|``; ``border_ratio``: ``max_border exp(−E) / max_grid exp(−E)``;
    ``grid_size`` ``n`` and ``bounds`` of the grid."""

    log_partition: Tensor
    error_estimate: float
    border_ratio: float
    grid_size: int
    bounds: tuple[tuple[float, float], tuple[float, float]]


def energy_and_gradient(model: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """``E(x)`` ``(N,)`` and ``∇_x E(x)`` ``(N, D)`` by autograd (also under ``torch.no_grad``); both detached.

    Each energy must depend on its own row only (no batch statistics), so ``∇_x Σ_n E(x_n)`` is the per-row gradient.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        energy = model(x, return_dict=False)[0]
        (gradient,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), gradient


def maximum_likelihood_loss(
    model: torch.nn.Module, data: Tensor, samples: Tensor, regularization: float = 0.0
) -> EBMLossOutput:
    r"""``L(θ) = mean E_θ(x⁺) − mean E_θ(x⁻) + α (mean E_θ(x⁺)² + mean E_θ(x⁻)²)`` (Du & Mordatch 2019, eq. 3 and §3.3).

    ``x⁺`` are ``data``, ``x⁻`` model ``samples`` (held fixed); with exact samples of ``p_θ`` and ``α = 0``,
    ``E[∇_θ L] = −∇_θ mean log p_θ(x⁺)``. The ``α`` term keeps energies near zero.
    """
    check_number(regularization, "regularization", 0)
    data_energy = model(check_points(data, name="data"), return_dict=False)[0]
    sample_energy = model(check_points(samples, data.shape[1], "samples").detach(), return_dict=False)[0]
    loss = data_energy.mean() - sample_energy.mean()
    if regularization:
        loss = loss + regularization * (data_energy.square().mean() + sample_energy.square().mean())
    return EBMLossOutput(
        loss=loss, data_energy=data_energy.mean().detach(), sample_energy=sample_energy.mean().detach()
    )


def langevin_chain(
    model: torch.nn.Module,
    sample: Tensor,
    scheduler: LangevinScheduler | MALAScheduler,
    num_steps: int,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> LangevinChainOutput:
    """Run ``num_steps`` Langevin (ULA) or MALA steps of ``scheduler`` from ``sample`` ``(N, D)``.

    Each evaluation gives the scheduler the score ``−∇E`` (and, for MALA, ``E``) at its input; noise and acceptance
    draws come from ``generator``. A state that is not finite stops the chain with ``FloatingPointError`` naming the
    step. ``progress`` wraps the loop (e.g. a pipeline's ``progress_bar``).
    """
    if not isinstance(scheduler, LangevinScheduler | MALAScheduler):
        raise TypeError(f"`scheduler` must be a LangevinScheduler or MALAScheduler, got {type(scheduler).__name__}")
    x = check_points(sample, name="sample").detach()
    scheduler.set_timesteps(check_int(num_steps, "num_steps"), device=x.device)
    states = [x] if return_trajectory else None
    accepted, step = torch.zeros((), dtype=torch.long, device=x.device), 0
    timesteps = scheduler.timesteps if progress is None else progress(scheduler.timesteps)
    for t in timesteps:
        energy, gradient = energy_and_gradient(model, x)
        extra = {"energy": energy} if isinstance(scheduler, MALAScheduler) else {}
        out = scheduler.step(-gradient, t, x, generator=generator, **extra)
        x = out.prev_sample
        if not out.step_complete:
            continue
        step += 1
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x).all(dim=1)).sum())
            raise FloatingPointError(
                f"the Langevin chain diverged at step {step} of {num_steps}: {bad} of {x.shape[0]} states are NaN or "
                f"inf (step_size={scheduler.config.step_size}); use a smaller step size or check the energy"
            )
        if states is not None:
            states.append(x)
        if isinstance(scheduler, MALAScheduler):
            accepted += out.accepted.sum()  # a running count: memory does not grow with the steps
    rate = float(accepted) / (step * x.shape[0]) if isinstance(scheduler, MALAScheduler) else None
    trajectory = torch.stack(states) if states is not None else None
    return LangevinChainOutput(
        sample=x, trajectory=trajectory, acceptance_rate=rate, num_evaluations=len(scheduler.timesteps)
    )


class ReplayBuffer:
    r"""Persistent short-run Langevin chains with random restarts (Du & Mordatch 2019, §3.1; Grathwohl et al. 2020).

    Holds ``capacity`` chain states, initialised uniformly on ``[low, high]^D``. :meth:`sample` picks ``B`` distinct
    slots and restarts each from fresh uniform noise with probability ``reinit_fraction``; after the Langevin run,
    :meth:`update` writes the new states back into those slots. Every draw comes from the given generator, and the
    whole state is the tensor ``chains`` (:meth:`state_dict` / :meth:`load_state_dict` for checkpoints). The buffer
    lives on the CPU: move a batch to the model's device before the Langevin run.
    """

    def __init__(
        self,
        capacity: int,
        dim: int,
        low: float = -4.0,
        high: float = 4.0,
        reinit_fraction: float = 0.05,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.capacity = check_int(capacity, "capacity")
        self.dim = check_int(dim, "dim")
        self.low, self.high = check_number(low, "low"), check_number(high, "high")
        if not low < high:
            raise ValueError(f"`low` must be smaller than `high`, got low={low}, high={high}")
        self.reinit_fraction, self.dtype = check_number(reinit_fraction, "reinit_fraction", 0, 1), dtype
        self.chains = self.noise(capacity, generator)

    def noise(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Fresh chain starts, uniform on ``[low, high]^D``, shape ``(num_samples, D)`` (on the CPU)."""
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(num_samples, self.dim, generator=generator, device=device, dtype=self.dtype)
        return (self.low + (self.high - self.low) * u).cpu()

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> ReplayBatch:
        """``batch_size`` distinct slots, uniformly; each restarted from noise with probability ``reinit_fraction``."""
        batch_size = check_int(batch_size, "batch_size")
        if batch_size > self.capacity:
            raise ValueError(f"`batch_size` must be <= capacity ({self.capacity}), got {batch_size}")
        device = generator.device if generator is not None else torch.device("cpu")
        indices = torch.randperm(self.capacity, generator=generator, device=device)[:batch_size].cpu()
        reinitialized = (torch.rand(batch_size, generator=generator, device=device) < self.reinit_fraction).cpu()
        samples = self.chains[indices].clone()
        samples[reinitialized] = self.noise(int(reinitialized.sum()), generator)
        return ReplayBatch(samples=samples, indices=indices, reinitialized=reinitialized)

    def update(self, indices: Tensor, samples: Tensor) -> None:
        """Store the chain states ``samples`` ``(B, D)`` in the slots ``indices`` ``(B,)`` they were drawn from."""
        samples = check_points(samples, self.dim, "samples")
        indices = torch.as_tensor(indices)
        if indices.shape != samples.shape[:1] or indices.dtype.is_floating_point:
            raise ValueError(f"`indices` must be {samples.shape[0]} integer slots, got {indices!r}")
        self.chains[indices.cpu()] = samples.detach().to(device="cpu", dtype=self.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        """The buffer's state, ``{"chains": (capacity, D) tensor}`` (a copy)."""
        return {"chains": self.chains.clone()}

    def load_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Restore the chains saved by :meth:`state_dict`."""
        chains = state_dict.get("chains") if isinstance(state_dict, dict) else None
        if not isinstance(chains, Tensor) or tuple(chains.shape) != (self.capacity, self.dim):
            raise ValueError(f"`state_dict` must hold 'chains' of shape ({self.capacity}, {self.dim})")
        self.chains = chains.detach().to(device="cpu", dtype=self.dtype).clone()


def quadrature_grid(bounds: Sequence[Sequence[float]], grid_size: int) -> tuple[Tensor, float]:
    """Cell centres of a ``grid_size × grid_size`` grid on ``bounds = ((x_lo, x_hi), (y_lo, y_hi))``, shape
    ``(grid_size², 2)`` (float64, ``x`` fastest), and the cell area."""
    bounds = _check_bounds(bounds)
    axes, area = [], 1.0
    for low, high in bounds:
        width = (high - low) / grid_size
        axes.append(low + width * (torch.arange(grid_size, dtype=torch.float64) + 0.5))
        area *= width
    gy, gx = torch.meshgrid(axes[1], axes[0], indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), area


def log_partition_by_quadrature(
    energy: EnergyFunction,
    bounds: Sequence[Sequence[float]] = ((-6.0, 6.0), (-6.0, 6.0)),
    grid_size: int = 512,
    border_tolerance: float = 1e-6,
    batch_size: int = 65_536,
) -> QuadratureOutput:
    r"""``log Z = log ∫ exp(−E(x)) dx`` of a 2-D energy by the midpoint rule on a ``grid_size × grid_size`` grid.

    ``log Z_n = logsumexp_k(−E(x_k)) + log(cell area)`` over the cell centres ``x_k``; the stated error is
    ``|log Z_n − log Z_{n/2}|``, the change from the grid of half the size (for a smooth energy the midpoint rule
    converges fast, so this bounds the error of ``log Z_n``). It cannot see mass outside ``bounds``: the grid is
    refused unless ``max exp(−E)`` on its outer ring of cells is at most ``border_tolerance`` times its maximum.
    ``energy`` receives float64 points; the result is differentiable in its parameters.
    """
    check_grid_size(grid_size)
    check_number(border_tolerance, "border_tolerance", 0, open_low=True)
    bounds = _check_bounds(bounds)
    check_int(batch_size, "batch_size")
    check_memory(
        grid_size**2 * QUADRATURE_BYTES_PER_CELL,
        "cpu",
        f"log Z on `grid_size`={grid_size:,} ({grid_size**2:,} cells)",
        "use a smaller `grid_size` (the stated error estimate says whether it is fine enough)",
        f" ({QUADRATURE_BYTES_PER_CELL} bytes a cell)",
    )
    log_z, border_ratio = _midpoint_log_integral(energy, bounds, grid_size, batch_size)
    if border_ratio > border_tolerance:
        raise ValueError(
            f"the grid {bounds} does not cover the support of exp(−E): its density on the border is "
            f"{border_ratio:.3g} times its maximum (> border_tolerance={border_tolerance:g}); widen `bounds`"
        )
    coarse, _ = _midpoint_log_integral(energy, bounds, grid_size // 2, batch_size)
    return QuadratureOutput(
        log_partition=log_z,
        error_estimate=float((log_z - coarse).detach().abs()),
        border_ratio=border_ratio,
        grid_size=grid_size,
        bounds=bounds,
    )


def _midpoint_log_integral(
    energy: EnergyFunction, bounds: tuple[tuple[float, float], ...], grid_size: int, batch_size: int
) -> tuple[Tensor, float]:
    points, area = quadrature_grid(bounds, grid_size)
    log_density = -torch.cat([energy(chunk).to(torch.float64).reshape(-1) for chunk in points.split(batch_size)])
    if log_density.shape[0] != points.shape[0] or not torch.isfinite(log_density).all():
        raise ValueError(f"`energy` must return one finite value per grid point; got non-finite values on {bounds}")
    grid = log_density.detach().reshape(grid_size, grid_size)
    border = torch.cat([grid[0], grid[-1], grid[:, 0], grid[:, -1]]).max()
    return torch.logsumexp(log_density, 0) + math.log(area), float(torch.exp(border - grid.max()))


def check_grid_size(grid_size: object) -> int:
    """Return ``grid_size`` if it is an even int ``>= 4`` (the error estimate halves the grid)."""
    note = "even: the error estimate halves it"
    if check_int(grid_size, "grid_size", 4, note=note) % 2:
        raise ValueError(f"`grid_size` must be an int >= 4 ({note}), got {grid_size!r}")
    return grid_size


def _check_bounds(bounds: object) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        checked = tuple((float(low), float(high)) for low, high in bounds)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`bounds` must be ((x_low, x_high), (y_low, y_high)), got {bounds!r}") from error
    if len(checked) != 2 or not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in checked):
        raise ValueError(f"`bounds` must be ((x_low, x_high), (y_low, y_high)) with finite low < high, got {bounds!r}")
    return checked
