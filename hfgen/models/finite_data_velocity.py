"""The exact marginal flow-matching velocity of a finite data set, in closed form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from hfgen.utils import check_data_points, check_point_shape

__all__ = ["FiniteDataVelocity", "FiniteDataVelocityOutput"]


@dataclass
class FiniteDataVelocityOutput(BaseOutput):
    """Output of :class:`FiniteDataVelocity`: the velocity ``v_t(x)`` at the input points, shape ``(N, D)``."""

    sample: torch.Tensor


class FiniteDataVelocity(ModelMixin, ConfigMixin):
    r"""Minimiser of the conditional flow-matching loss when the data are the points ``x^(1) … x^(n)``
    (Lipman et al. 2022, *Flow Matching for Generative Modeling*, eq. 8; Liu et al. 2022).

    With the source ``x_0 ~ N(0, I)``, ``x_1`` uniform on the data and the linear path
    ``x_t = (1 − t) x_0 + t x_1``, the marginal velocity ``v_t(x) = E[x_1 − x_0 | x_t = x]`` is

    ``v_t(x) = Σ_i w_i(x, t) (x^(i) − x) / (1 − t)``,  ``w_i ∝ N(x; t x^(i), (1 − t)² I)``,

    for ``t ∈ [0, 1)``; at ``t = 0`` it is ``mean_i x^(i) − x``. Sampling ``dx/dt = v_t(x)`` from ``N(0, I)``
    ends on the data points (the model memorises). It takes the inputs of a velocity network (``sample``
    ``(N, D)``, ``timestep`` a scalar or ``(N,)``) and replaces one in
    :class:`~hfgen.pipelines.flow_matching.FlowMatchingPipeline` with the ``euler`` or ``midpoint`` scheduler;
    the field is singular at ``t = 1``, where Heun and adaptive solvers evaluate it, and ``t = 1`` is refused.
    The points are stored in the config and as a buffer ``data`` (saved as safetensors; the model's dtype is the
    buffer's, float32 unless converted); the softmax is evaluated in the dtype of the input. ``dim``, the
    dimension ``D`` the pipeline reads from ``config.dim``, is inferred from the points when ``None``.
    """

    @register_to_config
    def __init__(self, data_points: list[list[float]] = ((1.0, 0.0), (0.0, 1.0)), dim: int | None = None):
        super().__init__()
        points = check_data_points(data_points)
        if dim is not None and dim != points.shape[1]:
            raise ValueError(
                f"`dim` must equal the dimension of `data_points` ({points.shape[1]}) or be None, got {dim!r}"
            )
        self.register_to_config(dim=points.shape[1])
        self.register_buffer("data", points.to(torch.float32))

    def _time(self, timestep: torch.Tensor | float, sample: torch.Tensor) -> torch.Tensor:
        """``t`` as a column ``(N or 1, 1)`` in the sample's dtype, checked to lie in ``[0, 1)``."""
        t = torch.as_tensor(timestep, device=sample.device).to(sample.dtype)
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, sample.shape[0])):
            raise ValueError(f"`timestep` must be a scalar or have shape ({sample.shape[0]},), got {tuple(t.shape)}")
        if not bool(((t >= 0) & (t < 1)).all()):
            raise ValueError(
                f"`timestep` must lie in [0, 1): the velocity (x^(i) − x)/(1 − t) is singular at t = 1, got "
                f"{t.tolist()}"
            )
        return t.reshape(-1, 1)

    def weights(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        """``w_i(x, t) = softmax_i(−‖x − t x^(i)‖² / (2 (1 − t)²))``, shape ``(N, n)``: ``P(x_1 = x^(i) | x_t = x)``."""
        check_point_shape(sample, self.config.dim)
        t = self._time(timestep, sample)
        data = self.data.to(sample.dtype)
        # ‖x − t y‖² = ‖x‖² − 2t x·y + t²‖y‖²; the ‖x‖² term cancels in the softmax.
        logits = (2 * t * (sample @ data.T) - t**2 * data.square().sum(dim=1)) / (2 * (1 - t) ** 2)
        return torch.softmax(logits, dim=1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float, return_dict: bool = True
    ) -> FiniteDataVelocityOutput | tuple[torch.Tensor]:
        """``v_t(x) = (Σ_i w_i x^(i) − x) / (1 − t)`` in the dtype of ``sample``."""
        weights = self.weights(sample, timestep)
        t = self._time(timestep, sample)
        velocity = (weights @ self.data.to(sample.dtype) - sample) / (1 - t)
        if not return_dict:
            return (velocity,)
        return FiniteDataVelocityOutput(sample=velocity)
