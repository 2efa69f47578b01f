"""MNIST classifier (transformers Auto classes, safetensors), its training, and the image metrics that use it:
k-NN accuracy against scikit-learn, Fréchet distance against closed forms, label-distribution scores."""

import json
import math

import numpy as np
import pytest
import torch
from factories import write_image_parquet
from transformers import AutoConfig, AutoModelForImageClassification

from hfgen import MnistClassifier, MnistClassifierConfig
from hfgen.image_metrics import (
    classifier_scores,
    frechet_distance,
    gaussian_frechet_distance,
    knn_accuracy,
    label_distribution_scores,
)
from hfgen.training.classifier import ClassifierArguments, ClassifierTask, classifier_accuracy, train_classifier


def tiny_classifier(seed=0, **kwargs):
    torch.manual_seed(seed)
    return MnistClassifier(MnistClassifierConfig(conv_channels=[4, 8], hidden_size=16, **kwargs)).eval()


def images(n, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# --- the classifier ---------------------------------------------------------------------------------------


def test_outputs_logits_features_and_the_cross_entropy():
    model = tiny_classifier()
    x, y = images(6), torch.tensor([0, 1, 2, 3, 4, 9])
    out = model(pixel_values=x, labels=y)
    assert out.logits.shape == (6, 10) and out.features.shape == (6, 16)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, y))
    torch.testing.assert_close(out.logits, model.head(out.features))  # eval mode: dropout is the identity
    loss, logits, features = model(pixel_values=x, labels=y, return_dict=False)
    torch.testing.assert_close(logits, out.logits)


def test_auto_classes_load_the_saved_safetensors(tmp_path):
    model = tiny_classifier(id2label={i: f"digit {i}" for i in range(10)})
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "hfgen-mnist-classifier" and config["conv_channels"] == [4, 8]
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MnistClassifierConfig)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MnistClassifier) and loaded.config.id2label[3] == "digit 3"
    x = images(3)
    torch.testing.assert_close(loaded(pixel_values=x).logits, model(pixel_values=x).logits)


def test_bad_inputs_and_configs():
    with pytest.raises(ValueError, match=r"pixel_values.*\(N, 1, 28, 28\)"):
        tiny_classifier()(pixel_values=torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="divisible"):
        MnistClassifierConfig(image_size=30, conv_channels=[4, 8])
    with pytest.raises(ValueError, match="dropout"):
        MnistClassifierConfig(dropout=1.0)
    with pytest.raises(ValueError, match="train_data_files"):
        ClassifierArguments()


def test_training_learns_two_separable_classes(tmp_path):
    # Class 0: dark images, class 1: bright images; 50 steps separate them perfectly.
    rng = np.random.default_rng(0)
    pixels = np.concatenate([rng.integers(0, 60, (40, 28, 28)), rng.integers(195, 256, (40, 28, 28))]).astype(np.uint8)
    labels = [0] * 40 + [1] * 40
    order = rng.permutation(80)
    path = write_image_parquet(tmp_path / "train.parquet", pixels[order], [labels[i] for i in order])
    args = ClassifierArguments(
        output_dir=str(tmp_path / "out"),
        train_data_files=str(path),
        conv_channels=[4, 8],
        hidden_size=16,
        num_epochs=10,
        train_batch_size=16,
        learning_rate=3e-3,
    )
    model, metrics = train_classifier(args)
    assert metrics["test_accuracy"] == 1.0 and metrics["num_test_images"] == 8 and metrics["train_steps"] == 50
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out")
    x = torch.from_numpy(pixels[[0, 79]]).float()[:, None] / 255
    assert classifier_accuracy(loaded, x, torch.tensor([0, 1])) == 1.0
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["test_accuracy"] == 1.0


def test_max_train_samples_keeps_the_first_training_images_and_sizes_the_epochs(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (50, 28, 28)).astype(np.uint8)
    path = write_image_parquet(tmp_path / "train.parquet", pixels, [i % 2 for i in range(50)])
    options = {"output_dir": str(tmp_path / "out"), "train_data_files": str(path), "num_epochs": 3,
               "train_batch_size": 8}  # fmt: skip
    capped = ClassifierTask(ClassifierArguments(max_train_samples=20, **options))
    full = ClassifierTask(ClassifierArguments(**options))
    capped.build_model()
    full.build_model()
    assert full.data["train_labels"].shape[0] == 45  # a tenth held out for the test
    assert torch.equal(capped.data["train_images"], full.data["train_images"][:20])
    assert torch.equal(capped.data["train_labels"], full.data["train_labels"][:20])
    assert capped.phases()[0].num_steps == 3 * math.ceil(20 / 8)  # 3 epochs of the 20 images


# --- k-NN -------------------------------------------------------------------------------------------------


