r"""Flow matching and constant-α DDPM on images (MNIST) with a diffusers ``UNet2DModel``, as
:class:`~hfgen.training.task.TrainingTask`\ s: arguments, an exactly resumable image stream, the two losses with
classifier-free-guidance label dropout, classifier scores, 10 × 10 validation grids and the model card.

``training/train_fm.py`` and ``training/train_ddpm.py`` run these tasks when given ``--dataset_name`` or
``--train_data_files`` (:func:`~hfgen.training.image_data.is_image_run`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import UNet2DModel
from torch import Tensor

from hfgen.image_metrics import classifier_outputs, image_scores
from hfgen.methods.image_diffusion import to_network_space
from hfgen.model_cards.image_diffusion import image_ddpm_card, image_flow_matching_card
from hfgen.pipelines.image_ddpm import DDPMImagePipeline
from hfgen.pipelines.image_flow_matching import FlowMatchingImagePipeline
from hfgen.schedulers import ConstantAlphaDDPMScheduler
from hfgen.schedulers.constant_alpha_ddpm import SAMPLERS, VARIANCE_TYPES
from hfgen.schedulers.flow_match_solvers import SOLVERS, flow_match_scheduler
from hfgen.training.arguments import check_image_data_source, check_number, documented
from hfgen.training.image_data import ImageDataArguments, ImageStreamTask, check_image_shapes, load_classifier
from hfgen.utils import batch_generator

#: the seed of the validation grid's draws (the same grid at every validation)
GRID_SEED = 3


@dataclass
class ImageDiffusionArguments(ImageDataArguments):
    """What the image flow-matching and DDPM runs share (``--dataset_name`` or ``--train_data_files`` is required).

    The network is a diffusers ``UNet2DModel`` on 28 × 28 images (no padding: ``block_out_channels`` of length 3
    halves 28 → 14 → 7), one ResNet layer per block, no attention; with ``class_conditional`` it gets
    ``num_class_embeds = K + 1`` class embeddings (the last one the null class ``K`` of classifier-free guidance),
    and each training label is replaced by the null class with probability ``cond_drop_prob``."""

    run_only_fields = ImageDataArguments.run_only_fields | {"num_eval_samples", "classifier_path", "guidance_scale"}
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
    train_batch_size: int = 64
    max_train_steps: int = 5_000
    learning_rate: float = 5e-4
    lr_warmup_steps: int = 100
    ema_decay: float = 0.995
    checkpointing_steps: int = 1_000
    validation_steps: int = 1_000
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

    def build_unet(self) -> UNet2DModel:
        """The ``UNet2DModel`` these arguments describe."""
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


def grid_labels(num_images: int, num_classes: int) -> Tensor:
    """Labels of a class-conditional grid: ``num_images / num_classes`` images of class 0, then class 1, …
    (one row per class in a 10 × 10 grid of 100)."""
    per_class = max(1, num_images // num_classes)
    return torch.arange(num_images) // per_class % num_classes


class ImageDiffusionTask(ImageStreamTask):
    r"""Shared by the image flow-matching and DDPM tasks.

    Batches come from :class:`~hfgen.training.image_data.ImageStreamTask`'s exactly resumable stream; the noise,
    the times and the label dropout come from the batch's generator ``batch_generator(seed, s, k)``.

    Scores (with ``classifier_path``): the Fréchet distance of the classifier's features of the samples to as many
    test images, the mean confidence, the entropy of the predicted labels and, for conditional samples, the accuracy
    of the requested label. Class-conditional runs sample labels ``0, 1, …, K − 1`` in turn.
    """

    evaluation_fields, fast_evaluation_sizes = ("num_eval_samples", None), (200, 0)
    args: ImageDiffusionArguments

    def __init__(self, args: ImageDiffusionArguments, data: Mapping[str, Tensor] | None = None):
        super().__init__(args)
        data = dict(data) if data is not None else args.load_images()
        self.train_images, self.train_labels = data["train_images"], data["train_labels"]
        self.test_images, self.test_labels = data["test_images"], data["test_labels"]
        check_image_shapes(self)
        if args.class_conditional:
            if self.train_labels is None:
                raise ValueError("--class_conditional needs labels, but the training split has no label column")
            if int(self.train_labels.max()) >= args.num_classes:
                raise ValueError(
                    f"the training labels go up to {int(self.train_labels.max())}, but `num_classes` is "
                    f"{args.num_classes}"
                )
        self.classifier = load_classifier(args.classifier_path)

    def build_model(self) -> UNet2DModel:
        return self.args.build_unet()

    # -- data ---------------------------------------------------------------------------------------------------

    def draw(self, index: int, stream: int, num_streams: int) -> tuple[Tensor, Tensor | None, torch.Generator]:
        """Micro-batch ``index`` of process ``stream``: the images on the network's scale ``2x − 1``, their labels
        after dropout to the null class ``K`` (``None`` for an unconditional run) and the batch's generator for the
        family's noise."""
        rows = self.rows(index, stream, num_streams)
        generator = batch_generator(self.args.seed, stream, index)
        images = to_network_space(self.train_images[rows])
        labels = None
        if self.args.class_conditional:
            dropped = torch.rand(self.args.train_batch_size, generator=generator) < self.args.cond_drop_prob
            labels = torch.where(dropped, self.args.num_classes, self.train_labels[rows].long())
        return images, labels, generator

    # -- sampling and scores ------------------------------------------------------------------------------------

    def sample_labels(self, num_samples: int) -> Tensor | None:
        """The labels of ``num_samples`` conditional samples, ``0, 1, …, K − 1`` in turn (``None`` unconditional)."""
        if not self.args.class_conditional:
            return None
        return torch.arange(num_samples) % self.args.num_classes

    def _conditioning(self, labels: Tensor | None) -> dict[str, Any]:
        """The pipeline's class and guidance arguments for ``labels`` (none for an unconditional draw)."""
        return {} if labels is None else {"class_labels": labels, **self.guidance()}

    def draw_images(self, pipeline: Any, num_samples: int, generator: torch.Generator, labels: Tensor | None) -> Tensor:
        """``num_samples`` images, given ``labels`` (guided with ``guidance_scale`` when it is not 1), with the
        run's ``num_inference_steps``."""
        steps = self.args.num_inference_steps
        return pipeline(num_samples, steps, generator=generator, **self._conditioning(labels)).images

    @torch.no_grad()
    def sample(self, pipeline: Any, num_samples: int, generator: torch.Generator) -> Tensor:
        return self.draw_images(pipeline, num_samples, generator, self.sample_labels(num_samples)).cpu()

    def guidance(self) -> dict[str, Any]:
        """The pipeline's guidance argument for conditional samples (none at ``w = 1``, the conditional model)."""
        w = self.args.guidance_scale
        return {} if w == 1.0 else {"guidance_scale": w}

    @torch.no_grad()
    def score(self, samples: Tensor, generator: torch.Generator) -> dict[str, Any]:
        """Classifier scores of ``samples`` (gathered across processes, each process's labels ``0 … K − 1`` in
        turn) and the same scores of as many training images, the floor (``real_*``); ``{}`` without a classifier."""
        if self.classifier is None:
            return {}
        from accelerate import PartialState

        n = samples.shape[0]
        reference = self.test_images[:n]
        metrics = image_scores(self.classifier, samples, reference)
        if self.args.class_conditional:
            share = math.ceil(n / PartialState().num_processes)
            labels = self.sample_labels(share).repeat(PartialState().num_processes)[:n]
            probs, _ = classifier_outputs(self.classifier, samples)
            metrics["label_accuracy"] = float((probs.argmax(1) == labels).double().mean())
        real = image_scores(self.classifier, self.train_images[:n], reference)
        if self.args.class_conditional:
            probs, _ = classifier_outputs(self.classifier, self.train_images[:n])
            real["label_accuracy"] = float((probs.argmax(1) == self.train_labels[:n]).double().mean())
        return {**{f"samples_{k}": v for k, v in metrics.items()}, **{f"real_{k}": v for k, v in real.items()}}

    # -- figures and card ---------------------------------------------------------------------------------------

    def grid(self, pipeline: Any) -> tuple[Tensor, str]:
        """A 10 × 10 grid of samples (one row per class for a conditional model) and its title."""
        generator = torch.Generator().manual_seed(GRID_SEED)
        if self.args.class_conditional:
            labels = grid_labels(100, self.args.num_classes)
            title = f"one row per class, guidance w = {self.args.guidance_scale:g}"
            return self.draw_images(pipeline, 100, generator, labels).cpu(), title
        return self.draw_images(pipeline, 100, generator, None).cpu(), "samples"

    def validation_figures(self, pipeline: Any, samples: Tensor | None) -> dict[str, Any]:
        from hfgen import plotting

        images, title = self.grid(pipeline)
        return {"samples.png": plotting.plot_image_grid(images, ncols=10, title=f"EMA {title}")}

    def final_figures(self, pipeline: Any) -> dict[str, Any]:
        from hfgen import plotting

        images, title = self.grid(pipeline)
        figures = {"samples.png": plotting.plot_image_grid(images, ncols=10, title=title)}
        labels = grid_labels(10, self.args.num_classes) if self.args.class_conditional else None
        out = self.trajectory(pipeline, labels)
        figures["trajectory.png"] = plotting.plot_image_grid(
            out.flatten(0, 1), ncols=out.shape[1], title="from noise (top) to images (bottom)"
        )
        return figures

    def trajectory(self, pipeline: Any, labels: Tensor | None) -> Tensor:
        """``(S + 1, 10, C, H, W)``: ten samples' states from noise to images, at most eleven of them evenly
        spaced."""
        generator = torch.Generator().manual_seed(GRID_SEED)
        steps = self.args.num_inference_steps
        out = pipeline(10, steps, generator=generator, return_trajectory=True, **self._conditioning(labels))
        keep = torch.linspace(0, out.trajectory.shape[0] - 1, min(11, out.trajectory.shape[0])).round().long()
        return out.trajectory[keep]


