"""Loading refuses broken folders (issue 23, item 2): each refusal names the component, the file and the key, and
happens before diffusers would initialise a missing tensor at random, drop one, or read a file outside the folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from factories import tiny_ddpm_pipeline, tiny_flow_matching_pipeline
from safetensors.torch import load_file, save_file

import hfgen.pipelines
from hfgen import DDPMPointsPipeline, DensityPipeline, FlowMatchingPipeline, GaussianMixture, HfgenPipeline, TimeMLP
from hfgen.hub import upload_files
from hfgen.pipelines import base, loading
from hfgen.pipelines.base import write_checksums

WEIGHTS = "velocity/diffusion_pytorch_model.safetensors"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A saved tiny flow-matching pipeline (velocity: TimeMLP width 16)."""
    path = tmp_path / "pipe"
    tiny_flow_matching_pipeline().save_pretrained(path)
    return path


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_weights(path: Path, change) -> None:
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def test_a_valid_folder_loads_with_the_same_weights(folder):
    loaded = HfgenPipeline.from_pretrained(folder)
    saved = load_file(folder / WEIGHTS)
    assert all(torch.equal(loaded.velocity.state_dict()[key], value) for key, value in saved.items())


# ------------------------------------------------------------------------------- tensors that do not fit the model


def test_a_missing_tensor_is_refused_naming_component_tensor_and_file(folder):
    edit_weights(folder / WEIGHTS, lambda tensors: tensors.pop("body.1.bias"))
    with pytest.raises(ValueError, match="does not fit the TimeMLP that velocity/config.json describes") as error:
        HfgenPipeline.from_pretrained(folder)
    message = str(error.value)
    assert str(folder / WEIGHTS) in message and "component 'velocity'" in message
    assert "body.1.bias (16,) is missing" in message


def test_diffusers_advice_to_train_reinitialised_weights_does_not_reach_the_user(folder, caplog):
    edit_weights(folder / WEIGHTS, lambda tensors: tensors.pop("body.1.bias"))
    with pytest.raises(ValueError, match="body.1.bias"):
        HfgenPipeline.from_pretrained(folder)
    assert not [record for record in caplog.records if "newly initialized" in record.getMessage()]
    other = tiny_flow_matching_pipeline().velocity
    with caplog.at_level("WARNING"):  # diffusers' own loading keeps its warning
        type(other).from_pretrained(folder / "velocity")
    assert any("newly initialized" in record.getMessage() for record in caplog.records)


def test_a_sharded_model_is_loaded_and_checked_shard_by_shard(tmp_path):
    folder = tmp_path / "sharded"
    pipe = tiny_flow_matching_pipeline()
    pipe.save_pretrained(folder, max_shard_size="1KB")
    shards = sorted((folder / "velocity").glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) > 1 and not (folder / WEIGHTS).exists()
    loaded = HfgenPipeline.from_pretrained(folder).velocity.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in pipe.velocity.state_dict().items())
    tensors = load_file(shards[-1])
    key = sorted(tensors)[0]
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, shards[-1])
    with pytest.raises(ValueError, match=rf"safetensors.index.json: tensor '{re.escape(key)}' of component 'velocity'"):
        HfgenPipeline.from_pretrained(folder)


def test_an_unexpected_tensor_is_refused(folder):
    edit_weights(folder / WEIGHTS, lambda tensors: tensors.update(extra=torch.zeros(3)))
    with pytest.raises(ValueError, match=r"component 'velocity'\): extra \(3,\) is not one of its tensors"):
        HfgenPipeline.from_pretrained(folder)


def test_a_wrongly_shaped_tensor_is_refused(folder):
    edit_weights(folder / WEIGHTS, lambda tensors: tensors.update({"body.1.bias": torch.zeros(17)}))
    with pytest.raises(ValueError, match=r"body.1.bias has shape \(17,\) in the file but \(16,\) in the model"):
        FlowMatchingPipeline.from_pretrained(folder)


def test_a_config_without_a_key_names_the_key_whose_default_did_not_fit(folder):
    edit_json(folder / "velocity" / "config.json", lambda config: config.pop("hidden_size"))
    with pytest.raises(ValueError, match="has shape") as error:
        HfgenPipeline.from_pretrained(folder)
    message = str(error.value)
    assert "velocity/config.json lacks ['hidden_size'], so TimeMLP's defaults were used for them" in message
    assert "ignore_mismatched_sizes" not in message and "randomly" not in message  # no advice to load random weights


