"""Metrics for image models: reconstruction, ELBO and IWAE log-likelihood bounds, k-NN accuracy of latent codes,
the Fréchet distance and the k-NN precision and recall between feature sets, and classifier-based scores of
generated images.

Likelihoods are in nats per image. Every function works batch by batch under ``torch.no_grad`` and returns
Python floats (or a dict of them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hfgen.checks import check_int

__all__ = [
    "classifier_outputs",
    "classifier_scores",
    "frechet_distance",
    "gaussian_frechet_distance",
    "knn_accuracy",
    "label_distribution_scores",
    "knn_radii",
    "likelihood_bounds",
    "manifold_coverage",
    "precision_recall",
    "reconstruction_metrics",
]


def _mean_and_stderr(values: Tensor) -> tuple[float, float]:
    values = values.double()
    stderr = float(values.std(unbiased=True) / math.sqrt(values.numel())) if values.numel() > 1 else math.nan
    return float(values.mean()), stderr


@torch.no_grad()
def reconstruction_metrics(model: Any, images: Tensor, batch_size: int = 1000) -> dict[str, float]:
    r"""Reconstruction of ``images`` through the code ``ẑ = μ(x)`` (the AE's ``e(x)``, the VAE's posterior mean).

    Returns ``reconstruction_nll``: the mean of ``−log p(x | ẑ)`` in nats per image (binary cross-entropy or
    Gaussian NLL summed over pixels), and ``reconstruction_mse``: the mean over pixels of ``(x − E[x | ẑ])²``.
    """
    check_int(batch_size, "batch_size")
    images = model.check_images(images)
    nll, squared = [], []
    for chunk in images.split(batch_size):
        decoded = model.decoder(model.encoder(chunk).latent_mean).sample
        nll.append(-model.log_likelihood(chunk, decoded))
        squared.append(((chunk - model.mean_image(decoded)) ** 2).flatten(1).mean(1))
    return {"reconstruction_nll": float(torch.cat(nll).mean()), "reconstruction_mse": float(torch.cat(squared).mean())}


@torch.no_grad()
def likelihood_bounds(
    vae: Any,
    images: Tensor,
    num_importance_samples: int = 1000,
    generator: torch.Generator | None = None,
    batch_size: int = 100,
    elbo_samples: int = 1,
    chunk_size: int = 250,
) -> dict[str, float]:
    r"""ELBO and IWAE bound on ``log p(x)`` of a VAE, in nats per image, with standard errors over the images.

    ``elbo`` estimates ``E_q[log p(x | z)] − KL(q ‖ p)`` (:meth:`VAE.elbo`, ``elbo_samples`` draws per image);
    ``iwae`` is ``log (1/K) Σ_k p(x, z_k) / q(z_k | x)`` with ``K = num_importance_samples``
    (:meth:`VAE.iwae_bound`; Burda et al. 2016), the usual test log-likelihood estimate; ``nll = −iwae``.
    """
    check_int(batch_size, "batch_size")
    images = vae.check_images(images)
    elbo = torch.cat([vae.elbo(chunk, elbo_samples, generator) for chunk in images.split(batch_size)])
    iwae = torch.cat(
        [vae.iwae_bound(chunk, num_importance_samples, generator, chunk_size) for chunk in images.split(batch_size)]
    )
    (elbo_mean, elbo_se), (iwae_mean, iwae_se) = _mean_and_stderr(elbo), _mean_and_stderr(iwae)
    return {
        "elbo": elbo_mean,
        "elbo_stderr": elbo_se,
        "iwae": iwae_mean,
        "iwae_stderr": iwae_se,
        "nll": -iwae_mean,
        "num_importance_samples": num_importance_samples,
    }


def _as_codes(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] < 1 or not torch.is_floating_point(x):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"`{name}` must be a non-empty floating (N, d) tensor, got {got}")
    return x.detach().cpu().double()


def _as_labels(y: Any, n: int, name: str) -> Tensor:
    if not isinstance(y, Tensor) or y.shape != (n,) or torch.is_floating_point(y) or y.dtype == torch.bool:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"`{name}` must be an integer tensor of shape ({n},), got {got}")
    return y.detach().cpu().long()


@torch.no_grad()
def knn_accuracy(
    train_codes: Tensor,
    train_labels: Tensor,
    test_codes: Tensor,
    test_labels: Tensor,
    k: int = 5,
    batch_size: int = 1024,
) -> float:
    r"""Accuracy of the k-nearest-neighbour classifier (Euclidean distance, uniform vote) of test codes.

    Each test code gets the most frequent label among its ``k`` nearest training codes, ties going to the
    smallest label (as scikit-learn's ``KNeighborsClassifier``); returns ``(1/N) Σ_i 1[ŷ_i = y_i]``.
    """
    train, test = _as_codes(train_codes, "train_codes"), _as_codes(test_codes, "test_codes")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train_codes have dimension {train.shape[1]} but test_codes {test.shape[1]}")
    y_train = _as_labels(train_labels, train.shape[0], "train_labels")
    y_test = _as_labels(test_labels, test.shape[0], "test_labels")
    check_int(k, "k", 1, train.shape[0], note="the number of training codes")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    correct = 0
    for start in range(0, test.shape[0], batch_size):
        chunk = test[start : start + batch_size]
        neighbours = torch.cdist(chunk, train).topk(k, dim=1, largest=False).indices
        votes = torch.nn.functional.one_hot(y_train[neighbours], num_classes).sum(1)
        correct += int((votes.argmax(1) == y_test[start : start + batch_size]).sum())
    return correct / test.shape[0]


def gaussian_frechet_distance(mean1: Any, cov1: Any, mean2: Any, cov2: Any) -> float:
    r"""Squared Fréchet (2-Wasserstein) distance between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)`` (Dowson & Landau 1982):

    ``d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})``, the formula of the FID (Heusel et al. 2017),
    where ``tr (Σ₁Σ₂)^{1/2}`` is written with the symmetric matrix ``Σ₁^{1/2} Σ₂ Σ₁^{1/2}``. Its trace square root
    is ``Σ_i √λ_i`` over that matrix's eigenvalues (``scipy.linalg.eigh``/``eigvalsh``; round-off negatives clipped
    to 0), which stays exact for the singular covariances of features with dead units.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mean1, dtype=np.float64)), np.atleast_1d(np.asarray(mean2, dtype=np.float64))
    s1, s2 = np.atleast_2d(np.asarray(cov1, dtype=np.float64)), np.atleast_2d(np.asarray(cov2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"means must have shape (d,) and covariances (d, d) with one d, got {mu1.shape}, {s1.shape}, "
            f"{mu2.shape}, {s2.shape}"
        )
    for name, cov in (("cov1", s1), ("cov2", s2)):
        if not np.allclose(cov, cov.T):
            raise ValueError(f"`{name}` must be a symmetric covariance matrix")
    w, v = linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = linalg.eigvalsh(root1 @ s2 @ root1)
    trace_root = float(np.sqrt(np.clip(middle, 0, None)).sum())
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_root)
    return max(value, 0.0)


