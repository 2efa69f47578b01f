"""What the sampling code of every hfgen pipeline shares: output types, the points output, the number of samples and
its memory check, SDEdit's arguments, log-densities by an ODE.

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

from hfgen.methods.continuous_flows import integrate_with_log_density
from hfgen.utils import check_num_samples, check_points, check_sampling_memory

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

    def _sample_count(
        self,
        num_samples: object,
        start: torch.Tensor | None,
        start_name: str,
        values_per_sample: int,
        dtype: torch.dtype,
        num_steps: int,
        return_trajectory: bool,
    ) -> int:
        """``N``: the rows of the checked start ``start`` (the argument ``start_name``) when given, else the checked
        ``num_samples``. Refused (``ValueError``) when ``N`` samples of ``values_per_sample`` values, for ``num_steps``
        steps and with their states when ``return_trajectory``, do not fit in memory
        (:func:`~hfgen.utils.check_sampling_memory`)."""
        given = start is not None
        n = start.shape[0] if given else check_num_samples(num_samples)
        check_sampling_memory(
            n,
            values_per_sample,
            self.device,
            dtype,
            name=start_name if given else "num_samples",
            num_steps=num_steps,
            return_trajectory=return_trajectory,
        )
        return n

    @staticmethod
    def _to_output_type(tensor: torch.Tensor | None, output_type: str) -> torch.Tensor | np.ndarray | None:
        if tensor is None or output_type == "pt":
            return tensor
        return tensor.cpu().numpy()

    def _points_output(
        self,
        samples: torch.Tensor,
        trajectory: torch.Tensor | None,
        nfe: int,
        output_type: str,
        return_dict: bool,
        output_class: type[PointsPipelineOutput] = PointsPipelineOutput,
        **extra: Any,
    ) -> PointsPipelineOutput | tuple:
        """The points output: ``samples`` and ``trajectory`` in ``output_type``, with ``nfe`` and the ``extra`` fields
        of ``output_class``; ``(samples, trajectory, nfe, *extra values)`` for ``return_dict=False``."""
        samples = self._to_output_type(samples, output_type)
        trajectory = self._to_output_type(trajectory, output_type)
        if not return_dict:
            return (samples, trajectory, nfe, *extra.values())
        return output_class(samples=samples, trajectory=trajectory, nfe=nfe, **extra)

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


def ode_log_prob(
    field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t_start: float,
    t_end: float,
    end_log_prob: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    **solver: Any,
) -> torch.Tensor:
    """``log p_{t_start}(x) = log p_{t_end}(x(t_end)) + ∫_{t_start}^{t_end} Tr ∂F/∂x (x(t), t) dt`` along
    ``dx/dt = F(x, t)`` (``field``) from ``x(t_start) = x``, the instantaneous change of variables (Chen et al. 2018),
    with ``log p_{t_end}`` given by ``end_log_prob``; solved in chunks of ``batch_size`` points, ``solver`` the
    settings of :func:`~hfgen.methods.continuous_flows.integrate_with_log_density`."""
    chunks = []
    with torch.no_grad():
        for chunk in x.split(batch_size):
            result = integrate_with_log_density(field, chunk, None, t_start, t_end, **solver)
            chunks.append(end_log_prob(result.x_end) - result.log_density_change)
    return torch.cat(chunks)
