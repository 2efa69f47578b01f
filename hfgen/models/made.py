"""MADE: a masked autoencoder for distribution estimation (Germain et al. 2015), with Bernoulli or Gaussian-mixture
conditionals and optional ensembles over orders and connectivities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from hfgen.checks import check_arguments, check_bool, check_choice, check_int, check_sizes
from hfgen.utils import check_points

__all__ = ["MADE", "MADEOutput"]

CONDITIONALS = ("bernoulli", "gaussian_mixture")
ORDERS = ("natural", "random")


@dataclass
class MADEOutput(BaseOutput):
    """Parameters of the conditionals ``p(x_d | x_{<d})`` for every variable ``d`` (in the data's own indexing).

    ``logits``: Bernoulli logits ``(N, D)``, or the mixture-weight logits ``(N, D, K)``; ``means`` and
    ``log_scales`` ``(N, D, K)`` for Gaussian-mixture conditionals, else ``None``."""

    logits: torch.Tensor
    means: torch.Tensor | None = None
    log_scales: torch.Tensor | None = None


class MaskedLinear(nn.Linear):
    """``y = (W ⊙ M_m) x + b``: a linear layer with one binary connectivity mask ``M_m`` per ensemble member
    (Germain et al. 2015)."""

    def __init__(self, masks: torch.Tensor):
        super().__init__(masks.shape[2], masks.shape[1])
        self.register_buffer("masks", masks.to(self.weight.dtype))

    def forward(self, x: torch.Tensor, mask_index: int = 0) -> torch.Tensor:
        """Apply the layer with mask ``mask_index``."""
        return F.linear(x, self.weight * self.masks[mask_index], self.bias)


def made_degrees(
    order: torch.Tensor, hidden_sizes: Sequence[int], generator: torch.Generator
) -> tuple[list[torch.Tensor], torch.Tensor]:
    r"""Connectivity masks of MADE (Germain et al. 2015, §4).

    Input ``j`` gets degree ``m_0(j)``, its rank ``1 … D`` in ``order``; hidden unit ``k`` of layer ``l`` gets a
    degree ``m_l(k)`` uniform in ``[min m_{l−1}, D − 1]``. Unit ``k`` reads unit ``k'`` of the layer below iff
    ``m_l(k) ≥ m_{l−1}(k')``, and the output of variable ``d`` reads hidden unit ``k`` iff ``m_0(d) > m_L(k)``,
    so the conditional of ``x_d`` depends only on the variables ranked before it. Returns the hidden masks
    ``(H_l, H_{l−1})`` and the output mask ``(D, H_L)``.
    """
    dim = order.numel()
    rank = torch.empty(dim, dtype=torch.long)
    rank[order] = torch.arange(1, dim + 1)
    degrees = [rank]
    for size in hidden_sizes:
        degrees.append(torch.randint(int(degrees[-1].min()), dim, (size,), generator=generator))
    hidden = [
        (upper[:, None] >= lower[None, :]).float() for lower, upper in zip(degrees[:-1], degrees[1:], strict=True)
    ]
    return hidden, (rank[:, None] > degrees[-1][None, :]).float()


class MADE(ModelMixin, ConfigMixin):
    r"""Masked autoencoder for distribution estimation (Germain et al. 2015).

    An MLP whose weights are masked so that output ``d`` depends only on the variables ranked before ``d`` in an
    ``order``; the model is then exactly normalised by the chain rule
    ``log p(x) = Σ_d log p(x_d | x_{<d})`` and is sampled ancestrally, one variable per network pass.

    ``conditional="bernoulli"``: ``p(x_d | x_{<d}) = Bernoulli(σ(a_d))`` for binarised images; ``log_prob``
    accepts ``(N, D)`` or ``(N, C, H, W)`` with ``C·H·W = D`` and values in ``{0, 1}`` (refuses anything else).
    ``conditional="gaussian_mixture"``: ``p(x_d | x_{<d}) = Σ_k π_dk N(x_d; μ_dk, σ_dk²)`` with ``K =
    num_components`` for real points ``(N, D)``. ``image_shape`` ``(C, H, W)`` makes ``sample`` return images.

    ``order`` is ``"natural"`` (``x_1, …, x_D``), ``"random"`` (a random order per mask) or an explicit
    permutation (sampling order). With ``num_masks = M > 1`` the model is the ensemble
    ``p(x) = (1/M) Σ_m p_m(x)`` over masks with resampled hidden degrees (and orders if ``"random"``), so
    ``log p = logmeanexp_m log p_m``; sampling picks ``m`` uniformly, then samples ``p_m``. Degrees and orders are
    drawn from a generator seeded with ``seed``; the masks and orders are also saved as buffers.

    ``direct_connections=True`` adds a masked linear map from the inputs to the outputs, ``a = W_out h + V_m x``
    with ``V_m[d, j] = 0`` unless ``j`` is ranked before ``d`` (Germain et al.'s ``direct_input_connect="Output"``):
    the network then contains the fully visible sigmoid belief net (a logistic regression per conditional).
    """

    config_rules = {
        "dim": partial(check_int, low=2),
        "hidden_sizes": check_sizes,
        "conditional": partial(check_choice, choices=CONDITIONALS),
        "num_components": check_int,
        "num_masks": check_int,
        "seed": partial(check_int, low=None),
        "direct_connections": check_bool,
    }

    @register_to_config
    def __init__(
        self,
        dim: int = 784,
        hidden_sizes: Sequence[int] = (500,),
        conditional: str = "bernoulli",
        num_components: int = 5,
        num_masks: int = 1,
        order: str | Sequence[int] = "natural",
        image_shape: Sequence[int] | None = None,
        seed: int = 0,
        direct_connections: bool = False,
    ):
        super().__init__()
        check_arguments(self.config_rules, self.config)
        if image_shape is not None and math.prod(image_shape) != dim:
            raise ValueError(f"`image_shape` {image_shape!r} must have C·H·W = dim = {dim}")
        generator = torch.Generator().manual_seed(seed)
        orders = torch.stack([self._make_order(order, dim, generator) for _ in range(num_masks)])
        per_mask = [made_degrees(orders[m], hidden_sizes, generator) for m in range(num_masks)]
        self.register_buffer("orders", orders)
        self.hidden = nn.ModuleList(
            MaskedLinear(torch.stack([masks[0][layer] for masks in per_mask])) for layer in range(len(hidden_sizes))
        )
        self.params_per_dim = 1 if conditional == "bernoulli" else 3 * num_components
        output_masks = torch.stack([masks[1] for masks in per_mask]).repeat_interleave(self.params_per_dim, dim=1)
        self.output = MaskedLinear(output_masks)
        self.direct = None
        if direct_connections:  # input j feeds output d iff j is ranked before d
            ranks = torch.argsort(orders, dim=1) + 1
            direct_masks = (ranks[:, :, None] > ranks[:, None, :]).float()
            self.direct = MaskedLinear(direct_masks.repeat_interleave(self.params_per_dim, dim=1))

    @staticmethod
    def _make_order(order: str | Sequence[int], dim: int, generator: torch.Generator) -> torch.Tensor:
        if order == "random":
            return torch.randperm(dim, generator=generator)
        if order == "natural":
            return torch.arange(dim)
        if isinstance(order, str) or sorted(order) != list(range(dim)):
            raise ValueError(f"`order` must be 'natural', 'random' or a permutation of 0..{dim - 1}, got {order!r}")
        return torch.tensor(list(order), dtype=torch.long)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.config.dim
        if self.config.conditional == "gaussian_mixture":
            return check_points(x, dim, "x").to(device=self.device, dtype=self.dtype)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim not in (2, 4) or x.shape[0] < 1 or math.prod(x.shape[1:]) != dim:
            raise ValueError(f"`x` must have shape (N, {dim}) or (N, C, H, W) with C·H·W = {dim}, got {tuple(x.shape)}")
        x = check_points(x.reshape(x.shape[0], dim), dim, "x")
        if bool(((x < 0) | (x > 1)).any()):
            raise ValueError(
                f"`x` must be binarised images with values in {{0, 1}}, got values outside [0, 1] "
                f"(min {float(x.min())}, max {float(x.max())})"
            )
        if bool(((x != 0) & (x != 1)).any()):
            raise ValueError(
                "`x` must be binarised images with values in {0, 1}, got values strictly between 0 and 1; "
                "binarise first (e.g. hfgen.data.dynamic_binarize)"
            )
        return x.to(device=self.device, dtype=self.dtype)

    def _check_mask_index(self, mask_index: int) -> int:
        return check_int(mask_index, "mask_index", 0, self.num_masks - 1)

    @property
    def num_masks(self) -> int:
        """Number ``M`` of masks (orders and connectivities) in the ensemble."""
        return self.orders.shape[0]

    def forward(self, x: torch.Tensor, mask_index: int = 0, return_dict: bool = True) -> MADEOutput | tuple:
        """Conditional parameters for every variable from ``x`` ``(N, D)``, computed with mask ``mask_index``."""
        self._check_mask_index(mask_index)
        hidden = x
        for layer in self.hidden:
            hidden = torch.relu(layer(hidden, mask_index))
        out = self.output(hidden, mask_index)
        if self.direct is not None:
            out = out + self.direct(x, mask_index)
        out = out.reshape(x.shape[0], self.config.dim, self.params_per_dim)
        if self.config.conditional == "bernoulli":
            result = (out[..., 0], None, None)
        else:
            result = tuple(out.chunk(3, dim=-1))
        return MADEOutput(*result) if return_dict else result

    def _log_prob_mask(self, x: torch.Tensor, mask_index: int) -> torch.Tensor:
        out = self.forward(x, mask_index)
        if self.config.conditional == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out.logits, x, reduction="none").sum(dim=1)
        standardised = (x[:, :, None] - out.means) * (-out.log_scales).exp()
        log_normal = -0.5 * standardised.square() - out.log_scales - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(torch.log_softmax(out.logits, dim=-1) + log_normal, dim=-1).sum(dim=1)

    def log_prob(self, x: torch.Tensor, mask_index: int | None = None) -> torch.Tensor:
        r"""``log p(x) = Σ_d log p(x_d | x_{<d})`` in nats, shape ``(N,)``; for an ensemble
        ``log p = logsumexp_m log p_m(x) − log M``, or ``log p_m`` alone when ``mask_index = m`` is given."""
        x = self._check_input(x)
        if mask_index is not None:
            return self._log_prob_mask(x, self._check_mask_index(mask_index))
        per_mask = torch.stack([self._log_prob_mask(x, m) for m in range(self.num_masks)])
        return torch.logsumexp(per_mask, dim=0) - math.log(self.num_masks)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling ``x_{o_1} ~ p(x_{o_1})``, ``x_{o_2} ~ p(x_{o_2} | x_{o_1})``, … along the order of a
        mask drawn uniformly per sample; ``(N, D)``, or ``(N, *image_shape)`` when ``image_shape`` is set."""
        check_int(num_samples, "num_samples")
        choice = torch.randint(self.num_masks, (num_samples,), generator=generator, device=self.device)
        samples = torch.zeros(num_samples, self.config.dim, device=self.device, dtype=self.dtype)
        for m in range(self.num_masks):
            members = torch.nonzero(choice == m).flatten()
            if members.numel():
                samples[members] = self._ancestral_sample(members.numel(), m, generator)
        if self.config.image_shape is not None:
            return samples.reshape(num_samples, *self.config.image_shape)
        return samples

    def _ancestral_sample(self, num_samples: int, mask_index: int, generator: torch.Generator | None) -> torch.Tensor:
        x = torch.zeros(num_samples, self.config.dim, device=self.device, dtype=self.dtype)
        for d in self.orders[mask_index].tolist():
            out = self.forward(x, mask_index)
            if self.config.conditional == "bernoulli":
                x[:, d] = torch.bernoulli(torch.sigmoid(out.logits[:, d]), generator=generator)
                continue
            component = torch.multinomial(torch.softmax(out.logits[:, d], dim=-1), 1, generator=generator)
            mean = out.means[:, d].gather(1, component)[:, 0]
            scale = out.log_scales[:, d].gather(1, component)[:, 0].exp()
            noise = torch.randn(num_samples, generator=generator, device=self.device, dtype=self.dtype)
            x[:, d] = mean + scale * noise
        return x
