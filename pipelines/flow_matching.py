"""Flow-matching pipeline: sample by integrating the learned ODE, evaluate exact log-densities."""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin

from hfgen.data import StandardGaussian, ToyDistribution, toy_from_config
from hfgen.methods.continuous_flows import FIXED_GRID_EVALUATIONS, solve_ode
from hfgen.methods.continuous_flows import log_prob as flow_log_prob
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.sampling import PointsPipelineOutput, check_sdedit
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler
from hfgen.schedulers.flow_match_solvers import FlowMatchScheduler, flow_match_scheduler, flow_match_solver
from hfgen.threads import one_thread_for_small_networks
from hfgen.utils import (
    check_batch_size,
    check_generator,
    check_num_samples,
    check_ode_solver,
    check_points,
    check_times,
    check_tolerances,
)

__all__ = ["FlowMatchingPipeline"]

#: the torchdiffeq fixed-grid method that takes the same steps as each solver's scheduler (``flow_match_scheduler``)
TORCHDIFFEQ_METHODS = {"euler": "euler", "heun": "heun2", "midpoint": "midpoint"}


class FlowMatchingPipeline(HfgenPipeline):
    r"""Generate points with a flow-matching velocity network (Lipman et al. 2022; Liu et al. 2022).

    Samples ``x_0`` from the source (``N(0, I)`` unless ``source`` names another distribution) and integrates
    ``dx/dt = v_θ(x, t)`` from ``t = 0`` to ``t = 1`` with the scheduler (Euler/Heun/midpoint on a uniform grid)
    or an adaptive torchdiffeq solver. ``log_prob`` evaluates ``log p_1(x)`` exactly by the instantaneous change
    of variables ``d log p(z(t))/dt = −Tr ∂v/∂z``.

    Components: ``velocity`` (a network ``v(sample, timestep)`` such as :class:`~hfgen.models.TimeMLP`) and
    ``scheduler``, the fixed-step solver: :class:`~hfgen.schedulers.FlowMatchEulerScheduler`,
    :class:`~hfgen.schedulers.FlowMatchHeunScheduler` or :class:`~hfgen.schedulers.FlowMatchMidpointScheduler`
    (``flow_match_scheduler(solver)`` builds one by name). ``source`` is the config of a toy distribution
    (``ToyDistribution.to_config()``) or ``None`` for the standard Gaussian; it is saved in ``model_index.json``.

    Folders saved when one ``FlowMatchEulerScheduler`` held every solver name it in ``model_index.json`` with
    ``{"solver": "heun"}`` (or ``"midpoint"``) in its config; diffusers keeps that entry, and the pipeline swaps in
    the scheduler of that solver, so they load and sample as before.
    """

    model_cpu_offload_seq = "velocity"

    def __init__(
        self,
        velocity: ModelMixin,
        scheduler: FlowMatchScheduler,
        source: dict[str, Any] | ToyDistribution | None = None,
    ):
        super().__init__()
        scheduler = _legacy_solver_scheduler(scheduler)
        flow_match_solver(scheduler)  # a TypeError for a scheduler of another kind
        dim = velocity.config.dim
        if isinstance(source, ToyDistribution):
            distribution, source = source, _source_config(source, dim)
        else:
            distribution = StandardGaussian(dim) if source is None else toy_from_config(source)
        if distribution.dim != dim:
            raise ValueError(
                f"the source distribution has dimension {distribution.dim} but the velocity network expects {dim}"
            )
        self.register_modules(velocity=velocity, scheduler=scheduler)
        self.register_to_config(source=source)
        self.source_distribution = distribution

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the points."""
        return self.velocity.config.dim

    @one_thread_for_small_networks
    def velocity_field(self, points: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The learned velocity ``v_θ(x, t)`` at ``points`` ``(N, D)`` and time ``t ∈ [0, 1]`` (a scalar or ``(N,)``,
        the times the network is trained on), in the dtype of ``points``."""
        points = check_points(points, self.dim, "points")
        t = check_times(t, points.shape[0], network="velocity")
        x = points.to(device=self.device, dtype=self.velocity.dtype)
        with torch.no_grad():
            v = self.velocity(x, t.to(device=self.device, dtype=x.dtype), return_dict=False)[0]
        return v.to(points.dtype)

    def _field(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.velocity(x, t, return_dict=False)[0]

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int = 100,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
        source_samples: torch.Tensor | None = None,
        ode_solver: str | None = None,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        strength: float | None = None,
        start_samples: torch.Tensor | None = None,
    ) -> PointsPipelineOutput | tuple:
        r"""Draw ``num_samples`` points, or edit ``start_samples`` (SDEdit).

        Args:
            num_samples: number of points (ignored when ``source_samples`` is given).
            num_inference_steps: steps ``n`` of the uniform grid ``t_i = i/n``; with ``ode_solver`` it only sets
                how many trajectory states are returned.
            generator: draws the source samples; the same generator state gives the same samples.
            output_type: ``"pt"`` (torch) or ``"np"`` (numpy).
            return_trajectory: also return the states ``x_{t_0}, …, x_{t_n}``, shape ``(n + 1, N, D)``.
            source_samples: start points ``x_0`` ``(N, D)`` instead of drawing them from the source.
            ode_solver: ``None`` uses the scheduler's fixed-step solver; a torchdiffeq method (``"dopri5"``…)
                solves adaptively with tolerances ``rtol``/``atol``.
            strength: SDEdit strength ``s ∈ [0, 1]`` (Meng et al. 2022), given with ``start_samples``: the points are
                put on the path at ``t_0 = 1 − s``, ``x_{t_0} = s x_0 + (1 − s) x`` with ``x_0`` from the source, and
                the ODE runs from ``t_0`` to 1 (fixed-step: ``round(s n)`` steps, at least one, of the scheduler's
                method; ``s = 0`` returns the points, ``s = 1`` samples the model afresh).
            start_samples: the points ``(N, D)`` to edit.
        """
        self._check_output_type(output_type)
        check_num_samples(num_inference_steps, "num_inference_steps")
        check_generator(generator)
        if ode_solver is not None:
            check_ode_solver(ode_solver)
            check_tolerances(rtol, atol)
        if strength is not None or start_samples is not None:
            return self._sdedit(
                strength, start_samples, num_inference_steps, generator, output_type, return_trajectory, return_dict,
                ode_solver, rtol, atol,
            )  # fmt: skip
        x = None if source_samples is None else check_points(source_samples, self.dim, "source_samples")
        # an adaptive solver without a trajectory takes no grid of num_inference_steps
        steps = num_inference_steps if ode_solver is None or return_trajectory else 0
        n = self._sample_count(
            num_samples, x, "source_samples", self.dim, self.velocity.dtype, steps, return_trajectory
        )
        if x is None:
            x = self.source_distribution.sample(n, generator=generator)
        x = x.to(device=self.device, dtype=self.velocity.dtype)

        if ode_solver is None:
            x, trajectory, nfe = self._integrate_fixed_step(x, num_inference_steps, return_trajectory)
        else:
            t_eval = torch.linspace(0, 1, num_inference_steps + 1).tolist() if return_trajectory else None
            solution = solve_ode(self._field, x, 0.0, 1.0, method=ode_solver, rtol=rtol, atol=atol, t_eval=t_eval)
            x, trajectory, nfe = solution.x_end, solution.trajectory, solution.nfe
        return self._points_output(x, trajectory, nfe, output_type, return_dict)

    def _sdedit(
        self,
        strength: float | None,
        start_samples: torch.Tensor | None,
        num_inference_steps: int,
        generator: torch.Generator | None,
        output_type: str,
        return_trajectory: bool,
        return_dict: bool,
        ode_solver: str | None,
        rtol: float,
        atol: float,
    ) -> PointsPipelineOutput | tuple:
        """SDEdit on the linear path: start at ``t_0 = 1 − strength`` and integrate to ``t = 1``; the fixed-step
        solve keeps the states of the grid only for a returned trajectory."""
        x = check_sdedit(strength, start_samples, self.dim)
        steps = max(1, round(strength * num_inference_steps)) if strength > 0 else 0
        planned = steps if ode_solver is None or return_trajectory else 0
        self._sample_count(None, x, "start_samples", self.dim, self.velocity.dtype, planned, return_trajectory)
        x = x.to(device=self.device, dtype=self.velocity.dtype)
        if strength == 0.0:
            x, trajectory, nfe = x.clone(), x[None].clone() if return_trajectory else None, 0
        else:
            noise = self.source_distribution.sample(x.shape[0], generator=generator).to(x)
            t0 = 1.0 - float(strength)
            x = (1.0 - t0) * noise + t0 * x  # the linear path x_t = (1 − t) x_0 + t x_1 (σ_min = 0)
            grid = torch.linspace(t0, 1.0, steps + 1, dtype=torch.float64).tolist()
            grid[0], grid[-1] = t0, 1.0
            t_eval = grid if return_trajectory else None
            with torch.no_grad():
                if ode_solver is None:
                    method = TORCHDIFFEQ_METHODS[flow_match_solver(self.scheduler)]
                    options = {
                        "grid_constructor": lambda func, y0, t: torch.tensor(grid, dtype=t.dtype, device=t.device)
                    }
                    with self._field_progress(self._field, steps * FIXED_GRID_EVALUATIONS[method]) as field:
                        solution = solve_ode(field, x, t0, 1.0, method=method, t_eval=t_eval, options=options)
                else:
                    solution = solve_ode(self._field, x, t0, 1.0, ode_solver, rtol=rtol, atol=atol, t_eval=t_eval)
            x, trajectory, nfe = solution.x_end, solution.trajectory, solution.nfe
        return self._points_output(x, trajectory, nfe, output_type, return_dict)

    def _integrate_fixed_step(
        self, x: torch.Tensor, num_inference_steps: int, return_trajectory: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        self.scheduler.set_timesteps(num_inference_steps, device=x.device)
        states = [x] if return_trajectory else None
        timesteps = self.scheduler.timesteps
        for t in self.progress_bar(timesteps):
            v = self.velocity(x, t, return_dict=False)[0]
            x, step_complete = self.scheduler.step(v, t, x, return_dict=False)
            if states is not None and step_complete:
                states.append(x)
        trajectory = torch.stack(states) if states is not None else None
        return x, trajectory, len(timesteps)

    @one_thread_for_small_networks
    def log_prob(
        self,
        x: torch.Tensor,
        ode_solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        divergence: str = "exact",
        generator: torch.Generator | None = None,
        batch_size: int = 10_000,
    ) -> torch.Tensor:
        r"""Log-density ``log p_1(x)`` of the model at points ``x`` ``(N, D)``, in nats.

        Integrates ``dz/dt = v_θ(z, t)`` backward from ``z(1) = x`` and
        ``log p_1(x) = log p_0(z(0)) − ∫_0^1 Tr ∂v_θ/∂z (z(t), t) dt`` (Chen et al. 2018; Grathwohl et al.
        2019). ``divergence="exact"`` takes the trace with ``D`` autograd passes; ``"hutchinson"`` estimates it
        unbiasedly with one (for high ``D``). Needs a source with a density.
        """
        x = check_points(x, self.dim, "x").to(device=self.device, dtype=self.velocity.dtype)
        batch_size = check_batch_size(batch_size, x.shape[0])
        check_ode_solver(ode_solver)
        check_tolerances(rtol, atol)
        check_generator(generator)
        if not self.source_distribution.has_log_prob:
            raise ValueError(
                f"log_prob needs the density of the source, but the source {self.source_distribution!r} is "
                "sample-only; train with a source that has a density (e.g. the standard Gaussian)"
            )
        with torch.no_grad():
            chunks = [
                flow_log_prob(
                    self._field,
                    chunk,
                    self.source_distribution.log_prob,
                    method=ode_solver,
                    rtol=rtol,
                    atol=atol,
                    divergence_method=divergence,
                    generator=generator,
                )
                for chunk in x.split(batch_size)
            ]
        return torch.cat(chunks)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save as :meth:`HfgenPipeline.save_pretrained` does, after checking that the source can be saved: a named
        toy distribution or ``N(0, I)``, not a Python sampler (``model_index.json`` holds its config)."""
        if self.config.source is None and not isinstance(self.source_distribution, StandardGaussian):
            raise ValueError(
                f"cannot save a pipeline whose source {self.source_distribution!r} is a Python sampler; use a "
                "named toy distribution (hfgen.data) as source to save it"
            )
        super().save_pretrained(save_directory, **kwargs)


def _legacy_solver_scheduler(scheduler: object) -> object:
    """The scheduler of the solver named by a ``FlowMatchEulerScheduler`` config saved when that class held every
    solver (``{"solver": "heun"}``: diffusers keeps the entry in the config); any other scheduler unchanged."""
    if type(scheduler) is not FlowMatchEulerScheduler or "solver" not in scheduler.config:
        return scheduler
    return flow_match_scheduler(scheduler.config["solver"])


def _source_config(distribution: ToyDistribution, dim: int) -> dict[str, Any] | None:
    """Config saved for a source: ``None`` for ``N(0, I_dim)`` and for unserialisable Python samplers."""
    if isinstance(distribution, StandardGaussian) and distribution.dim == dim:
        return None
    try:
        return distribution.to_config()
    except ValueError:
        return None
