"""The checks ``HfgenPipeline.from_pretrained`` runs on a saved folder around diffusers' loading.

Before diffusers opens a file of the folder: ``model_index.json`` names plain component folders
(:func:`hfgen.remote_code.component_entries`), its pipeline class takes exactly the components the folder holds
(:func:`check_pipeline_components`), every component class is one hfgen can load (:func:`component_classes`), and
every config is a JSON object that names the class of its entry and every argument the class requires
(:func:`read_component_configs`). Once diffusers has built the components, each model's safetensors header must
list exactly the tensors, of the same shapes, that the model holds (:func:`check_weights_match`; diffusers itself
initialises a missing tensor at random and drops an unexpected one, with a logger warning), and every
floating-point tensor must be finite (:func:`check_finite`). When diffusers fails, models built from the configs
without memory (:func:`empty_models`) say which tensor of which file does not fit.

A folder that another process is saving into is refused with a message that says so: ``save_pretrained`` holds
:data:`SAVING_FILE` while it writes, and :func:`folder_state` taken before and after a load tells whether a save
overlapped it (the marker appeared, or ``model_index.json``, which every save replaces atomically, changed).
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFETENSORS_WEIGHTS_NAME, _add_variant

#: present while ``save_pretrained`` writes into a folder; a folder holding it is not loaded
SAVING_FILE = ".hfgen-saving"
INDEX_FILE = "model_index.json"
#: the packages of hfgen's components: a folder may name a module of these (installed hfgen code, imported on demand)
COMPONENT_PACKAGES = ("hfgen.models", "hfgen.schedulers", "hfgen.pipelines")

FolderState = tuple[int, int, int] | None


def folder_state(folder: str | os.PathLike) -> FolderState:
    """The identity of ``model_index.json`` (inode, modification time, size; None when absent), after checking that
    no save is under way in ``folder``. Every save replaces the index, so an equal state before and after a load
    means that no save overlapped it."""
    if os.path.exists(os.path.join(folder, SAVING_FILE)):
        raise ValueError(
            f"{folder} is being written by save_pretrained in another process ({SAVING_FILE} is there), or a save "
            "into it was interrupted: load it again once the save has finished, or save the pipeline again"
        )
    try:
        stat = os.stat(os.path.join(folder, INDEX_FILE))
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def check_unchanged(folder: str | os.PathLike, before: FolderState) -> None:
    """Refuse a load during which another process saved into ``folder`` (its files may come from two saves)."""
    if folder_state(folder) != before:
        raise ValueError(
            f"{folder} was saved into by another process while it was being loaded, so its files may come from two "
            "different saves: load it again"
        )


def read_index(folder: str | os.PathLike) -> dict[str, Any]:
    """``model_index.json`` of ``folder`` as a dict; a missing file is a ``FileNotFoundError``, an unreadable one a
    ``ValueError``."""
    index_file = Path(folder) / INDEX_FILE
    if not index_file.is_file():
        raise FileNotFoundError(
            f"{folder} has no {INDEX_FILE}: expected a folder written by `save_pretrained` ({INDEX_FILE} plus one "
            "sub-folder per component)"
        )
    return _read_json_object(index_file, "is corrupt", "is not a pipeline index: expected a JSON object")


def _read_json_object(path: Path, unreadable: str, not_object: str) -> dict[str, Any]:
    """The JSON object in the file ``path``; a ``ValueError`` saying ``f"{path} {unreadable}: {error}"`` for a file
    that is not JSON, ``f"{path} {not_object}, got {type}"`` for JSON that is not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} {unreadable}: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path} {not_object}, got {type(value).__name__}")
    return value


def check_pipeline_components(
    pipeline_class: type, components: dict[str, Any], index_file: str | os.PathLike, candidates: list[type]
) -> None:
    """The folder's components (``model_index.json``) must be the ones ``pipeline_class.__init__`` takes: every
    required one, and none it does not take. The refusal names the pipeline classes among ``candidates`` that take
    the folder's components."""
    if _takes(pipeline_class, set(components)):
        return
    required, _ = _component_arguments(pipeline_class)
    fitting = sorted(c.__name__ for c in candidates if _takes(c, set(components)))
    hint = f" (the components of {' or '.join(fitting)})" if fitting else ""
    raise ValueError(
        f"{index_file} names {pipeline_class.__name__}, which takes the components {sorted(required)}, but the "
        f"folder holds {sorted(components)}{hint}"
    )


