"""DDPM pipeline for points: ancestral or DDIM sampling from an ε-network with the constant-α scheduler or diffusers'
own ``DDPMScheduler``/``DDIMScheduler`` (any β schedule), SDEdit, the forward process, and log-densities through the
probability-flow ODE of the schedule's continuous limit."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.torch_utils import randn_tensor

from hfgen.checks import check_number
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.sampling import PointsPipelineOutput, check_sdedit, ode_log_prob
from hfgen.schedulers.constant_alpha_ddpm import ConstantAlphaDDPMScheduler
from hfgen.threads import one_thread_for_small_networks
from hfgen.utils import (
    check_batch_size,
    check_generator,
    check_ode_solver,
    check_points,
    check_sampling_memory,
    check_tolerances,
)

__all__ = ["DDPMPointsPipeline", "DDPMPointsPipelineOutput"]

#: the schedulers the pipeline runs: the course's constant-α one and diffusers' own ε-prediction DDPM/DDIM
DDPM_SCHEDULERS = (ConstantAlphaDDPMScheduler, DDPMScheduler, DDIMScheduler)
DIFFUSERS_VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log")


def _check_scheduler(scheduler: object) -> None:
    """Refuse (``TypeError``) a scheduler the pipeline cannot run: not one of :data:`DDPM_SCHEDULERS`, or a diffusers
    one that does not predict ε, clips or thresholds ``x̂_0`` (points are not images in ``[−1, 1]``) or learns its
    variance."""
    names = ", ".join(cls.__name__ for cls in DDPM_SCHEDULERS)
    if not isinstance(scheduler, DDPM_SCHEDULERS):
        raise TypeError(f"`scheduler` must be one of {names}, got {type(scheduler).__name__}")
    if isinstance(scheduler, ConstantAlphaDDPMScheduler):
        return
    config = scheduler.config
    if config.prediction_type != "epsilon":
        raise TypeError(
            f"`scheduler` must have prediction_type='epsilon' (the model predicts the noise), got "
            f"{config.prediction_type!r}"
        )
    if config.clip_sample or config.thresholding:
        raise TypeError(
            "`scheduler` must not clip or threshold x̂_0 (points are not images in [-1, 1]): build it with "
            f"clip_sample=False, thresholding=False, got clip_sample={config.clip_sample}, "
            f"thresholding={config.thresholding}"
        )
    if isinstance(scheduler, DDPMScheduler) and config.variance_type not in DIFFUSERS_VARIANCE_TYPES:
        raise TypeError(
            f"`scheduler` must have a fixed variance_type {DIFFUSERS_VARIANCE_TYPES}, got {config.variance_type!r}"
        )


@dataclass
class DDPMPointsPipelineOutput(PointsPipelineOutput):
    """Points output plus ``timesteps``: the noise level ``t`` of each trajectory state (``ᾱ_t``, ``ᾱ_0 = 1``: ``T, …,
    0`` for a full run) when one is returned."""

    timesteps: list[int] | None = None


class DDPMPointsPipeline(HfgenPipeline):
    r"""Generate points with constant-α DDPM (Ho et al. 2020) or its DDIM sampler (Song et al. 2021).

    Draws ``x_T ~ N(0, I)`` and applies the scheduler's reverse steps ``x_t → x_s`` on its grid ``T = t_0 > … > 0``,
    each with ``ε̂ = model(x_t, t)``. The network receives the integer step ``t ∈ {1, …, T}`` as its timestep, the
    same ``t`` that :meth:`ConstantAlphaDDPMScheduler.add_noise` and ``sample_training_inputs`` use in training.

    Components: ``model`` (an ε-network ``model(sample, timestep)`` such as :class:`~hfgen.models.TimeMLP` with
    ``time_scale=1``, or the closed-form :class:`~hfgen.models.DDPMOracle`) and ``scheduler``
    (:class:`~hfgen.schedulers.ConstantAlphaDDPMScheduler`). To sample with DDIM, swap the scheduler:
    ``pipe.scheduler = ConstantAlphaDDPMScheduler.from_config(pipe.scheduler.config, sampler="ddim")``.

    General β schedules: ``scheduler`` may also be diffusers' ``DDPMScheduler`` or ``DDIMScheduler`` (``beta_schedule``
    ``"linear"``, ``"scaled_linear"``, ``"squaredcos_cap_v2"`` …) with ``prediction_type="epsilon"`` and
    ``clip_sample=False``; the network then receives diffusers' timestep index ``τ = t − 1 ∈ {0, …, T − 1}``, whose
    level is ``ᾱ_t = alphas_cumprod[τ]`` (the constant-α scheduler is ``trained_betas=[1 − α] * T`` in this
    convention).

    SDEdit (Meng et al. 2022): with ``start_samples`` and ``strength = s ∈ [0, 1]`` the points are noised to the
    first grid level ``t_0 ≤ s T``, ``x_{t_0} = √ᾱ_{t_0} x + √(1 − ᾱ_{t_0}) z``, and the sampler runs from there.
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: ModelMixin, scheduler: ConstantAlphaDDPMScheduler | DDPMScheduler | DDIMScheduler):
        super().__init__()
        _check_scheduler(scheduler)
        self.register_modules(model=model, scheduler=scheduler)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "scheduler":
            _check_scheduler(value)
        super().__setattr__(name, value)

    @property
    def _diffusers_scheduler(self) -> bool:
        return not isinstance(self.scheduler, ConstantAlphaDDPMScheduler)

    def _level(self, timestep: torch.Tensor | int) -> int:
        """The noise level ``t`` (``ᾱ_t``, ``ᾱ_0 = 1``) of a scheduler timestep: ``t`` itself, or ``τ + 1``."""
        return int(timestep) + 1 if self._diffusers_scheduler else int(timestep)

    def log_alpha_bars(self) -> torch.Tensor:
        """``log ᾱ_t`` for the levels ``t = 0 … T`` (float64, ``log ᾱ_0 = 0``)."""
        if not self._diffusers_scheduler:
            return self.scheduler.alphas_cumprod.log()
        return torch.cat([torch.zeros(1, dtype=torch.float64), self.scheduler.alphas_cumprod.to(torch.float64).log()])

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the points (the network's ``config.dim``, or the oracle's ``dim``)."""
        return self.model.config.dim if "dim" in self.model.config else self.model.dim

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
        strength: float | None = None,
        start_samples: torch.Tensor | None = None,
    ) -> DDPMPointsPipelineOutput | tuple:
        r"""Draw ``num_samples`` points, or edit ``start_samples`` (SDEdit).

        Args:
            num_samples: number of points ``N`` (ignored when ``start_samples`` is given).
            num_inference_steps: grid size ``S`` in ``1 … T``; ``None`` takes all ``T`` steps (what ancestral
                sampling is trained for; fewer steps suit ``sampler="ddim"``).
            generator: draws ``x_T`` and the noise of random steps; the same generator state gives the same samples.
            output_type: ``"pt"`` (torch) or ``"np"`` (numpy).
            return_trajectory: also return the states ``x_T, …, x_0``, shape ``(S + 1, N, D)``, and their levels.
            strength: SDEdit strength ``s ∈ [0, 1]``: the grid steps at levels ``t ≤ s T`` run, from ``start_samples``
                noised to the first of them (``s = 0``, or no grid step below ``s T``, returns the points).
            start_samples: the points ``(N, D)`` to edit, given together with ``strength``.
        """
        self._check_output_type(output_type)
        check_generator(generator)
        steps = self.scheduler.config.num_train_timesteps if num_inference_steps is None else num_inference_steps
        self.scheduler.set_timesteps(steps, device=self.device)
        timesteps = self.scheduler.timesteps
        editing = strength is not None or start_samples is not None
        start = check_sdedit(strength, start_samples, self.dim) if editing else None
        n = self._sample_count(
            num_samples, start, "start_samples", self.dim, self.model.dtype, len(timesteps), return_trajectory
        )
        if editing:
            x, timesteps = self._sdedit_start(strength, start, timesteps, generator)
        else:
            x = randn_tensor((n, self.dim), generator=generator, device=self.device, dtype=self.model.dtype)
        states = [x] if return_trajectory else None
        for t in self.progress_bar(timesteps):
            eps = self.model(x, t, return_dict=False)[0]
            x = self.scheduler.step(eps, t, x, generator=generator, return_dict=False)[0]
            if states is not None:
                states.append(x)
        trajectory = torch.stack(states) if states is not None else None
        levels = [self._level(t) for t in timesteps] + [0] if return_trajectory else None
        return self._points_output(
            x, trajectory, len(timesteps), output_type, return_dict, DDPMPointsPipelineOutput, timesteps=levels
        )

    def _sdedit_start(
        self,
        strength: float,
        start_samples: torch.Tensor,
        timesteps: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SDEdit's start (Meng et al. 2022) from the checked ``start_samples``: the grid steps at levels
        ``t ≤ strength · T`` and the points noised to the first of them, ``√ᾱ_t x + √(1 − ᾱ_t) z``."""
        x = start_samples.to(device=self.device, dtype=self.model.dtype)
        limit = strength * self.scheduler.config.num_train_timesteps
        kept = timesteps[[self._level(t) <= limit + 1e-9 for t in timesteps]]
        if not len(kept):
            return x.clone(), kept
        noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.scheduler.add_noise(x, noise, kept[:1]), kept

    @one_thread_for_small_networks
    def forward_trajectory(
        self, original_samples: torch.Tensor, timesteps: Sequence[int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        r"""One path of the forward Markov chain observed at increasing ``timesteps``, shape ``(K, N, D)``.

        From ``x_0 = original_samples`` each state is drawn from the previous one by
        ``q(x_t | x_s) = N(√(ᾱ_t/ᾱ_s) x_s, (1 − ᾱ_t/ᾱ_s) I)``, so every state has the marginal
        ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z`` and consecutive states are those of one noising path (the course's
        "tuning T and α" figure plots them with :func:`hfgen.plotting.plot_diffusion_forward`).
        """
        x = check_points(original_samples, self.dim, "original_samples")
        check_generator(generator)
        steps = _check_steps(timesteps, self.scheduler.config.num_train_timesteps)
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"`timesteps` must be strictly increasing, got {steps}")
        check_sampling_memory(x.shape[0], self.dim, x.device, x.dtype, len(steps) + 2, "original_samples")
        log_alpha_bars = self.log_alpha_bars()
        states, previous = [], 0
        for t in steps:
            noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if self._diffusers_scheduler:
                ratio = float((log_alpha_bars[t] - log_alpha_bars[previous]).exp())
                x = math.sqrt(ratio) * x + math.sqrt(1.0 - ratio) * noise
            else:
                x = self.scheduler.forward_transition(x, noise, previous, t)
            states.append(x)
            previous = t
        return torch.stack(states)

    # -- likelihood through the continuous limit -------------------------------------------------------------------

    def _continuous_schedule(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log ᾱ(t), β(t) = −d log ᾱ/dt)`` of the continuous limit at real ``t ∈ (0, T]``: ``log ᾱ`` interpolated
        linearly between the integer levels (exact for constant α, where ``β(t) = −log α``)."""
        table = self.log_alpha_bars()
        T = table.shape[0] - 1
        tt = t.detach().to(torch.float64).cpu().clamp(0.0, float(T))
        k = tt.ceil().clamp(1, T).long()
        slope = table[k] - table[k - 1]
        return table[k - 1] + (tt - (k - 1)) * slope, -slope

    def _probability_flow_field(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``dx/dt = −½ β(t) (x − ε̂(x, t) / √(1 − ᾱ(t)))``, the probability-flow ODE of the VP SDE
        ``dx = −½ β(t) x dt + √β(t) dW`` whose marginals are ``x_t = √ᾱ(t) x_0 + √(1 − ᾱ(t)) z``."""
        log_alpha_bar, beta = self._continuous_schedule(t)
        std = float(-torch.expm1(log_alpha_bar)) ** 0.5
        model_time = t - 1 if self._diffusers_scheduler else t
        eps = self.model(x, model_time.to(x.dtype), return_dict=False)[0]
        return -0.5 * float(beta) * (x - eps / std)

    @one_thread_for_small_networks
    def log_prob(
        self,
        x: torch.Tensor,
        start_level: float = 1.0,
        ode_solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        batch_size: int = 10_000,
    ) -> torch.Tensor:
        r"""Approximate log-density ``log p_{t_s}(x)`` in nats at points ``x`` ``(N, D)``, ``t_s = start_level``.

        The discrete chain is replaced by its continuous limit (Song et al. 2021, Sec. 3.3 and App. B): the VP SDE
        ``dx = −½ β(t) x dt + √β(t) dW`` on ``t ∈ [0, T]`` whose marginals ``x_t = √ᾱ(t) x_0 + √(1 − ᾱ(t)) z``
        match the chain's at every integer ``t`` (``log ᾱ`` interpolated linearly, exact for constant α:
        ``β = −log α``). With the score ``∇ log p_t = −ε̂(x, t) / √(1 − ᾱ(t))`` its probability-flow ODE
        ``dx/dt = F = −½ β(t) (x − ε̂ / √(1 − ᾱ(t)))`` is integrated from ``x(t_s) = x`` to ``T`` with the
        instantaneous change of variables (Chen et al. 2018):

        ``log p_{t_s}(x) = log N(x(T); 0, I) + ∫_{t_s}^T div F(x(t), t) dt``.

        Approximations, measured in ``tests/test_ddpm.py`` and ``benchmarks/bench_score.py``: (1) the density is
        that of the ODE model, not of the ancestral sampler's outputs; (2) it is the density of the level
        ``t_s`` (default 1, the least noisy level the network is trained on: data convolved with
        ``N(0, (1 − ᾱ_1) I)``), not of ``x_0`` (``start_level < 1`` extrapolates the network below its training
        levels); (3) ``p_T`` is taken to be ``N(0, I)``, as the sampler does, which is off by ``O(√ᾱ_T |E x_0| + ᾱ_T)``;
        (4) the network reads real-valued times between the integer steps it was trained on. For a diffusers schedule
        ``β(t)`` jumps at every integer level; the solver is told where (torchdiffeq's ``jump_t``).
        """
        x = check_points(x, self.dim, "x")
        x = x.to(device=self.device, dtype=self.model.dtype)
        batch_size = check_batch_size(batch_size, x.shape[0])
        check_ode_solver(ode_solver)
        check_tolerances(rtol, atol)
        T = self.scheduler.config.num_train_timesteps
        check_number(start_level, "start_level", 0, T, True, True, note="num_train_timesteps")
        options: dict[str, torch.Tensor] = {"step_t": torch.tensor([float(T)], dtype=x.dtype)}
        if self._diffusers_scheduler:  # β(t) jumps at the integer levels: tell the solver where
            options["jump_t"] = torch.arange(math.floor(start_level) + 1, T, dtype=x.dtype)
        return ode_log_prob(
            self._probability_flow_field,
            x,
            float(start_level),
            float(T),
            _standard_normal_log_prob,
            batch_size,
            method=ode_solver,
            rtol=rtol,
            atol=atol,
            options=options,
        )


def _standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` per row of ``(N, D)``."""
    return -0.5 * z.square().sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def _check_steps(timesteps: object, num_train_timesteps: int) -> list[int]:
    """``timesteps`` as a list of ints: a non-empty sequence (or 1-d tensor) of integer steps in ``0 … T``; integral
    floats such as ``2.0`` are accepted, ``0.5`` or ``True`` are not (they would be truncated or read as 1)."""
    expected = f"a non-empty sequence of integer steps in 0 … {num_train_timesteps} (num_train_timesteps)"
    if isinstance(timesteps, torch.Tensor):
        if timesteps.ndim != 1 or timesteps.is_complex() or timesteps.dtype == torch.bool:
            raise ValueError(
                f"`timesteps` must be {expected}, got a {timesteps.dtype} tensor of shape {tuple(timesteps.shape)}"
            )
        timesteps = timesteps.tolist()
    if isinstance(timesteps, str | bytes) or not isinstance(timesteps, Sequence) or not timesteps:
        raise ValueError(f"`timesteps` must be {expected}, got {timesteps!r}")
    steps = []
    for t in timesteps:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or int(t) != t:
            raise ValueError(f"`timesteps` must be {expected}, got {list(timesteps)!r}: {t!r} is not an integer step")
        if not 0 <= t <= num_train_timesteps:
            raise ValueError(f"`timesteps` must be {expected}, got {list(timesteps)!r}: {t!r} is out of range")
        steps.append(int(t))
    return steps
