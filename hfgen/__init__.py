"""hfgen: generative models of a graduate course as Hugging Face diffusers pipelines.

The classes are imported on first use (PEP 562): ``import hfgen`` and ``from hfgen.arguments import …``
(a script's ``--help``) do not import torch. diffusers resolves a class named in a saved ``model_index.json`` (for
example ``["hfgen", "TimeMLP"]``) with ``getattr(hfgen, "TimeMLP")``, which imports it here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hfgen.lazy import declared_exports, declared_names, lazy_exports

__version__ = "0.1.0"

#: the packages whose public names ``hfgen`` exports (each module's ``__all__``), beside hfgen.data's list
#: and the Gaussian bridge's closed form
EXPORTED_PACKAGES = ("hfgen.models", "hfgen.schedulers", "hfgen.pipelines")


def _exports() -> dict[str, str]:
    data_names, _ = declared_names(Path(importlib.util.find_spec("hfgen.data").origin))
    exports = dict.fromkeys(data_names, "hfgen.data")
    exports["GaussianSchrodingerBridge"] = "hfgen.methods.schrodinger_bridge"
    for package in EXPORTED_PACKAGES:
        exports |= declared_exports(package)
    return exports


__getattr__, __dir__ = lazy_exports(__name__, _exports)
