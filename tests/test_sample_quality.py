"""Precision, recall and the Fréchet distance of sample sets on cases whose answers are known."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from hfgen import MnistClassifier, MnistClassifierConfig
from hfgen.image_metrics import (
    classifier_outputs,
    frechet_distance,
    gaussian_frechet_distance,
    knn_radii,
    manifold_coverage,
    precision_recall,
)


def _points(n: int = 600, dim: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _brute_force_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """The definition, with the whole distance matrices in memory."""

    def radii(x: np.ndarray) -> np.ndarray:
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    cross = np.sqrt(((fake[:, None] - real[None]) ** 2).sum(-1))
    precision = (cross <= radii(real)[None, :]).any(1).mean()
    recall = (cross.T <= radii(fake)[None, :]).any(1).mean()
    return float(precision), float(recall)


def test_a_set_against_itself_has_precision_and_recall_one_and_frechet_zero():
    x = _points()
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-10)


def test_a_far_shifted_copy_has_precision_and_recall_zero():
    x = _points()
    shift = torch.zeros(4, dtype=torch.float64)
    shift[0] = 100.0
    assert precision_recall(x, x + shift) == {"precision": 0.0, "recall": 0.0}
    # the sample covariance is unchanged by a shift, so d² = ‖δ‖² exactly
    assert frechet_distance(x, x + shift) == pytest.approx(100.0**2, rel=1e-10)


def test_a_shifted_grid_loses_exactly_its_end_points():
    # real 0, 1, …, n−1 (ρ_1 = 1 everywhere), fake = real + 2.5: fake i lies 0.5 from real i + 2 unless i ≥ n − 2,
    # and real j lies 0.5 from fake j − 3 unless j < 2 (fake radii are 1 as well)
    n = 50
    real = torch.arange(n, dtype=torch.float64)[:, None]
    scores = precision_recall(real, real + 2.5, k=1)
    assert scores == {"precision": (n - 2) / n, "recall": (n - 2) / n}


def test_100_images_repeated_have_full_precision_and_recall_100_over_n():
    # every generated point is a real one, but the generated manifold (radii 0: each point has duplicates) holds only
    # the 100 real points that were copied
    x = _points(n=1000)
    repeated = x[:100].repeat(10, 1)
    scores = precision_recall(x, repeated)
    assert scores == {"precision": 1.0, "recall": 100 / 1000}
    assert knn_radii(repeated).abs().max() == 0


def test_a_contracted_copy_keeps_precision_and_loses_recall():
    # s·x (a blurred, less diverse copy) stays inside the real manifold but covers less of it the smaller s is, and
    # nothing of it at s = 0 (one point, radius 0); its Fréchet distance from the sample moments is
    # (1 − s)² (‖x̄‖² + tr Ŝ) exactly
    x = _points(n=2000, dim=2)
    recalls = []
    for s in (1.0, 0.8, 0.5, 0.2, 0.0):
        scores = precision_recall(x, s * x)
        assert scores["precision"] >= 0.95
        recalls.append(scores["recall"])
        expected = (1 - s) ** 2 * float((x.mean(0) ** 2).sum() + torch.cov(x.T).trace())
        assert frechet_distance(x, s * x) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert recalls[0] == 1.0 and recalls[-1] == 0.0
    assert recalls == sorted(recalls, reverse=True) and len(set(recalls)) == len(recalls)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_the_definition_at_any_chunk_size(k):
    real, fake = _points(n=300, dim=3, seed=1), 0.8 * _points(n=200, dim=3, seed=2) + 2.0
    expected = _brute_force_precision_recall(real.numpy(), fake.numpy(), k)
    assert 0.1 < expected[0] < 0.9 and 0.1 < expected[1] < 0.9  # a case where both can be wrong
    for batch_size in (1, 7, 1000):
        scores = precision_recall(real, fake, k=k, batch_size=batch_size)
        assert (scores["precision"], scores["recall"]) == expected


def test_knn_radii_are_the_kth_neighbour_distances():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    assert knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(points, k=2, batch_size=3).tolist() == [3.0, 2.0, 3.0, 6.0]
    assert manifold_coverage(torch.tensor([[1.9], [11.5]]), points, knn_radii(points, k=1)) == 0.5


def test_frechet_of_gaussian_features_approaches_the_closed_form():
    generator = torch.Generator().manual_seed(3)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, -0.3, 0.7]], dtype=torch.float64)
    b = torch.tensor([[0.8, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.4, 1.5]], dtype=torch.float64)
    mu1, mu2 = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.5, 0.0, 0.0])
    n = 200_000
    x = mu1 + torch.randn(n, 3, generator=generator, dtype=torch.float64) @ a.T
    y = mu2 + torch.randn(n, 3, generator=generator, dtype=torch.float64) @ b.T
    closed = gaussian_frechet_distance(mu1.numpy(), (a @ a.T).numpy(), mu2.numpy(), (b @ b.T).numpy())
    assert closed > 1.0
    assert frechet_distance(x, y) == pytest.approx(closed, rel=0.02)


def test_classifier_features_of_images_self_repeated_and_noise():
    torch.manual_seed(0)
    classifier = MnistClassifier(MnistClassifierConfig(conv_channels=(4, 8), hidden_size=16)).eval()
    images = torch.rand(400, 1, 28, 28, generator=torch.Generator().manual_seed(4)) ** 3
    _, features = classifier_outputs(classifier, images)
    _, repeated = classifier_outputs(classifier, images[:100].repeat(4, 1, 1, 1))
    assert precision_recall(features, features) == {"precision": 1.0, "recall": 1.0}
    assert precision_recall(features, repeated) == {"precision": 1.0, "recall": 100 / 400}
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_bad_inputs_name_the_argument():
    x = _points(n=10)
    with pytest.raises(ValueError, match="`k`"):
        precision_recall(x, x, k=10)
    with pytest.raises(ValueError, match="`k`"):
        knn_radii(x, k=0)
    with pytest.raises(ValueError, match="dimension"):
        precision_recall(x, _points(n=10, dim=3))
    with pytest.raises(ValueError, match="`fake_features`"):
        precision_recall(x, x[0])
    with pytest.raises(ValueError, match="batch_size"):
        precision_recall(x, x, batch_size=0)
    with pytest.raises(ValueError, match="`radii`"):
        manifold_coverage(x, x, torch.ones(3))
    assert math.isfinite(frechet_distance(x, x))


class _ImagePool:
    """A stand-in pipeline whose samples are drawn (with the caller's generator) from a fixed set of images."""

    def __init__(self, images: torch.Tensor):
        self.images, self.scheduler = images, None

    def __call__(self, num: int, steps: int, generator: torch.Generator) -> Any:
        pick = torch.randint(len(self.images), (num,), generator=generator)
        return SimpleNamespace(images=self.images[pick])


def _blobs(n: int, seed: int) -> torch.Tensor:
    """Images of one Gaussian blob each, at a random place and width."""
    g = torch.Generator().manual_seed(seed)
    centre, width = 6 + 16 * torch.rand(n, 2, 1, 1, generator=g), 1.5 + 3 * torch.rand(n, 1, 1, generator=g)
    grid = torch.arange(28.0)
    d2 = (grid.view(1, 28, 1) - centre[:, 0]) ** 2 + (grid.view(1, 1, 28) - centre[:, 1]) ** 2
    return torch.exp(-d2 / (2 * width**2))[:, None]


def test_the_benchmark_scores_samples_of_unseen_real_images_like_its_floor_and_catches_a_collapse():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_images

    torch.manual_seed(0)
    classifier = MnistClassifier(MnistClassifierConfig(conv_channels=(4, 8), hidden_size=8)).eval()
    config = {"num": 400, "draws": 3, "k": 3, "chunk": 150}
    data = {"test_images": _blobs(400, 1), "train_images": _blobs(1000, 2)}
    real = bench_images.real_quality(data, classifier, config["num"], config["draws"], config["k"])
    _, test_features = classifier_outputs(classifier, data["test_images"])
    same = bench_images.run_quality(_ImagePool(_blobs(4000, 3)), classifier, test_features,
                                    {"solver": "euler", "steps": 1}, config)  # fmt: skip
    collapsed = bench_images.run_quality(_ImagePool(_blobs(10, 4)), classifier, test_features,
                                         {"solver": "euler", "steps": 1}, config)  # fmt: skip
    floor = real["floor_half"]
    for key in ("precision", "recall"):
        assert 0.8 < floor[key]["mean"] <= 1 and floor[key]["stderr"] > 0
        assert abs(same["half"][key]["mean"] - floor[key]["mean"]) < 0.1
    assert collapsed["half"]["recall"]["mean"] < 0.1 < floor["recall"]["mean"] - 0.5
    assert collapsed["full"]["recall"]["mean"] < 0.1
    assert same["half"]["frechet_distance"]["mean"] < collapsed["half"]["frechet_distance"]["mean"]
    # the draws are independent: the standard error is the spread of the three over √3
    values = torch.tensor([d["recall"] for d in same["draws"]["half"]], dtype=torch.float64)
    assert same["half"]["recall"]["stderr"] == pytest.approx(float(values.std() / math.sqrt(3)), rel=1e-12)
    assert len(set(values.tolist())) > 1


def test_the_benchmark_floors_score_unseen_test_images_over_draws_beside_seen_training_images():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_images

    torch.manual_seed(0)
    classifier = MnistClassifier(MnistClassifierConfig(conv_channels=(4, 8), hidden_size=8)).eval()
    test, train = _blobs(300, 5), _blobs(100, 6)
    data = {"test_images": test, "test_labels": torch.arange(300) % 10, "train_images": train,
            "train_labels": torch.arange(100) % 10}  # fmt: skip
    floor = bench_images.floors(data, classifier, 100)
    assert set(floor) == {"unseen", "seen"}
    # the seen row is the first training images against the first test images
    assert floor["seen"]["frechet_distance"] == pytest.approx(
        frechet_distance(classifier_outputs(classifier, train)[1], classifier_outputs(classifier, test[:100])[1])
    )
    assert floor["unseen"]["stderr"]["frechet_distance"] > 0
    with pytest.raises(ValueError, match="200 test images"):
        bench_images.floors({**data, "test_images": test[:150]}, classifier, 100)
