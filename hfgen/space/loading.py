"""Loading the pipeline the app shows, from a folder or a Hub repo id, with a small cache that notices a new save."""

from __future__ import annotations

import functools
import os

from hfgen.hub import upload_files
from hfgen.pipelines.base import HfgenPipeline
from hfgen.space.describe import ModelInfo, describe
from hfgen.space.messages import error_text

__all__ = ["NOT_A_PIPELINE", "clear_cache", "load_model", "load_pipeline"]

#: what the app says of a name that is not a saved pipeline it can read: the same whether or not a folder of that
#: name exists on the server, so the page reveals nothing of the server's folders
NOT_A_PIPELINE = (
    "{name!r} is not a saved hfgen pipeline: enter a folder written by save_pretrained (with its model_index.json) or "
    "the id of a Hub repo ('user/name') that holds one"
)


def load_pipeline(name: str) -> HfgenPipeline:
    """The pipeline saved in folder or Hub repo ``name`` (``HfgenPipeline.from_pretrained``), progress bars off.

    The last four are cached, and a folder is loaded again when one of its pipeline's files has changed (a new save
    replaces them). A name that is neither a pipeline folder nor a Hub repo gets :data:`NOT_A_PIPELINE`; other
    loading errors propagate with the loader's message."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a folder or a Hub repo id ('user/name'), got {name!r}")
    name = name.strip()
    return _cached_pipeline(name, _folder_version(name))


def clear_cache() -> None:
    """Forget every cached pipeline."""
    _cached_pipeline.cache_clear()


def _folder_version(name: str) -> tuple[tuple[str, int, int, int], ...] | None:
    """Identity (inode, modification time, size) of every file of the pipeline saved in folder ``name`` (the files an
    upload sends, :func:`hfgen.hub.upload_files`); None for a Hub repo id or a folder that holds no pipeline."""
    try:
        files = upload_files(name)
        stats = [(file, os.stat(os.path.join(name, file))) for file in files]
    except (OSError, ValueError):
        return None
    return tuple((file, stat.st_ino, stat.st_mtime_ns, stat.st_size) for file, stat in stats)


@functools.lru_cache(maxsize=4)
def _cached_pipeline(name: str, version: tuple | None) -> HfgenPipeline:
    """The pipeline of ``name`` as it was at ``version`` (:func:`_folder_version`)."""
    try:
        pipe = HfgenPipeline.from_pretrained(name)
    except FileNotFoundError as error:  # no such folder, a folder without a pipeline, no such repo: one message
        raise FileNotFoundError(NOT_A_PIPELINE.format(name=name)) from error
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_model(name: str, current: str | None = None) -> tuple[ModelInfo | None, str]:
    """What the app shows after "Load": the :class:`ModelInfo` of the pipeline ``name`` and a line of Markdown; when
    ``name`` does not load, its error, and the pipeline ``current`` (the one loaded before) stays in use."""
    try:
        info = describe(load_pipeline(name), name.strip())
    except Exception as error:  # shown in the page: a bad folder or repo id is the user's to fix
        text = error_text(f"load `{name}`", error)
        if not current:
            return None, text
        try:
            kept = describe(load_pipeline(current), current)
        except Exception:  # noqa: BLE001 (the model loaded before is gone too: nothing to keep)
            return None, text
        return kept, f"{text}\n\nStill loaded: `{current}`: {kept.summary}"
    return info, f"Loaded `{info.name}`: {info.summary}"
