"""Sharing: exactly what push_to_hub would upload (intercepted at HfApi), remote-code files included (that a saved
folder loads with diffusers alone is tested in test_remote_code.py)."""

import importlib.util
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
from hfgen.model_cards.classifier import classifier_card
from hfgen.model_cards.ddpm_points import ddpm_points_card
from hfgen.model_cards.density import density_card
from hfgen.model_cards.energy import energy_card
from hfgen.model_cards.flow_matching import flow_matching_card
from hfgen.model_cards.image_diffusion import image_ddpm_card, image_flow_matching_card
from hfgen.model_cards.rbm import rbm_card
from hfgen.model_cards.schrodinger_bridge import schrodinger_bridge_card
from hfgen.model_cards.score_sde import score_sde_card
from hfgen.model_cards.vae import vae_card
from hfgen.training import (
    ClassifierArguments,
    DDPMImageArguments,
    DDPMPointsArguments,
    DensityArguments,
    EnergyArguments,
    FlowMatchingArguments,
    FlowMatchingImageArguments,
    RBMArguments,
    SchrodingerBridgeArguments,
    ScoreSDEArguments,
    VAEArguments,
)

#: the code files of a saved flow-matching pipeline: diffusers' remote-code layout
FLOW_MATCHING_CODE = {
    "pipeline_flow_matching.py",
    "velocity/modeling_mlp.py",
    "scheduler/scheduling_flow_match_euler.py",
}


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
                 "notes/plot.png", "velocity/helpers.py", "setup.py"):  # fmt: skip
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
        *FLOW_MATCHING_CODE,
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
        *FLOW_MATCHING_CODE,
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


IMAGES = {"dataset_name": "ylecun/mnist"}
CLASSIFIER_METRICS = ("test_accuracy", "train_accuracy", "num_test_images", "num_train_images")
#: every family's card: (its function, its arguments class, the arguments it needs besides output_dir)
CARDS = {
    "flow matching": (flow_matching_card, FlowMatchingArguments, {}),
    "bridge": (schrodinger_bridge_card, SchrodingerBridgeArguments, {}),
    "classifier": (
        lambda args, _: classifier_card(args, dict.fromkeys(CLASSIFIER_METRICS, 1)),
        ClassifierArguments,
        IMAGES,
    ),
    "density": (density_card, DensityArguments, {}),
    "score": (score_sde_card, ScoreSDEArguments, {}),
    "energy": (energy_card, EnergyArguments, {}),
    "ddpm points": (ddpm_points_card, DDPMPointsArguments, {}),
    "image flow matching": (image_flow_matching_card, FlowMatchingImageArguments, IMAGES),
    "image ddpm": (image_ddpm_card, DDPMImageArguments, IMAGES),
    "vae": (vae_card, VAEArguments, IMAGES),
    "rbm": (rbm_card, RBMArguments, IMAGES),
}


@pytest.mark.parametrize("family", sorted(CARDS))
def test_a_card_made_without_a_repo_id_loads_the_folder_by_its_name_only(tmp_path, family):
    card, arguments, extra = CARDS[family]
    output_dir = tmp_path / "private-place" / "my-run"
    text = str(card(arguments(output_dir=str(output_dir), **extra), {}))
    assert str(tmp_path) not in text and "private-place" not in text
    assert 'from_pretrained("my-run")' in text


@pytest.mark.parametrize("name", ["README.md", "metrics.json", "velocity/config.json"])
def test_pushing_a_folder_whose_files_hold_its_local_path_is_refused(tmp_path, name):
    folder = tmp_path / "runs" / "fm"
    fake_training_run(folder)
    with open(folder / name, "a", encoding="utf-8") as file:
        file.write(f'\npipe = FlowMatchingPipeline.from_pretrained("{folder.resolve()}")\n')
    api = create_autospec(HfApi, instance=True)
    with pytest.raises(ValueError, match=rf"\['{name}'\] in .* contain the folder's local path"):
        push_folder_to_hub(folder, "someone/fm-run", api=api)
    api.create_repo.assert_not_called()
    api.upload_folder.assert_not_called()


def test_the_remote_flow_matching_pipeline_honours_output_type(tmp_path, monkeypatch):
    hfgen_pipe = tiny_flow_matching_pipeline()
    hfgen_pipe.save_pretrained(tmp_path)
    spec = importlib.util.spec_from_file_location("pipeline_flow_matching", tmp_path / "pipeline_flow_matching.py")
    remote = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, remote)
    spec.loader.exec_module(remote)  # the file diffusers runs
    pipe = remote.FlowMatchingPipeline(velocity=hfgen_pipe.velocity, scheduler=hfgen_pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    pt = pipe(num_samples=4, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).samples
    np_ = pipe(num_samples=4, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    assert isinstance(pt, torch.Tensor) and isinstance(np_.samples, np.ndarray)
    np.testing.assert_array_equal(np_.samples, pt.numpy())
    with pytest.raises(ValueError, match="output_type"):
        pipe(num_samples=4, num_inference_steps=3, output_type="pil")


def test_an_upload_sends_a_sharded_component_whole_and_the_cards_animation(tmp_path):
    pipeline = tiny_flow_matching_pipeline()
    pipeline.save_pretrained(tmp_path, max_shard_size=200)
    shards = sorted(p.name for p in (tmp_path / "velocity").glob("*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "velocity" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    (tmp_path / "velocity" / "stray.safetensors").write_bytes(b"x")  # not listed by the index: not sent
    for name in ("README.md", "trajectory.gif"):
        (tmp_path / name).write_text("x")
    api = create_autospec(HfApi, instance=True)
    push_folder_to_hub(tmp_path, "someone/sharded", api=api)
    sent = uploaded_files(tmp_path, api.upload_folder.call_args.kwargs)
    assert {f"velocity/{name}" for name in shards} <= sent
    assert "velocity/diffusion_pytorch_model.safetensors.index.json" in sent and "trajectory.gif" in sent
    assert "velocity/stray.safetensors" not in sent


def test_a_trained_classifier_folder_is_pushed_with_its_weights_card_and_figures(tmp_path):
    from hfgen import MnistClassifier, MnistClassifierConfig

    MnistClassifier(MnistClassifierConfig(conv_channels=[4, 8], hidden_size=16)).save_pretrained(tmp_path)
    for name in ("README.md", "metrics.json", "confusion.png", "args.json", "credentials.json"):
        (tmp_path / name).write_text("{}")
    api = create_autospec(HfApi, instance=True)
    push_folder_to_hub(tmp_path, "someone/mnist-classifier", api=api)
    sent = uploaded_files(tmp_path, api.upload_folder.call_args.kwargs)
    assert sent == {"config.json", "model.safetensors", "README.md", "metrics.json", "confusion.png"}
