"""Arguments of image flow matching and DDPM (``train_fm.py`` / ``train_ddpm.py`` with image data): the
``UNet2DModel``, classifier-free guidance and each sampler; without torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hfgen.arguments.common import check_image_data_source
from hfgen.arguments.image_data import ImageDataArguments
from hfgen.checks import check_number
from hfgen.choices import DDPM_SAMPLERS, FLOW_MATCH_SOLVERS, VARIANCE_TYPES
from hfgen.cli.parser import documented, recipe

__all__ = ["DDPMImageArguments", "FlowMatchingImageArguments", "ImageDiffusionArguments"]

#: the laws of image flow matching's training times, mirrored without torch for ``--help`` (``OWNERS``)
TIME_LAWS = ("uniform", "logit_normal")
OWNERS: dict[str, str] = {"TIME_LAWS": "hfgen.methods.flow_matching:TIME_LAWS"}


@dataclass
@recipe(
    train_batch_size=64,
    max_train_steps=5_000,
    learning_rate=5e-4,
    lr_warmup_steps=100,
    ema_decay=0.995,
    checkpointing_steps=1_000,
    validation_steps=1_000,
)
class ImageDiffusionArguments(ImageDataArguments):
    """What the image flow-matching and DDPM runs share (``--dataset_name`` or ``--train_data_files`` is required).

    The network is a diffusers ``UNet2DModel`` on 28 × 28 images (no padding: ``block_out_channels`` of length 3
    halves 28 → 14 → 7), one ResNet layer per block, no attention; with ``class_conditional`` it gets
    ``num_class_embeds = K + 1`` class embeddings (the last one the null class ``K`` of classifier-free guidance),
    and each training label is replaced by the null class with probability ``cond_drop_prob``."""

    run_only_fields = ImageDataArguments.run_only_fields | {"guidance_scale"}
    positive_fields = (
        *ImageDataArguments.positive_fields,
        "num_classes",
        "layers_per_block",
        "norm_num_groups",
        "num_inference_steps",
        "num_eval_samples",
    )

    label_column: str = "label"
    num_classes: int = documented(10, "classes of the labels (class-conditional runs)")
    block_out_channels: list[int] = field(
        default_factory=lambda: [32, 64, 64], metadata={"help": "UNet2DModel channels per resolution"}
    )
    layers_per_block: int = documented(1, "ResNet layers per UNet block")
    norm_num_groups: int = documented(8, "GroupNorm groups of the UNet (must divide every channel count)")
    class_conditional: bool = documented(False, "condition on the labels (class embedding + null class)")
    cond_drop_prob: float = documented(0.1, "probability of training on the null class (classifier-free guidance)")
    guidance_scale: float = documented(
        1.0, "classifier-free guidance w for the conditional samples of validation and evaluation"
    )
    num_validation_samples: int = documented(100, "images drawn at each validation (a 10 × 10 grid)")
    num_eval_samples: int = documented(1_000, "generated images scored by the classifier at the end")
    num_inference_steps: int = documented(20, "sampler steps for validation and evaluation")
    classifier_path: str | None = documented(None, "folder of a saved MnistClassifier to score generated images")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_image_data_source(self, ("train_data_files", "test_data_files", "classifier_path"))
        channels = self.block_out_channels
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f"`block_out_channels` must be a non-empty list of ints >= 1, got {channels!r}")
        if any(c % self.norm_num_groups for c in channels):
            raise ValueError(
                f"`norm_num_groups` {self.norm_num_groups} must divide every entry of block_out_channels {channels}"
            )
        if self.image_size % 2 ** (len(channels) - 1):
            raise ValueError(
                f"`image_size` {self.image_size} must be divisible by 2^(len(block_out_channels) − 1) = "
                f"{2 ** (len(channels) - 1)} (the UNet halves it at every level but the last)"
            )
        check_number(self.cond_drop_prob, "cond_drop_prob", low=0.0, high=1.0, open_high=True)
        check_number(self.guidance_scale, "guidance_scale", low=0.0)
        if not self.class_conditional and self.guidance_scale != 1.0:
            raise ValueError(
                f"`guidance_scale`={self.guidance_scale} needs --class_conditional (an unconditional model has "
                "nothing to guide)"
            )

    def build_unet(self) -> Any:
        """The ``UNet2DModel`` these arguments describe."""
        from diffusers import UNet2DModel  # torch, imported when the run builds its task

        levels = len(self.block_out_channels)
        return UNet2DModel(
            sample_size=self.image_size,
            in_channels=self.num_channels,
            out_channels=self.num_channels,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            norm_num_groups=self.norm_num_groups,
            num_class_embeds=self.num_classes + 1 if self.class_conditional else None,
        )


@dataclass
class FlowMatchingImageArguments(ImageDiffusionArguments):
    """Arguments of ``training/train_fm.py`` on images: conditional flow matching on the linear path
    ``y_t = (1 − t) y_0 + t y_1`` from ``N(0, I)`` to the images ``y_1 = 2x − 1``, ``t`` uniform or logit-normal."""

    output_dir: str = documented("out/fm-mnist", "where the run writes its outputs")
    time_scale: float = documented(1000.0, "the UNet reads the time as time_scale · t")
    solver: str = documented("euler", f"fixed-step sampler saved in the scheduler: {FLOW_MATCH_SOLVERS}")
    time_law: str = documented(
        "uniform", f"training times {TIME_LAWS}: t ~ U[0, 1], or t = σ(m + s z), z ~ N(0, 1) (Esser et al. 2024)"
    )
    logit_normal_mean: float = documented(0.0, "m of the logit-normal training times")
    logit_normal_std: float = documented(1.0, "s > 0 of the logit-normal training times")

    choice_fields = {**ImageDiffusionArguments.choice_fields, "solver": FLOW_MATCH_SOLVERS, "time_law": TIME_LAWS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.time_scale, "time_scale", low=0.0, open_low=True)
        check_number(self.logit_normal_mean, "logit_normal_mean")
        check_number(self.logit_normal_std, "logit_normal_std", low=0.0, open_low=True)


@dataclass
class DDPMImageArguments(ImageDiffusionArguments):
    """Arguments of ``training/train_ddpm.py`` on images: constant-α DDPM, ``ᾱ_t = α^t`` with
    ``α = final_alpha_bar^{1/T}``, ε-prediction on the images' scale ``y = 2x − 1``."""

    output_dir: str = documented("out/ddpm-mnist", "where the run writes its outputs")
    num_train_timesteps: int = documented(1_000, "number T of diffusion steps")
    final_alpha_bar: float = documented(1e-4, "ᾱ_T in (0, 1), giving α = ᾱ_T^(1/T)")
    variance_type: str = documented("beta_tilde", f"reverse-step variance {VARIANCE_TYPES}")
    sampler: str = documented("ddim", f"sampler saved in the scheduler: {DDPM_SAMPLERS}")
    eta: float = documented(0.0, "DDIM noise scale η in [0, 1]")
    num_inference_steps: int = documented(20, "sampling steps in 1 … T for validation and evaluation")

    positive_fields = (*ImageDiffusionArguments.positive_fields, "num_train_timesteps")
    choice_fields = {**ImageDiffusionArguments.choice_fields, "variance_type": VARIANCE_TYPES, "sampler": DDPM_SAMPLERS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.final_alpha_bar, "final_alpha_bar", low=0.0, high=1.0, open_low=True, open_high=True)
        check_number(self.eta, "eta", low=0.0, high=1.0)
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"`num_inference_steps` must be in 1 … num_train_timesteps = {self.num_train_timesteps}, got "
                f"{self.num_inference_steps}"
            )

    def noise_scheduler(self) -> Any:
        """The constant-α scheduler with ``ᾱ_T = final_alpha_bar``."""
        from hfgen.schedulers import ConstantAlphaDDPMScheduler  # torch, imported when the run builds its task

        return ConstantAlphaDDPMScheduler.from_final_alpha_bar(
            self.num_train_timesteps,
            self.final_alpha_bar,
            variance_type=self.variance_type,
            sampler=self.sampler,
            eta=self.eta,
        )