def _component_arguments(pipeline_class: type) -> tuple[set[str], set[str]]:
    """The components ``pipeline_class.__init__`` requires, and all the arguments it takes."""
    required, optional = pipeline_class._get_signature_keys(pipeline_class)
    return set(required) - set(pipeline_class._optional_components), set(required) | set(optional)


def _takes(pipeline_class: type, held: set[str]) -> bool:
    required, accepted = _component_arguments(pipeline_class)
    return required <= held <= accepted


def _hfgen_module(name: str) -> Any:
    """hfgen's module ``name`` when it is ``hfgen`` or one of :data:`COMPONENT_PACKAGES` or their modules, else
    None (also when no such module is installed)."""
    if name != "hfgen" and not any(name == p or name.startswith(f"{p}.") for p in COMPONENT_PACKAGES):
        return None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


def component_classes(components: dict[str, list[str]]) -> dict[str, type]:
    """The class of each component entry ``[library, class name]`` (after
    :func:`hfgen.remote_code.hfgen_index`): a class of diffusers or transformers, of hfgen (a module of
    :data:`COMPONENT_PACKAGES`, imported on demand) or of a module this process has imported; no other module is
    imported because a folder names it."""
    from diffusers import pipelines
    from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES

    classes = {}
    for name, (library, class_name) in components.items():
        if library in LOADABLE_CLASSES:
            module = importlib.import_module(library)
        else:
            module = getattr(pipelines, library, None) or sys.modules.get(library) or _hfgen_module(library)
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            raise ValueError(
                f"model_index.json names [{library!r}, {class_name!r}] for {name!r}, a class that hfgen cannot load "
                "(not in diffusers, transformers or hfgen)"
            )
        classes[name] = cls
    return classes


def read_component_configs(folder: str | os.PathLike, classes: dict[str, type]) -> dict[str, dict[str, Any]]:
    """The config of every diffusers component (``config.json`` or ``scheduler_config.json``), checked: a JSON
    object; for a model, saved by the class that ``model_index.json`` names (a model's weights mean nothing to
    another class; schedulers may be swapped, as diffusers allows); holding every argument the class requires."""
    configs = {}
    for name, cls in classes.items():
        if not issubclass(cls, ConfigMixin):
            continue
        path = Path(folder) / name / cls.config_name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the {cls.__name__} of component {name!r} needs its config")
        config = _read_json_object(path, "is not valid JSON", "must hold a JSON object of the component's settings")
        saved_by = config.get("_class_name")
        if issubclass(cls, ModelMixin) and saved_by is not None and saved_by != cls.__name__:
            raise ValueError(
                f"model_index.json names {cls.__name__} for {name!r}, but {path} was saved by {saved_by!r}: the "
                "weights of one model class do not fit another"
            )
        missing = [key for key in _init_arguments(cls, required=True) if key not in config]
        if missing:
            raise ValueError(f"{path} lacks {missing}, which {cls.__name__} requires")
        configs[name] = config
    return configs


_CHECKING_WEIGHTS: contextvars.ContextVar[bool] = contextvars.ContextVar("hfgen_checking_weights", default=False)