# ---- flow matching --------------------------------------------------------------------------------------------


@dataclass
class FlowMatchingImageArguments(ImageDiffusionArguments):
    """Arguments of ``training/train_fm.py`` on images: conditional flow matching on the linear path
    ``y_t = (1 − t) y_0 + t y_1`` from ``N(0, I)`` to the images ``y_1 = 2x − 1``, ``t ~ U[0, 1]``."""

    output_dir: str = documented("out/fm-mnist", "where the run writes its outputs")
    time_scale: float = documented(1000.0, "the UNet reads the time as time_scale · t")
    solver: str = documented("euler", f"fixed-step sampler saved in the scheduler: {SOLVERS}")

    choice_fields = {**ImageDiffusionArguments.choice_fields, "solver": SOLVERS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.time_scale, "time_scale", low=0.0, open_low=True)


class FlowMatchingImageTask(ImageDiffusionTask):
    r"""Conditional flow matching (Lipman et al. 2022) on images: minimise
    ``E ‖v_θ(y_t, t, c) − (y_1 − y_0)‖²`` (mean over pixels) with ``y_0 ~ N(0, I)``, ``t ~ U[0, 1]``,
    ``y_t = (1 − t) y_0 + t y_1`` and ``c`` the label or, with probability ``cond_drop_prob``, the null class."""

    name = "flow_matching_images"
    args: FlowMatchingImageArguments

    def batch(self, index: int, stream: int, num_streams: int) -> tuple[Tensor, ...]:
        images, labels, generator = self.draw(index, stream, num_streams)
        noise = torch.randn(images.shape, generator=generator)
        t = torch.rand(images.shape[0], generator=generator)
        return (images, noise, t) if labels is None else (images, noise, t, labels)

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> Tensor:
        y1, y0, t = (tensor.to(device) for tensor in batch[:3])
        labels = batch[3].to(device) if len(batch) > 3 else None
        tt = t.view(-1, 1, 1, 1)
        yt = (1 - tt) * y0 + tt * y1
        prediction = model(yt, t * self.args.time_scale, class_labels=labels, return_dict=False)[0]
        return (prediction - (y1 - y0)).square().mean()

    def pipeline(self, model: UNet2DModel) -> FlowMatchingImagePipeline:
        scheduler = flow_match_scheduler(self.args.solver)
        return FlowMatchingImagePipeline(model, scheduler, time_scale=self.args.time_scale)

    def model_card(self, metrics: dict[str, Any], repo_id: str | None) -> Any:
        return image_flow_matching_card(self.args, metrics, repo_id)


