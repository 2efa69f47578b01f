"""The course's diffusion model: DDPM with a constant α, as a diffusers scheduler."""

from __future__ import annotations

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

__all__ = ["alpha_for_final_alpha_bar", "ConstantAlphaDDPMScheduler", "ConstantAlphaDDPMSchedulerOutput"]

VARIANCE_TYPES = ("beta", "beta_tilde")
SAMPLERS = ("ancestral", "ddim")


@dataclass
class ConstantAlphaDDPMSchedulerOutput(BaseOutput):
    """Output of :meth:`ConstantAlphaDDPMScheduler.step`: the state ``x_s`` at the previous timestep ``s`` and the
    prediction ``x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t`` it was built from."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def alpha_for_final_alpha_bar(num_train_timesteps: int, final_alpha_bar: float) -> float:
    r"""The constant ``α`` with which ``ᾱ_T = α^T`` equals ``final_alpha_bar``: ``α = ᾱ_T^{1/T}``.

    A small ``ᾱ_T`` (say ``1e-3``) makes ``x_T = √ᾱ_T x_0 + √(1 − ᾱ_T) z`` nearly ``N(0, I)``; a larger ``T`` for the
    same ``ᾱ_T`` makes each step smaller, so the data "slowly turn to noise".
    """
    check_int(num_train_timesteps, "num_train_timesteps")
    check_number(final_alpha_bar, "final_alpha_bar", 0, 1, open_low=True, open_high=True)
    return math.exp(math.log(final_alpha_bar) / num_train_timesteps)


class ConstantAlphaDDPMScheduler(StepScheduler):
    r"""DDPM with a constant ``α`` (Ho et al. 2020, *Denoising Diffusion Probabilistic Models*) and its DDIM sampler
    (Song et al. 2021, *Denoising Diffusion Implicit Models*).

    Convention: integer steps ``t = 0 … T`` (``T = num_train_timesteps``), ``x_0`` is the data,
    ``β = 1 − α``, ``ᾱ_t = α^t`` and ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z``, ``z ~ N(0, I)``; one forward step is
    ``x_t = √α x_{t−1} + √β z``. The network predicts ``ε̂(x_t, t) ≈ E[z | x_t]`` and receives the integer ``t``
    itself (``1 … T``): a training loop draws ``(x_t, t, z)`` with :meth:`sample_training_inputs` and regresses
    ``model(x_t, t)`` on ``z``.

    Sampling runs on the decreasing grid ``t_0 = T > t_1 > … > t_{S−1} > t_S = 0`` with
    ``t_i = round(T (S − i) / S)`` (``S = num_inference_steps``; all ``T`` steps when ``S = T``). A step from ``t`` to
    the next grid point ``s < t`` uses ``x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``, ``α_{t|s} = ᾱ_t / ᾱ_s``,
    ``β_{t|s} = 1 − α_{t|s}`` and

    - ``sampler="ancestral"``: ``x_s = μ̃ + σ z`` with the posterior mean of ``q(x_s | x_t, x_0)``,
      ``μ̃ = √ᾱ_s β_{t|s} / (1 − ᾱ_t) x̂_0 + √α_{t|s} (1 − ᾱ_s) / (1 − ᾱ_t) x_t``, and
      ``σ² = β̃ = (1 − ᾱ_s) / (1 − ᾱ_t) β_{t|s}`` (``variance_type="beta_tilde"``, the posterior variance) or
      ``σ² = β_{t|s}`` (``variance_type="beta"``); ``s = t − 1`` gives ``β_{t|s} = β``. Skipping steps is exact for
      the coarser Markov chain with ``α_{t|s}``.
    - ``sampler="ddim"``: ``x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z`` with ``σ² = η² β̃``; ``η = 0`` is the
      deterministic DDIM sampler, ``η = 1`` the ancestral one with ``β̃``.

    The last step (to ``s = 0``) adds no noise: ``x_0 = μ̃``.

    Relation to diffusers: this is ``DDPMScheduler(trained_betas=[1 − α] * T, clip_sample=False,
    prediction_type="epsilon", variance_type="fixed_small" | "fixed_large")`` (and, for ``sampler="ddim"``,
    ``DDIMScheduler(..., set_alpha_to_one=True)``) with diffusers' timestep index ``τ = t − 1``: diffusers'
    ``alphas_cumprod[τ] = α^{τ+1} = ᾱ_t`` and its ``add_noise(x, z, τ)`` equals our ``add_noise(x, z, t)``.
    """

    config_rules = {
        "alpha": partial(check_number, low=0, high=1, open_low=True, open_high=True),
        "num_train_timesteps": check_int,
        "variance_type": partial(check_choice, choices=VARIANCE_TYPES),
        "sampler": partial(check_choice, choices=SAMPLERS),
        "eta": partial(check_number, low=0, high=1),
    }

    @register_to_config
    def __init__(
        self,
        alpha: float = 0.95,
        num_train_timesteps: int = 100,
        variance_type: str = "beta_tilde",
        sampler: str = "ancestral",
        eta: float = 0.0,
    ):
        check_arguments(self.config_rules, self.config)
        # ᾱ_t = α^t for t = 0 … T, in float64 (cast to the sample's dtype where used).
        self.alphas_cumprod = float(alpha) ** torch.arange(num_train_timesteps + 1, dtype=torch.float64)
        self.set_timesteps(num_train_timesteps)

    @classmethod
    def from_final_alpha_bar(
        cls, num_train_timesteps: int, final_alpha_bar: float = 1e-3, **kwargs: object
    ) -> ConstantAlphaDDPMScheduler:
        """A scheduler with ``α = ᾱ_T^{1/T}``, so that ``ᾱ_T = final_alpha_bar`` (:func:`alpha_for_final_alpha_bar`)."""
        alpha = alpha_for_final_alpha_bar(num_train_timesteps, final_alpha_bar)
        return cls(alpha=alpha, num_train_timesteps=num_train_timesteps, **kwargs)

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def alpha_bar(self, timesteps: torch.Tensor | int) -> torch.Tensor:
        """``ᾱ_t = α^t`` (float64) at integer ``timesteps`` in ``0 … T`` (a Python int or an integer tensor)."""
        return self.alphas_cumprod[self._check_timesteps(timesteps, "timesteps").cpu()]

    def _check_timesteps(self, timesteps: object, name: str) -> torch.Tensor:
        if isinstance(timesteps, bool) or not isinstance(timesteps, int | torch.Tensor):
            raise TypeError(f"`{name}` must be an int or an integer tensor in 0 … T, got {type(timesteps).__name__}")
        t = torch.as_tensor(timesteps)
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise TypeError(f"`{name}` must hold integer steps 0 … T, got dtype {t.dtype}")
        T = self.config.num_train_timesteps
        if t.numel() and (int(t.min()) < 0 or int(t.max()) > T):
            raise ValueError(f"`{name}` must lie in 0 … {T} (num_train_timesteps), got values {t.tolist()}")
        return t.long()

    def forward_transition(
        self,
        sample: torch.Tensor,
        noise: torch.Tensor,
        from_timesteps: torch.Tensor | int,
        timesteps: torch.Tensor | int,
    ) -> torch.Tensor:
        """One draw of ``q(x_t | x_s) = N(√(ᾱ_t/ᾱ_s) x_s, (1 − ᾱ_t/ᾱ_s) I)`` for ``s = from_timesteps ≤ t``."""
        check_same_shape(noise, sample, "noise", "the samples")
        s = self._check_timesteps(from_timesteps, "from_timesteps")
        t = self._check_timesteps(timesteps, "timesteps")
        if bool((s > t).any()):
            raise ValueError(f"`from_timesteps` ({s.tolist()}) must not exceed `timesteps` ({t.tolist()})")
        ratio = self.alphas_cumprod[t.cpu()] / self.alphas_cumprod[s.cpu()]
        return per_sample(ratio.sqrt(), sample) * sample + per_sample((1 - ratio).sqrt(), sample) * noise

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | int
    ) -> torch.Tensor:
        """The forward process ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z`` at integer ``timesteps`` (scalar or one per sample)."""
        return self.forward_transition(original_samples, noise, 0, timesteps)

    def sample_training_inputs(
        self, original_samples: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""One ε-prediction training batch: ``t ~ U{1, …, T}``, ``z ~ N(0, I)``, ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z``.

        Returns ``(x_t, t, z)``; the loss is ``‖model(x_t, t) − z‖²`` averaged over the batch (Ho et al. 2020, Alg. 1).
        """
        n = original_samples.shape[0]
        timesteps = torch.randint(
            1, self.config.num_train_timesteps + 1, (n,), generator=generator, device=torch.device("cpu")
        ).to(original_samples.device)
        noise = randn_tensor(
            original_samples.shape, generator=generator, device=original_samples.device, dtype=original_samples.dtype
        )
        return self.add_noise(original_samples, noise, timesteps), timesteps, noise

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Decreasing grid ``t_i = round(T (S − i) / S)``, ``i = 0 … S − 1`` (``T, T − 1, …, 1`` when ``S = T``)."""
        T = self.config.num_train_timesteps
        S = check_int(num_inference_steps, "num_inference_steps", 1, T, note="at most num_train_timesteps")
        grid = torch.round(torch.arange(S, 0, -1, dtype=torch.float64) * (T / S)).long()
        self.num_inference_steps = S
        self.timesteps = grid.to(device)
        self._grid = grid.tolist() + [0]

    def previous_timestep(self, timestep: torch.Tensor | int) -> int:
        """The grid point after ``timestep`` in :attr:`timesteps` (``0`` after the last one)."""
        t = int(self._check_timesteps(timestep, "timestep"))
        if t not in self._grid[:-1]:
            raise ValueError(
                f"`timestep` {t} is not on the sampling grid {self._grid[:-1]}; call `set_timesteps` and step "
                "through `scheduler.timesteps`"
            )
        return self._grid[self._grid.index(t) + 1]

    def posterior(self, timestep: int, prev_timestep: int) -> tuple[float, float, float]:
        r"""Coefficients of ``q(x_s | x_t, x_0) = N(c_0 x_0 + c_t x_t, β̃ I)`` for ``s = prev_timestep < t``.

        ``c_0 = √ᾱ_s β_{t|s} / (1 − ᾱ_t)``, ``c_t = √α_{t|s} (1 − ᾱ_s) / (1 − ᾱ_t)``,
        ``β̃ = (1 − ᾱ_s) β_{t|s} / (1 − ᾱ_t)``, with ``α_{t|s} = ᾱ_t / ᾱ_s = 1 − β_{t|s}`` (Ho et al. 2020, eq. 7).
        """
        t, s = int(timestep), int(prev_timestep)
        if not 0 <= s < t <= self.config.num_train_timesteps:
            raise ValueError(
                f"need 0 <= prev_timestep < timestep <= {self.config.num_train_timesteps}, got "
                f"timestep={t}, prev_timestep={s}"
            )
        a_t, a_s = float(self.alphas_cumprod[t]), float(self.alphas_cumprod[s])
        alpha_ts = a_t / a_s
        beta_ts = 1.0 - alpha_ts
        c_0 = math.sqrt(a_s) * beta_ts / (1.0 - a_t)
        c_t = math.sqrt(alpha_ts) * (1.0 - a_s) / (1.0 - a_t)
        return c_0, c_t, (1.0 - a_s) * beta_ts / (1.0 - a_t)

    def _step(
        self, model_output: Tensor, timestep: Tensor | int, sample: Tensor, generator: torch.Generator | None
    ) -> ConstantAlphaDDPMSchedulerOutput:
        """Go from ``x_t`` (``sample`` at ``timestep``) to ``x_s`` at the next grid point, given ``ε̂ = model_output``.

        Noise ``z`` is drawn with ``generator`` only when the step is random (ancestral, or DDIM with ``η > 0``) and
        does not end at ``s = 0``.
        """
        check_same_shape(model_output, sample, "model_output")
        t = int(self._check_timesteps(timestep, "timestep"))
        s = self.previous_timestep(t)
        a_t, a_s = float(self.alphas_cumprod[t]), float(self.alphas_cumprod[s])
        pred_original = (sample - math.sqrt(1.0 - a_t) * model_output) / math.sqrt(a_t)
        c_0, c_t, beta_tilde = self.posterior(t, s)
        if self.config.sampler == "ancestral":
            prev = c_0 * pred_original + c_t * sample
            variance = beta_tilde if self.config.variance_type == "beta_tilde" else 1.0 - a_t / a_s
        else:
            variance = self.config.eta**2 * beta_tilde
            prev = math.sqrt(a_s) * pred_original + math.sqrt(1.0 - a_s - variance) * model_output
        if s > 0 and variance > 0:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev = prev + math.sqrt(variance) * noise
        return ConstantAlphaDDPMSchedulerOutput(prev_sample=prev, pred_original_sample=pred_original)
