"""Networks: diffusers ``ModelMixin`` + ``ConfigMixin`` classes, one module per family."""

from hfgen.models.mlp import TimeMLP, TimeMLPOutput

__all__ = ["TimeMLP", "TimeMLPOutput"]