class WidthNet(ModelMixin, ConfigMixin):
    """A model with an argument that has no default: its config must hold it."""

    @register_to_config
    def __init__(self, width: int, dim: int = 2):
        super().__init__()
        self.linear = torch.nn.Linear(dim, width)


def test_a_config_without_a_required_argument_is_refused_by_name(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "config.json").write_text(json.dumps({"_class_name": "WidthNet", "dim": 2}))
    with pytest.raises(ValueError, match=r"net/config.json lacks \['width'\], which WidthNet requires"):
        loading.read_component_configs(tmp_path, {"net": WidthNet})


# ------------------------------------------------------------------------------------------- names that are paths


@pytest.fixture
def escaping(tmp_path: Path, folder: Path) -> Path:
    """The folder with its component renamed ``../victim`` in model_index.json, beside a folder ``victim`` holding a
    private config (which the old loader showed in its error text)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.json").write_text('["hunter2"]')
    (victim / "diffusion_pytorch_model.safetensors").write_bytes((folder / WEIGHTS).read_bytes())
    edit_json(folder / "model_index.json", lambda index: index.update({"../victim": index.pop("velocity")}))
    return folder


def test_a_component_name_that_is_a_path_is_refused_before_any_file_is_read(escaping):
    with pytest.raises(ValueError, match=r"component '\.\./victim': .* plain folder name") as error:
        HfgenPipeline.from_pretrained(escaping)
    assert "hunter2" not in str(error.value)


def test_the_upload_list_refuses_a_component_name_that_is_a_path(escaping):
    with pytest.raises(ValueError, match=r"component '\.\./victim'"):
        upload_files(escaping)


@pytest.mark.parametrize(
    ("key", "entry"),
    [("velocity", ["../modeling_mlp", "TimeMLP"]), ("_class_name", ["../pipeline_x", "FlowMatchingPipeline"])],
)
def test_a_remote_code_module_name_that_is_a_path_is_refused(folder, key, entry):
    edit_json(folder / "model_index.json", lambda index: index.update({key: entry}))
    with pytest.raises(ValueError, match=r"\.\./"):
        upload_files(folder)
    with pytest.raises(ValueError, match=r"\.\./"):
        HfgenPipeline.from_pretrained(folder)


# ------------------------------------------------------------------------------- a config of another model class


@pytest.fixture
def mixture_folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    mixture = GaussianMixture(num_components=3, dim=2, covariance_type="full")
    with torch.no_grad():
        for parameter in mixture.parameters():
            parameter.normal_()
    folder = tmp_path / "mixture"
    DensityPipeline(mixture).save_pretrained(folder)
    return folder


def test_a_model_entry_swapped_to_another_class_is_refused(mixture_folder):
    edit_json(mixture_folder / "model_index.json", lambda index: index.update(model=["modeling_kde", "KernelDensity"]))
    with pytest.raises(ValueError, match="names KernelDensity for 'model', but .*config.json was saved by 'Gaussian"):
        HfgenPipeline.from_pretrained(mixture_folder)
    edit_json(mixture_folder / "model" / "config.json", lambda config: config.update(_class_name="KernelDensity"))
    with pytest.raises(ValueError, match=r"data \(1, 2\) is missing; log_scales \(3, 2\) is not one of its tensors"):
        HfgenPipeline.from_pretrained(mixture_folder)


def test_a_full_mixture_relabelled_diag_is_refused(mixture_folder):
    edit_json(mixture_folder / "model" / "config.json", lambda config: config.update(covariance_type="diag"))
    with pytest.raises(ValueError, match=r"scale_tril_offdiag \(3, 1\) is not one of its tensors"):
        DensityPipeline.from_pretrained(mixture_folder)


# ------------------------------------------------------------------------------------------------ non-finite weights


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_even_with_matching_checksums(folder, value):
    def poison(tensors):
        tensors["body.1.weight"][0, 0] = value

    edit_weights(folder / WEIGHTS, poison)
    write_checksums(folder)  # the checksums were rewritten to match: verify=True passes, the values do not
    for verify in (False, True):
        with pytest.raises(ValueError, match=r"tensor 'body.1.weight' of component 'velocity' holds 1 NaN or inf"):
            HfgenPipeline.from_pretrained(folder, verify=verify)


# ------------------------------------------------------------------------------------ a folder of another pipeline


def test_another_pipeline_class_names_the_components_of_both(folder):
    edit_json(folder / "model_index.json", lambda index: index.update(_class_name=["pipeline_x", "DDPMPointsPipeline"]))
    with pytest.raises(ValueError) as error:
        HfgenPipeline.from_pretrained(folder)
    assert str(error.value).endswith(
        "names DDPMPointsPipeline, which takes the components ['model', 'scheduler'], but the folder holds "
        "['scheduler', 'velocity'] (the components of FlowMatchingPipeline)"
    )


def test_a_component_passed_in_is_not_read_from_the_folder(tmp_path):
    folder = tmp_path / "ddpm"
    tiny_ddpm_pipeline().save_pretrained(folder)
    (folder / "model" / "diffusion_pytorch_model.safetensors").write_bytes(b"broken")
    model = TimeMLP(dim=2, hidden_size=8, num_layers=1, time_scale=1.0)
    pipe = DDPMPointsPipeline.from_pretrained(folder, model=model)
    assert pipe.model is model
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        DDPMPointsPipeline.from_pretrained(folder)


# ------------------------------------------------------------------------------ loading while another process saves


def test_model_index_is_replaced_never_rewritten_in_place(folder):
    """A reader that opened the index before a save still reads it whole: the save put a new file in its place
    (os.replace) instead of truncating and rewriting the one being read."""
    index = folder / "model_index.json"
    text = index.read_text()
    with open(index, encoding="utf-8") as reader:
        tiny_flow_matching_pipeline(seed=1).save_pretrained(folder)
        assert os.fstat(reader.fileno()).st_ino != index.stat().st_ino
        assert reader.read() == text
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary or marker left


def test_a_folder_being_saved_is_refused_saying_so(folder):
    (folder / loading.SAVING_FILE).write_text("123\n")
    with pytest.raises(ValueError, match=r"is being written by save_pretrained in another process"):
        HfgenPipeline.from_pretrained(folder)


def test_a_save_during_the_load_is_refused_saying_so(folder, monkeypatch):
    """Another save lands after the index was read, before diffusers reads the components: the load is refused
    (its files may come from two saves)."""
    map_index = base.hfgen_index
    saves = []

    def save_meanwhile(index):
        if not saves:
            saves.append(tiny_flow_matching_pipeline(seed=1).save_pretrained(folder))
        return map_index(index)

    monkeypatch.setattr(base, "hfgen_index", save_meanwhile)
    with pytest.raises(ValueError, match="was saved into by another process while it was being loaded"):
        HfgenPipeline.from_pretrained(folder)


RACE = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from factories import tiny_flow_matching_pipeline
pipes = [tiny_flow_matching_pipeline(seed=s) for s in (0, 1)]
print("ready", flush=True)
deadline = time.monotonic() + {seconds}
i = 0
while time.monotonic() < deadline:
    pipes[i % 2].save_pretrained({folder!r})
    i += 1
"""


