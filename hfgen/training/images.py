r"""Flow matching and constant-α DDPM on images (MNIST) with a diffusers ``UNet2DModel``, as
:class:`~hfgen.training.task.TrainingTask`\ s: arguments, an exactly resumable image stream, the two losses with
classifier-free-guidance label dropout, classifier scores, 10 × 10 validation grids and the model card.

``training/train_fm.py`` and ``training/train_ddpm.py`` run these tasks when given ``--dataset_name`` or
``--train_data_files`` (:func:`~hfgen.cli.scripts.is_image_run`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from diffusers import UNet2DModel
from torch import Tensor

from hfgen.arguments.images import DDPMImageArguments, FlowMatchingImageArguments, ImageDiffusionArguments
from hfgen.image_metrics import classifier_outputs, image_scores
from hfgen.methods.flow_matching import sample_path_times
from hfgen.methods.image_diffusion import to_network_space
from hfgen.model_cards.image_diffusion import image_ddpm_card, image_flow_matching_card
from hfgen.pipelines.image_ddpm import DDPMImagePipeline
from hfgen.pipelines.image_flow_matching import FlowMatchingImagePipeline
from hfgen.schedulers.flow_match_solvers import flow_match_scheduler
from hfgen.training.image_data import ImageStreamTask, check_image_shapes, load_classifier
from hfgen.utils import batch_generator

__all__ = ["DDPMImageTask", "FlowMatchingImageTask"]

#: the seed of the validation grid's draws (the same grid at every validation)
GRID_SEED = 3


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


class FlowMatchingImageTask(ImageDiffusionTask):
    r"""Conditional flow matching (Lipman et al. 2022) on images: minimise
    ``E ‖v_θ(y_t, t, c) − (y_1 − y_0)‖²`` (mean over pixels) with ``y_0 ~ N(0, I)``, ``t`` uniform or logit-normal,
    ``y_t = (1 − t) y_0 + t y_1`` and ``c`` the label or, with probability ``cond_drop_prob``, the null class."""

    name = "flow_matching_images"
    card = staticmethod(image_flow_matching_card)
    args: FlowMatchingImageArguments

    def batch(self, index: int, stream: int, num_streams: int) -> tuple[Tensor, ...]:
        images, labels, generator = self.draw(index, stream, num_streams)
        noise = torch.randn(images.shape, generator=generator)
        args = self.args
        t = sample_path_times(images.shape[0], args.time_law, generator, args.logit_normal_mean, args.logit_normal_std)
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


# ---- DDPM -----------------------------------------------------------------------------------------------------


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
