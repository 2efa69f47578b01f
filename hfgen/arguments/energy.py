"""Arguments of ``training/train_ebm.py``: the 8-Gaussians recipe of an energy model, without torch (the rules
of the network, the samplers and the quadrature, which own these values, are imported when the arguments are
checked)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfgen.arguments.common import TrainingArguments, check_toy_name
from hfgen.checks import check_choice, check_number
from hfgen.cli.parser import documented, recipe

__all__ = ["EnergyArguments"]

#: the energy family's choice-valued options, mirrored without torch for ``--help``: the smooth activations an
#: energy network takes (Langevin dynamics and MALA use ``∇_x E``), and the samplers of training and sampling
SMOOTH_ACTIVATION_NAMES = ("silu", "softplus", "gelu", "tanh")
ENERGY_SAMPLERS = ("langevin", "mala")
#: the owner of each mirror, ``"module:attribute"`` (as :data:`hfgen.choices.OWNERS`; tests/test_choices.py)
OWNERS: dict[str, str] = {
    "SMOOTH_ACTIVATION_NAMES": "hfgen.models.energy:SMOOTH_ACTIVATIONS",
    "ENERGY_SAMPLERS": "hfgen.schedulers.langevin:LANGEVIN_SCHEDULERS",
}
#: data samples that measure the support's extent for the ``grid_bound`` check
_EXTENT_SAMPLES = 100_000


@dataclass
@recipe(
    train_batch_size=256,
    max_train_steps=3_000,
    lr_warmup_steps=100,
    ema_decay=0.0,
    checkpointing_steps=500,
    validation_steps=1_000,
)
class EnergyArguments(TrainingArguments):
    """Arguments of ``training/train_ebm.py``; the defaults are the 8-Gaussians recipe of
    `benchmarks/ENERGY_RESULTS.md`."""

    run_only_fields = TrainingArguments.run_only_fields | {
        "num_sample_steps",
        "sample_sampler",
        "sample_step_size",
        "grid_bound",
        "grid_size",
    }

    output_dir: str = documented("out/ebm-8gaussians", "where the run writes its outputs")
    dataset: str = documented("8gaussians", "toy data set of hfgen.data: 8gaussians, checkerboard, … (2-D, density)")
    hidden_size: int = 128
    num_layers: int = 3
    activation: str = documented("silu", f"smooth activation of the energy MLP: {sorted(SMOOTH_ACTIVATION_NAMES)}")
    confinement: float = documented(1.0, "κ of the quadratic well ½ κ ‖x‖² added to the MLP (keeps Z finite)")
    regularization: float = documented(0.001, "α of the energy-magnitude term α (E(x⁺)² + E(x⁻)²)")
    training_sampler: str = documented("mala", f"sampler of the training chains: {sorted(ENERGY_SAMPLERS)}")
    step_size: float = documented(5e-3, "η of the training chains' Langevin steps")
    langevin_steps: int = documented(20, "Langevin steps per training step, from the replay buffer")
    buffer_size: int = documented(10_000, "replay-buffer chains per process")
    reinit_fraction: float = documented(0.05, "probability that a chain restarts from uniform noise")
    buffer_low: float = documented(-4.0, "chains restart uniformly on [buffer_low, buffer_high]²")
    buffer_high: float = documented(4.0, "chains restart uniformly on [buffer_low, buffer_high]²")
    num_validation_samples: int = documented(2_000, "samples drawn, scored and plotted at each validation")
    sample_sampler: str = documented("mala", f"sampler the saved pipeline uses: {sorted(ENERGY_SAMPLERS)}")
    sample_step_size: float = documented(5e-3, "η of the saved pipeline's sampler")
    num_sample_steps: int = documented(300, "steps of a sample chain from uniform noise")
    num_eval_samples: int = documented(10_000, "samples for W2 and MMD at the end")
    num_nll_samples: int = documented(5_000, "held-out points for the final NLL")
    num_validation_nll_samples: int = documented(1_000, "held-out points for the NLL at each validation (0: none)")
    grid_bound: float = documented(6.0, "log Z by quadrature on [−b, b]² (must cover the data's support)")
    grid_size: int = documented(512, "cells per axis of the quadrature grid (even)")

    positive_fields = (*TrainingArguments.positive_fields, "langevin_steps", "buffer_size", "num_sample_steps")

    def __post_init__(self) -> None:
        super().__post_init__()
        from hfgen.data import get_toy_distribution  # torch, and the components' own rules
        from hfgen.methods.energy import check_grid_size
        from hfgen.models.energy import EnergyMLP
        from hfgen.schedulers.langevin import LANGEVIN_SCHEDULERS

        target = get_toy_distribution(check_toy_name(self.dataset, "dataset"))
        if target.dim != 2 or not target.has_log_prob:
            raise ValueError(
                f"`dataset` must be a 2-D toy distribution with a density (for the NLL), got {self.dataset!r}"
            )
        for name in ("training_sampler", "sample_sampler"):
            check_choice(getattr(self, name), name, sorted(LANGEVIN_SCHEDULERS))
        for name in ("activation", "confinement"):  # the network's rules (its sizes: TrainingArguments)
            EnergyMLP.config_rules[name](getattr(self, name), name)
        for name, sampler in (("step_size", self.training_sampler), ("sample_step_size", self.sample_sampler)):
            LANGEVIN_SCHEDULERS[sampler].config_rules["step_size"](getattr(self, name), name)  # the sampler's own rule
        if self.num_eval_samples < 2:
            raise ValueError(f"`num_eval_samples` must be >= 2, got {self.num_eval_samples}")
        for name in ("num_nll_samples", "num_validation_nll_samples"):
            if getattr(self, name) < 0 or getattr(self, name) == 1:
                raise ValueError(f"`{name}` must be 0 or >= 2 (a standard error needs two), got {getattr(self, name)}")
        if self.buffer_size < self.train_batch_size:
            raise ValueError(
                f"`buffer_size` must be >= train_batch_size ({self.train_batch_size}), got {self.buffer_size}"
            )
        check_number(self.regularization, "regularization", 0)
        check_number(self.reinit_fraction, "reinit_fraction", 0, 1)
        if not self.buffer_low < self.buffer_high:
            raise ValueError(f"`buffer_low` must be < `buffer_high`, got {self.buffer_low} and {self.buffer_high}")
        check_grid_size(self.grid_size)
        extent = support_extent(self.dataset)
        if not self.grid_bound > extent:
            raise ValueError(
                f"`grid_bound` {self.grid_bound} is too small for the support of {self.dataset!r}: the quadrature "
                f"grid [−b, b]² must contain the data, which reaches |x_i| = {extent:.2f}; pass a larger grid_bound"
            )

    @property
    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The quadrature grid ``[−b, b]²``."""
        return ((-self.grid_bound, self.grid_bound),) * 2

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of :class:`~hfgen.models.energy.EnergyMLP`."""
        return {
            "dim": 2,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "activation": self.activation,
            "confinement": self.confinement,
        }


def support_extent(dataset: str) -> float:
    """``max_i |x_i|`` over 100,000 samples of ``dataset`` (seed 0): where the data reaches (a bounded support's
    edge, or about 4.4 standard deviations of a Gaussian mode's tail)."""
    import torch

    from hfgen.data import get_toy_distribution

    points = get_toy_distribution(dataset).sample(_EXTENT_SAMPLES, torch.Generator().manual_seed(0))
    return float(points.abs().max())
