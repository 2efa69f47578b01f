"""Sharing: exactly what push_to_hub would upload (intercepted at HfApi), and the remote-code export loaded by
diffusers alone in a process where hfgen cannot be imported."""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest.mock import create_autospec

import numpy as np
import pytest
import torch
import yaml
from factories import tiny_flow_matching_pipeline
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.utils import filter_repo_objects

from hfgen.hub import push_folder_to_hub
from hfgen.remote_code import export_remote_code


def uploaded_files(folder: Path, call_kwargs: dict) -> set[str]:
    """The files upload_folder sends with the patterns it was called with (huggingface_hub's own filter)."""
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    patterns = {key: call_kwargs.get(key) for key in ("allow_patterns", "ignore_patterns")}
    return set(filter_repo_objects(files, **patterns))


def fake_training_run(folder: Path) -> None:
    tiny_flow_matching_pipeline().save_pretrained(folder)
    for name in ("README.md", "metrics.json", "args.json", "samples.png"):
        (folder / name).write_text("{}")
    # what a careless user leaves in a run folder: none of it may be uploaded
    for name in ("checkpoints/checkpoint-10/optimizer.bin", "checkpoints/checkpoint-10/random_states_0.pkl",
                 "checkpoints/checkpoint-10/model.safetensors", "validation/step-0000010-samples.png",
                 ".hidden/notes.json", "velocity/.tmp.json", "credentials.json", "notes/my_script.py",
                 "sweep/checkpoints/checkpoint-1/trainer_state.json", "velocity/extra.safetensors",
                 "notes/plot.png"):  # fmt: skip
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")


