"""diffusers' remote-code layout, written into every folder an hfgen pipeline is saved to.

``DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)`` builds a pipeline from ``.py`` files
that travel with the weights: ``model_index.json`` names ``["pipeline_x", "XPipeline"]`` for the pipeline (the file
``pipeline_x.py`` at the root) and ``["modeling_y", "Y"]`` or ``["scheduling_y", "Y"]`` for each component (the file
in the component's folder). :func:`write_remote_code` writes that layout after ``save_pretrained``: each file is a
self-contained copy of the hfgen module that defines the class (:func:`~.bundling.bundle_module`), the code hfgen
runs, with the hfgen definitions it uses copied in. Every file imports only the standard library, torch, numpy and
diffusers (torchdiffeq inside the log-density methods that need it). A pipeline file holds no more of hfgen's
loading layer than the sampling side it builds on (:mod:`hfgen.pipelines.sampling`), and names the component classes
by :mod:`~.stand_ins` (they are defined in the components' files).

hfgen itself never runs those files: :func:`hfgen_index` maps the class names of such a ``model_index.json`` back
to hfgen's own classes, so ``HfgenPipeline.from_pretrained`` loads the same folder with hfgen's code.

Adding a pipeline or a component needs no entry here: a pipeline defined in a module ``pipelines/<x>.py`` is written
as ``pipeline_<x>.py``, a model or scheduler defined in ``hfgen/models/<x>.py`` or ``hfgen/schedulers/<x>.py`` as
``modeling_<x>.py`` or ``scheduling_<x>.py``; components of other libraries (diffusers' own schedulers,
``UNet2DModel``) keep their ``["diffusers", "Class"]`` entry.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

from diffusers import DiffusionPipeline
from diffusers.configuration_utils import ConfigMixin

from hfgen import models, schedulers
from hfgen.remote_code.bundling import StandIn, bundle_module
from hfgen.utils import write_atomic

#: the remote-code module prefix of each hfgen package of components (diffusers' file names: modeling_*, scheduling_*)
COMPONENT_PACKAGES = {"modeling": "hfgen.models", "scheduling": "hfgen.schedulers"}
#: the package of the pipelines, whose module ``<x>`` is written as the file ``pipeline_<x>.py``
PIPELINES_PACKAGE = "hfgen.pipelines"
#: the classes of hfgen's loading layer, and the sampling side (module, class) that stands for each in a pipeline file
LOADING_LAYER = {"hfgen.pipelines.base.HfgenPipeline": ("hfgen.pipelines.sampling", "SamplingPipeline")}
_EXPORTS = (models, schedulers)


def hfgen_component_class(library: str, class_name: str) -> type[ConfigMixin] | None:
    """hfgen's own class for a remote-code entry ``[library, class_name]``, or None.

    ``["scheduling_x", "C"]`` is class ``C`` of hfgen's module ``hfgen.schedulers.x`` (``modeling_x``:
    ``hfgen.models.x``); any other module name (such as an older export's ``modeling_time_mlp``) falls back to the
    class that ``hfgen.models`` or ``hfgen.schedulers`` exports under that name. Only hfgen's installed modules are
    imported, never a file of the folder.
    """
    prefix, _, module_name = library.partition("_")
    candidates = []
    if prefix in COMPONENT_PACKAGES and module_name.isidentifier() and not module_name.startswith("_"):
        try:
            module = importlib.import_module(f"{COMPONENT_PACKAGES[prefix]}.{module_name}")
        except ModuleNotFoundError:
            module = None
        candidates.append(getattr(module, class_name, None))
    candidates += [getattr(package, class_name, None) for package in _EXPORTS]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, ConfigMixin):
            return candidate
    return None


def component_module_name(component: Any) -> str | None:
    """The remote-code module name of a component (``modeling_mlp`` for ``hfgen.models.mlp.TimeMLP``,
    ``scheduling_score_sde`` for ``VPSDEScheduler``), or None when its class is not defined by a module of
    ``hfgen.models`` or ``hfgen.schedulers``."""
    return _component_class_module(type(component))


def _component_class_module(cls: type) -> str | None:
    package, _, module_name = cls.__module__.rpartition(".")
    for prefix, hfgen_package in COMPONENT_PACKAGES.items():
        if package == hfgen_package and hfgen_component_class(f"{prefix}_{module_name}", cls.__name__) is cls:
            return f"{prefix}_{module_name}"
    return None


def pipeline_module_name(pipeline_class: type) -> str | None:
    """The remote-code module name of a pipeline class (``pipeline_flow_matching`` for ``FlowMatchingPipeline``,
    defined in ``pipelines/flow_matching.py``), or None for a class that is not a pipeline defined by a module of
    ``hfgen.pipelines`` (a user's subclass, say, or the loading layer's base class)."""
    package, _, module_name = pipeline_class.__module__.rpartition(".")
    defined = getattr(sys.modules.get(pipeline_class.__module__), pipeline_class.__name__, None) is pipeline_class
    qualified = f"{pipeline_class.__module__}.{pipeline_class.__qualname__}"
    if package != PIPELINES_PACKAGE or not defined or qualified in LOADING_LAYER:
        return None
    return f"pipeline_{module_name}" if issubclass(pipeline_class, DiffusionPipeline) else None


def pipeline_stand_in(module_name: str, name: str) -> StandIn | None:
    """What a pipeline file holds in place of ``name`` of an hfgen module: the sampling side for a class of the
    loading layer (:data:`LOADING_LAYER`), :func:`~.stand_ins.component_class` for a component class; None for the
    definitions it copies."""
    value = getattr(importlib.import_module(module_name), name, None)
    if not isinstance(value, type):
        return None
    sampling = LOADING_LAYER.get(f"{value.__module__}.{value.__qualname__}")
    if sampling is not None:
        comment = "hfgen's loading layer (its from_pretrained, save_pretrained) stays in hfgen"
        return StandIn(f"{name} = {sampling[1]}  # {comment}", (sampling,))
    component = _component_class_module(value)
    if component is None:
        return None
    text = f'{name} = component_class("{value.__name__}")  # defined in {component}.py'
    return StandIn(text, ((f"{__name__}.stand_ins", "component_class"),))


@cache
def _component_source(module_name: str, class_names: tuple[str, ...]) -> str:
    title = f"{', '.join(class_names)} for diffusers' remote-code loading."
    return bundle_module(module_name, title)


@cache
def pipeline_source(pipeline_class: type) -> str:
    """The text of the pipeline file of ``pipeline_class``: its hfgen module made self-contained."""
    title = f"{pipeline_class.__name__} for diffusers' remote-code loading."
    return bundle_module(pipeline_class.__module__, title, pipeline_stand_in)


def write_remote_code(pipeline: Any, folder: str | os.PathLike) -> bool:
    """Turn the folder ``pipeline`` was just saved to into diffusers' remote-code layout; return whether it did.

    Writes ``<pipeline module>.py`` at the root and ``<component module>.py`` in each hfgen component's folder, and
    rewrites ``model_index.json`` to name them (without ``_name_or_path``, the local folder a loaded pipeline came
    from). A pipeline class that no module of hfgen defines (a user's subclass, say) leaves the folder as diffusers
    saved it.
    """
    pipeline_module = pipeline_module_name(type(pipeline))
    if pipeline_module is None:
        return False
    root = Path(folder)
    index_file = root / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8"))
    for name, component in pipeline.components.items():
        module_name = component_module_name(component)
        if module_name is None or not isinstance(index.get(name), list):
            continue
        cls = type(component)
        source = _component_source(cls.__module__, (cls.__name__,))
        (root / name / f"{module_name}.py").write_text(source, encoding="utf-8")
        index[name] = [module_name, cls.__name__]
    (root / f"{pipeline_module}.py").write_text(pipeline_source(type(pipeline)), encoding="utf-8")
    index["_class_name"] = [pipeline_module, type(pipeline).__name__]
    index.pop("_name_or_path", None)  # where a loaded pipeline came from: a local path, not part of the model
    write_atomic(index_file, json.dumps(index, indent=2, sort_keys=True) + "\n")  # a reader never sees half of it
    return True


def component_entries(index: dict[str, Any]) -> dict[str, list[str]]:
    """The components a ``model_index.json`` names, ``{folder name: [library, class name]}`` (optional components saved
    as ``[null, null]`` left out), checked before any file is opened.

    Every key but the ``_``-prefixed metadata is a pipeline ``__init__`` argument, so it must be a Python identifier:
    a plain folder name, never a path such as ``../other``. A component's entry is a pair of strings, and a library
    that is not a module path (``modeling_mlp``, the remote-code file ``<library>.py`` in the component's folder) is an
    identifier too. Anything else is refused with a ``ValueError`` naming the key.
    """
    if not isinstance(index, dict):
        raise ValueError(f"model_index.json must hold a JSON object, got {type(index).__name__}")
    components = {}
    for name, entry in index.items():
        if name.startswith("_"):
            continue
        if not name.isidentifier():
            raise ValueError(
                f"model_index.json names a component {name!r}: a component is a sub-folder of the pipeline, so its "
                "name must be a plain folder name (a Python identifier), not a path"
            )
        if not isinstance(entry, list) or (len(entry) == 2 and entry[0] is None):
            continue
        if len(entry) != 2 or not all(isinstance(part, str) for part in entry) or not _is_module_path(entry[0]):
            raise ValueError(f"model_index.json names {entry!r} for {name!r}: expected [library, class name]")
        components[name] = entry
    return components


def remote_pipeline_module(index: dict[str, Any]) -> str | None:
    """The remote-code pipeline module a ``model_index.json`` names (``pipeline_flow_matching`` for
    ``["pipeline_flow_matching", "FlowMatchingPipeline"]``, the file ``<module>.py`` at the folder's root), or None
    in the plain layout; a module name that is not an identifier is refused with a ``ValueError``."""
    class_name = index.get("_class_name")
    if not isinstance(class_name, list):
        return None
    if len(class_name) != 2 or not isinstance(class_name[0], str) or not class_name[0].isidentifier():
        raise ValueError(f"model_index.json's _class_name {class_name!r} must be [pipeline module, class name]")
    return class_name[0]


def _is_module_path(library: str) -> bool:
    return all(part.isidentifier() for part in library.split("."))


def pipeline_class_name(index: dict[str, Any]) -> Any:
    """The pipeline class named by ``model_index.json``: ``_class_name`` itself, or its second item in the
    remote-code layout (``["pipeline_x", "XPipeline"]``, whose module name :func:`remote_pipeline_module` checks)."""
    if remote_pipeline_module(index) is not None:
        return index["_class_name"][1]
    return index.get("_class_name")


def hfgen_index(index: dict[str, Any]) -> dict[str, Any]:
    """Map a ``model_index.json`` in the remote-code layout to hfgen's classes, in place, and return it.

    ``_class_name`` becomes the pipeline's class name, and each component entry ``["modeling_y", "Y"]`` becomes
    ``[Y.__module__, "Y"]`` for hfgen's own class ``Y``, so diffusers loads hfgen's code and never imports a file of
    the folder. Entries of importable libraries (``["diffusers", "DDPMScheduler"]``, ``["hfgen.models.mlp",
    "TimeMLP"]``) are kept. A component class that hfgen does not have is refused with a ``ValueError``.
    """
    from diffusers import pipelines
    from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES

    index["_class_name"] = pipeline_class_name(index)
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], str):
            continue
        library, class_name = entry
        if "." in library or library in LOADABLE_CLASSES or hasattr(pipelines, library):
            continue
        cls = hfgen_component_class(library, class_name)
        if cls is None:
            raise ValueError(
                f"model_index.json names {entry} for {name!r}: code shipped with the folder, and {class_name!r} is not "
                "an hfgen model or scheduler. hfgen does not run such code; load the folder with diffusers' "
                "DiffusionPipeline.from_pretrained(..., trust_remote_code=True) if you trust it"
            )
        index[name] = [cls.__module__, class_name]
    return index


def export_remote_code(pipeline: Any, folder: str | os.PathLike) -> Path:
    """Save ``pipeline`` to ``folder`` in diffusers' remote-code layout and return the folder: what
    ``pipeline.save_pretrained(folder)`` does (kept for code written before it did). A pipeline class without a
    remote version (one that no module of hfgen defines) is refused with a ``ValueError``."""
    if pipeline_module_name(type(pipeline)) is None:
        raise ValueError(
            f"no remote-code version of {type(pipeline).__name__}: only the pipelines that hfgen defines have one "
            "(hfgen.pipelines)"
        )
    pipeline.save_pretrained(folder)
    return Path(folder)
