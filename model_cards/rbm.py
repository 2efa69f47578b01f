"""The card of an RBM trained on binarised images (``rbm.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.data.images import TEST_BINARIZATION_SEED
from hfgen.hub import metric_rows, validation_table
from hfgen.model_cards import image_card, metrics_table

#: metric key → (model-index type, name, note); values in nats per image
CARD_METRICS = {
    "log_likelihood": ("log-likelihood", "test log p(v) (nats, AIS)", "−F(v) − log Ẑ, log Ẑ by AIS"),
    "log_partition": ("log-partition", "log Ẑ (AIS)", "from the base-rate model"),
    "pseudo_log_likelihood": ("pseudo-log-likelihood", "pseudo-log-likelihood (nats)", "V log σ(F(ṽ) − F(v))"),
    "reconstruction_error": ("reconstruction-error", "reconstruction error", "Σ_i (v_i − p(v_i ∣ h))², h ~ p(h ∣ v)"),
}
STDERR = {key: f"{key}_stderr" for key in ("log_likelihood", "log_partition", "pseudo_log_likelihood")}
VALIDATION_COLUMNS = (
    ("log_likelihood", "log p (AIS)"),
    ("pseudo_log_likelihood", "pseudo-LL"),
    ("reconstruction_error", "recon. error"),
)
BINARIZE_DESCRIPTIONS = {
    "dynamic": "dynamically binarised: a fresh `v ~ Bernoulli(pixel)` at every batch; the test images drawn once, by "
    f"`hfgen.data.images.binarize_test_images` with seed {TEST_BINARIZATION_SEED}",
    "fixed": f"stochastically binarised once per image with the run's seed (the test images with seed "
    f"{TEST_BINARIZATION_SEED})",
    "threshold": "binarised by thresholding, `v = 1[pixel > 0.5]`",
}


def method_description(args: Any) -> str:
    """CD-k or PCD-k in words."""
    if args.method == "pcd":
        return (
            f"persistent contrastive divergence, PCD-{args.gibbs_steps} (Tieleman 2008), with {args.num_chains} "
            "persistent chains per process"
        )
    return f"contrastive divergence, CD-{args.gibbs_steps} (Hinton 2002), chains started at the data"


def rbm_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``RBMArguments`` ``args``: metadata, the equations, usage, metrics, figures and
    configuration; ``repo_id`` is the Hub id the usage line loads (the output folder when ``None``)."""
    return image_card(
        "rbm",
        args,
        metrics,
        repo_id,
        "rbm",
        CARD_METRICS,
        tags=["hfgen", "diffusers", "restricted-boltzmann-machine", "energy-based-model", "image"],
        binarize_description=BINARIZE_DESCRIPTIONS[args.binarize],
        method_description=method_description(args),
        ais_num_chains=f"{metrics.get('ais_num_chains', args.ais_num_chains):,}",
        ais_num_betas=f"{metrics.get('ais_num_betas', args.ais_num_betas):,}",
        num_nll_images=f"{metrics.get('num_nll_images', 0):,}",
        num_eval_images=f"{metrics.get('num_eval_images', args.num_eval_images):,}",
        metrics_table=metrics_table(metrics, metric_rows(metrics, CARD_METRICS, STDERR, ".2f")),
        validation_table=validation_table(metrics.get("validation", []), columns=VALIDATION_COLUMNS, digits=2),
    )
