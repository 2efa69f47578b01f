"""What the image flow-matching and image DDPM pipelines share: the UNet component, class labels and classifier-free
guidance, SDEdit's start images, and image outputs.

Images are ``(N, C, H, W)`` in ``[0, 1]``; the network works on ``y = 2x − 1``. ``output_type="pt"`` gives a tensor,
``"np"`` a ``(N, H, W, C)`` float32 array (diffusers' layout), ``"pil"`` a list of ``PIL.Image``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import UNet2DModel
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from hfgen.checks import check_number
from hfgen.methods.image_diffusion import classifier_free_guidance, to_image_space
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.sampling import ImageBatch, check_strength
from hfgen.utils import check_generator, check_images, check_num_samples, check_sampling_memory

__all__ = ["ImageGenerationPipelineOutput"]

#: images drawn when neither ``num_samples`` nor per-image inputs say how many
DEFAULT_NUM_SAMPLES = 1000


@dataclass
class ImageGenerationPipelineOutput(BaseOutput):
    """``images`` in the requested ``output_type``; ``trajectory``, when asked, the states from noise to image
    (``"pt"``: ``(S + 1, N, C, H, W)`` in ``[0, 1]``, ``"np"``: ``(S + 1, N, H, W, C)``, ``"pil"``: one strip per
    image, the states left to right); ``nfe``, the evaluations of the (guided) network; ``class_labels``, the
    requested class of each image (``None`` for unconditional draws)."""

    images: ImageBatch
    trajectory: torch.Tensor | np.ndarray | list | None = None
    nfe: int | None = None
    class_labels: torch.Tensor | None = None


def check_unet(unet: object) -> UNet2DModel:
    """The pipelines' network: a diffusers ``UNet2DModel`` with square images, as many output as input channels, and
    either no class embedding or an ``nn.Embedding`` of ``num_class_embeds = K + 1`` rows (``K`` classes and the
    null class ``K`` of classifier-free guidance)."""
    if not isinstance(unet, UNet2DModel):
        raise TypeError(f"`unet` must be a diffusers UNet2DModel, got {type(unet).__name__}")
    config = unet.config
    if config.in_channels != config.out_channels:
        raise ValueError(
            f"`unet` must output as many channels as it reads, got in_channels={config.in_channels}, "
            f"out_channels={config.out_channels}"
        )
    if not isinstance(config.sample_size, int):
        raise ValueError(f"`unet.config.sample_size` must be one int (square images), got {config.sample_size!r}")
    if config.num_class_embeds is not None and (config.class_embed_type is not None or config.num_class_embeds < 2):
        raise ValueError(
            "a class-conditional `unet` needs class_embed_type=None and num_class_embeds = K + 1 >= 2 (K classes and "
            f"the null class K), got class_embed_type={config.class_embed_type!r}, "
            f"num_class_embeds={config.num_class_embeds}"
        )
    return unet


class ImageGenerationPipeline(HfgenPipeline):
    """Base of the image pipelines: a ``unet`` component (:func:`check_unet`) and a scheduler."""

    model_cpu_offload_seq = "unet"
    unet: UNet2DModel

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images."""
        config = self.unet.config
        return (config.in_channels, config.sample_size, config.sample_size)

    @property
    def num_classes(self) -> int | None:
        """``K`` of a class-conditional network (``num_class_embeds − 1``; the last row is the null class), else
        ``None``."""
        embeds = self.unet.config.num_class_embeds
        return None if embeds is None else embeds - 1

    # -- inputs ---------------------------------------------------------------------------------------------------

    def _check_labels(
        self, class_labels: object, num_images: int | None, allow_null: bool = False
    ) -> torch.Tensor | None:
        """``class_labels`` as a long tensor ``(N,)``: one int for every image or one per image, each in
        ``0 … K − 1`` (``0 … K`` with ``allow_null``: the null class ``K`` of a network evaluation); ``num_images`` is
        ``N`` when something else fixes it."""
        if class_labels is None:
            return None
        if self.num_classes is None:
            raise ValueError(
                "`class_labels` were given but the network is unconditional (unet.config.num_class_embeds is None); "
                "train with --class_conditional to sample given labels"
            )
        if isinstance(class_labels, bool) or isinstance(class_labels, float):
            raise TypeError(f"`class_labels` must be ints in 0 … {self.num_classes - 1}, got {class_labels!r}")
        if isinstance(class_labels, int):
            labels = torch.full((DEFAULT_NUM_SAMPLES if num_images is None else num_images,), class_labels)
        else:
            if isinstance(class_labels, torch.Tensor):
                labels = class_labels.detach().cpu()
            elif isinstance(class_labels, Sequence | range | np.ndarray) and not isinstance(class_labels, str):
                array = np.asarray(class_labels)
                if array.dtype.kind not in "iu":
                    raise TypeError(f"`class_labels` must be ints in 0 … {self.num_classes - 1}, got {class_labels!r}")
                labels = torch.as_tensor(array)
            else:
                raise TypeError(
                    f"`class_labels` must be an int or a sequence of ints, got {type(class_labels).__name__}"
                )
            if labels.ndim != 1 or labels.numel() == 0 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise TypeError(
                    f"`class_labels` must be a non-empty 1-D sequence of ints, got dtype {labels.dtype}, shape "
                    f"{tuple(labels.shape)}"
                )
            if num_images is not None and labels.numel() != num_images:
                raise ValueError(
                    f"`class_labels` has {labels.numel()} labels but {num_images} images are drawn: give one label "
                    "per image (or one int for all)"
                )
        labels = labels.long()
        last = self.num_classes if allow_null else self.num_classes - 1
        if int(labels.min()) < 0 or int(labels.max()) > last:
            null = f", {self.num_classes} the null class" if allow_null else ""
            raise ValueError(
                f"`class_labels` must lie in 0 … {last} (the network has {self.num_classes} classes{null}), "
                f"got values from {int(labels.min())} to {int(labels.max())}"
            )
        return labels.to(self.device)

    def _check_guidance(self, guidance_scale: object, labels: torch.Tensor | None) -> float | None:
        """``guidance_scale`` ``w``: ``None`` (no guidance) or a finite real ``>= 0`` for a conditional network
        sampling given ``class_labels``."""
        if guidance_scale is None:
            return None
        if self.num_classes is None:
            raise ValueError(
                f"`guidance_scale`={guidance_scale!r} needs a class-conditional network, but this one is "
                "unconditional (unet.config.num_class_embeds is None)"
            )
        if labels is None:
            raise ValueError(f"`guidance_scale`={guidance_scale!r} needs `class_labels` (the classes to guide towards)")
        return check_number(guidance_scale, "guidance_scale", 0)

    def _prepare_call(
        self,
        num_samples: object,
        generator: object,
        output_type: str,
        class_labels: object,
        guidance_scale: object,
        strength: object,
        start_images: object,
        num_steps: int,
        return_trajectory: bool,
    ) -> tuple[float, torch.Tensor | None, torch.Tensor | None, float | None, torch.Tensor]:
        """What both image pipelines check before sampling: the output type, the generator, SDEdit's ``strength``
        and ``start_images``, the number of images, the memory of ``num_steps`` steps (and of their states with
        ``return_trajectory``), the labels and the guidance scale. Returns ``(s, start, labels, guidance_scale,
        noise)`` with ``s = 1`` when not editing and the start noise ``(N, C, H, W)``."""
        self._check_image_output_type(output_type)
        check_generator(generator)
        editing = strength is not None or start_images is not None
        s = check_strength(strength, start_images, "start_images") if editing else 1.0
        start = self._check_unit_images(start_images, "start_images") if editing else None
        n = self._num_images(num_samples, start, class_labels)
        check_sampling_memory(
            n,
            math.prod(self.image_shape),
            self.device,
            self.unet.dtype,
            name="start_images" if editing else "num_samples",
            num_steps=num_steps,
            return_trajectory=return_trajectory,
        )
        labels = self._check_labels(class_labels, n)
        scale = self._check_guidance(guidance_scale, labels)
        noise = randn_tensor((n, *self.image_shape), generator=generator, device=self.device, dtype=self.unet.dtype)
        return s, start, labels, scale, noise

    def _check_unit_images(self, images: object, name: str) -> torch.Tensor:
        """Images ``name`` (SDEdit's start, or those of a likelihood): a finite ``(N, C, H, W)`` tensor of the
        network's image shape in ``[0, 1]``, moved to the network's device and dtype."""
        images = check_images(images, self.image_shape, name, unit_range=True)
        return images.to(device=self.device, dtype=self.unet.dtype)

    def _check_network_inputs(
        self, sample: object, class_labels: object, guidance_scale: object
    ) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
        """The inputs of a public network evaluation: ``sample`` a finite ``(N, C, H, W)`` tensor of the network's
        image shape (on its scale ``y = 2x − 1``: any real values), cast to the network's device and dtype, and the
        labels (``0 … K``, the null class ``K`` included) and guidance scale checked for its ``N`` images."""
        sample = check_images(sample, self.image_shape, "sample")
        labels = self._check_labels(class_labels, sample.shape[0], allow_null=True)
        scale = self._check_guidance(guidance_scale, labels)
        return sample.to(device=self.device, dtype=self.unet.dtype), labels, scale

    def _num_images(self, num_samples: object, start_images: torch.Tensor | None, class_labels: object) -> int:
        """``N``: the start images', else ``num_samples``, else one per class label, else the default 1000."""
        if start_images is not None:
            if num_samples is not None and check_num_samples(num_samples) != start_images.shape[0]:
                raise ValueError(
                    f"`num_samples`={num_samples} differs from the {start_images.shape[0]} `start_images`; leave it "
                    "out when editing"
                )
            n = start_images.shape[0]
        elif num_samples is not None:
            n = check_num_samples(num_samples)
        elif class_labels is not None and not isinstance(class_labels, int):
            n = len(class_labels)
        else:
            n = DEFAULT_NUM_SAMPLES
        return n

    # -- the network ----------------------------------------------------------------------------------------------

    def _network(
        self, sample: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor | None, guidance_scale: float | None
    ) -> torch.Tensor:
        """The network's output at ``(sample, timestep)``: unconditional (the null class ``K`` for a conditional
        network) without labels; conditional with labels and no guidance; with guidance
        ``o_∅ + w (o_c − o_∅)`` from one batched pass over ``[null, labels]``."""
        n = sample.shape[0]
        timestep = timestep.expand(n) if timestep.ndim == 0 else timestep
        if self.num_classes is None:
            return self.unet(sample, timestep, return_dict=False)[0]
        null = torch.full((n,), self.num_classes, dtype=torch.long, device=sample.device)
        if labels is None:
            return self.unet(sample, timestep, class_labels=null, return_dict=False)[0]
        if guidance_scale is None:
            return self.unet(sample, timestep, class_labels=labels, return_dict=False)[0]
        both = self.unet(
            torch.cat([sample, sample]), torch.cat([timestep, timestep]), class_labels=torch.cat([null, labels]),
            return_dict=False,
        )[0]  # fmt: skip
        unconditional, conditional = both.chunk(2)
        return classifier_free_guidance(unconditional, conditional, guidance_scale)

    # -- outputs --------------------------------------------------------------------------------------------------

    def _format_trajectory(self, states: list[torch.Tensor] | None, output_type: str) -> ImageBatch | None:
        """States of the network's ``y`` as images ``(S + 1, N, C, H, W)``, or their layout under ``output_type``."""
        if states is None:
            return None
        trajectory = torch.stack([to_image_space(state) for state in states])
        if output_type == "pt":
            return trajectory
        array = trajectory.detach().cpu().float().permute(0, 1, 3, 4, 2).numpy()
        if output_type == "np":
            return array
        strips = np.concatenate(list(array), axis=2)  # (N, H, (S + 1) W, C): each image's states side by side
        return self.numpy_to_pil(strips)

    def _output(
        self,
        y: torch.Tensor,
        states: list[torch.Tensor] | None,
        nfe: int,
        labels: torch.Tensor | None,
        output_type: str,
        return_dict: bool,
        images: torch.Tensor | None = None,
    ) -> ImageGenerationPipelineOutput | tuple:
        images = to_image_space(y) if images is None else images
        formatted = self._format_images(images, output_type)
        trajectory = self._format_trajectory(states, output_type)
        labels = None if labels is None else labels.cpu()
        if not return_dict:
            return (formatted, trajectory, nfe, labels)
        return ImageGenerationPipelineOutput(images=formatted, trajectory=trajectory, nfe=nfe, class_labels=labels)
