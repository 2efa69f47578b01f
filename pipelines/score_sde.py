"""Score-SDE pipeline for points: reverse-SDE, predictor–corrector and probability-flow sampling, SDEdit, and
exact log-densities by the probability-flow ODE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.torch_utils import randn_tensor

from hfgen.methods.continuous_flows import FIXED_GRID_EVALUATIONS, solve_ode
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.sampling import PointsPipelineOutput, check_sdedit, ode_log_prob
from hfgen.schedulers.score_sde import ScoreSDEScheduler
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

__all__ = ["ScoreSDEPipeline", "ScoreSDEPipelineOutput"]

SAMPLERS = ("euler_maruyama", "predictor_corrector", "probability_flow")
ADAPTIVE_ODE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_GRID_ODE_SOLVERS = tuple(FIXED_GRID_EVALUATIONS)


def _ode_options(ode_solver: str, t_end: float, dtype: torch.dtype, num_steps: int) -> dict[str, Any]:
    """torchdiffeq options. An adaptive Runge–Kutta step may overshoot the final time (where the SDE may be
    undefined, e.g. ``t < 0``), so ``t_end``, rounded to the dtype of the time grid, is made a step point. A
    fixed-grid method takes ``num_steps`` uniform steps."""
    if ode_solver in ADAPTIVE_ODE_SOLVERS:
        return {"step_t": torch.tensor([t_end], dtype=dtype)}
    return {
        "grid_constructor": lambda func, y0, t: torch.linspace(
            float(t[0]), float(t[-1]), num_steps + 1, dtype=t.dtype, device=t.device
        )
    }


@dataclass
class ScoreSDEPipelineOutput(PointsPipelineOutput):
    """Points output plus ``timesteps``: the time ``t`` of each trajectory state (``t_0, …, ε``) when one is
    returned."""

    timesteps: list[float] | None = None


class ScoreSDEPipeline(HfgenPipeline):
    r"""Generate points with a score SDE (Song et al. 2021, *Score-Based Generative Modeling through Stochastic
    Differential Equations*).

    Components: ``score_model``, a network ``model(sample, timestep)`` such as
    :class:`~hfgen.models.mlp.TimeMLP` that receives the SDE time ``t ∈ [ε, 1]`` and predicts the score
    ``∇ log p_t(x)`` or the noise ``ε̂ = −σ_t ∇ log p_t(x)``, as the scheduler's ``prediction_type`` says; and
    ``scheduler``, a :class:`~hfgen.schedulers.score_sde.VPSDEScheduler` or
    :class:`~hfgen.schedulers.score_sde.VESDEScheduler` (``t = 0`` data, ``t = 1`` prior).

    Samplers, all from ``t_0 = 1`` (or the SDEdit start) down to ``ε = sampling_eps`` on ``n`` uniform steps:

    - ``"euler_maruyama"``: the reverse SDE ``dx = [f − g² s_θ] dt + g dW̄`` by the scheduler's ``step``;
    - ``"predictor_corrector"``: before each predictor step, ``num_corrector_steps`` Langevin corrector steps
      at the current time (``step_correct``; Song et al. 2021, Alg. 1);
    - ``"probability_flow"``: the ODE ``dx/dt = f − ½ g² s_θ`` (eq. 13), solved by torchdiffeq (``ode_solver``:
      adaptive ``"dopri5"`` with ``rtol``/``atol``, or a fixed-grid method that steps on the ``n``-step grid).

    SDEdit (Meng et al. 2022, *SDEdit: Guided Image Synthesis and Editing with Stochastic Differential
    Equations*): with ``start_samples`` and ``strength = s ∈ [0, 1]`` the points are perturbed by the forward
    marginal to ``t_0 = s T`` (``T = 1``), ``x_{t_0} = m_{t_0} x + σ_{t_0} z``, and the chosen sampler runs
    from ``t_0`` to ``ε``; ``s = 0`` returns the points unchanged, ``s = 1`` samples the model afresh.
    """

    model_cpu_offload_seq = "score_model"

    def __init__(self, score_model: ModelMixin, scheduler: ScoreSDEScheduler):
        super().__init__()
        if not isinstance(scheduler, ScoreSDEScheduler):
            raise TypeError(
                f"`scheduler` must be a ScoreSDEScheduler (VPSDEScheduler or VESDEScheduler), got "
                f"{type(scheduler).__name__}"
            )
        self.register_modules(score_model=score_model, scheduler=scheduler)

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the points (the network's ``config.dim``)."""
        return self.score_model.config.dim

    def _score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.scheduler.convert_model_output(self.score_model(x, t, return_dict=False)[0], t)

    def _probability_flow_field(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.probability_flow_drift(x, t, self._score(x, t))

    @one_thread_for_small_networks
    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The model's score ``s_θ(x, t) ≈ ∇ log p_t(x)`` at points ``x`` ``(N, D)``, ``t`` a scalar or ``(N,)``
        in ``(0, 1]`` (the network output converted with the scheduler's ``prediction_type``)."""
        x = check_points(x, self.dim, "x").to(device=self.device, dtype=self.score_model.dtype)
        t = check_times(t, x.shape[0], low_open=True, network="score model")
        with torch.no_grad():
            return self._score(x, t.to(dtype=x.dtype, device=x.device))

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int = 1000,
        sampler: str = "euler_maruyama",
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
        strength: float | None = None,
        start_samples: torch.Tensor | None = None,
        ode_solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
    ) -> ScoreSDEPipelineOutput | tuple:
        r"""Draw ``num_samples`` points, or edit ``start_samples`` (SDEdit).

        Args:
            num_samples: number of points (ignored when ``start_samples`` is given).
            num_inference_steps: steps ``n`` of the uniform grid from ``t_0`` to ``ε``; with an adaptive
                ``ode_solver`` it only sets which trajectory states are returned.
            sampler: ``"euler_maruyama"``, ``"predictor_corrector"`` or ``"probability_flow"``.
            generator: draws the prior (or SDEdit) noise and the noise of the SDE steps; the same generator
                state gives the same samples.
            output_type: ``"pt"`` (torch) or ``"np"`` (numpy).
            return_trajectory: also return the states at the grid times ``t_0 … ε``, shape ``(n + 1, N, D)``,
                and those times.
            strength: SDEdit strength ``s ∈ [0, 1]``, start time ``t_0 = s``; given together with
                ``start_samples``. ``0 < s ≤ ε`` is refused (no step fits between ``t_0`` and ``ε``).
            start_samples: the points ``(N, D)`` to edit.
            ode_solver, rtol, atol: torchdiffeq settings of the ``"probability_flow"`` sampler.

        The result is the state at ``t = ε``; the last SDE step adds no noise.
        """
        self._check_output_type(output_type)
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}")
        check_num_samples(num_inference_steps, "num_inference_steps")
        check_generator(generator)
        if sampler == "probability_flow":
            check_ode_solver(ode_solver, ADAPTIVE_ODE_SOLVERS + FIXED_GRID_ODE_SOLVERS)
            check_tolerances(rtol, atol)
        editing = strength is not None or start_samples is not None
        start = check_sdedit(strength, start_samples, self.dim) if editing else None
        n = self._sample_count(
            num_samples,
            start,
            "start_samples",
            self.dim,
            self.score_model.dtype,
            num_inference_steps,
            return_trajectory,
        )
        x, start_time = self._start(n, strength, start, generator)
        if start_time == 0.0:
            states, nfe, times = x[None], 0, [0.0]
        else:
            self.scheduler.set_timesteps(num_inference_steps, device=self.device, start_time=start_time)
            times = self.scheduler.grid
            if sampler == "probability_flow":
                x, states, nfe = self._solve_probability_flow(
                    x, times, ode_solver, rtol, atol, num_inference_steps, return_trajectory
                )
            else:
                corrector = sampler == "predictor_corrector"
                x, states, nfe = self._sample_sde(x, corrector, generator, return_trajectory)
        if not return_trajectory:
            states, times = None, None
        return self._points_output(x, states, nfe, output_type, return_dict, ScoreSDEPipelineOutput, timesteps=times)

    def _solve_probability_flow(
        self,
        x: torch.Tensor,
        times: list[float],
        ode_solver: str,
        rtol: float,
        atol: float,
        num_steps: int,
        keep_states: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """The probability-flow ODE from ``times[0]`` to ``times[-1]`` by torchdiffeq (a fixed-grid method on the
        ``num_steps``-step grid, with a progress bar); the end state, the states at ``times`` (when
        ``keep_states``) and the number of network evaluations."""
        options = _ode_options(ode_solver, times[-1], x.dtype, num_steps)
        t_eval = times if keep_states else None
        if ode_solver in ADAPTIVE_ODE_SOLVERS:
            solution = solve_ode(self._probability_flow_field, x, times[0], times[-1], ode_solver, rtol, atol,
                                 t_eval=t_eval, options=options)  # fmt: skip
        else:
            total = num_steps * FIXED_GRID_EVALUATIONS[ode_solver]
            with self._field_progress(self._probability_flow_field, total) as field:
                solution = solve_ode(field, x, times[0], times[-1], ode_solver, rtol, atol, t_eval, options)
        return solution.x_end, solution.trajectory, solution.nfe

    def _start(
        self,
        num_samples: int,
        strength: float | None,
        start_samples: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, float]:
        """The initial state and its time: a prior draw of ``num_samples`` points at ``t = 1``, or the SDEdit start
        at ``t_0 = strength`` from the checked ``start_samples``."""
        dtype, device = self.score_model.dtype, self.device
        if start_samples is None:
            prior = self.scheduler.sample_prior(num_samples, self.dim, generator=generator, device=device, dtype=dtype)
            return prior, 1.0
        x = start_samples.to(device=device, dtype=dtype)
        eps = self.scheduler.config.sampling_eps
        if 0.0 < strength <= eps:
            raise ValueError(
                f"`strength` must be 0 or greater than sampling_eps = {eps} (the sampler stops at t = ε), "
                f"got {strength!r}"
            )
        if strength == 0.0:
            return x.clone(), 0.0
        noise = randn_tensor(x.shape, generator=generator, device=device, dtype=dtype)
        return self.scheduler.add_noise(x, noise, float(strength)), float(strength)

    def _sample_sde(
        self, x: torch.Tensor, corrector: bool, generator: torch.Generator | None, keep_states: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """Reverse SDE on the scheduler's grid: Euler–Maruyama steps, each preceded by Langevin corrector steps
        when ``corrector``; returns the end state, the grid states (when ``keep_states``) and the number of
        network evaluations."""
        states, nfe = [x] if keep_states else None, 0
        corrector_steps = self.scheduler.config.num_corrector_steps if corrector else 0
        for t in self.progress_bar(self.scheduler.timesteps):
            for _ in range(corrector_steps):
                output = self.score_model(x, t, return_dict=False)[0]
                x = self.scheduler.step_correct(output, t, x, generator=generator, return_dict=False)[0]
            output = self.score_model(x, t, return_dict=False)[0]
            x = self.scheduler.step(output, t, x, generator=generator, return_dict=False)[0]
            nfe += corrector_steps + 1
            if states is not None:
                states.append(x)
        return x, torch.stack(states) if states is not None else None, nfe

    @one_thread_for_small_networks
    def log_prob(
        self,
        x: torch.Tensor,
        divergence: str = "exact",
        ode_solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        generator: torch.Generator | None = None,
        batch_size: int = 10_000,
    ) -> torch.Tensor:
        r"""Log-density ``log p_ε(x)`` of the model's probability-flow ODE at points ``x`` ``(N, D)``, in nats.

        Integrates ``dx/dt = F(x, t) = f(x, t) − ½ g(t)² s_θ(x, t)`` from ``x(ε) = x`` to ``t = 1`` with the
        instantaneous change of variables (Song et al. 2021, Sec. 4.3; Chen et al. 2018):

        ``log p_ε(x) = log π(x(1)) + ∫_ε^1 div F(x(t), t) dt``,

        where ``π`` is the prior and ``div F = a(t) D − ½ g² div s_θ`` includes the drift's divergence (for VP
        ``−½ β(t) D``). ``divergence="exact"`` takes the trace with ``D`` autograd passes, ``"hutchinson"``
        estimates it unbiasedly with one Rademacher probe per solve drawn from ``generator``; ``ode_solver`` (an
        adaptive torchdiffeq method), ``rtol`` and ``atol`` go to torchdiffeq.
        """
        x = check_points(x, self.dim, "x").to(device=self.device, dtype=self.score_model.dtype)
        batch_size = check_batch_size(batch_size, x.shape[0])
        check_generator(generator)
        check_ode_solver(ode_solver, ADAPTIVE_ODE_SOLVERS)
        check_tolerances(rtol, atol)
        return ode_log_prob(
            self._probability_flow_field,
            x,
            self.scheduler.config.sampling_eps,
            1.0,
            self.scheduler.prior_log_prob,
            batch_size,
            method=ode_solver,
            rtol=rtol,
            atol=atol,
            divergence_method=divergence,
            generator=generator,
            options=_ode_options(ode_solver, 1.0, x.dtype, 1),
        )
