"""Export a pipeline in diffusers' remote-code layout, loadable with diffusers alone.

``DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)`` then builds the pipeline from
``.py`` files that travel with the weights: ``model_index.json`` names ``["pipeline_x", "XPipeline"]`` for the
pipeline (its file at the root) and ``["modeling_y", "Y"]`` for each component (its file in the component's
folder). The copied files import only torch, numpy and diffusers. This layout and hfgen's own (which names
``["hfgen.models.mlp", "TimeMLP"]``) cannot share a folder, so it is a separate export.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from hfgen.models import mlp
from hfgen.schedulers import flow_match_euler

# class name → (module name in the exported repo, source module); every source module is self-contained.
REMOTE_COMPONENTS: dict[str, tuple[str, ModuleType]] = {
    "TimeMLP": ("modeling_time_mlp", mlp),
    "FlowMatchEulerScheduler": ("scheduling_flow_match_euler", flow_match_euler),
}
REMOTE_PIPELINES: dict[str, str] = {"FlowMatchingPipeline": "pipeline_flow_matching"}
_HFGEN_IMPORT = re.compile(r"^\s*(from\s+(hfgen|\.)|import\s+hfgen)", re.MULTILINE)


def _self_contained_source(text: str, origin: str) -> str:
    if _HFGEN_IMPORT.search(text):
        raise ValueError(f"{origin} imports hfgen or uses relative imports, so it cannot be exported as remote code")
    return text


def export_remote_code(pipeline: Any, folder: str | os.PathLike) -> Path:
    """Save ``pipeline`` into ``folder`` in diffusers' remote-code layout and return the folder.

    Supported: the pipelines in :data:`REMOTE_PIPELINES` whose components are in :data:`REMOTE_COMPONENTS`.
    Upload the folder with :func:`hfgen.hub.push_folder_to_hub` to share it.
    """
    pipeline_name = type(pipeline).__name__
    if pipeline_name not in REMOTE_PIPELINES:
        raise ValueError(f"no remote-code export for {pipeline_name}; supported: {sorted(REMOTE_PIPELINES)}")
    if pipeline.config.get("source") is not None:
        raise ValueError(
            f"the exported pipeline samples from N(0, I) only, but this one's source is {pipeline.config['source']!r}"
        )
    folder = Path(folder)
    pipeline.save_pretrained(folder, safe_serialization=True)
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8"))
    for name, component in pipeline.components.items():
        class_name = type(component).__name__
        if class_name not in REMOTE_COMPONENTS:
            raise ValueError(
                f"component {name!r} is a {class_name}, which has no remote-code export; "
                f"supported: {sorted(REMOTE_COMPONENTS)}"
            )
        module_name, module = REMOTE_COMPONENTS[class_name]
        source = Path(module.__file__).read_text(encoding="utf-8")
        (folder / name / f"{module_name}.py").write_text(
            _self_contained_source(source, module.__name__), encoding="utf-8"
        )
        index[name] = [module_name, class_name]
    pipeline_module = REMOTE_PIPELINES[pipeline_name]
    source = resources.files("hfgen.remote_code").joinpath(f"{pipeline_module}.py")
    shutil.copyfile(str(source), folder / f"{pipeline_module}.py")
    index["_class_name"] = [pipeline_module, pipeline_name]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
    return folder