def test_knn_accuracy_matches_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    g = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(4, 2, generator=g)
    train_labels = torch.randint(0, 4, (300,), generator=g)
    test_labels = torch.randint(0, 4, (157,), generator=g)
    train = centres[train_labels] + torch.randn(300, 2, generator=g)
    test = centres[test_labels] + torch.randn(157, 2, generator=g)
    for k in (1, 2, 5, 8):  # even k exercises the tie rule (smallest label wins)
        reference = KNeighborsClassifier(n_neighbors=k).fit(train.numpy(), train_labels.numpy())
        expected = float((reference.predict(test.numpy()) == test_labels.numpy()).mean())
        assert knn_accuracy(train, train_labels, test, test_labels, k=k, batch_size=50) == expected
    assert 0.3 < expected < 1.0  # a non-trivial problem
    assert knn_accuracy(train, train_labels, train, train_labels, k=1) == 1.0


def test_knn_bad_inputs():
    codes, labels = torch.randn(5, 2), torch.tensor([0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="`k`"):
        knn_accuracy(codes, labels, codes, labels, k=6)
    with pytest.raises(ValueError, match="train_labels"):
        knn_accuracy(codes, labels.float(), codes, labels)
    with pytest.raises(ValueError, match="dimension"):
        knn_accuracy(codes, labels, torch.randn(5, 3), labels)


# --- Fréchet distance -------------------------------------------------------------------------------------


def test_gaussian_frechet_distance_closed_forms():
    # One dimension: (μ₁ − μ₂)² + (σ₁ − σ₂)².
    assert gaussian_frechet_distance([1.0], [[4.0]], [-1.0], [[1.0]]) == pytest.approx(4.0 + 1.0)
    # Commuting (diagonal) covariances: ‖μ₁ − μ₂‖² + Σ_i (√a_i − √b_i)².
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert gaussian_frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # General covariances: tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}) with scipy's general matrix square root.
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(3), m2 @ m2.T + 0.1 * np.eye(3)
    expected = np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert gaussian_frechet_distance(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(expected, rel=1e-8)
    # A singular covariance (a dead feature) against an isotropic one: Σ₁ = diag(1, 0), Σ₂ = I gives (1 − 1)² + 1.
    assert gaussian_frechet_distance(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.eye(2)) == pytest.approx(1.0)
    assert gaussian_frechet_distance(np.ones(3), s1, np.ones(3), s1) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="covariances"):
        gaussian_frechet_distance(np.zeros(2), s1, np.zeros(2), s2)
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_frechet_distance(np.zeros(2), [[1.0, 0.5], [0.0, 1.0]], np.zeros(2), np.eye(2))


def test_frechet_distance_of_feature_sets_uses_their_sample_moments():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 2, generator=g) * torch.tensor([1.0, 2.0])
    y = torch.randn(3000, 2, generator=g) + torch.tensor([1.0, 0.0])
    moments = gaussian_frechet_distance(
        x.double().mean(0).numpy(),
        np.cov(x.double().numpy().T),
        y.double().mean(0).numpy(),
        np.cov(y.double().numpy().T),
    )
    assert frechet_distance(x, y) == pytest.approx(moments, rel=1e-10)
    # Population value: 1 (means) + (1 − 1)² + (2 − 1)² = 2; 7,000 points estimate it to a few hundredths.
    assert frechet_distance(x, y) == pytest.approx(2.0, abs=0.15)
    with pytest.raises(ValueError, match="same dimension"):
        frechet_distance(x, torch.randn(10, 3))


# --- label distribution and classifier scores -------------------------------------------------------------


def test_label_distribution_scores():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    scores = label_distribution_scores(probs)
    assert scores["label_distribution"] == pytest.approx([0.5, 0.25, 0.25])
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert scores["label_entropy"] == pytest.approx(entropy)
    assert scores["label_kl_to_uniform"] == pytest.approx(math.log(3) - entropy)
    assert scores["confidence"] == pytest.approx((0.9 + 0.7 + 0.6 + 0.8) / 4)
    uniform = label_distribution_scores(torch.eye(4))
    assert uniform["label_kl_to_uniform"] == pytest.approx(0.0, abs=1e-12) and uniform["confidence"] == 1.0


def test_classifier_scores_of_images():
    model = tiny_classifier()
    x, y = images(40), images(40, seed=1)
    scores = classifier_scores(model, x, reference_images=x, batch_size=16)
    assert scores["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    probs = model(pixel_values=x).logits.softmax(-1).detach()
    assert scores["confidence"] == pytest.approx(float(probs.max(1).values.mean()), rel=1e-6)
    features = torch.cat([model(pixel_values=x).features, model(pixel_values=y).features]).detach()
    assert classifier_scores(model, x, y)["frechet_distance"] == pytest.approx(
        frechet_distance(features[:40], features[40:]), rel=1e-6
    )
    assert "frechet_distance" not in classifier_scores(model, x)
