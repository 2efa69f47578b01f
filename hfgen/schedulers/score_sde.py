"""Continuous-time score SDEs (VP and VE) as diffusers schedulers: forward marginals, reverse steps, Langevin."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from functools import partial

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401 (see flow_match_euler)
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from hfgen.checks import check_arguments, check_choice, check_int, check_number
from hfgen.schedulers.stepping import StepScheduler
from hfgen.utils import check_same_shape, per_sample

__all__ = ["ScoreSDEScheduler", "ScoreSDESchedulerOutput", "VESDEScheduler", "VPSDEScheduler"]

PREDICTION_TYPES = ("epsilon", "score")


@dataclass
class ScoreSDESchedulerOutput(BaseOutput):
    """Output of :meth:`ScoreSDEScheduler.step` and :meth:`ScoreSDEScheduler.step_correct`: the new state
    ``prev_sample`` and its noise-free part ``prev_sample_mean`` (the state before the Gaussian increment)."""

    prev_sample: torch.Tensor
    prev_sample_mean: torch.Tensor


class ScoreSDEScheduler(StepScheduler, abc.ABC):
    r"""A linear Itô SDE ``dx = a(t) x dt + g(t) dW`` on ``t ∈ [0, T]``, ``T = 1``, and its time reversal
    (Song et al. 2021, *Score-Based Generative Modeling through Stochastic Differential Equations*).

    Time convention: ``t = 0`` is the data, ``t = T = 1`` the prior; sampling runs backward from ``t_0 ≤ 1`` to
    ``ε = sampling_eps > 0`` (the score is not defined at ``t = 0``). The forward marginal given ``x_0`` is
    ``x_t = m_t x_0 + σ_t z``, ``z ~ N(0, I)`` (:meth:`marginal_coefficients`, :meth:`add_noise`); the drift is
    ``f(x, t) = a(t) x`` with ``a = d log m_t / dt`` and ``g(t)² = dσ_t²/dt − 2 a(t) σ_t²``.

    The network's output is read according to ``prediction_type``: ``"score"`` means ``s_θ(x, t) ≈ ∇ log p_t(x)``,
    ``"epsilon"`` means ``ε̂_θ(x, t) ≈ E[z | x_t]``, the score being ``s = −ε̂ / σ_t``
    (:meth:`convert_model_output`). The network receives the time ``t`` itself.

    One SDE, two kinds of move, as diffusers' ``ScoreSdeVeScheduler`` splits them: :meth:`step` is the
    predictor, one Euler–Maruyama step of the reverse SDE ``dx = [f − g² s] dt + g dW̄`` from a grid point to the
    next; :meth:`step_correct` is the corrector, one Langevin MCMC step at a fixed ``t`` targeting ``p_t``
    (predictor–corrector sampling, Song et al. 2021, Alg. 1). The probability-flow ODE ``dx/dt = f − ½ g² s``
    (:meth:`probability_flow_drift`) is integrated by torchdiffeq in
    :class:`~hfgen.pipelines.score_sde.ScoreSDEPipeline`.
    """

    #: the rules of the config arguments both SDEs take; a subclass adds those of its noise schedule
    config_rules = {
        "sampling_eps": partial(check_number, low=0, high=1, open_low=True, open_high=True),
        "prediction_type": partial(check_choice, choices=PREDICTION_TYPES),
        "snr": partial(check_number, low=0, open_low=True),
        "num_corrector_steps": check_int,
    }

    def __init__(self) -> None:
        check_arguments(self.config_rules, self.config)
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0, dtype=torch.float64)
        self._grid: list[float] = []

    # The SDE: each subclass gives m_t, σ_t, a(t), g(t) and the prior.

    @abc.abstractmethod
    def marginal_coefficients(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m_t, σ_t)`` of the forward marginal ``x_t = m_t x_0 + σ_t z`` (float64, shape of ``t``)."""

    @abc.abstractmethod
    def drift_coefficient(self, t: torch.Tensor | float) -> torch.Tensor:
        """``a(t)`` in the drift ``f(x, t) = a(t) x`` (float64, shape of ``t``)."""

    @abc.abstractmethod
    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """The diffusion coefficient ``g(t)`` (float64, shape of ``t``)."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation ``σ_p`` of the prior ``N(0, σ_p² I)`` that stands in for ``p_T``."""

    # Shared mathematics.

    def _time(self, t: torch.Tensor | float, positive: bool = False) -> torch.Tensor:
        """``t`` as a float64 CPU tensor, checked to lie in ``[0, 1]`` (in ``(0, 1]`` when ``positive``)."""
        if isinstance(t, bool) or not isinstance(t, int | float | torch.Tensor):
            raise TypeError(f"`timestep` must be a float or a tensor of times in [0, 1], got {type(t).__name__}")
        times = (
            t.detach().to(device="cpu", dtype=torch.float64)
            if torch.is_tensor(t)
            else torch.tensor(float(t), dtype=torch.float64)
        )
        if times.ndim > 1:
            raise ValueError(f"`timestep` must be a scalar or a 1-D tensor, got shape {tuple(times.shape)}")
        low_ok = times > 0 if positive else times >= 0
        if not bool((low_ok & (times <= 1)).all()):
            raise ValueError(f"`timestep` must lie in {'(0, 1]' if positive else '[0, 1]'}, got {times.tolist()}")
        return times

    @staticmethod
    def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Coefficients at the ``timestep``, a scalar or one per sample ``(N,)``, shaped to multiply ``like``."""
        return per_sample(values, like, "timestep")

    def drift(self, sample: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Forward drift ``f(x, t) = a(t) x``."""
        return self._broadcast(self.drift_coefficient(self._time(t)), sample) * sample

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | float
    ) -> torch.Tensor:
        """Forward marginal ``x_t = m_t x_0 + σ_t z`` at ``timesteps`` (a scalar or one time per sample)."""
        check_same_shape(noise, original_samples, "noise", "the samples")
        mean_coefficient, std = self.marginal_coefficients(self._time(timesteps))
        return (
            self._broadcast(mean_coefficient, original_samples) * original_samples + self._broadcast(std, noise) * noise
        )

    def sample_training_inputs(
        self, original_samples: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""One denoising-score-matching batch: ``t ~ U[ε, 1]``, ``z ~ N(0, I)``, ``x_t = m_t x_0 + σ_t z``.

        Returns ``(x_t, t, z)`` with ``t`` of shape ``(N,)`` in the dtype of the samples (Song et al. 2021, eq. 7);
        see :func:`hfgen.methods.score_matching.denoising_score_matching_loss`.
        """
        n, device, dtype = original_samples.shape[0], original_samples.device, original_samples.dtype
        eps = self.config.sampling_eps
        u = torch.rand(n, generator=generator, device=generator.device if generator is not None else device)
        timesteps = (eps + (1.0 - eps) * u.to(torch.float64)).to(device=device, dtype=dtype)
        noise = randn_tensor(original_samples.shape, generator=generator, device=device, dtype=dtype)
        return self.add_noise(original_samples, noise, timesteps), timesteps, noise

    def convert_model_output(self, model_output: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        """The score ``s(x, t)`` from the network output: itself (``"score"``) or ``−ε̂ / σ_t`` (``"epsilon"``)."""
        if self.config.prediction_type == "score":
            return model_output
        _, std = self.marginal_coefficients(self._time(timestep, positive=True))
        return -model_output / self._broadcast(std, model_output)

    def probability_flow_drift(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, score: torch.Tensor
    ) -> torch.Tensor:
        """Drift of the probability-flow ODE ``dx/dt = f(x, t) − ½ g(t)² s(x, t)`` (Song et al. 2021, eq. 13)."""
        g = self._broadcast(self.diffusion(self._time(timestep)), sample)
        return self.drift(sample, timestep) - 0.5 * g**2 * score

    def sample_prior(
        self,
        num_samples: int,
        dim: int,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``num_samples`` draws of the prior ``N(0, σ_p² I)`` in ``R^dim``."""
        noise = randn_tensor((num_samples, dim), generator=generator, device=torch.device(device or "cpu"), dtype=dtype)
        return self.prior_std * noise

    def prior_log_prob(self, sample: torch.Tensor) -> torch.Tensor:
        """``log N(x; 0, σ_p² I) = −|x|² / (2σ_p²) − (D/2) log(2π σ_p²)`` per row."""
        var = self.prior_std**2
        return -0.5 * sample.square().sum(dim=1) / var - 0.5 * sample.shape[1] * math.log(2 * math.pi * var)

    # Sampling.

    def set_timesteps(
        self, num_inference_steps: int, device: str | torch.device | None = None, start_time: float = 1.0
    ) -> None:
        """Uniform decreasing grid ``t_i = t_0 − i (t_0 − ε) / n``, ``i = 0 … n``, from ``t_0 = start_time`` to
        ``ε``; :attr:`timesteps` holds the ``n`` step starts ``t_0 … t_{n−1}`` (float64)."""
        n = check_int(num_inference_steps, "num_inference_steps")
        eps = self.config.sampling_eps
        start = check_number(start_time, "start_time", eps, 1.0, open_low=True, note="above sampling_eps")
        self._grid = [start - i * (start - eps) / n for i in range(n)] + [eps]
        self.num_inference_steps = n
        self.timesteps = torch.tensor(self._grid[:-1], dtype=torch.float64, device=device)

    @property
    def grid(self) -> list[float]:
        """The current grid ``t_0 > t_1 > … > t_n = ε``: the step starts and the end (empty before
        :meth:`set_timesteps`)."""
        return list(self._grid)

    def _grid_index(self, timestep: torch.Tensor | float) -> int:
        """Index ``i`` of ``timestep`` among the step starts ``t_0 … t_{n−1}`` of the current grid."""
        if self.num_inference_steps is None:
            raise RuntimeError("Call `set_timesteps(num_inference_steps)` before `step`.")
        t = float(self._time(timestep))
        h = (self._grid[0] - self._grid[-1]) / self.num_inference_steps
        index = round((self._grid[0] - t) / h)
        if not 0 <= index < self.num_inference_steps or abs(self._grid[index] - t) > 0.25 * h:
            raise ValueError(
                f"`timestep` {t} is not a step start of the sampling grid {self._grid[0]} … {self._grid[-2]} "
                f"(step {h}); step through `scheduler.timesteps`"
            )
        return index

    def _noise(self, sample: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)

    def _step(
        self, model_output: Tensor, timestep: Tensor | float, sample: Tensor, generator: torch.Generator | None
    ) -> ScoreSDESchedulerOutput:
        r"""Predictor: one Euler–Maruyama step of the reverse SDE from ``t = t_i`` to ``s = t_{i+1} = t − h``,

        ``x_s = x_t − [f(x_t, t) − g(t)² s_θ(x_t, t)] h + g(t) √h z``, ``z ~ N(0, I)``

        (Song et al. 2021, eq. 6). ``model_output`` is the network's output at ``(sample,
        timestep)``; the last step (to ``s = ε``) adds no noise, as Song et al.'s samplers return the mean.
        """
        check_same_shape(model_output, sample, "model_output")
        index = self._grid_index(timestep)
        t, h = self._grid[index], self._grid[index] - self._grid[index + 1]
        score = self.convert_model_output(model_output, t)
        g = float(self.diffusion(t))
        mean = sample - (self.drift(sample, t) - g**2 * score) * h
        prev = mean
        if index < self.num_inference_steps - 1:
            prev = mean + (g * math.sqrt(h)) * self._noise(sample, generator)
        return ScoreSDESchedulerOutput(prev_sample=prev, prev_sample_mean=mean)

    def step_correct(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> ScoreSDESchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        r"""Corrector: one Langevin step at fixed ``t`` that leaves ``p_t`` invariant as its step size vanishes,

        ``x ← x + δ s_θ(x, t) + √(2δ) z``, ``δ = 2 (r ‖z‖ / ‖s_θ‖)²``, ``z ~ N(0, I)``

        with ``r = snr`` and the norms averaged over the batch (Song et al. 2021, Alg. 4 and 5; their VP variant
        multiplies ``δ`` by ``α_i = 1 − β_i ≈ 1``, taken as 1 here). ``model_output`` is the network's output at
        ``(sample, timestep)``; the step is repeated ``num_corrector_steps`` times by the pipeline.
        """
        check_same_shape(model_output, sample, "model_output")
        score = self.convert_model_output(model_output, self._time(timestep, positive=True))
        noise = self._noise(sample, generator)
        noise_norm = noise.reshape(noise.shape[0], -1).norm(dim=1).mean()
        score_norm = score.reshape(score.shape[0], -1).norm(dim=1).mean().clamp_min(torch.finfo(score.dtype).tiny)
        step_size = 2 * (self.config.snr * noise_norm / score_norm) ** 2
        mean = sample + step_size * score
        prev = mean + (2 * step_size).sqrt() * noise
        return self._output(ScoreSDESchedulerOutput(prev_sample=prev, prev_sample_mean=mean), return_dict)

    def __len__(self) -> int:
        return self.num_inference_steps or 0


class VPSDEScheduler(ScoreSDEScheduler):
    r"""Variance-preserving SDE ``dx = −½ β(t) x dt + √β(t) dW`` with ``β(t) = β_min + t (β_max − β_min)``
    (Song et al. 2021, eq. 11; the continuous limit of DDPM, Ho et al. 2020).

    Time convention: ``t ∈ [ε, 1]``, ``t = 0`` data, ``t = 1`` prior ``N(0, I)``. With
    ``B(t) = ∫_0^t β = β_min t + ½ t² (β_max − β_min)`` the marginal is ``x_t = m_t x_0 + σ_t z``,
    ``m_t = e^{−B(t)/2}``, ``σ_t² = 1 − e^{−B(t)}``; ``a(t) = −½ β(t)``, ``g(t) = √β(t)`` and
    ``div f = −½ β(t) D``. See :class:`ScoreSDEScheduler` for the sampling moves and ``prediction_type``.
    """

    config_rules = {
        "beta_min": partial(check_number, low=0, open_low=True),
        "beta_max": partial(check_number, low=0, open_low=True),
        **ScoreSDEScheduler.config_rules,
    }

    @register_to_config
    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        sampling_eps: float = 1e-3,
        prediction_type: str = "epsilon",
        snr: float = 0.16,
        num_corrector_steps: int = 1,
    ):
        super().__init__()
        if beta_max < beta_min:
            raise ValueError(f"`beta_max` must be >= beta_min = {beta_min}, got {beta_max!r}")

    def beta(self, t: torch.Tensor | float) -> torch.Tensor:
        """``β(t) = β_min + t (β_max − β_min)``."""
        c = self.config
        return c.beta_min + self._time(t) * (c.beta_max - c.beta_min)

    def integrated_beta(self, t: torch.Tensor | float) -> torch.Tensor:
        """``B(t) = ∫_0^t β(s) ds = β_min t + ½ t² (β_max − β_min)``."""
        c, t = self.config, self._time(t)
        return c.beta_min * t + 0.5 * t**2 * (c.beta_max - c.beta_min)

    def marginal_coefficients(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """``m_t = e^{−B(t)/2}``, ``σ_t = √(1 − e^{−B(t)})``."""
        b = self.integrated_beta(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def drift_coefficient(self, t: torch.Tensor | float) -> torch.Tensor:
        """``a(t) = −½ β(t)``."""
        return -0.5 * self.beta(t)

    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """``g(t) = √β(t)``."""
        return self.beta(t).sqrt()

    @property
    def prior_std(self) -> float:
        """The prior is ``N(0, I)``."""
        return 1.0


class VESDEScheduler(ScoreSDEScheduler):
    r"""Variance-exploding SDE ``dx = √(dσ²(t)/dt) dW`` with the geometric ``σ(t) = σ_min (σ_max/σ_min)^t``
    (Song et al. 2021, eq. 9; the continuous limit of SMLD, Song & Ermon 2019).

    Time convention: ``t ∈ [ε, 1]``, ``t = 0`` data, ``t = 1`` prior ``N(0, σ_max² I)``. Started at the data at
    ``t = 0`` the marginal is exactly ``x_t = x_0 + σ_t z`` with ``σ_t² = σ(t)² − σ_min²`` (``m_t = 1``; Song
    et al.'s code uses ``σ(t)`` itself, i.e. data blurred by ``σ_min``); ``a(t) = 0``,
    ``g(t) = σ(t) √(2 log(σ_max/σ_min))`` and ``div f = 0``. See :class:`ScoreSDEScheduler` for the sampling
    moves and ``prediction_type``.
    """

    config_rules = {
        "sigma_min": partial(check_number, low=0, open_low=True),
        "sigma_max": partial(check_number, low=0, open_low=True),
        **ScoreSDEScheduler.config_rules,
    }

    @register_to_config
    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        sampling_eps: float = 1e-5,
        prediction_type: str = "epsilon",
        snr: float = 0.16,
        num_corrector_steps: int = 1,
    ):
        super().__init__()
        if sigma_max <= sigma_min:
            raise ValueError(f"`sigma_max` must be > sigma_min = {sigma_min}, got {sigma_max!r}")

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """``σ(t) = σ_min (σ_max/σ_min)^t``."""
        c = self.config
        return c.sigma_min * (c.sigma_max / c.sigma_min) ** self._time(t)

    def marginal_coefficients(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """``m_t = 1``, ``σ_t = σ_min √((σ_max/σ_min)^{2t} − 1)``."""
        c, t = self.config, self._time(t)
        std = c.sigma_min * torch.sqrt(torch.expm1(2 * t * math.log(c.sigma_max / c.sigma_min)))
        return torch.ones_like(t), std

    def drift_coefficient(self, t: torch.Tensor | float) -> torch.Tensor:
        """``a(t) = 0``."""
        return torch.zeros_like(self._time(t))

    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """``g(t) = σ(t) √(2 log(σ_max/σ_min))``."""
        c = self.config
        return self.sigma(t) * math.sqrt(2 * math.log(c.sigma_max / c.sigma_min))

    @property
    def prior_std(self) -> float:
        """The prior is ``N(0, σ_max² I)``."""
        return float(self.config.sigma_max)
