"""The card of a DDPM run on toy data (``ddpm_points.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard

from hfgen.hub import SAMPLE_QUALITY_RESULTS, sample_quality_rows
from hfgen.model_cards import toy_card


def schedule_values(args: Any) -> dict[str, str]:
    """The schedule as the card states it: ``α``, ``β`` (or the range of diffusers' ``β_t``), ``ᾱ_T`` and the first
    step's noise standard deviation ``√β_1``."""
    if args.beta_schedule == "constant_alpha":
        alpha, steps = args.schedule_alpha(), args.num_train_timesteps
        return {
            "alpha": f"{alpha:.6g}",
            "beta": f"{1 - alpha:.6g}",
            "final_alpha_bar": f"{alpha**steps:.3g}",
            "first_noise_std": f"{(1 - alpha) ** 0.5:.3g}",
        }
    scheduler = args.noise_scheduler()
    betas = scheduler.betas.double()
    return {
        "beta": f"{float(betas[0]):.3g} … {float(betas[-1]):.3g}",
        "final_alpha_bar": f"{float(scheduler.alphas_cumprod[-1]):.3g}",
        "first_noise_std": f"{float(betas[0]) ** 0.5:.3g}",
    }


def ddpm_points_card(args: Any, metrics: Mapping[str, Any], repo_id: str | None = None) -> ModelCard:
    """The card of a run with ``DDPMPointsArguments`` ``args``: metadata, the forward process, loss and sampler,
    usage, metrics, validation history and configuration; ``repo_id`` is the Hub id the usage line loads."""
    names = {**SAMPLE_QUALITY_RESULTS, "samples_w2_floor": ("wasserstein-2-floor", "W2 floor")}
    steps = args.num_inference_steps or args.num_train_timesteps
    sinusoidal = args.time_embedding == "sinusoidal"
    return toy_card(
        "ddpm_points",
        args,
        metrics,
        repo_id,
        sample_quality_rows(metrics, f"{args.num_eval_samples:,} samples ({args.sampler}, {steps} steps)"),
        names,
        default_name=f"ddpm-{args.dataset}",
        tags=["hfgen", "ddpm", "diffusion", "diffusers", "toy-2d"],
        **schedule_values(args),
        num_inference_steps=steps,
        ddim_steps=min(50, args.num_train_timesteps),
        time_input="the integer step t (sinusoidal embedding)" if sinusoidal else "t / T (random Fourier features)",
    )
