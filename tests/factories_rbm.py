"""Tiny RBMs for exact enumeration and a 4×4-image RBM pipeline (as diffusers' ``get_dummy_components``)."""

from __future__ import annotations

import torch

from hfgen.models.rbm import RBMModel
from hfgen.pipelines.rbm import RBMPipeline
from hfgen.schedulers.gibbs import GibbsScheduler


def random_rbm(
    num_visible: int = 10, num_hidden: int = 6, weight_std: float = 1.0, bias_std: float = 0.5, seed: int = 0
) -> RBMModel:
    """A float64 RBM with ``W ~ N(0, weight_std²)`` and biases ``~ N(0, bias_std²)``: small enough to enumerate."""
    torch.manual_seed(seed)
    model = RBMModel(num_visible=num_visible, num_hidden=num_hidden, weight_init_std=weight_std).double()
    with torch.no_grad():
        model.visible_bias.normal_(0.0, bias_std)
        model.hidden_bias.normal_(0.0, bias_std)
    return model


def binary_data(n: int, num_visible: int, seed: int = 0) -> torch.Tensor:
    """``n`` float64 binary vectors, each bit Bernoulli(½)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, num_visible, generator=g, dtype=torch.float64) < 0.5).double()


def tiny_rbm_pipeline(seed: int = 0) -> RBMPipeline:
    """An RBM over 1×4×4 binary images with 8 hidden units and visibly non-uniform weights."""
    torch.manual_seed(seed)
    model = RBMModel(num_visible=16, num_hidden=8, image_size=4, in_channels=1, weight_init_std=1.0)
    pipeline = RBMPipeline(model, GibbsScheduler())
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