class _WeightWarnings(logging.Filter):
    """Drops diffusers' warnings that a model's weights are missing ("newly initialized", with its advice to train
    the model), unused or of another shape while hfgen loads a pipeline: hfgen refuses those weights itself
    (:func:`check_weights_match`), naming the component, the tensor and the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_CHECKING_WEIGHTS.get() and record.getMessage().startswith("Some weights of"))


logging.getLogger("diffusers.models.modeling_utils").addFilter(_WeightWarnings())


@contextmanager
def weights_checked_here() -> Iterator[None]:
    """Within this context, diffusers' warnings about missing, unused or misshaped weights are dropped: the caller
    runs :func:`check_weights_match` on what diffusers built."""
    token = _CHECKING_WEIGHTS.set(True)
    try:
        yield
    finally:
        _CHECKING_WEIGHTS.reset(token)


def check_weights_match(
    models: dict[str, ModelMixin], configs: dict[str, dict[str, Any]], folder: str | os.PathLike, variant: str | None
) -> None:
    """Each model's safetensors header must list exactly the tensors (names and shapes) of the model that its config
    describes: ``models`` are the components diffusers built (or :func:`empty_models`, to explain why it could not).
    Only the header is read."""
    for name, model in models.items():
        path, files = _weight_files(Path(folder) / name, variant)
        saved = _header_shapes(files)
        expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        problems = [f"{key} {expected[key]} is missing" for key in sorted(expected.keys() - saved.keys())]
        problems += [f"{key} {saved[key]} is not one of its tensors" for key in sorted(saved.keys() - expected.keys())]
        problems += [
            f"{key} has shape {saved[key]} in the file but {expected[key]} in the model"
            for key in sorted(expected.keys() & saved.keys())
            if saved[key] != expected[key]
        ]
        if problems:
            cls = type(model)
            defaults = [key for key in _init_arguments(cls, required=False) if key not in configs[name]]
            note = f" {name}/{cls.config_name} lacks {defaults}, so {cls.__name__}'s defaults were used for them."
            raise ValueError(
                f"{path} does not fit the {cls.__name__} that {name}/{cls.config_name} describes (component "
                f"{name!r}): {'; '.join(problems[:5])}{' …' if len(problems) > 5 else ''}.{note if defaults else ''} "
                "The config and the weights must come from one save_pretrained"
            )


def empty_models(classes: dict[str, type], configs: dict[str, dict[str, Any]]) -> dict[str, ModelMixin]:
    """The model components built from their configs with parameters on the meta device (no memory, no
    initialisation), as diffusers builds them before it loads the weights."""
    from accelerate import init_empty_weights

    models = {}
    for name, cls in classes.items():
        if not issubclass(cls, ModelMixin):
            continue
        try:
            with init_empty_weights():
                models[name] = cls.from_config(configs[name])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}/{cls.config_name} does not describe a valid {cls.__name__}: {error}") from error
    return models


def check_finite(models: dict[str, ModelMixin], folder: str | os.PathLike, variant: str | None) -> None:
    """Every floating-point parameter and buffer of ``models`` must be finite (a NaN or an infinity in the weights
    makes every sample NaN). A tensor's sum is finite when all its entries are (a NaN or an infinity propagates), so
    only a tensor whose sum is not (or overflows) is checked entry by entry."""
    for name, model in models.items():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or tensor.is_meta or math.isfinite(tensor.sum().item()):
                continue
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                path, _ = _weight_files(Path(folder) / name, variant)
                raise ValueError(
                    f"{path}: tensor {key!r} of component {name!r} holds {bad} NaN or infinite values (of "
                    f"{tensor.numel()}); the weights are corrupt or training diverged"
                )


def _init_arguments(cls: type, required: bool) -> list[str]:
    """The ``__init__`` arguments of a config class that its config stores: those without a default
    (``required``) or those with one."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    ignored = set(getattr(cls, "ignore_for_config", ()))
    return [
        p.name
        for p in parameters
        if p.name != "self"
        and p.name not in ignored
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and (p.default is p.empty) == required
    ]


def _weight_files(component: Path, variant: str | None) -> tuple[Path, list[Path]]:
    """The file that names a model component's weights in messages, and the safetensors files diffusers loads them
    from: ``diffusion_pytorch_model[.variant].safetensors``, or the shards its ``….safetensors.index.json`` lists."""
    single = component / _add_variant(SAFETENSORS_WEIGHTS_NAME, variant)
    index = component / _add_variant(SAFE_WEIGHTS_INDEX_NAME, variant)
    if single.is_file() or not index.is_file():
        return single, [single]
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{index} is corrupt: {error}") from error
    if not all(isinstance(shard, str) and shard == Path(shard).name for shard in shards):
        raise ValueError(f"{index} lists shards that are not plain file names of its folder: {shards}")
    return index, [component / shard for shard in shards]


def _header_shapes(paths: list[Path]) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor of safetensors files, read from their headers."""
    from safetensors import SafetensorError, safe_open

    shapes = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a model component needs its safetensors weights")
        try:
            with safe_open(path, framework="pt") as file:
                shapes.update({key: tuple(file.get_slice(key).get_shape()) for key in file.keys()})  # noqa: SIM118
        except SafetensorError as error:
            raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
    return shapes
