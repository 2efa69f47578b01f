"""Tiny constant-α DDPM components for fast tests."""

from __future__ import annotations

import torch

from hfgen import ConstantAlphaDDPMScheduler, DDPMOracle, DDPMPointsPipeline, TimeMLP

TWO_POINTS = [[1.0, 0.0], [0.0, 1.0]]


def tiny_epsilon_network(seed: int = 0) -> TimeMLP:
    """A width-16 ε-network taking the integer step ``t`` (``time_scale=1``)."""
    torch.manual_seed(seed)
    return TimeMLP(dim=2, hidden_size=16, num_layers=2, time_embedding_dim=8, time_scale=1.0)


def tiny_ddpm_pipeline(num_train_timesteps: int = 10, seed: int = 0, **scheduler_kwargs) -> DDPMPointsPipeline:
    """A random-weight pipeline; ``ᾱ_T = 0.01``."""
    scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(num_train_timesteps, 0.01, **scheduler_kwargs)
    pipeline = DDPMPointsPipeline(tiny_epsilon_network(seed), scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def oracle_pipeline(
    data_points=TWO_POINTS, num_train_timesteps: int = 100, final_alpha_bar: float = 1e-3, **scheduler_kwargs
) -> DDPMPointsPipeline:
    """The closed-form optimal ε-predictor of ``data_points`` in a pipeline."""
    scheduler = ConstantAlphaDDPMScheduler.from_final_alpha_bar(
        num_train_timesteps, final_alpha_bar, **scheduler_kwargs
    )
    oracle = DDPMOracle(data_points=data_points, alpha=scheduler.config.alpha, num_train_timesteps=num_train_timesteps)
    pipeline = DDPMPointsPipeline(oracle, scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