# ---- DDPM -----------------------------------------------------------------------------------------------------


@dataclass
class DDPMImageArguments(ImageDiffusionArguments):
    """Arguments of ``training/train_ddpm.py`` on images: constant-α DDPM, ``ᾱ_t = α^t`` with
    ``α = final_alpha_bar^{1/T}``, ε-prediction on the images' scale ``y = 2x − 1``."""

    output_dir: str = documented("out/ddpm-mnist", "where the run writes its outputs")
    num_train_timesteps: int = documented(1_000, "number T of diffusion steps")
    final_alpha_bar: float = documented(1e-4, "ᾱ_T in (0, 1), giving α = ᾱ_T^(1/T)")
    variance_type: str = documented("beta_tilde", f"reverse-step variance {VARIANCE_TYPES}")
    sampler: str = documented("ddim", f"sampler saved in the scheduler: {SAMPLERS}")
    eta: float = documented(0.0, "DDIM noise scale η in [0, 1]")
    num_inference_steps: int = documented(20, "sampling steps in 1 … T for validation and evaluation")

    positive_fields = (*ImageDiffusionArguments.positive_fields, "num_train_timesteps")
    choice_fields = {**ImageDiffusionArguments.choice_fields, "variance_type": VARIANCE_TYPES, "sampler": SAMPLERS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.final_alpha_bar, "final_alpha_bar", low=0.0, high=1.0, open_low=True, open_high=True)
        check_number(self.eta, "eta", low=0.0, high=1.0)
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"`num_inference_steps` must be in 1 … num_train_timesteps = {self.num_train_timesteps}, got "
                f"{self.num_inference_steps}"
            )

    def noise_scheduler(self) -> ConstantAlphaDDPMScheduler:
        """The constant-α scheduler with ``ᾱ_T = final_alpha_bar``."""
        return ConstantAlphaDDPMScheduler.from_final_alpha_bar(
            self.num_train_timesteps,
            self.final_alpha_bar,
            variance_type=self.variance_type,
            sampler=self.sampler,
            eta=self.eta,
        )


