r"""Bernoulli–Bernoulli restricted Boltzmann machine (Smolensky 1986; Hinton 2002, "Training Products of Experts by
Minimizing Contrastive Divergence"; Hinton 2010, "A Practical Guide to Training RBMs").

Binary visible units ``v ∈ {0, 1}^V`` and hidden units ``h ∈ {0, 1}^H`` with the energy
``E(v, h) = −vᵀWh − bᵀv − cᵀh`` and ``p(v, h) = exp(−E(v, h)) / Z``. Both conditionals factorise,
``p(h_j = 1 | v) = σ(c_j + (vᵀW)_j)`` and ``p(v_i = 1 | h) = σ(b_i + (Wh)_i)``, and summing out ``h`` gives the free
energy ``F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j)`` with ``p(v) = exp(−F(v)) / Z``.

Which inputs must be binary: :meth:`RBMModel.energy` (a joint configuration) requires binary ``v`` and ``h``.
Everything else accepts values in ``[0, 1]``: the conditionals, the samplers and the free energy read a probability
as the mean-field value of a unit (Hinton 2010, §3), which is how grey-level images and hidden probabilities enter
a chain. The exact likelihood and the pseudo-likelihood (``hfgen.methods.rbm``) require binary ``v``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import Tensor, nn

from hfgen.checks import check_arguments, check_int, check_number
from hfgen.utils import check_has_values

__all__ = ["RBMModel", "RBMModelOutput"]


@dataclass
class RBMModelOutput(BaseOutput):
    """Output of :meth:`RBMModel.forward`: the free energy ``F(v)`` of each visible vector, shape ``(N,)``."""

    free_energy: Tensor


class RBMModel(ModelMixin, ConfigMixin):
    r"""Bernoulli–Bernoulli RBM: weights ``W`` ``(V, H)``, visible bias ``b`` ``(V,)``, hidden bias ``c`` ``(H,)``.

    ``E(v, h) = −vᵀWh − bᵀv − cᵀh`` (Hinton 2002). ``W`` starts as ``N(0, weight_init_std²)`` and the biases at zero
    (Hinton 2010, §8). For images, ``image_size`` and ``in_channels`` give the shape ``(C, S, S)`` of a visible
    vector (``num_visible = C S²``, flattened row-major as ``images.reshape(N, -1)``); leave ``image_size=None`` for
    an RBM that is not over images. scikit-learn's ``BernoulliRBM`` holds the same parameters as
    ``components_ = Wᵀ``, ``intercept_visible_ = b``, ``intercept_hidden_ = c``.
    """

    config_rules = {
        "num_visible": check_int,
        "num_hidden": check_int,
        "in_channels": check_int,
        "weight_init_std": partial(check_number, low=0),
    }

    @register_to_config
    def __init__(
        self,
        num_visible: int = 784,
        num_hidden: int = 128,
        image_size: int | None = None,
        in_channels: int = 1,
        weight_init_std: float = 0.01,
    ):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        if image_size is not None:
            check_int(image_size, "image_size", note="or None for an RBM not over images")
            if in_channels * image_size**2 != num_visible:
                raise ValueError(
                    f"`num_visible` must equal in_channels * image_size**2 = {in_channels * image_size**2} for "
                    f"{in_channels}x{image_size}x{image_size} images, got {num_visible}"
                )
        self.weight = nn.Parameter(weight_init_std * torch.randn(num_visible, num_hidden))
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, S, S)`` of one visible vector seen as an image; needs ``image_size`` in the config."""
        if self.config.image_size is None:
            raise ValueError("this RBM has no image shape: create it with `image_size` (and `in_channels`)")
        size = self.config.image_size
        return (self.config.in_channels, size, size)

    def check_visible(self, v: object, name: str = "v", binary: bool = False) -> Tensor:
        """Check that ``v`` is a finite float ``(N, num_visible)`` tensor in ``[0, 1]`` (``{0, 1}`` if ``binary``)."""
        return _check_units(v, self.config.num_visible, name, binary).to(device=self.device, dtype=self.dtype)

    def check_hidden(self, h: object, name: str = "h", binary: bool = False) -> Tensor:
        """Check that ``h`` is a finite float ``(N, num_hidden)`` tensor in ``[0, 1]`` (``{0, 1}`` if ``binary``)."""
        return _check_units(h, self.config.num_hidden, name, binary).to(device=self.device, dtype=self.dtype)

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """``E(v, h) = −vᵀWh − bᵀv − cᵀh`` of binary configurations, shape ``(N,)``."""
        v = self.check_visible(v, "v", binary=True)
        h = self.check_hidden(h, "h", binary=True)
        if v.shape[0] != h.shape[0]:
            raise ValueError(f"`v` and `h` must have the same number of rows, got {v.shape[0]} and {h.shape[0]}")
        return -((v @ self.weight) * h).sum(-1) - v @ self.visible_bias - h @ self.hidden_bias

    def hidden_activation(self, v: Tensor) -> Tensor:
        """Input to the hidden units, ``c + vᵀW``, shape ``(N, H)``; ``v`` in ``[0, 1]``."""
        return self.hidden_bias + self.check_visible(v) @ self.weight

    def visible_activation(self, h: Tensor) -> Tensor:
        """Input to the visible units, ``b + Wh``, shape ``(N, V)``; ``h`` in ``[0, 1]``."""
        return self.visible_bias + self.check_hidden(h) @ self.weight.T

    def free_energy(self, v: Tensor) -> Tensor:
        """``F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j) = −log Σ_h exp(−E(v, h))``, ``(N,)``; ``v`` in ``[0, 1]``."""
        v = self.check_visible(v)
        return -(v @ self.visible_bias) - F.softplus(self.hidden_bias + v @ self.weight).sum(-1)

    def p_h_given_v(self, v: Tensor) -> Tensor:
        """``p(h_j = 1 | v) = σ(c_j + (vᵀW)_j)``, shape ``(N, H)`` (scikit-learn's ``BernoulliRBM.transform``)."""
        return torch.sigmoid(self.hidden_activation(v))

    def p_v_given_h(self, h: Tensor) -> Tensor:
        """``p(v_i = 1 | h) = σ(b_i + (Wh)_i)``, shape ``(N, V)``."""
        return torch.sigmoid(self.visible_activation(h))

    def sample_h(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A binary draw ``h ~ p(h | v)``: ``h_j = 1[u_j < p(h_j = 1 | v)]``, ``u ~ U(0, 1)^H`` from ``generator``."""
        return sample_bernoulli(self.p_h_given_v(v), generator)

    def sample_v(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A binary draw ``v ~ p(v | h)``: ``v_i = 1[u_i < p(v_i = 1 | h)]``, ``u ~ U(0, 1)^V`` from ``generator``."""
        return sample_bernoulli(self.p_v_given_h(h), generator)

    def forward(self, sample: Tensor, return_dict: bool = True) -> RBMModelOutput | tuple[Tensor]:
        """The free energy ``F(v)`` of visible vectors ``sample`` ``(N, V)``: the energy of the marginal ``p(v)``."""
        free_energy = self.free_energy(sample)
        if not return_dict:
            return (free_energy,)
        return RBMModelOutput(free_energy=free_energy)


def sample_bernoulli(probabilities: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Binary draw ``x = 1[u < p]``, ``u ~ U(0, 1)`` from ``generator`` (drawn on its device), so ``P(x = 1) = p``."""
    device = generator.device if generator is not None else probabilities.device
    uniform = torch.rand(probabilities.shape, generator=generator, device=device, dtype=probabilities.dtype)
    return (uniform.to(probabilities.device) < probabilities).to(probabilities.dtype)


def _check_units(x: object, size: int, name: str, binary: bool) -> Tensor:
    expected = "{0, 1}" if binary else "[0, 1]"
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, {size}) with values in {expected}")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != size:
        raise ValueError(f"`{name}` must have shape (N, {size}) with N >= 1, got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"`{name}` must be a floating-point tensor with values in {expected}, got dtype {x.dtype}")
    check_has_values(x, name)
    if not torch.isfinite(x).all() or bool((x < 0).any()) or bool((x > 1).any()):
        raise ValueError(f"`{name}` must have finite values in [0, 1], got min {x.min().item()}, max {x.max().item()}")
    if binary and not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"`{name}` must be binary (values in {{0, 1}}); binarise it first, e.g. `(x > 0.5).float()`")
    return x
