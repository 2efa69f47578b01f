"""Density pipeline: draw samples from, and evaluate the exact log-density of, any explicit likelihood model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from hfgen.pipelines.base import HfgenPipeline
from hfgen.threads import one_thread_for_small_networks
from hfgen.utils import check_generator, check_num_samples, check_sampling_memory

__all__ = ["DensityPipeline", "DensityPipelineOutput"]


@dataclass
class DensityPipelineOutput(BaseOutput):
    """``samples``: points ``(N, D)`` or images ``(N, C, H, W)`` drawn from the model (torch or numpy)."""

    samples: torch.Tensor | np.ndarray


class DensityPipeline(HfgenPipeline):
    r"""Sample from and evaluate an explicit density model ``p_θ``: a Gaussian mixture, a kernel density estimate,
    MADE or a coupling flow (``hfgen.models.mixture``, ``.kde``, ``.made``, ``.coupling_flow``).

    Component: ``model``, any ``ModelMixin`` with ``sample(num_samples, generator)`` and ``log_prob(x)`` (nats,
    shape ``(N,)``). These models sample exactly (ancestrally or through an inverse map), so calling the pipeline
    takes no inference steps and has no trajectory.
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: ModelMixin):
        super().__init__()
        for method in ("sample", "log_prob"):
            if not callable(getattr(model, method, None)):
                raise TypeError(f"`model` must have a `{method}` method, got {type(model).__name__}")
        self.register_modules(model=model)

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> DensityPipelineOutput | tuple:
        """Draw ``num_samples`` samples ``x ~ p_θ`` from ``generator`` (same generator state, same samples);
        ``output_type`` ``"pt"`` (torch) or ``"np"`` (numpy). ``return_dict=False`` gives ``(samples,)``."""
        self._check_output_type(output_type)
        check_generator(generator)
        n = check_num_samples(num_samples)
        if "dim" in self.model.config:  # every hfgen density model records its dimension; a user's may not
            check_sampling_memory(n, self.model.config.dim, self.device, self.model.dtype)
        samples = self._to_output_type(self.model.sample(n, generator), output_type)
        if not return_dict:
            return (samples,)
        return DensityPipelineOutput(samples=samples)

    @one_thread_for_small_networks
    @torch.no_grad()
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density ``log p_θ(x)`` in nats, shape ``(N,)``; ``x`` as the model takes it."""
        return self.model.log_prob(x)
