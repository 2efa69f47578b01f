"""Schedulers: diffusers ``SchedulerMixin`` + ``ConfigMixin`` classes, one module per scheduler.

The public names are those each module lists in its ``__all__`` (:func:`hfgen.lazy.declared_exports`), imported on
first use. ``hfgen.schedulers.bridge`` is the former module path of the bridge scheduler, named by older
``model_index.json`` files (see it).
"""

from hfgen.lazy import declared_exports, lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, lambda: declared_exports(__name__))