def frechet_distance(features1: Any, features2: Any) -> float:
    r"""Fréchet distance between two feature sets ``(N, D)`` and ``(M, D)``: :func:`gaussian_frechet_distance`
    of their sample means and covariances (``ddof = 1``). With classifier features this is the FID's formula."""
    a, b = _as_codes(features1, "features1").numpy(), _as_codes(features2, "features2").numpy()
    if a.shape[1] != b.shape[1] or a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"feature sets need >= 2 rows and the same dimension, got {a.shape} and {b.shape}")
    return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def _check_batch_size_and_k(k: Any, n: int, batch_size: int) -> None:
    check_int(batch_size, "batch_size")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"`k` must be an int in [1, {n - 1}] (fewer than the {n} points of the set), got {k!r}")


def _exact_cdist(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances computed from the differences (no ``‖a‖² + ‖b‖² − 2ab`` shortcut, whose round-off makes
    the distance between equal points positive)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


@torch.no_grad()
def knn_radii(features: Tensor, k: int = 3, batch_size: int = 1000) -> Tensor:
    r"""``ρ_k(x_i)``: the Euclidean distance from each row ``x_i`` of ``features`` ``(N, D)`` to its ``k``-th nearest
    other row (the point itself not counted; a duplicate of it is, at distance 0). Exact, ``batch_size`` rows of the
    ``N × N`` distance matrix at a time."""
    points = _as_codes(features, "features")
    _check_batch_size_and_k(k, points.shape[0], batch_size)
    radii = [
        _exact_cdist(chunk, points).topk(k + 1, dim=1, largest=False).values[:, k] for chunk in points.split(batch_size)
    ]
    return torch.cat(radii)


@torch.no_grad()
def manifold_coverage(queries: Tensor, centres: Tensor, radii: Tensor, batch_size: int = 1000) -> float:
    r"""The fraction of ``queries`` inside the union of balls ``B(c_j, ρ_j)``:
    ``(1/M) Σ_i 1[∃ j: ‖q_i − c_j‖ ≤ ρ_j]`` (the manifold estimate of Kynkäänniemi et al. 2019)."""
    q, c = _as_codes(queries, "queries"), _as_codes(centres, "centres")
    check_int(batch_size, "batch_size")
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but centres {c.shape[1]}")
    if not isinstance(radii, Tensor) or radii.shape != (c.shape[0],):
        raise ValueError(f"`radii` must be a tensor of shape ({c.shape[0]},), got {radii!r}")
    r = radii.detach().cpu().double()
    inside = sum(int((_exact_cdist(chunk, c) <= r).any(1).sum()) for chunk in q.split(batch_size))
    return inside / q.shape[0]


def precision_recall(
    real_features: Tensor, fake_features: Tensor, k: int = 3, batch_size: int = 1000
) -> dict[str, float]:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019) of generated features against real ones.

    Each set's manifold is the union of balls around its points of radius ``ρ_k`` (:func:`knn_radii`);
    ``precision`` is the fraction of generated points inside the real manifold (how many samples look real),
    ``recall`` the fraction of real points inside the generated manifold (how much of the data is covered). Both
    lie in [0, 1]; a set against itself scores 1 and 1. Exact, by ``batch_size``-row chunks of the distance matrices
    (``10,000 × 10,000`` sets need about ``batch_size × 10,000 × 8`` bytes at a time).
    """
    real, fake = _as_codes(real_features, "real_features"), _as_codes(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real_features have dimension {real.shape[1]} but fake_features {fake.shape[1]}")
    return {
        "precision": manifold_coverage(fake, real, knn_radii(real, k, batch_size), batch_size),
        "recall": manifold_coverage(real, fake, knn_radii(fake, k, batch_size), batch_size),
    }


@torch.no_grad()
def classifier_outputs(classifier: Any, images: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Class probabilities ``softmax(logits)`` ``(N, C)`` and penultimate features ``(N, F)`` of ``images``
    under a classifier returning ``logits`` and ``features`` (:class:`~hfgen.models.classifier.MnistClassifier`)."""
    check_int(batch_size, "batch_size")
    if not isinstance(images, Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"`images` must be an (N, C, H, W) tensor in [0, 1], got {got}")
    was_training = classifier.training
    classifier.eval()
    probs, features = [], []
    device = next(classifier.parameters()).device
    for chunk in images.split(batch_size):
        out = classifier(pixel_values=chunk.to(device))
        probs.append(out.logits.softmax(-1).double().cpu())
        features.append(out.features.double().cpu())
    classifier.train(was_training)
    return torch.cat(probs), torch.cat(features)


