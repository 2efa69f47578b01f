"""hfgen's loading and saving layer of every pipeline: folders and Hub ids, checks, checksums, the remote-code layout.

The sampling side (:class:`~hfgen.pipelines.sampling.SamplingPipeline`) is what a saved folder's pipeline file holds
(:mod:`hfgen.remote_code`); this layer stays in hfgen."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from diffusers import DiffusionPipeline, ModelMixin

from hfgen.pipelines import loading
from hfgen.pipelines.sampling import SamplingPipeline
from hfgen.remote_code import component_entries, hfgen_index, pipeline_class_name, write_remote_code
from hfgen.utils import write_atomic

__all__ = ["HfgenPipeline"]

# What hfgen loads of a saved pipeline; nothing else (no pickles, no code) is fetched from the Hub.
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "README.md"]
#: SHA-256 of every weight file of a saved pipeline, written by ``save_pretrained``, checked by ``verify=True``
CHECKSUMS_FILE = "weights_sha256.json"
#: present while a training run writes into its output folder; a folder holding it is not loaded
RUN_IN_PROGRESS_FILE = ".hfgen-run-in-progress"
_HUB_DOWNLOAD_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download")


class HfgenPipeline(SamplingPipeline):
    """Base class: ``from_pretrained`` accepts a local folder or a Hub repo id, loads safetensors only, and
    resolves the concrete pipeline class from ``model_index.json`` when called on this base class.

    ``save_pretrained`` writes diffusers' remote-code layout (:mod:`hfgen.remote_code`), so the same folder also
    loads with diffusers alone: ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``. hfgen never
    runs those ``.py`` files: it maps the class names they define to its own classes.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> HfgenPipeline:
        """Load a pipeline saved with ``save_pretrained`` from a folder or a Hub repo id.

        A repo id is fetched with ``huggingface_hub.snapshot_download`` (``revision``, ``cache_dir``, ``token``,
        ``local_files_only`` and ``force_download`` are passed on; ``HF_HUB_OFFLINE=1`` serves the local cache),
        then loaded from that folder. Weights are read from safetensors only. ``verify=True`` first checks every
        weight file against the SHA-256 that ``save_pretrained`` recorded in ``weights_sha256.json``. A folder in
        which a training run is still writing (or died before saving), or that another process saves into while it
        loads, is refused. A folder in diffusers' remote-code layout loads with hfgen's own classes: its ``.py``
        files are neither downloaded nor run.

        A broken folder is refused with a ``ValueError`` (or ``FileNotFoundError``) that names the component, the file
        and the key (:mod:`hfgen.pipelines.loading`). Before diffusers reads it: a component name that is a path, a
        pipeline class that takes other components, a config that names another model class or lacks a required
        argument. Once diffusers has built the components: a weights file with a missing, extra or wrongly shaped
        tensor (diffusers would initialise a missing one at random), weights that hold a NaN or an infinity.
        """
        verify = kwargs.pop("verify", False)
        folder = str(pretrained_model_name_or_path)
        if not os.path.isdir(folder):
            folder = cls._download(folder, kwargs)
        for key in _HUB_DOWNLOAD_KWARGS:
            kwargs.pop(key, None)
        if os.path.exists(os.path.join(folder, RUN_IN_PROGRESS_FILE)):
            raise ValueError(
                f"{pretrained_model_name_or_path!s} holds a training run that has not finished ({RUN_IN_PROGRESS_FILE} "
                "is there): its pipeline files may be missing or left from an earlier run. Resume the run with "
                "--resume_from_checkpoint latest, or load another folder"
            )
        before = loading.folder_state(folder)
        try:
            pipeline = cls._load_checked(folder, verify, kwargs)
        except (OSError, ValueError):
            loading.check_unchanged(folder, before)  # a save that overlapped the load explains the error best
            raise
        loading.check_unchanged(folder, before)
        return pipeline

    @classmethod
    def _load_checked(cls, folder: str, verify: bool, kwargs: dict[str, Any]) -> HfgenPipeline:
        """Check the folder (:mod:`hfgen.pipelines.loading`), let diffusers build the pipeline, check its weights."""
        if verify:
            verify_checksums(folder)
        index = loading.read_index(folder)
        index_file = os.path.join(folder, loading.INDEX_FILE)
        components = component_entries(index)  # plain folder names, before any component file is opened
        class_name = pipeline_class_name(index)
        if not isinstance(class_name, str):
            raise ValueError(f"{index_file} is not a pipeline index: its _class_name is {class_name!r}")
        pipeline_class = cls._resolve_class(class_name, index_file)
        loading.check_pipeline_components(pipeline_class, components, index_file, _all_subclasses(HfgenPipeline))
        mapped = component_entries(hfgen_index(dict(index)))  # hfgen's own classes; refuses classes it lacks
        read = {name: entry for name, entry in mapped.items() if kwargs.get(name) is None}  # not passed in
        classes = loading.component_classes(read)
        configs = loading.read_component_configs(folder, classes)
        variant = kwargs.get("variant")
        kwargs.setdefault("use_safetensors", True)
        try:
            with loading.weights_checked_here():
                pipeline = DiffusionPipeline.from_pretrained.__func__(pipeline_class, folder, **kwargs)
        except (OSError, ValueError, RuntimeError) as error:
            # say which tensor of which file does not fit, rather than diffusers' advice to load random weights
            loading.check_weights_match(loading.empty_models(classes, configs), configs, folder, variant)
            raise (OSError if isinstance(error, OSError) else ValueError)(
                f"could not load {pipeline_class.__name__} from {folder}: {error}. Check that the folder "
                "holds every component's config.json and safetensors weights, written by `save_pretrained`."
            ) from error
        models = {name: getattr(pipeline, name) for name in classes if isinstance(getattr(pipeline, name), ModelMixin)}
        loading.check_weights_match(models, configs, folder, variant)  # diffusers fills a missing tensor at random
        loading.check_finite(models, folder, variant)
        return pipeline

    @classmethod
    def load_config(cls, *args: Any, **kwargs: Any) -> Any:
        """diffusers' ``load_config``, with a ``model_index.json`` in the remote-code layout mapped to hfgen's own
        classes (:func:`hfgen.remote_code.hfgen_index`): loading never imports a ``.py`` file of the folder."""
        loaded = super().load_config(*args, **kwargs)
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        if "_class_name" in config:
            hfgen_index(config)
        return loaded

    @classmethod
    def _download(cls, repo_id: str, kwargs: dict[str, Any]) -> str:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        options = {key: kwargs[key] for key in _HUB_DOWNLOAD_KWARGS if key in kwargs}
        try:
            return snapshot_download(repo_id, allow_patterns=HUB_ALLOW_PATTERNS, **options)
        except HFValidationError as error:
            raise FileNotFoundError(
                f"{repo_id!r} is neither an existing folder nor a valid Hub repo id ('user/name')"
            ) from error
        except LocalEntryNotFoundError as error:
            raise FileNotFoundError(
                f"{repo_id!r} is not a local folder and is not in the Hugging Face cache, and the Hub cannot be "
                "reached (offline mode or no network)"
            ) from error

    @classmethod
    def _resolve_class(cls, class_name: str, index_file: str) -> type[HfgenPipeline]:
        if cls is not HfgenPipeline:
            if class_name != cls.__name__:
                raise ValueError(
                    f"{index_file} describes a {class_name}, not a {cls.__name__}; load it with "
                    f"{class_name}.from_pretrained or HfgenPipeline.from_pretrained"
                )
            return cls
        known = {sub.__name__: sub for sub in _all_subclasses(HfgenPipeline)}
        if class_name not in known:
            raise ValueError(f"{index_file} names {class_name!r}, which is not an hfgen pipeline: {sorted(known)}")
        return known[class_name]

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save the components (safetensors weights + configs), ``model_index.json`` and the SHA-256 of every
        weight file (``weights_sha256.json``, checked by ``from_pretrained(..., verify=True)``), in diffusers'
        remote-code layout: ``<pipeline module>.py`` at the root and each hfgen component's module file in its
        folder, all importing only torch, numpy and diffusers (:func:`hfgen.remote_code.write_remote_code`)."""
        kwargs.setdefault("safe_serialization", True)
        os.makedirs(save_directory, exist_ok=True)
        marker = Path(save_directory) / loading.SAVING_FILE  # readers refuse the folder until the save is complete
        marker.write_text(f"{os.getpid()}\n", encoding="utf-8")
        super().save_pretrained(save_directory, **kwargs)
        write_remote_code(self, save_directory)
        write_checksums(save_directory)
        marker.unlink(missing_ok=True)  # another save into the folder may have ended first

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        """Write ``model_index.json`` atomically (:func:`hfgen.utils.write_atomic`): a reader never sees half of it."""
        write_atomic(json_file_path, self.to_json_string())

    def push_to_hub(
        self,
        repo_id: str,
        *,
        card: Any = None,
        api: Any = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload with hfgen",
    ) -> Any:
        """Upload this pipeline (safetensors weights, configs and a model card) to the Hub repo ``repo_id``.

        ``card`` is a ``huggingface_hub.ModelCard`` (default: a card naming the pipeline and its components);
        ``api`` an ``HfApi`` (default: one with ``token``, else the cached login). Nothing is pickled and the
        token is never printed or stored. See :func:`hfgen.hub.push_pipeline_to_hub`.
        """
        from huggingface_hub import HfApi

        from hfgen.hub import push_pipeline_to_hub

        api = api or HfApi(token=token)
        return push_pipeline_to_hub(self, repo_id, card=card, api=api, private=private, commit_message=commit_message)


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """Record the SHA-256 of every ``*.safetensors`` file under ``folder`` in ``weights_sha256.json`` (paths
    relative to the folder, as the Hub lists them beside its LFS hashes)."""
    root = Path(folder)
    sums = {p.relative_to(root).as_posix(): _sha256(p) for p in sorted(root.rglob("*.safetensors"))}
    sums = {name: digest for name, digest in sums.items() if not name.startswith("checkpoints/")}
    write_atomic(root / CHECKSUMS_FILE, json.dumps(sums, indent=2) + "\n")
    return sums


def verify_checksums(folder: str | os.PathLike) -> None:
    """Check every weight file listed in ``weights_sha256.json`` against its recorded SHA-256; raise a
    ``ValueError`` naming the files that differ or are missing."""
    root = Path(folder)
    listing = root / CHECKSUMS_FILE
    if not listing.is_file():
        raise ValueError(f"{folder} has no {CHECKSUMS_FILE}: it was saved without checksums, so it cannot be verified")
    try:
        expected = json.loads(listing.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{listing} is corrupt: {error}") from error
    bad = [name for name, digest in expected.items() if not (root / name).is_file() or _sha256(root / name) != digest]
    if bad:
        raise ValueError(f"{folder}: these weight files are missing or do not match their recorded SHA-256: {bad}")