class DDPMImageTask(ImageDiffusionTask):
    r"""Constant-α DDPM (Ho et al. 2020) on images: minimise ``E ‖ε_θ(y_t, t, c) − z‖²`` (mean over pixels) with
    ``t ~ U{1 … T}``, ``y_t = √ᾱ_t y_0 + √(1 − ᾱ_t) z`` and ``c`` the label or, with probability
    ``cond_drop_prob``, the null class."""

    name = "ddpm_images"
    args: DDPMImageArguments

    def __init__(self, args: DDPMImageArguments, data: Mapping[str, Tensor] | None = None):
        super().__init__(args, data)
        self.scheduler = args.noise_scheduler()

    def batch(self, index: int, stream: int, num_streams: int) -> tuple[Tensor, ...]:
        images, labels, generator = self.draw(index, stream, num_streams)
        noisy, timesteps, noise = self.scheduler.sample_training_inputs(images, generator)
        return (noisy, timesteps, noise) if labels is None else (noisy, timesteps, noise, labels)

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> Tensor:
        noisy, timesteps, noise = (tensor.to(device) for tensor in batch[:3])
        labels = batch[3].to(device) if len(batch) > 3 else None
        prediction = model(noisy, timesteps, class_labels=labels, return_dict=False)[0]
        return (prediction - noise).square().mean()

    def pipeline(self, model: UNet2DModel) -> DDPMImagePipeline:
        return DDPMImagePipeline(model, self.args.noise_scheduler())

    def model_card(self, metrics: dict[str, Any], repo_id: str | None) -> Any:
        return image_ddpm_card(self.args, metrics, repo_id)
