"""A small CNN classifier for MNIST-family images as a 🤗 transformers model, used to score generated images.

Registered with ``AutoConfig`` (``model_type = "hfgen-mnist-classifier"``) and
``AutoModelForImageClassification``, so a saved folder loads with
``AutoModelForImageClassification.from_pretrained(folder)`` once ``hfgen`` is imported. Its penultimate
activations are the features of the classifier-based Fréchet distance (:mod:`hfgen.image_metrics`), the
MNIST analogue of the FID (Heusel et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForImageClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from hfgen.checks import check_int, check_number, check_sizes

__all__ = ["MnistClassifier", "MnistClassifierConfig", "MnistClassifierOutput"]

MODEL_TYPE = "hfgen-mnist-classifier"


class MnistClassifierConfig(PretrainedConfig):
    """Configuration of :class:`MnistClassifier`: image shape, convolution widths, feature size, dropout.

    ``num_labels`` (or ``id2label``) is the usual transformers argument; ten classes by default.
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        num_channels: int = 1,
        image_size: int = 28,
        conv_channels: Sequence[int] = (32, 64),
        hidden_size: int = 128,
        dropout: float = 0.25,
        **kwargs,
    ):
        kwargs.setdefault("num_labels", 10)
        super().__init__(**kwargs)
        for name, value in (("num_channels", num_channels), ("image_size", image_size), ("hidden_size", hidden_size)):
            check_int(value, name)
        check_sizes(conv_channels, "conv_channels", allow_empty=False)
        if image_size % 2 ** len(conv_channels):
            raise ValueError(
                f"`image_size` must be divisible by 2**len(conv_channels) = {2 ** len(conv_channels)}, got {image_size}"
            )
        check_number(dropout, "dropout", 0, 1, open_high=True)
        self.num_channels, self.image_size = num_channels, image_size
        self.conv_channels, self.hidden_size, self.dropout = list(conv_channels), hidden_size, dropout


@dataclass
class MnistClassifierOutput(ImageClassifierOutput):
    """``ImageClassifierOutput`` (``loss`` when labels are given, ``logits`` ``(N, num_labels)``) plus
    ``features`` ``(N, hidden_size)``: the penultimate activations."""

    features: Tensor | None = None


class MnistClassifier(PreTrainedModel):
    r"""CNN ``x ↦ logits``: ``len(conv_channels)`` blocks (3×3 conv, ReLU, 2×2 max-pool), a ReLU layer of
    ``hidden_size`` features ``h(x)``, dropout and a linear read-out; trained by cross-entropy
    ``−log softmax(logits)_y``. Input: images ``(N, C, H, W)`` in ``[0, 1]``."""

    config_class = MnistClassifierConfig
    base_model_prefix = "classifier"
    main_input_name = "pixel_values"

    def __init__(self, config: MnistClassifierConfig):
        super().__init__(config)
        channels = [config.num_channels, *config.conv_channels]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        side = config.image_size // 2 ** len(config.conv_channels)
        layers += [nn.Flatten(), nn.Linear(channels[-1] * side**2, config.hidden_size), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.reset_parameters()  # PyTorch's default: U(±1/√fan_in) weights and biases

    def forward(
        self, pixel_values: Tensor, labels: Tensor | None = None, return_dict: bool | None = None, **kwargs
    ) -> MnistClassifierOutput | tuple:
        """Logits and features of ``pixel_values`` ``(N, C, H, W)``; the cross-entropy ``loss`` when ``labels``."""
        expected = (self.config.num_channels, self.config.image_size, self.config.image_size)
        if not isinstance(pixel_values, Tensor) or pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            got = tuple(pixel_values.shape) if isinstance(pixel_values, Tensor) else type(pixel_values).__name__
            raise ValueError(f"`pixel_values` must have shape (N, {', '.join(map(str, expected))}), got {got}")
        features = self.features(pixel_values.to(self.dtype))
        logits = self.head(self.dropout(features))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        if return_dict is False:
            return tuple(v for v in (loss, logits, features) if v is not None)
        return MnistClassifierOutput(loss=loss, logits=logits, features=features)


AutoConfig.register(MODEL_TYPE, MnistClassifierConfig, exist_ok=True)
AutoModelForImageClassification.register(MnistClassifierConfig, MnistClassifier, exist_ok=True)
