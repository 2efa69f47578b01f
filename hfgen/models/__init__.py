"""Networks: diffusers ``ModelMixin`` + ``ConfigMixin`` classes, one module per family.

The public names are those each module lists in its ``__all__`` (:func:`hfgen.lazy.declared_exports`), imported on
first use: a new module's classes are exported here without editing this file.
"""

from hfgen.lazy import declared_exports, lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, lambda: declared_exports(__name__))
