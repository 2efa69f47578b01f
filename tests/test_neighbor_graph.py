"""hfgen.methods.neighbor_embedding: the exact k-NN graph against scikit-learn, PCA against scikit-learn, and the
neighbour-embedding loss against its closed form and its gradient."""

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from hfgen.methods.neighbor_embedding import (
    REPULSION_EPS,
    cauchy_similarity,
    nearest_neighbor_graph,
    neighbor_embedding_loss,
    principal_components,
)


def random_points(n=300, d=12, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def sklearn_neighbors(points: np.ndarray, k: int) -> np.ndarray:
    indices = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points, return_distance=False)
    return indices[:, 1:]  # the first neighbour of a point is itself


def test_the_graph_is_the_exact_k_nearest_neighbours_nearest_first():
    points = random_points()
    graph = nearest_neighbor_graph(points, k=7, num_components=None, chunk_size=64)  # several chunks
    assert graph.shape == (300, 7) and graph.dtype == torch.long
    np.testing.assert_array_equal(graph.numpy(), sklearn_neighbors(points.numpy(), 7))
    assert not (graph == torch.arange(300)[:, None]).any()  # never a point itself


def test_all_principal_components_keep_the_distances_and_so_the_graph():
    points = random_points(d=6)
    np.testing.assert_array_equal(
        nearest_neighbor_graph(points, k=5, num_components=6).numpy(),
        nearest_neighbor_graph(points, k=5, num_components=None).numpy(),
    )


def test_principal_components_match_scikit_learn_up_to_sign():
    points = random_points(n=200, d=10) * torch.linspace(3, 0.3, 10)  # distinct variances: unique axes
    ours = principal_components(points, 4).double().numpy()
    reference = PCA(n_components=4).fit_transform(points.double().numpy())
    signs = np.sign((ours * reference).sum(0))
    np.testing.assert_allclose(ours * signs, reference, atol=1e-4)
    # the graph on the top components is sklearn's graph of the PCA coordinates
    graph = nearest_neighbor_graph(points, k=4, num_components=4)
    np.testing.assert_array_equal(graph.numpy(), sklearn_neighbors(reference, 4))


def test_bad_graph_inputs_are_refused():
    points = random_points(n=10, d=3)
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 9\]"):
        nearest_neighbor_graph(points, k=10)
    with pytest.raises(ValueError, match="2-D"):
        nearest_neighbor_graph(points[None], k=2)
    with pytest.raises(ValueError, match="NaN"):
        nearest_neighbor_graph(torch.where(points > 1, float("nan"), points), k=2)
    with pytest.raises(ValueError, match=r"`num_components` must be an int in \[1, 3\]"):
        principal_components(points, 0)


def test_the_loss_equals_its_closed_form():
    codes = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-1.0, 0.5]])
    neighbors = torch.tensor([[0.5, 0.0], [1.0, 1.0], [2.0, -1.0]])
    squared = lambda a, b: sum((x - y) ** 2 for x, y in zip(a, b, strict=True))  # noqa: E731
    attraction = sum(math.log(1 + squared(a, b)) for a, b in zip(codes.tolist(), neighbors.tolist(), strict=True)) / 3
    for num_negatives in (0, 1, 2):
        repulsion = 0.0
        for shift in range(1, num_negatives + 1):
            for i in range(3):
                q = 1 / (1 + squared(codes[i].tolist(), neighbors[(i - shift) % 3].tolist()))
                repulsion -= math.log(1 - q + REPULSION_EPS) / 3
        loss = neighbor_embedding_loss(codes, neighbors, num_negatives=num_negatives)
        assert float(loss) == pytest.approx(attraction + repulsion, rel=1e-6)
    assert float(cauchy_similarity(codes, codes).mean()) == 1.0


def test_the_gradient_pulls_neighbours_together_and_pushes_negatives_apart():
    codes = torch.tensor([[0.0, 0.0], [3.0, 0.0]], requires_grad=True)
    neighbors = torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    neighbor_embedding_loss(codes, neighbors, num_negatives=0).backward()
    # ∂/∂z_i of (1/B) log(1 + ‖z_i − z'_i‖²) = (2/B)(z_i − z'_i) / (1 + ‖z_i − z'_i‖²): towards the neighbour
    expected = (codes.detach() - neighbors) / (1 + (codes.detach() - neighbors).pow(2).sum(1, keepdim=True))
    torch.testing.assert_close(codes.grad, expected)

    # a code sitting on a random point's neighbour is pushed away from it
    codes = torch.tensor([[0.0, 0.0], [5.0, 5.0]], requires_grad=True)
    neighbors = torch.tensor([[5.0, 5.0], [0.1, 0.0]])
    repulsion = neighbor_embedding_loss(codes, neighbors, num_negatives=1) - neighbor_embedding_loss(
        codes, neighbors, num_negatives=0
    )
    repulsion.backward()
    assert float(codes.grad[0, 0]) > 0  # z_0 = (0, 0) vs its negative (0.1, 0): gradient descent moves it left


def test_bad_loss_inputs_are_refused():
    codes = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"both be \(B, d\)"):
        neighbor_embedding_loss(codes, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"`num_negatives` must be an int in \[0, 3\]"):
        neighbor_embedding_loss(codes, codes, num_negatives=4)
