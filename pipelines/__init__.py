"""diffusers ``DiffusionPipeline`` subclasses, shipped as ``hfgen.pipelines``.

The public names are those each module lists in its ``__all__`` (:func:`hfgen.lazy.declared_exports`), imported on
first use: a new family's pipeline is exported here without editing this file.
"""

from hfgen.lazy import declared_exports, lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, lambda: declared_exports(__name__))
