r"""Flow matching and constant-α DDPM on images (MNIST) with a diffusers ``UNet2DModel``, as
:class:`~hfgen.training.task.TrainingTask`\ s: arguments, an exactly resumable image stream, the two losses with
classifier-free-guidance label dropout, classifier scores, 10 × 10 validation grids and the model card.

``training/train_fm.py`` and ``training/train_ddpm.py`` run these tasks when given ``--dataset_name`` or
``--train_data_files`` (:func:`is_image_run`).
"""

from __future__ import annotations

import math
import os
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DModel
from torch import Tensor

from hfgen.data.images import dataset_to_tensors, load_image_splits
from hfgen.image_metrics import classifier_outputs, frechet_distance, label_distribution_scores
from hfgen.methods.image_diffusion import to_network_space
from hfgen.model_cards.image_diffusion import image_ddpm_card, image_flow_matching_card
from hfgen.pipelines.image_ddpm import DDPMImagePipeline
from hfgen.pipelines.image_flow_matching import FlowMatchingImagePipeline
from hfgen.schedulers import ConstantAlphaDDPMScheduler
from hfgen.schedulers.constant_alpha_ddpm import SAMPLERS, VARIANCE_TYPES
from hfgen.schedulers.flow_match_solvers import SOLVERS, flow_match_scheduler
from hfgen.training.arguments import TrainingArguments, check_image_data_source, check_number, documented
from hfgen.training.task import TrainingTask
from hfgen.utils import batch_generator, batches_per_epoch

#: the flags that make ``train_fm.py`` / ``train_ddpm.py`` train on images
IMAGE_DATA_FLAGS = ("--dataset_name", "--train_data_files")
#: the stream index of the per-epoch permutations (process streams are 0, 1, …)
PERMUTATION_STREAM = -1
#: the seed of the validation grid's draws (the same grid at every validation)
GRID_SEED = 3


def is_image_run(argv: Sequence[str]) -> bool:
    """Whether a training script's command line asks for images: ``--dataset_name``/``--train_data_files`` among the
    flags, or in the ``--config`` file."""
    from hfgen.training.arguments import _read_config_file, _take_config_flag

    if any(item.split("=", 1)[0] in IMAGE_DATA_FLAGS for item in argv):
        return True
    try:
        path, _ = _take_config_flag(list(argv))
    except ValueError:
        return False
    if path is None and len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")):
        path = argv[0]
    if path is None or not os.path.isfile(path):
        return False
    values = _read_config_file(path)
    return any(values.get(flag.removeprefix("--")) is not None for flag in IMAGE_DATA_FLAGS)


