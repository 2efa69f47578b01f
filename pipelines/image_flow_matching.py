"""Flow matching for images with a diffusers ``UNet2DModel``: sampling, class-conditional sampling with
classifier-free guidance, SDEdit, and likelihoods in bits per dimension."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import UNet2DModel
from diffusers.utils import BaseOutput

from hfgen.checks import check_number
from hfgen.methods.continuous_flows import log_prob as flow_log_prob
from hfgen.methods.image_diffusion import (
    NUM_LEVELS,
    bits_per_dim,
    to_network_space,
    uniform_dequantize,
)
from hfgen.pipelines.image_common import (
    ImageGenerationPipeline,
    ImageGenerationPipelineOutput,
    check_unet,
)
from hfgen.schedulers.flow_match_solvers import FlowMatchScheduler, flow_match_solver
from hfgen.utils import (
    check_batch_size,
    check_generator,
    check_num_samples,
    check_ode_solver,
    check_sampling_memory,
    check_times,
    check_tolerances,
)

__all__ = ["FlowMatchingImagePipeline", "ImageLogProbOutput"]


@dataclass
class ImageLogProbOutput(BaseOutput):
    """Likelihood of images under uniform dequantisation: ``log_prob`` ``(N,)``, the bound
    ``log p(v) − D log 256 ≤ log P(x)`` in nats per image; ``bits_per_dim`` ``(N,)``, the same in bits per pixel
    (negated); ``mean_bits_per_dim`` and ``stderr_bits_per_dim``, their mean and standard error over the images
    (which includes the spread of the dequantisation noise and of the divergence estimate); ``nfe``, the field
    evaluations of the solver (the last batch)."""

    log_prob: torch.Tensor
    bits_per_dim: torch.Tensor
    mean_bits_per_dim: float
    stderr_bits_per_dim: float
    nfe: int


class FlowMatchingImagePipeline(ImageGenerationPipeline):
    r"""Generate images with a flow-matching velocity network (Lipman et al. 2022; Liu et al. 2022).

    On the network's scale ``y = 2x − 1`` the source is ``y_0 ~ N(0, I)`` at ``t = 0`` and the data are at ``t = 1``
    (the linear path ``y_t = (1 − t) y_0 + t y_1``); samples integrate ``dy/dt = v_θ(y, t)`` with the scheduler's
    fixed-step solver (Euler, Heun, midpoint). The ``unet`` (a diffusers ``UNet2DModel``) reads the time as
    ``time_scale · t`` (saved in ``model_index.json``; 1000 matches the range of its sinusoidal embedding).

    A class-conditional network (``num_class_embeds = K + 1``, the null class ``K``) samples given ``class_labels``
    and, with ``guidance_scale = w``, follows the classifier-free guided field
    ``v = v_∅ + w (v_c − v_∅)`` (Ho & Salimans 2022). SDEdit (Meng et al. 2022): ``start_images`` and ``strength``
    edit images. Exceptionally for hfgen, separate image pipelines (this one and :class:`DDPMImagePipeline`) serve the
    image networks, as diffusers separates its ``DDPMPipeline``: they return ``images`` (pt/np/pil) rather than
    ``samples`` and take labels, guidance and start images, and the point pipelines stay as they are.
    """

    def __init__(self, unet: UNet2DModel, scheduler: FlowMatchScheduler, time_scale: float = 1000.0):
        super().__init__()
        check_unet(unet)
        flow_match_solver(scheduler)  # refuses a scheduler that is not one of the flow-matching solvers
        check_number(time_scale, "time_scale", 0, open_low=True)
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(time_scale=float(time_scale))

    def velocity_field(
        self,
        sample: torch.Tensor,
        t: float | torch.Tensor,
        class_labels: torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """``v_θ(y, t)`` on the network's scale at ``sample`` ``(N, C, H, W)`` and time ``t ∈ [0, 1]`` (scalar or
        ``(N,)``, the times the network is trained on): unconditional (the null class) without labels, conditional
        with them, guided with ``guidance_scale``; in the dtype of ``sample``."""
        y, labels, scale = self._check_network_inputs(sample, class_labels, guidance_scale)
        t = check_times(t, y.shape[0], network="velocity")
        return self._velocity(y, t, labels, scale).to(sample.dtype)

    def _velocity(
        self, sample: torch.Tensor, t: float | torch.Tensor, labels: torch.Tensor | None, scale: float | None
    ) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=sample.dtype, device=sample.device)
        return self._network(sample, t * self.config.time_scale, labels, scale)

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int | None = None,
        num_inference_steps: int = 50,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
        class_labels: int | list[int] | torch.Tensor | None = None,
        guidance_scale: float | None = None,
        strength: float | None = None,
        start_images: torch.Tensor | None = None,
    ) -> ImageGenerationPipelineOutput | tuple:
        r"""Draw images, or edit ``start_images`` (SDEdit).

        Args:
            num_samples: images ``N`` (default: one per class label, else 1000; with ``start_images``, theirs).
            num_inference_steps: steps ``n`` of the uniform grid on ``[0, 1]``.
            generator: draws ``y_0``; the same generator state gives the same images.
            output_type: ``"pt"``, ``"np"`` or ``"pil"``.
            return_trajectory: also return the states ``y_{t_0}, …, y_1`` as images (a strip per image for pil).
            class_labels: class of each image (one int for all), ``0 … K − 1``; only for a conditional network,
                which without labels samples its unconditional (null-class) field.
            guidance_scale: ``w`` of classifier-free guidance, with ``class_labels`` (``None``: the conditional field,
                the same as ``w = 1``).
            strength: SDEdit strength ``s ∈ [0, 1]``, with ``start_images``: the images are put on the path at
                ``t_0 = 1 − s``, ``y_{t_0} = s y_0 + (1 − s)(2x − 1)``, and the ODE runs from ``t_0`` to 1 in
                ``round(s n)`` steps (at least one) of the scheduler's solver, each of size ``(1 − t_0) / k``
                (``s = 0`` returns the images, ``s = 1`` is plain sampling from the same noise).
            start_images: the images ``(N, C, H, W)`` in ``[0, 1]`` to edit.
        """
        check_num_samples(num_inference_steps, "num_inference_steps")
        s, start, labels, scale, noise = self._prepare_call(
            num_samples, generator, output_type, class_labels, guidance_scale, strength, start_images,
            num_inference_steps, return_trajectory,
        )  # fmt: skip
        t0, steps = 0.0, num_inference_steps
        y = noise
        if start is not None:
            if s == 0.0:
                states = [to_network_space(start)] if return_trajectory else None
                return self._output(y, states, 0, labels, output_type, return_dict, images=start.clone())
            t0, steps = 1.0 - s, max(1, round(s * num_inference_steps))
            y = s * noise + t0 * to_network_space(start)  # y_t = (1 − t) y_0 + t y_1 at t = t_0
        span = 1.0 - t0
        states = [y] if return_trajectory else None
        # the ODE on [t_0, 1] in the scheduler's time τ ∈ [0, 1]: t = t_0 + (1 − t_0) τ, dy/dτ = (1 − t_0) v(y, t)
        self.scheduler.set_timesteps(steps, device=self.device)
        timesteps = self.scheduler.timesteps
        for tau in self.progress_bar(timesteps):
            v = span * self._velocity(y, t0 + span * tau, labels, scale)
            out = self.scheduler.step(v, tau, y)
            y = out.prev_sample
            if states is not None and out.get("step_complete", True):
                states.append(y)
        return self._output(y, states, len(timesteps), labels, output_type, return_dict)

    def log_prob(
        self,
        images: torch.Tensor,
        class_labels: int | list[int] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        divergence: str = "hutchinson",
        ode_solver: str = "dopri5",
        rtol: float = 1e-4,
        atol: float = 1e-4,
        num_inference_steps: int | None = None,
        batch_size: int = 100,
    ) -> ImageLogProbOutput:
        r"""Log-likelihood of 8-bit images in bits per dimension (uniform dequantisation).

        Each image ``x = k / 255`` becomes ``v = (k + u) / 256``, ``u ~ U[0, 1)^D`` (:func:`uniform_dequantize`),
        ``y = 2v − 1``; the flow's density is integrated backward from ``y(1) = y`` (Chen et al. 2018; Grathwohl et
        al. 2019): ``log p_1(y) = log N(y(0); 0, I) − ∫_0^1 Tr ∂v_θ/∂y dt``, with Hutchinson's estimate of the
        trace (one Rademacher vector per image, ``divergence="hutchinson"``) or the exact trace (``D`` passes).
        Then ``log p(v) = log p_1(y) + D log 2`` and ``log P(x) ≥ log p(v) − D log 256``, reported per image and in
        bits per dimension ``−(log p(v) − D log 256) / (D log 2)``. ``ode_solver`` is a torchdiffeq method; a
        fixed-step one (``"euler"``, ``"midpoint"``, ``"rk4"`` …) takes ``num_inference_steps`` uniform steps.
        ``class_labels`` give the conditional density ``p(x | c)`` of a conditional network (without them, the
        null class's).
        """
        check_generator(generator)
        x = self._check_unit_images(images, "images").float()
        labels = self._check_labels(class_labels, x.shape[0])
        batch_size = check_batch_size(batch_size, x.shape[0])
        check_ode_solver(ode_solver)
        check_tolerances(rtol, atol)
        steps = 0 if num_inference_steps is None else check_num_samples(num_inference_steps, "num_inference_steps")
        dims = math.prod(self.image_shape)
        check_sampling_memory(x.shape[0], dims, self.device, self.unet.dtype, name="images", num_steps=steps)
        options = {"step_size": 1.0 / steps} if steps else None
        v = uniform_dequantize(x, generator).to(self.unet.dtype)
        y = to_network_space(v)
        values, nfe = [], 0
        with torch.no_grad():
            for index, chunk in enumerate(y.split(batch_size)):
                chunk_labels = None if labels is None else labels[index * batch_size : index * batch_size + len(chunk)]
                field = _FlatField(self, chunk.shape[0], chunk_labels)
                log_p = flow_log_prob(
                    field,
                    chunk.flatten(1),
                    _standard_normal_log_prob,
                    method=ode_solver,
                    rtol=rtol,
                    atol=atol,
                    divergence_method=divergence,
                    generator=generator,
                    options=options,
                )
                values.append(log_p.double() + dims * math.log(2.0))
                nfe = field.calls
        log_density = torch.cat(values)
        bits = bits_per_dim(log_density, dims)
        stderr = float(bits.std() / math.sqrt(bits.numel())) if bits.numel() > 1 else float("nan")
        return ImageLogProbOutput(
            log_prob=log_density - dims * math.log(NUM_LEVELS),
            bits_per_dim=bits,
            mean_bits_per_dim=float(bits.mean()),
            stderr_bits_per_dim=stderr,
            nfe=nfe,
        )


class _FlatField:
    """``f(z, t) = v_θ(z reshaped to images, t)`` flattened back to ``(N, D)``, for the ODE solvers of
    :mod:`hfgen.methods.continuous_flows`; counts its calls."""

    def __init__(self, pipeline: FlowMatchingImagePipeline, count: int, labels: torch.Tensor | None):
        self.pipeline, self.count, self.labels, self.calls = pipeline, count, labels, 0

    def __call__(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        images = z.reshape(self.count, *self.pipeline.image_shape)
        return self.pipeline._velocity(images, t, self.labels, None).flatten(1)


def _standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` per row of ``(N, D)``."""
    return -0.5 * z.double().square().sum(1).to(z.dtype) - 0.5 * z.shape[1] * math.log(2 * math.pi)
