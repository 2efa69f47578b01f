"""The card of an image flow-matching or DDPM run (``image_diffusion.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import markdown_table, validation_table
from hfgen.model_cards import image_card

#: metric key → (model-index type, name, note)
CARD_METRICS = {
    "samples_frechet_distance": ("frechet-distance", "Fréchet distance (classifier features)", "samples vs test"),
    "samples_confidence": ("classifier-confidence", "classifier confidence", "mean max_c p(c | x)"),
    "samples_label_entropy": ("label-entropy", "label entropy (nats)", "of the predicted labels; log 10 = 2.3026"),
    "samples_label_accuracy": ("label-accuracy", "requested label recognised", "conditional samples"),
}
VALIDATION_COLUMNS = (
    ("samples_frechet_distance", "Fréchet"),
    ("samples_confidence", "confidence"),
    ("samples_label_entropy", "label entropy"),
    ("samples_label_accuracy", "label accuracy"),
)


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """Each classifier score of the samples beside the same score of real training images (its floor); empty
    when the run had no classifier."""
    rows = []
    for key, (_, name, note) in CARD_METRICS.items():
        if key in metrics:
            real = metrics.get(key.replace("samples_", "real_"))
            rows.append((name, f"{metrics[key]:.4f}", "" if real is None else f"{real:.4f}", note))
    return markdown_table(("metric", "samples", "real training images", "note"), rows) if rows else ""


def time_law_text(args: Any) -> str:
    """The law of the training times: uniform, or logit-normal ``t = σ(m + s z)`` (Esser et al. 2024)."""
    if args.time_law == "uniform":
        return "`t ~ U[0, 1]`"
    return (
        f"`t = σ({args.logit_normal_mean:g} + {args.logit_normal_std:g} z)`, `z ~ N(0, 1)` (logit-normal, "
        "Esser et al. 2024)"
    )


def flow_matching_math(args: Any) -> str:
    """The path, loss and sampler of image flow matching."""
    return (
        "- **Path**: `y_t = (1 − t) y_0 + t y_1`, `y_0 ~ N(0, I)` at `t = 0`, the images `y_1 = 2x − 1` at "
        "`t = 1`; target velocity `y_1 − y_0`.\n"
        f"- **Loss**: `E_t,y_0,y_1 ‖v_θ(y_t, t) − (y_1 − y_0)‖²`, {time_law_text(args)}; the UNet reads "
        f"`{args.time_scale:g} · t`.\n"
        f"- **Sampling**: `dy/dt = v_θ(y, t)` from `t = 0` to 1, {args.num_inference_steps} {args.solver} steps."
    )


def ddpm_math(args: Any) -> str:
    """The forward process, loss and sampler of image DDPM."""
    alpha = args.noise_scheduler().config.alpha
    eta = f" (η = {args.eta:g})" if args.sampler == "ddim" else ""
    return (
        f"- **Forward process**: `y_t = √ᾱ_t y_0 + √(1 − ᾱ_t) z`, `ᾱ_t = α^t`, `T = {args.num_train_timesteps}`, "
        f"`α = {alpha:.6f}` (`ᾱ_T = {args.final_alpha_bar:g}`), on the images' scale `y_0 = 2x − 1`.\n"
        "- **Loss**: `E_t,y_0,z ‖ε_θ(y_t, t) − z‖²`, `t ~ U{1 … T}` (Ho et al. 2020, Algorithm 1); the UNet "
        "reads the integer `t`.\n"
        f"- **Sampling**: {args.sampler} on {args.num_inference_steps} of the {args.num_train_timesteps} levels{eta}."
    )


def _card(args: Any, metrics: Mapping[str, Any], repo_id: str | None, family: str, pipeline_class: str) -> ModelCard:
    history = metrics.get("validation", [])
    scored = any(key in record for record in history for key, _ in VALIDATION_COLUMNS)
    return image_card(
        "image_diffusion",
        args,
        metrics,
        repo_id,
        family,
        CARD_METRICS,
        tags=["hfgen", "diffusers", family, "image", *(["class-conditional"] if args.class_conditional else [])],
        family="flow matching" if family == "flow-matching" else "constant-α DDPM",
        pipeline_class=pipeline_class,
        block_out_channels=", ".join(str(c) for c in args.block_out_channels),
        math_lines=flow_matching_math(args) if family == "flow-matching" else ddpm_math(args),
        metrics_table=metrics_table(metrics),
        validation_table=validation_table(history, columns=VALIDATION_COLUMNS) if scored else "",
    )


def image_flow_matching_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``FlowMatchingImageArguments`` ``args``."""
    return _card(args, metrics, repo_id, "flow-matching", "FlowMatchingImagePipeline")


def image_ddpm_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``DDPMImageArguments`` ``args``."""
    return _card(args, metrics, repo_id, "ddpm", "DDPMImagePipeline")