@pytest.mark.slow
def test_loads_during_repeated_saves_return_one_saved_model_or_say_the_folder_is_being_written(folder):
    """A real race: another process saves two models alternately into the folder while this one loads it. Each load
    returns one of the two models whole, or refuses saying the folder is being written; none says corrupt."""
    models = [tiny_flow_matching_pipeline(seed=s).velocity.state_dict() for s in (0, 1)]
    code = textwrap.dedent(RACE).format(tests=str(Path(__file__).parent), seconds=4.0, folder=str(folder))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    saver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert saver.stdout.readline().strip() == "ready"
    outcomes = {"whole": 0, "refused": 0}
    try:
        while saver.poll() is None:
            try:
                loaded = HfgenPipeline.from_pretrained(folder).velocity.state_dict()
            except ValueError as error:
                assert "being written" in str(error) or "saved into by another process" in str(error), str(error)
                outcomes["refused"] += 1
                time.sleep(0.002)  # leave the saver the processor
                continue
            assert any(all(torch.equal(loaded[k], model[k]) for k in model) for model in models), "mixed weights"
            outcomes["whole"] += 1
    finally:
        saver.wait(timeout=60)
    assert saver.returncode == 0 and outcomes["refused"] > 0 and sum(outcomes.values()) > 20, outcomes


def test_only_pipelines_that_check_what_they_save_override_save_pretrained():
    # the others save through HfgenPipeline.save_pretrained itself (weights, checksums, the remote-code layout)
    pipelines = [getattr(hfgen.pipelines, name) for name in hfgen.pipelines.__all__]
    overriding = {cls.__name__ for cls in pipelines if isinstance(cls, type) and "save_pretrained" in vars(cls)}
    assert overriding == {"HfgenPipeline", "FlowMatchingPipeline", "SchrodingerBridgePipeline"}
