"""The card of an autoencoder or VAE trained on images (``vae.md``, ``autoencoder.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import IMAGE_TASK, markdown_table, metric_rows, validation_table
from hfgen.model_cards import image_card

#: metric key → (model-index type, name, note); nats are per image
CARD_METRICS = {
    "nll": ("nll", "−log p(x) (nats, IWAE)", "importance-weighted bound with K samples on test images"),
    "quadrature_nll": (
        "quadrature-nll",
        "−log p(x) (nats, exact)",
        "quadrature of ∫ p(x | z) N(z; 0, I) dz on a latent grid over ±6σ",
    ),
    "elbo": ("elbo", "ELBO (nats)", "E_q log p(x | z) − KL, one z per test image"),
    "reconstruction_nll": ("reconstruction-nll", "−log p(x | ẑ) (nats)", "through the code ẑ = μ(x) / e(x)"),
    "reconstruction_mse": ("reconstruction-mse", "reconstruction MSE", "per pixel, E[x | ẑ] against x"),
    "knn_accuracy": ("knn-accuracy", "k-NN accuracy of test codes", "labels of the k nearest training codes"),
    "samples_confidence": ("classifier-confidence", "classifier confidence", "mean max_c p(c | x) of samples"),
    "samples_label_entropy": ("label-entropy", "label entropy (nats)", "of the samples' predicted labels; log 10"),
    "samples_frechet_distance": ("frechet-distance", "Fréchet distance", "classifier features, samples vs test"),
}
STDERR = {"nll": "iwae_stderr", "elbo": "elbo_stderr", "quadrature_nll": "quadrature_nll_stderr"}
VALIDATION_COLUMNS = (
    ("nll", "−log p (IWAE)"),
    ("elbo", "ELBO"),
    ("reconstruction_nll", "−log p(x ∣ ẑ)"),
    ("knn_accuracy", "k-NN acc."),
)
BINARIZE_DESCRIPTIONS = {
    "dynamic": "dynamically binarised (a fresh `x ~ Bernoulli(pixel)` at every batch; the test set binarised once "
    "with the seed)",
    "fixed": "binarised once per image",
    "none": "grey levels in [0, 1]",
}


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The metrics table from a run's ``metrics.json`` (missing entries are skipped)."""
    return markdown_table(("metric", "value", "note"), metric_rows(metrics, CARD_METRICS, STDERR))


#: the Hub task of an autoencoder: it maps images to codes (and back), it draws none
FEATURE_TASK = "image-feature-extraction"


def card_task(args: Any) -> str:
    """The card's Hub task and ``pipeline_tag``: a VAE draws images, an autoencoder extracts codes."""
    return IMAGE_TASK if args.model == "vae" else FEATURE_TASK


def likelihood_description(args: Any) -> str:
    """``p(x | z)`` as a formula."""
    if args.likelihood == "bernoulli":
        return (
            "Bernoulli: `log p(x | z) = Σ_j x_j log σ(ℓ_j(z)) + (1 − x_j) log σ(−ℓ_j(z))` (minus the binary "
            "cross-entropy)"
        )
    return f"Gaussian: `log p(x | z) = −½ Σ_j [(x_j − m_j(z))² / s² + log 2π s²]`, s = {args.observation_std}"


def vae_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``VAEArguments`` ``args`` (``vae.md`` or ``autoencoder.md``): metadata, the math,
    usage, metrics, figures, validation history and configuration; ``repo_id`` is the Hub id the usage line loads."""
    kind = "vae" if args.model == "vae" else "ae"
    return image_card(
        "vae" if kind == "vae" else "autoencoder",
        args,
        metrics,
        repo_id,
        kind,
        CARD_METRICS,
        card_task(args),
        tags=["hfgen", "diffusers", "variational-autoencoder" if kind == "vae" else "autoencoder", "image"],
        binarize_description=BINARIZE_DESCRIPTIONS[args.binarize],
        hidden_sizes=" → ".join(str(h) for h in args.hidden_sizes),
        likelihood_description=likelihood_description(args),
        neighbor_weight=args.neighbor_weight if args.uses_neighbor_graph else 0,
        num_importance_samples=metrics.get("num_importance_samples", args.num_importance_samples),
        num_nll_images=metrics.get("num_nll_images", 0),
        quadrature_grid_size=metrics.get("quadrature_grid_size", 0),
        quadrature_grid_change=metrics.get("quadrature_grid_change"),
        num_quadrature_images=metrics.get("num_quadrature_images", 0),
        metrics_table=metrics_table(metrics),
        validation_table=validation_table(metrics.get("validation", []), columns=VALIDATION_COLUMNS),
    )