@dataclass
class ImageDiffusionArguments(TrainingArguments):
    """What the image flow-matching and DDPM runs share (``--dataset_name`` or ``--train_data_files`` is required).

    The network is a diffusers ``UNet2DModel`` on 28 × 28 images (no padding: ``block_out_channels`` of length 3
    halves 28 → 14 → 7), one ResNet layer per block, no attention; with ``class_conditional`` it gets
    ``num_class_embeds = K + 1`` class embeddings (the last one the null class ``K`` of classifier-free guidance),
    and each training label is replaced by the null class with probability ``cond_drop_prob``."""

    run_only_fields = TrainingArguments.run_only_fields | {"num_eval_samples", "classifier_path", "guidance_scale"}

    dataset_name: str | None = documented(None, "Hub dataset id, e.g. ylecun/mnist (or use --train_data_files)")
    train_data_files: str | None = documented(None, "local training parquet file (instead of --dataset_name)")
    test_data_files: str | None = documented(None, "local test parquet file (default: a tenth of the train held out)")
    image_column: str = "image"
    label_column: str = "label"
    image_size: int = 28
    num_channels: int = 1
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
        for name in (
            "image_size",
            "num_channels",
            "num_classes",
            "layers_per_block",
            "norm_num_groups",
            "num_inference_steps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
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
        if isinstance(self.num_eval_samples, bool) or not isinstance(self.num_eval_samples, int):
            raise ValueError(f"`num_eval_samples` must be an int >= 1, got {self.num_eval_samples!r}")
        if self.num_eval_samples < 1:
            raise ValueError(f"`num_eval_samples` must be an int >= 1, got {self.num_eval_samples!r}")

    @property
    def dataset_label(self) -> str:
        """The data set's name: the Hub id, or the folder of the local training file."""
        return self.dataset_name or Path(self.train_data_files).resolve().parent.name

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


def load_image_data(args: ImageDiffusionArguments) -> dict[str, Tensor]:
    """Train and test ``images`` ``(N, C, H, W)`` in ``[0, 1]`` (grey levels) and their ``labels``, through
    :func:`hfgen.data.images.load_image_splits`."""
    options = {
        "image_column": args.image_column,
        "label_column": args.label_column,
        "binarize": None,
        "seed": args.seed,
        "image_size": args.image_size,
        "num_channels": args.num_channels,
    }
    splits = load_image_splits(args.dataset_name, args.train_data_files, args.test_data_files, **options)
    train_images, train_labels = dataset_to_tensors(splits["train"])
    test_images, test_labels = dataset_to_tensors(splits["test"])
    return {"train_images": train_images, "train_labels": train_labels, "test_images": test_images,
            "test_labels": test_labels}  # fmt: skip


def grid_labels(num_images: int, num_classes: int) -> Tensor:
    """Labels of a class-conditional grid: ``num_images / num_classes`` images of class 0, then class 1, …
    (one row per class in a 10 × 10 grid of 100)."""
    per_class = max(1, num_images // num_classes)
    return torch.arange(num_images) // per_class % num_classes


class ImageDiffusionTask(TrainingTask):
    r"""Shared by the image flow-matching and DDPM tasks.

    Micro-batch ``k`` of process ``s`` (of ``P``) is a pure function of ``(seed, s, k)``: epoch ``e = k // B_e``
    uses the permutation of the training images drawn from ``batch_generator(seed, −1, e)``, process ``s`` takes its
    shard ``perm[s::P]`` and batch ``k mod B_e`` of it; the noise, the times and the label dropout come from
    ``batch_generator(seed, s, k)``. A resumed run therefore sees exactly the batches of an uninterrupted one.

    Scores (with ``classifier_path``): the Fréchet distance of the classifier's features of the samples to as many
    test images, the mean confidence, the entropy of the predicted labels and, for conditional samples, the accuracy
    of the requested label. Class-conditional runs sample labels ``0, 1, …, K − 1`` in turn.
    """

    evaluation_fields, fast_evaluation_sizes = ("num_eval_samples", None), (200, 0)
    args: ImageDiffusionArguments

    def __init__(self, args: ImageDiffusionArguments, data: Mapping[str, Tensor] | None = None):
        super().__init__(args)
        data = dict(data) if data is not None else load_image_data(args)
        self.train_images, self.train_labels = data["train_images"], data["train_labels"]
        self.test_images, self.test_labels = data["test_images"], data["test_labels"]
        shape = (args.num_channels, args.image_size, args.image_size)
        for name in ("train_images", "test_images"):
            if tuple(getattr(self, name).shape[1:]) != shape:
                raise ValueError(f"{name} have shape {tuple(getattr(self, name).shape)}, expected (N, {shape})")
        if args.class_conditional:
            if self.train_labels is None:
                raise ValueError("--class_conditional needs labels, but the training split has no label column")
            if int(self.train_labels.max()) >= args.num_classes:
                raise ValueError(
                    f"the training labels go up to {int(self.train_labels.max())}, but `num_classes` is "
                    f"{args.num_classes}"
                )
        self.classifier = _load_classifier(args.classifier_path)
        self._order: tuple[int, Tensor] | None = None
        self._reference: Tensor | None = None

    def check_processes(self, num_processes: int) -> None:
        batches_per_epoch(self.train_images.shape[0], num_processes, self.args.train_batch_size)

    def build_model(self) -> UNet2DModel:
        return self.args.build_unet()

    # -- data ---------------------------------------------------------------------------------------------------

    def _permutation(self, epoch: int) -> Tensor:
        if self._order is None or self._order[0] != epoch:
            generator = batch_generator(self.args.seed, PERMUTATION_STREAM, epoch)
            self._order = (epoch, torch.randperm(self.train_images.shape[0], generator=generator))
        return self._order[1]

    def draw(self, index: int, stream: int, num_streams: int) -> tuple[Tensor, Tensor | None, torch.Generator]:
        """Micro-batch ``index`` of process ``stream``: the images on the network's scale ``2x − 1``, their labels
        after dropout to the null class ``K`` (``None`` for an unconditional run) and the batch's generator for the
        family's noise."""
        size = self.args.train_batch_size
        per_epoch = batches_per_epoch(self.train_images.shape[0], num_streams, size)
        epoch, position = divmod(index, per_epoch)
        rows = self._permutation(epoch)[stream::num_streams][position * size : (position + 1) * size]
        generator = batch_generator(self.args.seed, stream, index)
        images = to_network_space(self.train_images[rows])
        labels = None
        if self.args.class_conditional:
            dropped = torch.rand(size, generator=generator) < self.args.cond_drop_prob
            labels = torch.where(dropped, self.args.num_classes, self.train_labels[rows].long())
        return images, labels, generator

    @abstractmethod
    def batch(self, index: int, stream: int, num_streams: int) -> tuple[Tensor, ...]:
        """Micro-batch ``index`` of process ``stream``: the family's training inputs (from :meth:`draw`)."""

    @contextmanager
    def batches(self, start: int, stream: int, phase: int = 0) -> Iterator[Iterator[tuple[Tensor, ...]]]:
        from accelerate import PartialState

        num_streams = PartialState().num_processes

        def stream_of_batches() -> Iterator[tuple[Tensor, ...]]:
            index = start
            while True:
                yield self.batch(index, stream, num_streams)
                index += 1

        yield stream_of_batches()

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


def _load_classifier(path: str | None) -> Any:
    if path is None:
        return None
    from hfgen.models.classifier import MnistClassifier

    return MnistClassifier.from_pretrained(path, use_safetensors=True).eval()


def image_scores(classifier: Any, images: Tensor, reference: Tensor) -> dict[str, Any]:
    """Classifier scores of ``images``: ``frechet_distance`` of the classifier's features to those of ``reference``
    (real test images), ``confidence``, ``label_entropy`` and ``label_kl_to_uniform``
    (:func:`hfgen.image_metrics.label_distribution_scores`)."""
    probs, features = classifier_outputs(classifier, images)
    _, reference_features = classifier_outputs(classifier, reference)
    scores = label_distribution_scores(probs)
    scores.pop("label_distribution")
    scores["frechet_distance"] = frechet_distance(features, reference_features)
    return scores


# ---- flow matching --------------------------------------------------------------------------------------------


@dataclass
class FlowMatchingImageArguments(ImageDiffusionArguments):
    """Arguments of ``training/train_fm.py`` on images: conditional flow matching on the linear path
    ``y_t = (1 − t) y_0 + t y_1`` from ``N(0, I)`` to the images ``y_1 = 2x − 1``, ``t ~ U[0, 1]``."""

    output_dir: str = documented("out/fm-mnist", "where the run writes its outputs")
    time_scale: float = documented(1000.0, "the UNet reads the time as time_scale · t")
    solver: str = documented("euler", f"fixed-step sampler saved in the scheduler: {SOLVERS}")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.solver not in SOLVERS:
            raise ValueError(f"`solver` must be one of {SOLVERS}, got {self.solver!r}")
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variance_type not in VARIANCE_TYPES:
            raise ValueError(f"`variance_type` must be one of {VARIANCE_TYPES}, got {self.variance_type!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {self.sampler!r}")
        check_number(self.final_alpha_bar, "final_alpha_bar", low=0.0, high=1.0, open_low=True, open_high=True)
        check_number(self.eta, "eta", low=0.0, high=1.0)
        steps = self.num_train_timesteps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"`num_train_timesteps` must be an int >= 1, got {steps!r}")
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
