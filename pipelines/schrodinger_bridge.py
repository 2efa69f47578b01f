"""Schrödinger bridge pipeline: transport points between two distributions with the learned γ-step chains."""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin

from hfgen.data import StandardGaussian, ToyDistribution, toy_from_config
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.sampling import PointsPipelineOutput
from hfgen.schedulers.schrodinger_bridge import BridgeScheduler, check_direction
from hfgen.threads import one_thread_for_small_networks
from hfgen.utils import check_generator, check_points

__all__ = ["SchrodingerBridgePipeline"]


class SchrodingerBridgePipeline(HfgenPipeline):
    r"""Transport between ``p_data`` (state ``X_0``) and ``p'_data`` (state ``X_N``) with the two mean networks of
    a diffusion Schrödinger bridge (De Bortoli et al. 2021, DSB; the chain of
    :class:`~hfgen.schedulers.BridgeScheduler`).

    ``direction="forward"`` draws ``X_0`` from ``source`` and runs ``X_{k+1} = f_k(X_k) + √(2γ_k) Z`` with
    ``forward_model``; ``direction="backward"`` draws ``X_N`` from ``target`` and runs
    ``X_k = b_{k+1}(X_{k+1}) + √(2γ_k) Z`` with ``backward_model``. ``source`` and ``target`` are toy
    distribution configs (``ToyDistribution.to_config()``), or ``None`` for ``N(0, I)``; they are saved in
    ``model_index.json``.
    """

    model_cpu_offload_seq = "forward_model->backward_model"

    def __init__(
        self,
        forward_model: ModelMixin,
        backward_model: ModelMixin,
        scheduler: BridgeScheduler,
        source: dict[str, Any] | ToyDistribution | None = None,
        target: dict[str, Any] | ToyDistribution | None = None,
    ):
        super().__init__()
        dim = forward_model.config.dim
        if backward_model.config.dim != dim:
            raise ValueError(
                f"`backward_model` has dim {backward_model.config.dim} but `forward_model` has dim {dim}; "
                "both directions act on the same space"
            )
        distributions, configs = {}, {}
        for name, value in (("source", source), ("target", target)):
            distributions[name], configs[name] = _marginal(name, value, dim)
        self.register_modules(forward_model=forward_model, backward_model=backward_model, scheduler=scheduler)
        self.register_to_config(**configs)
        self.source_distribution = distributions["source"]
        self.target_distribution = distributions["target"]

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the points."""
        return self.forward_model.config.dim

    @one_thread_for_small_networks
    @torch.no_grad()
    def transport(
        self,
        x: torch.Tensor,
        direction: str = "forward",
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Run the chain from points ``x`` ``(n, D)``: ``X_0 = x`` forward, ``X_N = x`` backward.

        Returns the end points ``(n, D)``, and with ``return_trajectory`` also the states in the order visited,
        ``(N + 1, n, D)`` (``[0]`` is ``x``). The noise is drawn from ``generator``.
        """
        direction = check_direction(direction)
        check_generator(generator)
        model = self.forward_model if direction == "forward" else self.backward_model
        x = check_points(x, self.dim, "x")
        self._sample_count(None, x, "x", self.dim, model.dtype, self.scheduler.num_steps, return_trajectory)
        x = x.to(device=self.device, dtype=model.dtype)
        self.scheduler.set_timesteps(device=x.device, direction=direction)
        states = [x] if return_trajectory else None
        for timestep in self.progress_bar(self.scheduler.timesteps):
            t = torch.full((x.shape[0],), float(timestep), dtype=x.dtype, device=x.device)
            mean = model(x, t, return_dict=False)[0]
            x = self.scheduler.step(mean, timestep, x, generator=generator, return_dict=False)[0]
            if states is not None:
                states.append(x)
        if states is None:
            return x
        return x, torch.stack(states)

    @one_thread_for_small_networks
    @torch.no_grad()
    def __call__(
        self,
        num_samples: int = 1000,
        direction: str = "forward",
        source_samples: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_trajectory: bool = False,
        return_dict: bool = True,
    ) -> PointsPipelineOutput | tuple:
        r"""Transport ``num_samples`` points in ``direction``.

        Args:
            num_samples: number of start points, drawn from ``source`` (forward) or ``target`` (backward);
                ignored when ``source_samples`` is given.
            direction: ``"forward"`` (``X_0 → X_N``) or ``"backward"`` (``X_N → X_0``).
            source_samples: start points ``(n, D)`` instead of drawing them.
            num_inference_steps: must be the chain's ``N`` (or ``None``): the networks are trained per step.
            generator: draws the start points and the noise; the same generator state gives the same samples.
            output_type: ``"pt"`` (torch) or ``"np"`` (numpy).
            return_trajectory: also return the visited states, shape ``(N + 1, n, D)``.
        """
        self._check_output_type(output_type)
        direction = check_direction(direction)
        if num_inference_steps is not None and num_inference_steps != self.scheduler.num_steps:
            raise ValueError(
                f"`num_inference_steps` must be the chain's num_steps = {self.scheduler.num_steps} (or None), "
                f"got {num_inference_steps!r}"
            )
        if source_samples is None:
            start = self.source_distribution if direction == "forward" else self.target_distribution
            steps, dtype = self.scheduler.num_steps, self.forward_model.dtype
            n = self._sample_count(num_samples, None, "source_samples", self.dim, dtype, steps, return_trajectory)
            x = start.sample(n, generator=generator)
        else:
            x = check_points(source_samples, self.dim, "source_samples")
        result = self.transport(x, direction, generator=generator, return_trajectory=return_trajectory)
        samples, trajectory = result if return_trajectory else (result, None)
        return self._points_output(samples, trajectory, self.scheduler.num_steps, output_type, return_dict)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save as :meth:`HfgenPipeline.save_pretrained` does, after checking that both marginals can be saved: named
        toy distributions or ``N(0, I)``, not Python samplers (``model_index.json`` holds their configs)."""
        for name in ("source", "target"):
            distribution = getattr(self, f"{name}_distribution")
            if self.config[name] is None and not isinstance(distribution, StandardGaussian):
                raise ValueError(
                    f"cannot save a pipeline whose {name} {distribution!r} is a Python sampler; use a named toy "
                    "distribution (hfgen.data) to save it"
                )
        super().save_pretrained(save_directory, **kwargs)


def _marginal(
    name: str, value: dict[str, Any] | ToyDistribution | None, dim: int
) -> tuple[ToyDistribution, dict[str, Any] | None]:
    """The distribution and the config saved for a marginal (``None`` for ``N(0, I)`` and Python samplers)."""
    if isinstance(value, ToyDistribution):
        distribution = value
        if isinstance(value, StandardGaussian) and value.dim == dim:
            config = None
        else:
            try:
                config = value.to_config()
            except ValueError:
                config = None
    elif value is None:
        distribution, config = StandardGaussian(dim), None
    elif isinstance(value, dict):
        distribution, config = toy_from_config(value), value
    else:
        raise TypeError(f"`{name}` must be a ToyDistribution, its config dict or None, got {type(value).__name__}")
    if distribution.dim != dim:
        raise ValueError(f"the {name} distribution has dimension {distribution.dim} but the networks expect {dim}")
    return distribution, config
