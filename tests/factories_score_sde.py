"""Score-SDE test components: a tiny random score network and the exact score of a Gaussian mixture."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from hfgen.methods.score_matching import diffused_mixture_score
from hfgen.models.mixture import GaussianMixture
from hfgen.models.mlp import TimeMLP
from hfgen.pipelines.score_sde import ScoreSDEPipeline
from hfgen.schedulers.score_sde import VESDEScheduler, VPSDEScheduler

SDES = {"vp": VPSDEScheduler, "ve": VESDEScheduler}
MEAN = [0.6, -0.4]
COV = [[0.5, 0.2], [0.2, 0.3]]


def tiny_score_network(seed: int = 0, dim: int = 2) -> TimeMLP:
    """A width-16 score/ε network taking the SDE time ``t ∈ [ε, 1]``."""
    torch.manual_seed(seed)
    return TimeMLP(dim=dim, hidden_size=16, num_layers=2, time_embedding_dim=8, time_scale=100.0)


def tiny_score_sde_pipeline(sde: str = "vp", seed: int = 0, **scheduler_kwargs) -> ScoreSDEPipeline:
    """A random-weight pipeline."""
    pipeline = ScoreSDEPipeline(tiny_score_network(seed), SDES[sde](**scheduler_kwargs))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def gaussian_mixture(means, covariances, weights) -> GaussianMixture:
    """A full-covariance float64 :class:`GaussianMixture` with the given parameters (no gradients)."""
    mixture = GaussianMixture(num_components=len(weights), dim=len(means[0])).double().requires_grad_(False)
    mixture.set_parameters(*(torch.tensor(v, dtype=torch.float64) for v in (weights, means, covariances)))
    return mixture


class ExactMixtureScore(ModelMixin, ConfigMixin):
    r"""The exact score of ``p_t`` when the data follow a Gaussian mixture and ``x_t = m_t x_0 + σ_t z``:
    ``∇ log Σ_k w_k N(x; m_t μ_k, m_t² Σ_k + σ_t² I)``, output as the score or as ``ε = −σ_t s``, as the SDE's
    ``prediction_type`` says. Float64 parameters, so a pipeline built on it runs in float64."""

    @register_to_config
    def __init__(
        self,
        means: list[list[float]] = (MEAN,),
        covariances: list[list[list[float]]] = (COV,),
        weights: list[float] = (1.0,),
        sde: str = "vp",
        sde_kwargs: dict | None = None,
        dim: int | None = None,
    ):
        super().__init__()
        self.sde = SDES[sde](**(sde_kwargs or {}))
        self.mixture = gaussian_mixture(means, covariances, weights)
        self.register_to_config(dim=len(means[0]))

    def forward(self, sample, timestep, return_dict=True):
        mean_coefficient, std = self.sde.marginal_coefficients(timestep)
        score = diffused_mixture_score(sample, self.mixture, mean_coefficient, std)
        if self.sde.config.prediction_type == "epsilon":
            score = -std.to(score) * score if std.ndim == 0 else -std.to(score)[:, None] * score
        return {"sample": score} if return_dict else (score,)


def exact_score_pipeline(
    sde: str = "vp", means=(MEAN,), covariances=(COV,), weights=(1.0,), **scheduler_kwargs
) -> ScoreSDEPipeline:
    """A pipeline whose model is the exact score of the mixture under the SDE's marginals (float64)."""
    model = ExactMixtureScore(means, covariances, weights, sde=sde, sde_kwargs=scheduler_kwargs)
    pipeline = ScoreSDEPipeline(model, SDES[sde](**scheduler_kwargs))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
