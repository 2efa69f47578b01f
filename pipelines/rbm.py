"""RBM pipeline: draw binary images by block-Gibbs sampling and show the last sweep's pixel probabilities.

Images come out as ``output_type="pt"``: a ``(N, C, H, W)`` tensor in ``[0, 1]``; ``"np"``: a ``(N, H, W, C)`` float32
array; ``"pil"``: a list of ``PIL.Image`` (:mod:`hfgen.pipelines.sampling`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput

from hfgen.models.rbm import RBMModel, sample_bernoulli
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.sampling import ImageBatch
from hfgen.schedulers.gibbs import GibbsScheduler
from hfgen.threads import one_thread_for_small_networks
from hfgen.utils import check_generator, check_images, check_num_samples

__all__ = ["RBMPipeline", "RBMPipelineOutput"]


@dataclass
class RBMPipelineOutput(BaseOutput):
    """``images``: the probabilities ``p(v | h_S)`` of the last sweep, in the requested ``output_type``;
    ``states``: the binary visible state ``v_S`` drawn from them, ``(N, C, H, W)``; ``trajectory``: the binary
    visible states ``v_0, …, v_S`` ``(S + 1, N, C, H, W)`` when asked."""

    images: ImageBatch
    states: torch.Tensor
    trajectory: torch.Tensor | None = None


class RBMPipeline(HfgenPipeline):
    r"""Sample images from a Bernoulli–Bernoulli RBM by block-Gibbs sampling (Hinton 2002; Hinton et al. 2006).

    From ``v_0`` (uniform binary noise, ``v_0 ~ Bernoulli(½)`` per pixel, or given images) each of ``S`` sweeps draws
    ``h_s ~ p(h | v_{s−1})`` and ``v_s ~ p(v | h_s)``. The returned ``images`` are the last sweep's probabilities
    ``p(v_i = 1 | h_S) = σ(b_i + (W h_S)_i)``, the usual grey-level picture of a binary model (the binary draw
    ``v_S`` is returned as ``states``). Components: ``model`` (:class:`~hfgen.models.rbm.RBMModel` with an
    ``image_size``) and ``scheduler`` (:class:`~hfgen.schedulers.gibbs.GibbsScheduler`).
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: RBMModel, scheduler: GibbsScheduler):
        super().__init__()
        if not isinstance(model, RBMModel):
            raise TypeError(f"`model` must be an hfgen RBMModel, got {type(model).__name__}")
        if not isinstance(scheduler, GibbsScheduler):
            raise TypeError(f"`scheduler` must be a GibbsScheduler, got {type(scheduler).__name__}")
        if model.config.image_size is None:
            raise ValueError("`model` must be an RBMModel over images: create it with `image_size` (and `in_channels`)")
        self.register_modules(model=model, scheduler=scheduler)

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 100,
        num_inference_steps: int = 1000,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
        start: str | torch.Tensor = "noise",
    ) -> RBMPipelineOutput | tuple:
        """Run ``num_inference_steps`` Gibbs sweeps on ``num_samples`` chains.

        Args:
            num_samples: number of images (ignored when ``start`` is a tensor).
            num_inference_steps: number of sweeps ``S``.
            generator: draws the start noise and every Gibbs step; the same generator state gives the same images.
            output_type: ``"pt"``, ``"np"`` or ``"pil"`` for ``images``.
            return_trajectory: also return the binary visible states ``v_0 … v_S``.
            start: ``"noise"``, or images ``(N, C, H, W)`` in ``[0, 1]`` to start the chains from (grey levels are
                read as mean-field values by the first hidden draw).
        """
        self._check_image_output_type(output_type)
        check_generator(generator)
        check_num_samples(num_inference_steps, "num_inference_steps")
        shape, visible = self.model.image_shape, self.model.config.num_visible
        noise = isinstance(start, str)
        if noise and start != "noise":
            raise ValueError(f"`start` must be 'noise' or a tensor of images (N, {shape}), got {start!r}")
        start_images = None if noise else check_images(start, shape, "start", unit_range=True)
        n = self._sample_count(
            num_samples, start_images, "start", visible, self.model.dtype, num_inference_steps, return_trajectory
        )
        if noise:
            half = torch.full((n, visible), 0.5, dtype=self.model.dtype, device=self.device)
            v = sample_bernoulli(half, generator)
        else:
            v = self.model.check_visible(start.reshape(n, visible), "start")
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        states = [v] if return_trajectory else None
        state = v
        for t in self.progress_bar(self.scheduler.timesteps):
            if self.scheduler.next_block == "hidden":
                probabilities = self.model.p_h_given_v(state)
            else:
                probabilities = self.model.p_v_given_h(state)
            output = self.scheduler.step(probabilities, t, state, generator=generator)
            state = output.prev_sample
            if states is not None and output.step_complete:
                states.append(state)
        n = state.shape[0]
        images = output.probabilities.reshape(n, *shape)
        final = state.reshape(n, *shape)
        trajectory = torch.stack(states).reshape(len(states), n, *shape) if states is not None else None
        images = self._format_images(images, output_type)
        if not return_dict:
            return (images, final, trajectory)
        return RBMPipelineOutput(images=images, states=final, trajectory=trajectory)
