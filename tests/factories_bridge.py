"""Tiny bridge components for fast tests, Gaussian marginals, and IPF computed exactly on Gaussian moments."""

from __future__ import annotations

import torch

from hfgen import BridgeScheduler, SchrodingerBridgePipeline, TimeMLP

MEAN0 = [0.0, 0.0]
COV0 = [[1.0, 0.3], [0.3, 0.5]]
MEAN1 = [2.0, 1.0]
COV1 = [[0.6, -0.2], [-0.2, 1.2]]


def tiny_bridge_pipeline(source=None, target=None, num_steps: int = 4, seed: int = 0) -> SchrodingerBridgePipeline:
    """A random-weight pipeline with two width-16 mean networks over a ``num_steps``-step chain."""
    torch.manual_seed(seed)
    networks = [TimeMLP(dim=2, hidden_size=16, num_layers=2, time_embedding_dim=8, time_scale=1.0) for _ in "fb"]
    pipeline = SchrodingerBridgePipeline(*networks, BridgeScheduler(num_steps=num_steps), source=source, target=target)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def gaussian_sampler(mean, cov):
    """``sampler(n, generator)`` of ``N(mean, cov)`` in float32."""
    mean, chol = torch.tensor(mean), torch.linalg.cholesky(torch.tensor(cov))
    return lambda n, generator=None: mean + torch.randn(n, len(mean), generator=generator) @ chol.T


def population_dsb_ipf(mean0, cov0, mean1, cov1, gammas, num_ipf_iterations):
    r"""DSB's IPF with affine means solved on exact Gaussian moments (infinitely many trajectories, exact
    least squares): returns ``(mean, cov, cross)`` of ``X_N`` and ``Cov(X_0, X_N)`` for the final forward chain.

    A chain ``X' = W X + d + √(2γ) Z`` moves the moments ``μ' = W μ + d``, ``V' = W V Wᵀ + 2γ I`` and
    ``Cov(X', X) = W V``. Mean matching regresses ``T = (I − M) Y + M Y_other`` (``M`` the other direction's
    linear part, ``Y`` the input state) on ``Y``: ``W = Cov(T, Y) V_Y^{-1}``, ``d = E T − W E Y``.
    """
    mean0, mean1 = torch.tensor(mean0, dtype=torch.float64), torch.tensor(mean1, dtype=torch.float64)
    cov0, cov1 = torch.tensor(cov0, dtype=torch.float64), torch.tensor(cov1, dtype=torch.float64)
    gammas = torch.as_tensor(gammas, dtype=torch.float64)
    n, eye = len(gammas), torch.eye(len(mean0), dtype=torch.float64)

    def run(maps, mean, cov, order):
        moments = {order[0]: (mean, cov)}
        for k in order[:-1]:
            w, d = maps[k]
            nxt = k + 1 if order[0] == 0 else k - 1
            step = min(k, nxt)
            mean, cov = w @ mean + d, w @ cov @ w.T + 2 * gammas[step] * eye
            moments[nxt] = (mean, cov)
        return moments

    def fit(maps, moments, order):
        fitted = {}
        for k in order[:-1]:  # k: state read by the fitted map, j: the other end of the step
            j = k + 1 if order[0] == 0 else k - 1
            w_other, _ = maps[j]
            (mean_k, cov_k), (mean_j, cov_j) = moments[k], moments[j]
            cross_jk = w_other @ cov_j  # Cov(X_k, X_j) = W_j V_j: X_k was produced from X_j
            target_cov = (eye - w_other) @ cov_k + w_other @ cross_jk.T  # Cov(T, X_k), T = (I − M) X_k + M X_j
            target_mean = (eye - w_other) @ mean_k + w_other @ mean_j
            w = target_cov @ torch.linalg.inv(cov_k)
            fitted[k] = (w, target_mean - w @ mean_k)
        return fitted

    forward = {k: (eye, torch.zeros_like(mean0)) for k in range(n)}  # Brownian reference
    for _ in range(num_ipf_iterations):
        # backward maps read X_{k+1}; trajectories forward from X_0; the regression pairs X_{k+1} with X_k
        moments = run(forward, mean0, cov0, list(range(n + 1)))
        backward = fit(forward, moments, list(range(n, -1, -1)))
        moments = run(backward, mean1, cov1, list(range(n, -1, -1)))
        forward = fit(backward, moments, list(range(n + 1)))
    mean, cov, cross = mean0, cov0, cov0
    for k in range(n):
        w, d = forward[k]
        mean, cov, cross = w @ mean + d, w @ cov @ w.T + 2 * gammas[k] * eye, cross @ w.T
    return mean, cov, cross
