"""The optimal ε-predictor of constant-α DDPM for a finite data set, in closed form."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from hfgen.checks import check_arguments, check_int, check_number
from hfgen.utils import check_data_points, check_point_shape

__all__ = ["DDPMOracle", "DDPMOracleOutput"]


@dataclass
class DDPMOracleOutput(BaseOutput):
    """Output of :class:`DDPMOracle`: the optimal noise prediction ``E[z | x_t]``, shape ``(N, D)``."""

    sample: torch.Tensor


class DDPMOracle(ModelMixin, ConfigMixin):
    r"""Minimiser of the ε-prediction loss ``E‖ε(x_t, t) − z‖²`` when the data are the points ``x_0^(1 … M)``.

    With ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z``, ``ᾱ_t = α^t`` and ``x_0`` uniform on the data points, Bayes gives the
    posterior weights ``w_i(x̂) = softmax_i(−‖x̂ − √ᾱ_t x_0^(i)‖² / (2(1 − ᾱ_t)))`` and

    ``ε*(x̂, t) = E[z | x_t = x̂] = Σ_i w_i(x̂) (x̂ − √ᾱ_t x_0^(i)) / √(1 − ᾱ_t)``
    ``= (x̂ − √ᾱ_t E[x_0 | x_t = x̂]) / √(1 − ᾱ_t)``,

    equivalently ``ε* = −√(1 − ᾱ_t) ∇ log p_t(x̂)`` (Tweedie's formula; Ho et al. 2020 for the ε-parametrisation).
    It takes the same inputs as a trained ε-network (``sample`` ``(N, D)``, the step ``t``, real in ``(0, T]``) and
    can replace it in :class:`~hfgen.pipelines.DDPMPointsPipeline`; sampling with it reproduces the data points.
    The points are stored in the config and as a float32 buffer ``data`` (so the model saves as safetensors and
    its dtype is float32, like a network's); the mixture is evaluated in float64 from that buffer.
    """

    config_rules = {
        "alpha": partial(check_number, low=0, high=1, open_low=True, open_high=True),
        "num_train_timesteps": check_int,
    }

    @register_to_config
    def __init__(
        self,
        data_points: list[list[float]] = ((1.0, 0.0), (0.0, 1.0)),
        alpha: float = 0.95,
        num_train_timesteps: int = 100,
    ):
        super().__init__()
        points = check_data_points(data_points)
        check_arguments(self.config_rules, self.config)
        self.register_buffer("data", points.to(torch.float32))

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the points."""
        return self.data.shape[1]

    def _alpha_bar(self, timestep: torch.Tensor | float, sample: torch.Tensor) -> torch.Tensor:
        """``ᾱ_t = α^t`` as a float64 column ``(N or 1, 1)``; ``t`` must lie in ``(0, T]``."""
        t = torch.as_tensor(timestep, device=sample.device).to(torch.float64)
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, sample.shape[0])):
            raise ValueError(f"`timestep` must be a scalar or have shape ({sample.shape[0]},), got {tuple(t.shape)}")
        T = self.config.num_train_timesteps
        if not bool(((t > 0) & (t <= T)).all()):
            raise ValueError(f"`timestep` must lie in (0, {T}] (ε is undefined at t = 0), got {t.tolist()}")
        return (math.log(self.config.alpha) * t).exp().reshape(-1, 1)

    def posterior_weights(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        """``w_i(x̂) = P(x_0 = x_0^(i) | x_t = x̂)``, shape ``(N, M)``, float64."""
        check_point_shape(sample, self.dim)
        a = self._alpha_bar(timestep, sample)
        x, data = sample.to(torch.float64), self.data.to(torch.float64)
        # ‖x − √ᾱ y‖² = ‖x‖² − 2√ᾱ x·y + ᾱ‖y‖²; the ‖x‖² term cancels in the softmax.
        logits = (2 * a.sqrt() * (x @ data.T) - a * data.square().sum(dim=1)) / (2 * (1 - a))
        return torch.softmax(logits, dim=1)

    def denoised(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        """Posterior mean ``E[x_0 | x_t = x̂] = Σ_i w_i(x̂) x_0^(i)`` (float64)."""
        return self.posterior_weights(sample, timestep) @ self.data.to(torch.float64)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, return_dict: bool = True
    ) -> DDPMOracleOutput | tuple[torch.Tensor]:
        """``ε*(x̂, t) = (x̂ − √ᾱ_t E[x_0 | x_t = x̂]) / √(1 − ᾱ_t)`` in the dtype of ``sample``."""
        mean = self.denoised(sample, timestep)
        a = self._alpha_bar(timestep, sample)
        eps = ((sample.to(torch.float64) - a.sqrt() * mean) / (1 - a).sqrt()).to(sample.dtype)
        if not return_dict:
            return (eps,)
        return DDPMOracleOutput(sample=eps)
