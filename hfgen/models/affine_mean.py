"""One affine map per step: a mean network that represents every Gaussian bridge chain exactly."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.checks import check_arguments, check_int

__all__ = ["StepwiseAffineMean", "StepwiseAffineMeanOutput"]


@dataclass
class StepwiseAffineMeanOutput(BaseOutput):
    """Output of :class:`StepwiseAffineMean`: the predicted means, shape ``(n, D)``."""

    sample: torch.Tensor


class StepwiseAffineMean(ModelMixin, ConfigMixin):
    r"""Mean network ``m_k(x) = A_k x + c_k`` with its own ``A_k ∈ ℝ^{D×D}``, ``c_k ∈ ℝ^D`` for ``k = 0 … N``.

    The timestep is the integer index ``k`` of the state read (:class:`~hfgen.schedulers.BridgeScheduler`).
    When both marginals are Gaussian, every iterate of iterative proportional fitting with affine means is a
    Gaussian chain whose conditional means are affine (De Bortoli et al. 2021, DSB), so this family contains
    them: IPF is then exact up to optimisation and Monte-Carlo error. It starts at the Brownian reference
    ``A_k = I``, ``c_k = 0``.
    """

    config_rules = {"dim": check_int, "num_steps": check_int}

    @register_to_config
    def __init__(self, dim: int = 2, num_steps: int = 20):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        self.weight = nn.Parameter(torch.eye(dim).repeat(num_steps + 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(num_steps + 1, dim))

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int | float, return_dict: bool = True
    ) -> StepwiseAffineMeanOutput | tuple[torch.Tensor]:
        """``A_k x + c_k`` at points ``sample`` ``(n, D)``; ``timestep`` is an integer ``k`` or ``(n,)`` of them."""
        dim, num_steps = self.config.dim, self.config.num_steps
        if sample.ndim != 2 or sample.shape[1] != dim:
            raise ValueError(f"`sample` must have shape (n, {dim}), got {tuple(sample.shape)}")
        k = torch.as_tensor(timestep, device=sample.device)
        if k.ndim > 1 or (k.ndim == 1 and k.shape[0] not in (1, sample.shape[0])):
            raise ValueError(f"`timestep` must be a scalar or have shape ({sample.shape[0]},), got {tuple(k.shape)}")
        index = k.round().long()
        if not torch.equal(index.to(k.dtype), k) or index.min() < 0 or index.max() > num_steps:
            raise ValueError(f"`timestep` must hold integers in [0, {num_steps}], got {k.tolist()}")
        index = index.reshape(-1)
        if index.numel() == 1:
            out = sample @ self.weight[index[0]].T + self.bias[index[0]]
        else:
            out = torch.einsum("nij,nj->ni", self.weight[index], sample) + self.bias[index]
        if not return_dict:
            return (out,)
        return StepwiseAffineMeanOutput(sample=out)
