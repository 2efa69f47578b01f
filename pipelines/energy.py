"""Energy-based model pipeline: Langevin/MALA samples of ``exp(−E)``, the score, and 2-D log-densities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.models.modeling_utils import ModelMixin

from hfgen.checks import check_number
from hfgen.methods.energy import QuadratureOutput, energy_and_gradient, langevin_chain, log_partition_by_quadrature
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.sampling import PointsPipelineOutput
from hfgen.schedulers.langevin import LangevinScheduler, MALAScheduler
from hfgen.threads import one_thread_for_small_networks
from hfgen.utils import check_generator, check_num_samples, check_points

__all__ = ["EnergyPipeline", "EnergyPipelineOutput"]


@dataclass
class EnergyPipelineOutput(PointsPipelineOutput):
    """Points output plus ``acceptance_rate``: MALA's fraction of accepted proposals (``None`` for ULA)."""

    acceptance_rate: float | None = None


class EnergyPipeline(HfgenPipeline):
    r"""Sample an energy-based model ``p(x) = exp(−E(x)) / Z`` with Langevin dynamics (Du & Mordatch 2019).

    Chains start uniformly on ``[start_low, start_high]^D`` (the replay buffer's noise) or at ``start_samples`` and
    run ``num_inference_steps`` steps of the scheduler: :class:`~hfgen.schedulers.langevin.LangevinScheduler`
    (``x ← x − η∇E(x) + √(2η) z``) or :class:`~hfgen.schedulers.langevin.MALAScheduler` (the same proposal with a
    Metropolis test). :meth:`score` gives ``−∇E`` and, in 2-D, :meth:`log_prob` the normalised log-density with
    ``log Z`` by quadrature. Components: ``model`` (an energy ``model(x) -> (N,)`` with ``config.dim``, such as
    :class:`~hfgen.models.energy.EnergyMLP`) and ``scheduler``; ``start_low``/``start_high`` are saved in
    ``model_index.json``.
    """

    model_cpu_offload_seq = "model"

    def __init__(
        self,
        model: ModelMixin,
        scheduler: LangevinScheduler | MALAScheduler,
        start_low: float = -4.0,
        start_high: float = 4.0,
    ):
        super().__init__()
        if not isinstance(scheduler, LangevinScheduler | MALAScheduler):
            raise TypeError(f"`scheduler` must be a LangevinScheduler or MALAScheduler, got {type(scheduler).__name__}")
        for name, value in (("start_low", start_low), ("start_high", start_high)):
            check_number(value, name)
        if not start_low < start_high:
            raise ValueError(f"`start_low` must be smaller than `start_high`, got {start_low} and {start_high}")
        self.register_modules(model=model, scheduler=scheduler)
        self.register_to_config(start_low=float(start_low), start_high=float(start_high))

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the points."""
        return self.model.config.dim

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int = 100,
        step_size: float | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
        start_samples: torch.Tensor | None = None,
    ) -> EnergyPipelineOutput | tuple:
        """Draw ``num_samples`` points by ``num_inference_steps`` Langevin (or MALA) steps.

        Args:
            num_samples: number of chains (ignored when ``start_samples`` is given).
            num_inference_steps: number of steps ``S`` (a MALA step evaluates the energy twice).
            step_size: ``η`` for this call (default: the scheduler's ``config.step_size``); must be > 0.
            generator: draws the start points, the noise and MALA's acceptance tests.
            output_type: ``"pt"`` (torch) or ``"np"`` (numpy).
            return_trajectory: also return the states ``x_0, …, x_S``, shape ``(S + 1, N, D)``.
            start_samples: start points ``(N, D)`` instead of uniform noise.

        A chain that reaches a NaN or infinite state stops with ``FloatingPointError`` naming the step.
        """
        self._check_output_type(output_type)
        check_num_samples(num_inference_steps, "num_inference_steps")
        check_generator(generator)
        scheduler = self.scheduler
        if step_size is not None:
            scheduler = type(scheduler).from_config(scheduler.config, step_size=step_size)
        x = None if start_samples is None else check_points(start_samples, self.dim, "start_samples")
        dtype = self.model.dtype
        n = self._sample_count(num_samples, x, "start_samples", self.dim, dtype, num_inference_steps, return_trajectory)
        if x is None:
            device = generator.device if generator is not None else self.device
            u = torch.rand(n, self.dim, generator=generator, device=device, dtype=dtype)
            x = self.config.start_low + (self.config.start_high - self.config.start_low) * u
        x = x.to(device=self.device, dtype=dtype)
        chain = langevin_chain(
            self.model, x, scheduler, num_inference_steps, generator, return_trajectory, progress=self.progress_bar
        )
        return self._points_output(
            chain.sample,
            chain.trajectory,
            chain.num_evaluations,
            output_type,
            return_dict,
            EnergyPipelineOutput,
            acceptance_rate=chain.acceptance_rate,
        )

    @one_thread_for_small_networks
    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """The energy ``E(x)`` ``(N,)`` at points ``x`` ``(N, D)``."""
        x = check_points(x, self.dim, "x").to(device=self.device, dtype=self.model.dtype)
        with torch.no_grad():
            return self.model(x, return_dict=False)[0]

    @one_thread_for_small_networks
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The score ``∇_x log p(x) = −∇_x E(x)`` ``(N, D)`` at points ``x`` ``(N, D)``."""
        x = check_points(x, self.dim, "x").to(device=self.device, dtype=self.model.dtype)
        return -energy_and_gradient(self.model, x)[1]

    @one_thread_for_small_networks
    def log_partition(
        self, bounds: Sequence[Sequence[float]] = ((-6.0, 6.0), (-6.0, 6.0)), grid_size: int = 512
    ) -> QuadratureOutput:
        """``log Z = log ∫ exp(−E)`` of a 2-D model by the midpoint rule on ``grid_size²`` cells over ``bounds``,
        with the error estimate ``|log Z_n − log Z_{n/2}|``; refused if the grid misses mass on its border
        (:func:`~hfgen.methods.energy.log_partition_by_quadrature`)."""
        if self.dim != 2:
            raise ValueError(f"log Z by quadrature needs a 2-D model, but this model has dim {self.dim}")
        with torch.no_grad():
            return log_partition_by_quadrature(self._energy_of_float64_points, bounds, grid_size)

    @one_thread_for_small_networks
    def log_prob(
        self,
        x: torch.Tensor,
        bounds: Sequence[Sequence[float]] = ((-6.0, 6.0), (-6.0, 6.0)),
        grid_size: int = 512,
    ) -> torch.Tensor:
        """``log p(x) = −E(x) − log Z`` in nats at points ``x`` ``(N, 2)``, float64, with ``log Z`` from
        :meth:`log_partition` on ``grid_size × grid_size`` cells over ``bounds`` (default ``[−6, 6]²``, 512²); call
        :meth:`log_partition` for its error estimate."""
        energy = self.energy(x).to(torch.float64)  # checks the points before the quadrature's work
        return -energy - self.log_partition(bounds, grid_size).log_partition

    def _energy_of_float64_points(self, points: torch.Tensor) -> torch.Tensor:
        return self.model(points.to(device=self.device, dtype=self.model.dtype), return_dict=False)[0]
