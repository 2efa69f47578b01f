"""What the sampling code of every hfgen pipeline shares: output types, the points output, SDEdit's arguments.

The pipeline modules and this one are the code of the pipeline file in every saved folder (:mod:`hfgen.remote_code`),
which diffusers runs without hfgen: in that file ``HfgenPipeline`` is :class:`SamplingPipeline`, and hfgen's
loading and saving layer (:class:`hfgen.pipelines.base.HfgenPipeline`, which builds on it) stays out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from hfgen.utils import check_points

__all__ = ["PointsPipelineOutput"]

OUTPUT_TYPES = ("pt", "np")
#: images come out as a ``(N, C, H, W)`` tensor in ``[0, 1]``, a ``(N, H, W, C)`` float32 array (diffusers' layout for
#: images) or a list of ``PIL.Image`` (mode ``"L"`` for one channel)
IMAGE_OUTPUT_TYPES = ("pt", "np", "pil")
ImageBatch = torch.Tensor | np.ndarray | list


@dataclass
class PointsPipelineOutput(BaseOutput):
    """Samples ``(N, D)``; ``trajectory`` ``(S + 1, N, D)`` from source to data when asked; ``nfe``, the number of
    network evaluations used."""

    samples: torch.Tensor | np.ndarray
    trajectory: torch.Tensor | np.ndarray | None = None
    nfe: int | None = None


class SamplingPipeline(DiffusionPipeline):
    """The sampling side of every hfgen pipeline: output types, the progress of solves that loop elsewhere, and the
    thread policy of :mod:`hfgen.threads` (its public methods run a small network with one intra-op thread)."""

    def _networks(self) -> list[torch.nn.Module]:
        return [c for c in self.components.values() if isinstance(c, torch.nn.Module)]

    @property
    def num_parameters(self) -> int:
        """Parameters of the pipeline's networks, all components together."""
        return sum(p.numel() for network in self._networks() for p in network.parameters())

    @property
    def small_network_threads(self) -> bool:
        """Whether the thread policy applies: not to networks with convolutions (an image UNet, a convolutional
        VAE), which have work enough for every core."""
        layers = (layer for network in self._networks() for layer in network.modules())
        return not any(isinstance(layer, torch.nn.modules.conv._ConvNd) for layer in layers)

    @contextmanager
    def _field_progress(self, field: Callable[..., torch.Tensor], total: int) -> Iterator[Callable[..., torch.Tensor]]:
        """``field`` that advances a progress bar of ``total`` evaluations at each call: the progress of a solve that
        loops outside the pipeline (a torchdiffeq fixed-grid method takes ``steps × evaluations per step``)."""
        with self.progress_bar(total=total) as bar:

            def counted(*args: Any) -> torch.Tensor:
                bar.update()
                return field(*args)

            yield counted

    @staticmethod
    def _to_output_type(tensor: torch.Tensor | None, output_type: str) -> torch.Tensor | np.ndarray | None:
        if tensor is None or output_type == "pt":
            return tensor
        return tensor.cpu().numpy()

    @staticmethod
    def _check_output_type(output_type: str) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}")

    @staticmethod
    def _check_image_output_type(output_type: str) -> None:
        if output_type not in IMAGE_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {IMAGE_OUTPUT_TYPES}, got {output_type!r}")

    def _format_images(self, images: torch.Tensor, output_type: str) -> ImageBatch:
        """Images ``(N, C, H, W)`` as ``output_type`` asks (one of :data:`IMAGE_OUTPUT_TYPES`)."""
        if output_type == "pt":
            return images
        array = images.detach().cpu().float().permute(0, 2, 3, 1).numpy()
        return array if output_type == "np" else self.numpy_to_pil(array)


def check_strength(strength: object, start: object, name: str) -> float:
    """SDEdit's ``strength`` (Meng et al. 2022): a real number in ``[0, 1]``, given together with the start points or
    images, the argument ``name``."""
    if strength is None or start is None:
        raise ValueError(
            f"SDEdit needs both `strength` and `{name}`, got "
            f"strength={strength!r} and {name}={'None' if start is None else 'a tensor'}"
        )
    if isinstance(strength, bool) or not isinstance(strength, int | float):
        raise TypeError(f"`strength` must be a float in [0, 1], got {strength!r} ({type(strength).__name__})")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"`strength` must lie in [0, 1], got {strength!r}")
    return float(strength)


def check_sdedit(strength: object, start_samples: object, dim: int) -> torch.Tensor:
    """SDEdit's pair of arguments for points: ``strength`` (:func:`check_strength`) and ``start_samples``, finite
    ``(N, dim)`` points; returns the points."""
    check_strength(strength, start_samples, "start_samples")
    return check_points(start_samples, dim, "start_samples")