def label_distribution_scores(probs: Tensor) -> dict[str, Any]:
    r"""Scores of class probabilities ``(N, C)`` of generated images.

    ``confidence``: mean of ``max_c p(c | x)``; ``label_distribution``: the frequencies ``π_c`` of the predicted
    labels ``argmax_c p(c | x)``; ``label_entropy``: ``H(π) = −Σ_c π_c log π_c`` (nats); ``label_kl_to_uniform``:
    ``KL(π ‖ U) = log C − H(π)`` (0 when every class is generated equally often).
    """
    if not isinstance(probs, Tensor) or probs.ndim != 2 or probs.shape[0] < 1:
        raise ValueError(f"`probs` must be an (N, C) tensor of class probabilities, got {probs!r}")
    num_classes = probs.shape[1]
    counts = torch.bincount(probs.argmax(1), minlength=num_classes).double()
    pi = counts / counts.sum()
    entropy = float(-(pi[pi > 0] * pi[pi > 0].log()).sum())
    return {
        "confidence": float(probs.max(1).values.double().mean()),
        "label_distribution": pi.tolist(),
        "label_entropy": entropy,
        "label_kl_to_uniform": math.log(num_classes) - entropy,
    }


def classifier_scores(
    classifier: Any, images: Tensor, reference_images: Tensor | None = None, batch_size: int = 1000
) -> dict[str, Any]:
    """:func:`label_distribution_scores` of ``images`` and, with ``reference_images`` (real data),
    ``frechet_distance`` between the classifier features of the two sets (:func:`frechet_distance`)."""
    probs, features = classifier_outputs(classifier, images, batch_size)
    scores = label_distribution_scores(probs)
    if reference_images is not None:
        _, reference = classifier_outputs(classifier, reference_images, batch_size)
        scores["frechet_distance"] = frechet_distance(features, reference)
    return scores