def test_pushing_a_run_creates_the_repo_and_uploads_weights_configs_card_and_plots_only(tmp_path):
    fake_training_run(tmp_path)
    api = create_autospec(HfApi, instance=True)
    push_folder_to_hub(tmp_path, "someone/fm-run", api=api, private=True)
    api.create_repo.assert_called_once_with("someone/fm-run", repo_type="model", private=True, exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == "someone/fm-run" and kwargs["folder_path"] == str(tmp_path)
    assert uploaded_files(tmp_path, kwargs) == {
        "model_index.json",
        "weights_sha256.json",
        "README.md",
        "metrics.json",
        "samples.png",
        "velocity/config.json",
        "velocity/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    }


def test_pipeline_push_to_hub_sends_safetensors_configs_and_a_valid_card(tmp_path):
    pipeline = tiny_flow_matching_pipeline()
    api = create_autospec(HfApi, instance=True)
    sent = {}

    def record(**kwargs):  # the temporary folder is gone after the call: read it during the upload
        folder = Path(kwargs["folder_path"])
        sent.update({name: (folder / name).read_bytes() for name in uploaded_files(folder, kwargs)})

    api.upload_folder.side_effect = record
    pipeline.push_to_hub("someone/tiny-fm", api=api)
    assert set(sent) == {
        "model_index.json",
        "weights_sha256.json",
        "README.md",
        "velocity/config.json",
        "velocity/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    }
    assert not any(name.endswith((".bin", ".pkl", ".pt")) for name in sent)
    card_text = sent["README.md"].decode()
    metadata = yaml.safe_load(card_text.split("---\n", 2)[1])
    assert metadata["library_name"] == "hfgen" and "FlowMatchingPipeline" in metadata["tags"]
    (tmp_path / "README.md").write_text(card_text)
    card = ModelCard.load(tmp_path / "README.md")
    assert 'FlowMatchingPipeline.from_pretrained("someone/tiny-fm")' in card.text
    assert "| velocity | hfgen.models.mlp.TimeMLP |" in card.text


def test_push_refuses_a_folder_without_a_pipeline_and_a_bad_repo_id(tmp_path):
    api = create_autospec(HfApi, instance=True)
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        push_folder_to_hub(tmp_path, "someone/x", api=api)
    tiny_flow_matching_pipeline().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="user/name"):
        push_folder_to_hub(tmp_path, "no-slash", api=api)
    api.create_repo.assert_not_called()


LOAD_WITH_DIFFUSERS_ONLY = """
import sys, importlib.abc
class NoHfgen(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hfgen" or name.startswith("hfgen."):
            raise ImportError("hfgen is blocked in this process")
sys.meta_path.insert(0, NoHfgen())
import numpy as np, torch
from diffusers import DiffusionPipeline
folder, out, trust = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
try:
    import hfgen
    raise SystemExit("hfgen must not be importable here")
except ImportError:
    pass
pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=trust)
samples = pipe(num_samples=5, num_inference_steps=7, generator=torch.Generator().manual_seed(3)).samples
np.save(out, samples.numpy())
print(type(pipe).__name__, type(pipe.velocity).__name__, type(pipe.scheduler).__name__)
"""


def load_without_hfgen(folder: Path, out: Path, trust: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(out.parent / "hf-home"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", LOAD_WITH_DIFFUSERS_ONLY, str(folder), str(out), "1" if trust else "0"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=out.parent,
    )


def test_remote_code_export_loads_with_diffusers_alone_and_samples_like_hfgen(tmp_path):
    pipeline = tiny_flow_matching_pipeline(solver="heun")
    folder = export_remote_code(pipeline, tmp_path / "export")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_flow_matching", "FlowMatchingPipeline"]
    assert index["velocity"] == ["modeling_time_mlp", "TimeMLP"]
    for name in (
        "pipeline_flow_matching.py",
        "velocity/modeling_time_mlp.py",
        "scheduler/scheduling_flow_match_euler.py",
    ):
        source = (folder / name).read_text()
        assert "from hfgen" not in source and "import hfgen" not in source and "from ." not in source
    result = load_without_hfgen(folder, tmp_path / "samples.npy", trust=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["FlowMatchingPipeline", "TimeMLP", "FlowMatchEulerScheduler"]
    expected = pipeline(num_samples=5, num_inference_steps=7, generator=torch.Generator().manual_seed(3)).samples
    np.testing.assert_allclose(np.load(tmp_path / "samples.npy"), expected.numpy(), rtol=0, atol=1e-6)
    refused = load_without_hfgen(folder, tmp_path / "refused.npy", trust=False)
    assert refused.returncode != 0 and "trust_remote_code" in refused.stderr


def test_remote_code_export_refuses_what_it_cannot_export(tmp_path):
    from hfgen.data import get_toy_distribution

    with pytest.raises(ValueError, match="N\\(0, I\\) only"):
        export_remote_code(tiny_flow_matching_pipeline(source=get_toy_distribution("8gaussians")), tmp_path)


def test_the_remote_code_guard_refuses_sources_that_import_hfgen():
    from hfgen.remote_code import _self_contained_source

    clean = "import torch\nfrom diffusers import DiffusionPipeline\n"
    assert _self_contained_source(clean, "clean.py") == clean
    for text in (
        "import hfgen\n",
        "from hfgen.models import mlp\n",
        "    from hfgen import utils\n",
        "from . import x\n",
    ):
        with pytest.raises(ValueError, match="imports hfgen or uses relative imports"):
            _self_contained_source("import torch\n" + text, "module.py")


def test_the_exported_remote_code_pipeline_honours_output_type():
    import importlib.util

    from hfgen import remote_code

    path = Path(remote_code.__file__).with_name("pipeline_flow_matching.py")
    spec = importlib.util.spec_from_file_location("exported_pipeline_flow_matching", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hfgen_pipe = tiny_flow_matching_pipeline()
    pipe = module.FlowMatchingPipeline(velocity=hfgen_pipe.velocity, scheduler=hfgen_pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    pt = pipe(num_samples=4, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).samples
    np_ = pipe(num_samples=4, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    assert isinstance(pt, torch.Tensor) and isinstance(np_.samples, np.ndarray)
    np.testing.assert_array_equal(np_.samples, pt.numpy())
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_samples=4, num_inference_steps=3, output_type="pil")
