"""Folders saved before the restructure still load and draw the same samples.

``tests/fixtures/legacy_pipelines/`` holds tiny pipelines written by ``save_pretrained`` of the pre-restructure
code (the tests' tiny factories) and ``expected_samples.safetensors``, the draws those pipelines made at save
time with a generator seeded 0. Their ``model_index.json`` files name the component modules of that time; the
bridge's names ``hfgen.schedulers.bridge``, now an alias of ``hfgen.schedulers.schrodinger_bridge``.
``flow_matching_heun`` and ``flow_matching_midpoint`` were saved when one ``FlowMatchEulerScheduler`` held every
solver (``{"solver": "heun"}`` in its config); they load with the scheduler of that solver.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conformance import seeded
from factories import tiny_bridge_pipeline
from safetensors.torch import load_file

from hfgen import (
    AutoEncoderPipeline,
    BridgeScheduler,
    DDPMPointsPipeline,
    FlowMatchingPipeline,
    HfgenPipeline,
    SchrodingerBridgePipeline,
    VAEPipeline,
)
from hfgen.schedulers.flow_match_heun import FlowMatchHeunScheduler
from hfgen.schedulers.flow_match_midpoint import FlowMatchMidpointScheduler

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_pipelines"
#: The stored draws were made on another machine: float32 kernels (matrix products, transcendental functions) may
#: round differently on another CPU or instruction set, by a few units in the last place per network evaluation.
#: The draws here pass through at most 6 evaluations of values of order 1, so 1e-5 relative + 1e-6 absolute is
#: far above that rounding and far below any change of model, solver or time grid (differences of order 1e-2).
STORED_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


# Known bug, to be fixed in hfgen (not in this test): the alias module hfgen.schedulers.bridge is not imported by
# `import hfgen`, and it exposes only BridgeScheduler, while diffusers needs the module imported and looks the base
# class up in it (`hfgen.schedulers.bridge.SchedulerMixin`). Strict: remove the marker once old folders load.


# name -> (pipeline class, the draw made at save time: see the fixture's README in this module's docstring)
LEGACY = {
    "flow_matching": (
        FlowMatchingPipeline,
        lambda p: p(num_samples=5, num_inference_steps=3, generator=seeded()).samples,
    ),
    "flow_matching_heun": (
        FlowMatchingPipeline,
        lambda p: p(num_samples=5, num_inference_steps=3, generator=seeded()).samples,
    ),
    "flow_matching_midpoint": (
        FlowMatchingPipeline,
        lambda p: p(num_samples=5, num_inference_steps=3, generator=seeded()).samples,
    ),
    "ddpm": (DDPMPointsPipeline, lambda p: p(num_samples=5, generator=seeded()).samples),
    "bridge": (SchrodingerBridgePipeline, lambda p: p(num_samples=5, generator=seeded()).samples),
    "vae": (VAEPipeline, lambda p: p(num_samples=3, generator=seeded()).images),
    "autoencoder": (AutoEncoderPipeline, lambda p: p.decode(torch.tensor([[0.5, -0.25]]))),
}


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / "expected_samples.safetensors")


def test_the_fixture_is_complete_and_tiny(expected):
    assert sorted(expected) == sorted(LEGACY)
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(LEGACY)
    assert sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file()) < 200_000
    assert not list(FIXTURES.rglob("*.bin")) and not list(FIXTURES.rglob("*.pt"))


@pytest.mark.parametrize("loader", ["HfgenPipeline", "own class"])
@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_folder_loads_and_draws_the_saved_samples(name, loader, expected):
    pipeline_class, draw = LEGACY[name]
    folder = FIXTURES / name
    pipeline = (HfgenPipeline if loader == "HfgenPipeline" else pipeline_class).from_pretrained(folder)
    assert type(pipeline) is pipeline_class
    pipeline.set_progress_bar_config(disable=True)
    samples = draw(pipeline).float()
    assert samples.shape == expected[name].shape
    torch.testing.assert_close(samples, expected[name], **STORED_TOLERANCE)


def test_legacy_bridge_names_the_old_scheduler_module_and_gets_the_current_class():
    index = json.loads((FIXTURES / "bridge" / "model_index.json").read_text())
    assert index["scheduler"] == ["hfgen.schedulers.bridge", "BridgeScheduler"]
    pipeline = SchrodingerBridgePipeline.from_pretrained(FIXTURES / "bridge")
    assert type(pipeline.scheduler) is BridgeScheduler
    assert BridgeScheduler.__module__ == "hfgen.schedulers.schrodinger_bridge"


def test_a_freshly_saved_bridge_records_the_new_scheduler_module(tmp_path):
    tiny_bridge_pipeline().save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["scheduler"] == ["scheduling_schrodinger_bridge", "BridgeScheduler"]  # diffusers' remote-code layout
    assert (tmp_path / "scheduler" / "scheduling_schrodinger_bridge.py").is_file()
    loaded = HfgenPipeline.from_pretrained(tmp_path)
    assert type(loaded) is SchrodingerBridgePipeline and type(loaded.scheduler) is BridgeScheduler


@pytest.mark.parametrize(
    ("name", "solver", "scheduler_class"),
    [
        ("flow_matching_heun", "heun", FlowMatchHeunScheduler),
        ("flow_matching_midpoint", "midpoint", FlowMatchMidpointScheduler),
    ],
)
def test_a_multi_solver_scheduler_folder_loads_with_its_solver_scheduler_and_the_same_draws(
    name, solver, scheduler_class, expected, tmp_path
):
    config = json.loads((FIXTURES / name / "scheduler" / "scheduler_config.json").read_text())
    assert config["_class_name"] == "FlowMatchEulerScheduler" and config["solver"] == solver
    pipeline = FlowMatchingPipeline.from_pretrained(FIXTURES / name)
    pipeline.set_progress_bar_config(disable=True)
    assert type(pipeline.scheduler) is scheduler_class
    draw = LEGACY[name][1](pipeline)
    torch.testing.assert_close(draw, expected[name], **STORED_TOLERANCE)
    pipeline.save_pretrained(tmp_path)  # saved again: the new class, and no solver entry
    saved = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == scheduler_class.__name__ and "solver" not in saved
    reloaded = FlowMatchingPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert type(reloaded.scheduler) is scheduler_class
    assert torch.equal(LEGACY[name][1](reloaded), draw)  # computed in this run: the same bits
