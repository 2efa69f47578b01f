"""Tiny components for fast tests (as diffusers' ``get_dummy_components``) and analytic velocity models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from hfgen import FlowMatchEulerScheduler, FlowMatchingPipeline, TimeMLP

AFFINE_A = [[3 / 5, 2 / 5], [1 / 5, 4 / 5]]


def tiny_flow_matching_pipeline(solver: str = "euler", source=None, seed: int = 0) -> FlowMatchingPipeline:
    """A random-weight pipeline with a width-16 velocity network."""
    torch.manual_seed(seed)
    velocity = TimeMLP(dim=2, hidden_size=16, num_layers=2, time_embedding_dim=8)
    pipeline = FlowMatchingPipeline(velocity, FlowMatchEulerScheduler(solver=solver), source=source)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


class StraightLineAffineVelocity(ModelMixin, ConfigMixin):
    r"""Velocity of the straight-line flow ``x(t) = ((1 − t) I + t A) z`` that maps ``z`` to ``A z`` at ``t = 1``:
    ``v(x, t) = (A − I) ((1 − t) I + t A)^{-1} x``. With ``z ~ N(0, I)``, ``x(1) ~ N(0, A Aᵀ)``."""

    @register_to_config
    def __init__(self, matrix: list[list[float]] = AFFINE_A, dim: int = 2):
        super().__init__()
        self.register_buffer("A", torch.tensor(matrix, dtype=torch.float64))
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a parameter so diffusers can infer device/dtype

    def forward(self, sample, timestep, return_dict=True):
        t = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1)[0]
        eye = torch.eye(self.config.dim, dtype=torch.float64)
        m = (1 - t) * eye + t * self.A
        velocity = (sample.double() @ torch.linalg.inv(m).T @ (self.A - eye).T).to(sample.dtype)
        return {"sample": velocity} if return_dict else (velocity,)


def publish_to_local_hub_cache(folder: str | os.PathLike, repo_id: str) -> None:
    """Lay out ``folder`` in the huggingface_hub cache as revision ``main`` of model repo ``repo_id``."""
    cache = Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (cache / "refs").mkdir(parents=True, exist_ok=True)
    (cache / "refs" / "main").write_text(revision)
    shutil.copytree(folder, cache / "snapshots" / revision, dirs_exist_ok=True)
