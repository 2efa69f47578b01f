"""Constant-α DDPM pipeline for points: ancestral or DDIM sampling from an ε-network, and the forward process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.torch_utils import randn_tensor

from hfgen.pipelines.base import HfgenPipeline, PointsPipelineOutput
from hfgen.schedulers.constant_alpha_ddpm import ConstantAlphaDDPMScheduler
from hfgen.utils import check_num_samples, check_points


@dataclass
class DDPMPointsPipelineOutput(PointsPipelineOutput):
    """Points output plus ``timesteps``: the step ``t`` of each trajectory state (``T, …, 0``) when one is returned."""

    timesteps: list[int] | None = None


class DDPMPointsPipeline(HfgenPipeline):
    r"""Generate points with constant-α DDPM (Ho et al. 2020) or its DDIM sampler (Song et al. 2021).

    Draws ``x_T ~ N(0, I)`` and applies the scheduler's reverse steps ``x_t → x_s`` on its grid ``T = t_0 > … > 0``,
    each with ``ε̂ = model(x_t, t)``. The network receives the integer step ``t ∈ {1, …, T}`` as its timestep, the
    same ``t`` that :meth:`ConstantAlphaDDPMScheduler.add_noise` and ``sample_training_inputs`` use in training.

    Components: ``model`` (an ε-network ``model(sample, timestep)`` such as :class:`~hfgen.models.TimeMLP` with
    ``time_scale=1``, or the closed-form :class:`~hfgen.models.DDPMOracle`) and ``scheduler``
    (:class:`~hfgen.schedulers.ConstantAlphaDDPMScheduler`). To sample with DDIM, swap the scheduler:
    ``pipe.scheduler = ConstantAlphaDDPMScheduler.from_config(pipe.scheduler.config, sampler="ddim")``.
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: ModelMixin, scheduler: ConstantAlphaDDPMScheduler):
        super().__init__()
        if not isinstance(scheduler, ConstantAlphaDDPMScheduler):
            raise TypeError(f"`scheduler` must be a ConstantAlphaDDPMScheduler, got {type(scheduler).__name__}")
        self.register_modules(model=model, scheduler=scheduler)

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the points (the network's ``config.dim``, or the oracle's ``dim``)."""
        return self.model.config.dim if "dim" in self.model.config else self.model.dim

    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
    ) -> DDPMPointsPipelineOutput | tuple:
        r"""Draw ``num_samples`` points.

        Args:
            num_samples: number of points ``N``.
            num_inference_steps: grid size ``S`` in ``1 … T``; ``None`` takes all ``T`` steps (what ancestral
                sampling is trained for; fewer steps suit ``sampler="ddim"``).
            generator: draws ``x_T`` and the noise of random steps; the same generator state gives the same samples.
            output_type: ``"pt"`` (torch) or ``"np"`` (numpy).
            return_trajectory: also return the states ``x_T, …, x_0``, shape ``(S + 1, N, D)``, and their steps.
        """
        self._check_output_type(output_type)
        n = check_num_samples(num_samples)
        steps = self.scheduler.config.num_train_timesteps if num_inference_steps is None else num_inference_steps
        self.scheduler.set_timesteps(steps, device=self.device)
        x = randn_tensor((n, self.dim), generator=generator, device=self.device, dtype=self.model.dtype)
        states = [x] if return_trajectory else None
        for t in self.progress_bar(self.scheduler.timesteps):
            eps = self.model(x, t, return_dict=False)[0]
            x = self.scheduler.step(eps, t, x, generator=generator, return_dict=False)[0]
            if states is not None:
                states.append(x)
        trajectory = torch.stack(states) if states is not None else None
        timesteps = self.scheduler.timesteps.tolist() + [0] if return_trajectory else None
        samples = self._to_output_type(x, output_type)
        trajectory = self._to_output_type(trajectory, output_type)
        if not return_dict:
            return (samples, trajectory, steps, timesteps)
        return DDPMPointsPipelineOutput(samples=samples, trajectory=trajectory, nfe=steps, timesteps=timesteps)

    def forward_trajectory(
        self, original_samples: torch.Tensor, timesteps: Sequence[int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        r"""One path of the forward Markov chain observed at increasing ``timesteps``, shape ``(K, N, D)``.

        From ``x_0 = original_samples`` each state is drawn from the previous one by
        ``q(x_t | x_s) = N(√(ᾱ_t/ᾱ_s) x_s, (1 − ᾱ_t/ᾱ_s) I)``, so every state has the marginal
        ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z`` and consecutive states are those of one noising path (the course's
        "tuning T and α" figure plots them with :func:`hfgen.plotting.plot_diffusion_forward`).
        """
        x = check_points(original_samples, self.dim, "original_samples")
        steps = [int(t) for t in timesteps]
        if not steps or any(not 0 <= t <= self.scheduler.config.num_train_timesteps for t in steps):
            raise ValueError(
                f"`timesteps` must be a non-empty sequence of steps in 0 … {self.scheduler.config.num_train_timesteps},"
                f" got {steps}"
            )
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"`timesteps` must be strictly increasing, got {steps}")
        states, previous = [], 0
        for t in steps:
            noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = self.scheduler.forward_transition(x, noise, previous, t)
            states.append(x)
            previous = t
        return torch.stack(states)

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> None:
        """Save the components (safetensors weights + configs) and ``model_index.json``."""
        kwargs.setdefault("safe_serialization", True)
        super().save_pretrained(save_directory, **kwargs)
