"""A Gaussian energy with closed forms, and a tiny EnergyMLP pipeline (as diffusers' ``get_dummy_components``)."""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from hfgen.models.energy import EnergyMLP
from hfgen.pipelines.energy import EnergyPipeline
from hfgen.schedulers.langevin import LangevinScheduler, MALAScheduler

GAUSSIAN_MEAN = [0.5, -1.0]
GAUSSIAN_PRECISION = [[2.0, 0.6], [0.6, 1.0]]


class QuadraticEnergy(ModelMixin, ConfigMixin):
    r"""``E(x) = ½ (x − μ)ᵀ A (x − μ)`` in float64, so ``p = N(μ, A⁻¹)`` and ``log Z = (D/2) log 2π − ½ log det A``.
    ``μ`` and ``A`` are the parameters ``mu`` and ``a`` (the gradients of ``log Z`` in them are known)."""

    @register_to_config
    def __init__(
        self, mean: list[float] = GAUSSIAN_MEAN, precision: list[list[float]] = GAUSSIAN_PRECISION, dim: int = 2
    ):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.tensor(mean, dtype=torch.float64))
        self.a = torch.nn.Parameter(torch.tensor(precision, dtype=torch.float64))

    def forward(self, sample, return_dict=True):
        centred = sample - self.mu
        energy = 0.5 * ((centred @ self.a) * centred).sum(-1)
        return {"energy": energy} if return_dict else (energy,)

    def log_partition(self) -> torch.Tensor:
        """``(D/2) log 2π − ½ log det A`` (differentiable)."""
        symmetric = 0.5 * (self.a + self.a.T)
        return 0.5 * self.config.dim * math.log(2 * math.pi) - 0.5 * torch.logdet(symmetric)

    def covariance(self) -> torch.Tensor:
        return torch.linalg.inv(self.a.detach())

    def sample_exact(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` exact draws of ``N(μ, A⁻¹)``."""
        z = torch.randn(n, self.config.dim, generator=generator, dtype=torch.float64)
        return self.mu.detach() + z @ torch.linalg.cholesky(self.covariance()).T


def tiny_energy_pipeline(sampler: str = "langevin", step_size: float = 0.05, seed: int = 0) -> EnergyPipeline:
    """A random-weight width-8 EnergyMLP with a confining well, and a ULA or MALA scheduler."""
    torch.manual_seed(seed)
    model = EnergyMLP(dim=2, hidden_size=8, num_layers=2, confinement=0.5)
    scheduler = LangevinScheduler(step_size=step_size) if sampler == "langevin" else MALAScheduler(step_size=step_size)
    pipeline = EnergyPipeline(model, scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
