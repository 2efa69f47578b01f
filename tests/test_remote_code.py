"""Every saved pipeline loads with diffusers alone: ``DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True)`` in a process where importing hfgen (and, while sampling, torchdiffeq) raises, sampling the
same numbers and log-densities as hfgen; each pipeline file is the pipeline module hfgen runs, made self-contained;
folders saved with the former hand-written pipeline files draw the same with their files, with hfgen and once saved
again; hfgen loads a folder without running any of its ``.py`` files; the self-containedness guard and the bundler's
checks (stand-ins included)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conformance import PipelineConformance, conformance_classes
from diffusers import DDIMScheduler, ModelMixin, SchedulerMixin, UNet2DModel
from factories import (
    gaussian_mixture,
    oracle_pipeline,
    publish_to_local_hub_cache,
    tiny_autoencoder_pipeline,
    tiny_bridge_pipeline,
    tiny_ddpm_pipeline,
    tiny_epsilon_network,
    tiny_flow_matching_pipeline,
    tiny_rbm_pipeline,
    tiny_score_sde_pipeline,
    tiny_unet,
    tiny_vae_pipeline,
)
from safetensors.torch import load_file

import hfgen.models
import hfgen.pipelines
import hfgen.schedulers
from hfgen import (
    ConstantAlphaDDPMScheduler,
    DDPMPointsPipeline,
    DensityPipeline,
    FlowMatchHeunScheduler,
    FlowMatchingPipeline,
    HfgenPipeline,
)
from hfgen.data import Checkerboard, Shifted, TwoBalls
from hfgen.hub import upload_files
from hfgen.models.coupling_flow import CouplingFlow
from hfgen.models.kde import KernelDensity
from hfgen.models.made import MADE
from hfgen.pipelines.image_ddpm import DDPMImagePipeline
from hfgen.pipelines.image_flow_matching import FlowMatchingImagePipeline
from hfgen.pipelines.sampling import SamplingPipeline
from hfgen.remote_code import (
    component_module_name,
    export_remote_code,
    hfgen_component_class,
    pipeline_module_name,
    pipeline_source,
    pipeline_stand_in,
)
from hfgen.remote_code.bundling import bundle_module, check_self_contained

IMAGES_SEED = 11


def _images() -> torch.Tensor:
    """The images the autoencoder reconstructs, drawn the same way in both processes."""
    return torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(IMAGES_SEED))


def _density(model: torch.nn.Module) -> DensityPipeline:
    pipeline = DensityPipeline(model)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _seeded_density(build: Callable[[], torch.nn.Module]) -> Callable[[], DensityPipeline]:
    def make() -> DensityPipeline:
        torch.manual_seed(0)
        return _density(build())

    return make


def _ddim_pipeline() -> DDPMPointsPipeline:
    scheduler = DDIMScheduler(num_train_timesteps=10, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    pipeline = DDPMPointsPipeline(tiny_epsilon_network(), scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _unet(conditional: bool) -> UNet2DModel:
    return tiny_unet(3 if conditional else None)


def _image_pipeline(pipeline: HfgenPipeline) -> HfgenPipeline:
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


MIXTURE = ([[0.0, 1.0], [2.0, -1.0]], [[[1.0, 0.2], [0.2, 0.5]], [[0.3, 0.0], [0.0, 0.8]]], [0.3, 0.7])

# family -> (tiny pipeline, call arguments without the generator, the outputs compared)
FAMILIES: dict[str, tuple[Callable[[], HfgenPipeline], dict[str, Any], tuple[str, ...]]] = {
    "flow_matching": (lambda: tiny_flow_matching_pipeline("euler"), {"num_inference_steps": 4}, ("samples",)),
    "flow_matching_checkerboard": (
        lambda: tiny_flow_matching_pipeline("heun", source=Checkerboard()),
        {"num_inference_steps": 3},
        ("samples",),
    ),
    "ddpm": (tiny_ddpm_pipeline, {"num_inference_steps": 6}, ("samples",)),
    "ddpm_oracle": (lambda: oracle_pipeline(num_train_timesteps=10, sampler="ddim"), {}, ("samples",)),
    "ddpm_diffusers_ddim": (_ddim_pipeline, {"num_inference_steps": 5}, ("samples",)),
    "bridge": (
        lambda: tiny_bridge_pipeline(source=TwoBalls(), target=Shifted(TwoBalls(), [0.0, 3.0])),
        {"direction": "backward"},
        ("samples",),
    ),
    "vae": (tiny_vae_pipeline, {"num_samples": 3}, ("images", "latents")),
    "vae_conv_gaussian": (
        lambda: tiny_vae_pipeline(architecture="conv", likelihood="gaussian"),
        {"num_samples": 2, "output_type": "np"},
        ("images", "latents"),
    ),
    "autoencoder": (tiny_autoencoder_pipeline, {"images": "IMAGES"}, ("images", "latents")),
    "gaussian_mixture": (lambda: _density(gaussian_mixture(*MIXTURE).float()), {}, ("samples",)),
    "kernel_density": (
        lambda: _density(KernelDensity.from_data(torch.randn(20, 2, generator=torch.Generator().manual_seed(1)))),
        {},
        ("samples",),
    ),
    "made": (
        _seeded_density(lambda: MADE(dim=2, hidden_sizes=[16], conditional="gaussian_mixture", num_components=3)),
        {},
        ("samples",),
    ),
    "coupling_flow": (
        _seeded_density(lambda: CouplingFlow(dim=2, num_couplings=2, hidden_size=16, invertible_linear=True)),
        {},
        ("samples",),
    ),
    "coupling_flow_recipe_layers": (  # the recipe's parts: splines, LU linear maps, octave encoding, ReLU
        _seeded_density(
            lambda: CouplingFlow(
                dim=2,
                num_couplings=2,
                hidden_size=16,
                coupling_type="spline",
                invertible_linear=True,
                linear_parametrization="lu",
                unconditional_splines=True,
                num_position_frequencies=2,
                activation="relu",
            )
        ),
        {},
        ("samples",),
    ),
    "image_flow_matching_guided": (
        lambda: _image_pipeline(FlowMatchingImagePipeline(_unet(True), FlowMatchHeunScheduler())),
        {"num_samples": 4, "num_inference_steps": 2, "class_labels": [0, 2, 1, 2], "guidance_scale": 2.0},
        ("images", "class_labels"),
    ),
    "image_ddpm": (
        lambda: _image_pipeline(
            DDPMImagePipeline(_unet(False), ConstantAlphaDDPMScheduler.from_final_alpha_bar(5, 0.01))
        ),
        {"num_samples": 2, "output_type": "np"},
        ("images",),
    ),
    "rbm": (tiny_rbm_pipeline, {"num_inference_steps": 3}, ("images", "states")),
    "score_sde_vp": (tiny_score_sde_pipeline, {"num_inference_steps": 5}, ("samples",)),
    "score_sde_ve_pc": (
        lambda: tiny_score_sde_pipeline("ve"),
        {"num_inference_steps": 4, "sampler": "predictor_corrector"},
        ("samples",),
    ),
}


def families() -> dict[str, tuple[Callable[[], HfgenPipeline], dict[str, Any], tuple[str, ...]]]:
    """:data:`FAMILIES`, and for a pipeline class that none of them builds, the tiny pipeline, call and output of its
    conformance class (tests/conformance.py, in its family's test file), also with each of the class's
    ``other_schedulers`` (``<class>[<scheduler>]``): a new family is loaded with diffusers alone without an entry
    here."""
    entries = dict(FAMILIES)
    built = {type(build()).__name__ for build, _, _ in FAMILIES.values()}
    for cls in conformance_classes(PipelineConformance):
        call = (dict(cls.call_kwargs), (cls.output_name,))
        if pipeline_module_name(cls.pipeline_class) and cls.pipeline_class.__name__ not in built:
            built.add(cls.pipeline_class.__name__)
            entries[cls.__name__] = (cls().get_pipeline, *call)
        for make in cls.other_schedulers:
            name = f"{cls.__name__}[{type(make()).__name__}]"
            entries[name] = (lambda cls=cls, make=make: _with_scheduler(cls().get_pipeline(), make()), *call)
    return entries


def _with_scheduler(pipeline: HfgenPipeline, scheduler: SchedulerMixin) -> HfgenPipeline:
    """``pipeline``'s components with ``scheduler`` in place of its own."""
    pipeline = type(pipeline)(**{**pipeline.components, "scheduler": scheduler})
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


NUM_SAMPLES = 5
SEED = 3

#: Folders saved by hfgen when each pipeline file was written by hand (the first remote-code layout), one per pipeline
#: class, with tiny pipelines (the image networks tinier still), ``expected_samples.safetensors``, the draws made at
#: save time (``<name>.<output>``; seed SEED, NUM_SAMPLES points) and ``calls.json``, each folder's call (``kwargs``
#: without the generator) and the outputs compared. Archived as saved (``remote_code_v1/<name>/…``), so that their
#: copies of hfgen's code are not read as its source.
FIXTURE_ARCHIVE = Path(__file__).parent / "fixtures" / "remote_code_v1.tar.gz"


def _hand_written_calls() -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    """Each archived folder's ``(call arguments, outputs compared)``, from the archive's ``calls.json``."""
    with tarfile.open(FIXTURE_ARCHIVE) as archive:
        calls = json.load(archive.extractfile("remote_code_v1/calls.json"))
    return {name: (call["kwargs"], tuple(call["outputs"])) for name, call in sorted(calls.items())}


HAND_WRITTEN = _hand_written_calls()
#: the stored draws were made on another machine: float32 kernels may round differently by a few units in the last
#: place per network evaluation (tests/test_legacy_pipelines.py); any change of model or sampler is far above this
STORED_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}

# family -> (the shape of the points or images, the log_prob arguments; "generator": a seed): the log-densities
# compared, through torchdiffeq's ODE solvers where the pipeline integrates one (imported by the method that needs it)
LOG_PROBS: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {
    "flow_matching": ((4, 2), {}),
    "ddpm": ((4, 2), {}),
    "score_sde_vp": ((4, 2), {"divergence": "hutchinson", "generator": 5}),
    "image_flow_matching_guided": (
        (2, 1, 8, 8),
        {"class_labels": [0, 2], "generator": 5, "ode_solver": "midpoint", "num_inference_steps": 3},
    ),
    "vae": ((2, 1, 8, 8), {"method": "iwae", "num_importance_samples": 7, "generator": 5}),
    "made": ((4, 2), {}),
    "coupling_flow_recipe_layers": ((4, 2), {}),
}


def _log_prob_call(shape: tuple[int, ...], kwargs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The inputs of a log_prob call (images in [0, 1], else standard normal points) and its arguments."""
    draw = torch.rand if len(shape) == 4 else torch.randn
    if "generator" in kwargs:
        kwargs = {**kwargs, "generator": torch.Generator().manual_seed(kwargs["generator"])}
    return draw(shape, generator=torch.Generator().manual_seed(SEED)), kwargs


# Runs in a process where `import hfgen` (and the top-level `pipelines` folder) raises: loads every folder with
# diffusers alone, samples as the spec says (torchdiffeq blocked too: sampling never needs it) and saves the outputs
# as safetensors; then evaluates the log-densities of the specs that ask for one.
DIFFUSERS_ONLY = textwrap.dedent(
    """
    import importlib.abc, importlib.util, json, sys

    BLOCKED = {"hfgen", "pipelines", "torchdiffeq"}

    class NoHfgen(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this process")

    sys.meta_path.insert(0, NoHfgen())
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from safetensors.torch import save_file

    try:
        import hfgen
    except ImportError:
        pass
    else:
        raise SystemExit("hfgen must not be importable here")
    specs = json.loads(open(sys.argv[1]).read())
    try:
        DiffusionPipeline.from_pretrained(specs[0]["folder"])
    except ValueError as error:
        print("REFUSED:", " ".join(str(error).split()))
    for path in json.loads(open(sys.argv[2]).read()):  # every hfgen component module, bundled
        module_spec = importlib.util.spec_from_file_location(path.rsplit("/", 1)[1][:-3], path)
        module = sys.modules[module_spec.name] = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    report, pipes = {}, {}
    for spec in specs:
        pipe = pipes[spec["name"]] = DiffusionPipeline.from_pretrained(spec["folder"], trust_remote_code=True)
        pipe.set_progress_bar_config(disable=True)
        kwargs = dict(spec["kwargs"])
        if kwargs.get("images") == "IMAGES":
            kwargs["images"] = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(spec["images_seed"]))
        else:
            kwargs["generator"] = torch.Generator().manual_seed(spec["seed"])
        output = pipe(**kwargs)
        tensors = {}
        for name in spec["outputs"]:
            value = getattr(output, name)
            tensors[name] = torch.as_tensor(np.asarray(value)) if isinstance(value, np.ndarray) else value
        save_file({k: v.contiguous() for k, v in tensors.items()}, spec["out"])
        report[spec["name"]] = [type(pipe).__module__, type(pipe).__name__]
        report[spec["name"]] += [type(c).__module__ for c in pipe.components.values()]
    print("REPORT:", json.dumps(report))
    assert "torchdiffeq" not in sys.modules
    BLOCKED.discard("torchdiffeq")
    for spec in specs:
        if "log_prob" not in spec:
            continue
        shape, kwargs = spec["log_prob"]
        draw = torch.rand if len(shape) == 4 else torch.randn
        if "generator" in kwargs:
            kwargs = {**kwargs, "generator": torch.Generator().manual_seed(kwargs["generator"])}
        x = draw(shape, generator=torch.Generator().manual_seed(spec["seed"]))
        result = pipes[spec["name"]].log_prob(x, **kwargs)
        save_file({"log_prob": getattr(result, "log_prob", result).contiguous()}, spec["out"] + ".log_prob")
    """
)


def _component_modules() -> list[str]:
    """Every module of ``hfgen.models`` and ``hfgen.schedulers`` that defines a diffusers model or scheduler."""
    found = []
    for package in (hfgen.models, hfgen.schedulers):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            classes = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__]
            if any(issubclass(c, ModelMixin | SchedulerMixin) for c in classes):
                found.append(module.__name__)
    return found


def _run_diffusers_only(specs: list[dict[str, Any]], workdir: Path) -> subprocess.CompletedProcess:
    spec_file, bundles = workdir / "specs.json", workdir / "bundles"
    spec_file.write_text(json.dumps(specs))
    bundles.mkdir()
    for name in _component_modules():
        (bundles / f"{name.replace('.', '_')}.py").write_text(bundle_module(name, f"{name}."))
    (workdir / "bundles.json").write_text(json.dumps([str(p) for p in sorted(bundles.glob("*.py"))]))
    env = {**os.environ, "HF_MODULES_CACHE": str(workdir / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", DIFFUSERS_ONLY, str(spec_file), str(workdir / "bundles.json")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=workdir,
    )


def _hfgen_outputs(pipeline: HfgenPipeline, kwargs: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    if kwargs.get("images") == "IMAGES":
        kwargs["images"] = _images()
    else:
        kwargs = {"num_samples": NUM_SAMPLES, **kwargs, "generator": torch.Generator().manual_seed(SEED)}
    output = pipeline(**kwargs)
    return {name: getattr(output, name) for name in names}


@pytest.fixture(scope="module")
def hand_written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folders of :data:`FIXTURE_ARCHIVE`, unpacked."""
    folder = tmp_path_factory.mktemp("fixture")
    with tarfile.open(FIXTURE_ARCHIVE) as archive:
        archive.extractall(folder, filter="data")
    return folder / "remote_code_v1"


def _spec(name: str, folder: Path, kwargs: dict[str, Any], outputs: tuple[str, ...], workdir: Path) -> dict[str, Any]:
    """What the diffusers-only process loads (``folder``), calls and saves (``outputs`` to ``<workdir>/<name>.st``)."""
    call = kwargs if kwargs.get("images") == "IMAGES" else {"num_samples": NUM_SAMPLES, **kwargs}
    return {"name": name, "folder": str(folder), "kwargs": call, "outputs": outputs, "seed": SEED,
            "images_seed": IMAGES_SEED, "out": str(workdir / f"{name}.st")}  # fmt: skip


def _assert_outputs_equal(got: dict[str, torch.Tensor], want: dict[str, Any], name: str) -> None:
    for output, value in want.items():
        value = torch.as_tensor(value) if isinstance(value, np.ndarray) else value
        assert got[output].shape == value.shape, (name, output)
        torch.testing.assert_close(got[output], value.detach().cpu(), rtol=0, atol=1e-6, msg=f"{name}.{output}")


@pytest.mark.slow
def test_every_family_loads_with_diffusers_alone_and_samples_like_hfgen(tmp_path, hand_written):
    specs, expected = [], {}
    for name, (build, kwargs, outputs) in families().items():
        pipeline = build()
        pipeline.save_pretrained(tmp_path / name)
        index = json.loads((tmp_path / name / "model_index.json").read_text())
        module = pipeline_module_name(type(pipeline))
        assert index["_class_name"] == [module, type(pipeline).__name__]
        assert (tmp_path / name / f"{module}.py").read_text() == pipeline_source(type(pipeline))  # made from hfgen's
        for component, entry in index.items():
            if isinstance(entry, list) and entry[0] not in ("diffusers", None) and not component.startswith("_"):
                assert entry[0].startswith(("modeling_", "scheduling_")), (name, component, entry)
                check_self_contained((tmp_path / name / component / f"{entry[0]}.py").read_text(), entry[0])
        expected[name] = _hfgen_outputs(pipeline, kwargs, outputs)
        specs.append(_spec(name, tmp_path / name, kwargs, outputs, tmp_path))
        if name in LOG_PROBS:
            specs[-1]["log_prob"] = LOG_PROBS[name]
            x, log_prob_kwargs = _log_prob_call(*LOG_PROBS[name])
            result = pipeline.log_prob(x, **log_prob_kwargs)
            expected[f"{name}.log_prob"] = {"log_prob": getattr(result, "log_prob", result)}
    # folders saved with the hand-written pipeline files of the first remote-code layout: their own files, and the
    # files written when hfgen saves them again, draw what hfgen draws from them
    for name, (kwargs, outputs) in HAND_WRITTEN.items():
        pipeline = HfgenPipeline.from_pretrained(hand_written / name)
        pipeline.set_progress_bar_config(disable=True)
        pipeline.save_pretrained(tmp_path / "resaved" / name)
        expected[f"v1_{name}"] = expected[f"resaved_{name}"] = _hfgen_outputs(pipeline, kwargs, outputs)
        specs.append(_spec(f"v1_{name}", hand_written / name, kwargs, outputs, tmp_path))
        specs.append(_spec(f"resaved_{name}", tmp_path / "resaved" / name, kwargs, outputs, tmp_path))
    # the Hub: a repo holding what an upload sends (hfgen.hub.upload_files), served from the local cache
    staged = tmp_path / "uploaded"
    for name in upload_files(tmp_path / "flow_matching_checkerboard"):
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "flow_matching_checkerboard" / name, staged / name)
    publish_to_local_hub_cache(staged, "someone/remote-fm-checkerboard")
    hub = {
        **next(s for s in specs if s["name"] == "flow_matching_checkerboard"),
        "name": "hub",
        "folder": "someone/remote-fm-checkerboard",
        "out": str(tmp_path / "hub.st"),
    }
    result = _run_diffusers_only([*specs, hub], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in result.stdout.splitlines() if ":" in line}
    assert "trust_remote_code=True" in lines["REFUSED"]
    report = json.loads(lines["REPORT"])
    assert report["hub"] == report["flow_matching_checkerboard"]
    torch.testing.assert_close(load_file(tmp_path / "hub.st"), load_file(tmp_path / "flow_matching_checkerboard.st"))
    for spec in specs:
        name = spec["name"]
        modules = report[name]
        class_name = json.loads((Path(spec["folder"]) / "model_index.json").read_text())["_class_name"][1]
        assert modules[0].startswith("diffusers_modules.local.") and modules[1] == class_name, (name, modules)
        assert all(m.startswith(("diffusers_modules.local.", "diffusers.")) for m in modules[2:]), (name, modules)
        _assert_outputs_equal(load_file(tmp_path / f"{name}.st"), expected[name], name)
    for name in LOG_PROBS:
        _assert_outputs_equal(load_file(tmp_path / f"{name}.st.log_prob"), expected[f"{name}.log_prob"], name)


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_a_folder_saved_with_hand_written_pipeline_files_loads_with_hfgen_without_running_them(
    name, tmp_path, hand_written
):
    shutil.copytree(hand_written / name, tmp_path / name)
    for path in (tmp_path / name).rglob("*.py"):  # a file hfgen ran would raise
        path.write_text("raise RuntimeError('hfgen ran code from the folder')\n")
    index = json.loads((hand_written / name / "model_index.json").read_text())
    assert (hand_written / name / f"{index['_class_name'][0]}.py").is_file()  # the hand-written pipeline file
    kwargs, outputs = HAND_WRITTEN[name]
    stored = load_file(hand_written / "expected_samples.safetensors")
    for loader in (HfgenPipeline, getattr(hfgen, index["_class_name"][1])):
        pipeline = loader.from_pretrained(tmp_path / name)
        pipeline.set_progress_bar_config(disable=True)
        assert type(pipeline).__name__ == index["_class_name"][1] and type(pipeline).__module__.startswith("hfgen.")
        for output, value in _hfgen_outputs(pipeline, kwargs, outputs).items():
            value = torch.as_tensor(value) if isinstance(value, np.ndarray) else value
            torch.testing.assert_close(value.cpu(), stored[f"{name}.{output}"], **STORED_TOLERANCE)


def test_hfgen_loads_the_remote_layout_without_running_its_files(tmp_path):
    pipeline = tiny_flow_matching_pipeline("midpoint", source=Checkerboard())
    pipeline.save_pretrained(tmp_path)
    code = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py"))
    scheduler_code = f"scheduler/{component_module_name(pipeline.scheduler)}.py"  # the solver's scheduler module
    assert code == ["pipeline_flow_matching.py", scheduler_code, "velocity/modeling_mlp.py"]
    assert scheduler_code.startswith("scheduler/scheduling_flow_match_")
    for path in tmp_path.rglob("*.py"):  # a file hfgen ran would raise
        path.write_text("raise RuntimeError('hfgen ran code from the folder')\n")
    expected = pipeline(num_samples=4, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).samples
    for loader in (FlowMatchingPipeline, HfgenPipeline):
        loaded = loader.from_pretrained(tmp_path)
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded) is FlowMatchingPipeline and type(loaded.velocity).__module__ == "hfgen.models.mlp"
        samples = loaded(num_samples=4, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).samples
        torch.testing.assert_close(samples, expected, rtol=0, atol=0)
        assert loaded.config.source == {"name": "checkerboard"}


def test_a_reloaded_pipeline_saves_the_same_index_and_code(tmp_path):
    tiny_score_sde_pipeline("ve").save_pretrained(tmp_path / "a")
    HfgenPipeline.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "b")
    for path in [tmp_path / "a" / "model_index.json", *(tmp_path / "a").rglob("*.py")]:
        assert (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes() == path.read_bytes(), path


def test_hfgen_refuses_a_component_class_it_does_not_have(tmp_path):
    tiny_ddpm_pipeline().save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index["model"] = ["modeling_mine", "MyNetwork"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="'MyNetwork' is not an hfgen model or scheduler.*trust_remote_code=True"):
        HfgenPipeline.from_pretrained(tmp_path)


def test_a_pipeline_class_without_a_remote_version_is_saved_in_the_plain_layout(tmp_path):
    class MyFlowMatchingPipeline(FlowMatchingPipeline):
        pass

    pipeline = tiny_flow_matching_pipeline()
    mine = MyFlowMatchingPipeline(pipeline.velocity, pipeline.scheduler)
    mine.save_pretrained(tmp_path / "mine")
    index = json.loads((tmp_path / "mine" / "model_index.json").read_text())
    assert index["_class_name"] == "MyFlowMatchingPipeline" and index["velocity"] == ["hfgen.models.mlp", "TimeMLP"]
    assert not list((tmp_path / "mine").rglob("*.py"))
    with pytest.raises(ValueError, match="no remote-code version of MyFlowMatchingPipeline"):
        export_remote_code(mine, tmp_path / "export")
    assert export_remote_code(pipeline, tmp_path / "export") == tmp_path / "export"
    assert (tmp_path / "export" / "pipeline_flow_matching.py").is_file()


def test_components_map_to_hfgen_modules_by_file_name_and_older_exports_by_class_name():
    from hfgen.models.mlp import TimeMLP
    from hfgen.schedulers.score_sde import VESDEScheduler

    assert component_module_name(VESDEScheduler()) == "scheduling_score_sde"
    assert hfgen_component_class("scheduling_score_sde", "VESDEScheduler") is VESDEScheduler
    assert hfgen_component_class("modeling_time_mlp", "TimeMLP") is TimeMLP  # the first export's file name
    assert hfgen_component_class("modeling_no_such_module", "NoSuchClass") is None
    assert hfgen_component_class("modeling_mlp", "torch") is None  # a module attribute that is not a component
    assert component_module_name(torch.nn.Linear(2, 2)) is None


def test_every_pipeline_file_is_the_module_hfgen_runs_made_self_contained():
    classes = [getattr(hfgen.pipelines, name) for name in hfgen.pipelines.__all__]
    pipelines = [cls for cls in classes if isinstance(cls, type) and pipeline_module_name(cls)]
    assert {cls.__name__ for cls in pipelines} == {type(build()).__name__ for build, _, _ in families().values()}
    for cls in pipelines:
        text = pipeline_source(cls)
        check_self_contained(text, cls.__name__)
        module = inspect.getmodule(cls)
        assert text.endswith(inspect.getsource(module).split("\n\n\n", 1)[1])  # its own text, after its imports
        for base in cls.__mro__[: cls.__mro__.index(SamplingPipeline) + 1]:  # sampling loops and their bases
            if base is not HfgenPipeline:
                assert inspect.getsource(base) in text, (cls.__name__, base.__name__)
        assert "HfgenPipeline = SamplingPipeline" in text  # hfgen's loading layer stays out
        assert "_load_checked" not in text and "write_checksums" not in text and "push_to_hub" not in text
        assert not re.search(r"^\s*(from|import) hfgen", text, flags=re.MULTILINE)


# ---- the guard and the bundler ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("import hfgen\n", "must not import hfgen"),
        ("from hfgen.models import mlp\n", "must not import hfgen"),
        ("def f():\n    from hfgen import utils\n", "line 5 imports 'hfgen'"),
        ("from . import x\n", "relative import"),
        ("from .modeling_x import X\n", "relative import"),
        ("import requests\n", "only the standard library and torch, numpy, diffusers"),
        ("def f():\n    import requests\n", "line 5 imports 'requests'.*only the standard library"),
        ("import torchdiffeq\n", "imports 'torchdiffeq' at module level"),
        ("from torchdiffeq import odeint\n", "imports 'torchdiffeq' at module level"),
        ("class A:\n    from torchdiffeq import odeint\n", "line 5 imports 'torchdiffeq' at module level"),
    ],
)
def test_the_guard_refuses_imports_a_diffusers_only_user_cannot_satisfy(text, match):
    clean = "import math\nimport torch\nfrom diffusers import DiffusionPipeline\n"
    assert check_self_contained(clean, "clean.py") == clean
    optional = clean + "def solve():\n    from torchdiffeq import odeint\n\n    return odeint\n"
    assert check_self_contained(optional, "optional.py") == optional  # an optional package, where it is needed
    with pytest.raises(ValueError, match=match):
        check_self_contained(clean + text, "module.py")


def _write_module(folder: Path, name: str, text: str, monkeypatch: pytest.MonkeyPatch) -> str:
    (folder / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(folder))
    return name


def test_bundling_a_module_that_imports_hfgen_inside_a_function_is_refused(tmp_path, monkeypatch):
    name = _write_module(
        tmp_path,
        "imports_hfgen_late",
        '''
        """A module that imports hfgen where the bundler cannot replace the import."""

        import torch


        def draw(n):
            from hfgen.data import Checkerboard

            return Checkerboard().sample(n) + torch.zeros(())
        ''',
        monkeypatch,
    )
    with pytest.raises(ValueError, match="imports 'hfgen.data'.*must not import hfgen"):
        bundle_module(name, "Late import.")


def test_bundling_copies_only_what_a_module_uses_and_refuses_a_clash(tmp_path, monkeypatch):
    name = _write_module(
        tmp_path,
        "uses_hfgen",
        '''
        """Uses one hfgen helper under another name."""

        from hfgen.utils import check_points as points_checked


        def first_row(x):
            return points_checked(x)[0]
        ''',
        monkeypatch,
    )
    text = bundle_module(name, "Uses a helper.")
    (tmp_path / "bundled").mkdir()
    (tmp_path / "bundled" / "bundled_copy.py").write_text(text)
    spec = importlib.util.spec_from_file_location("bundled_copy", tmp_path / "bundled" / "bundled_copy.py")
    bundled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundled)  # the copy runs on its own
    assert bundled.first_row(torch.ones(2, 3)).tolist() == [1.0, 1.0, 1.0]
    assert "def check_points" in text and "def batch_generator" not in text
    assert not re.search(r"^\s*(from|import) hfgen", text, flags=re.MULTILINE)
    clash = _write_module(
        tmp_path,
        "clashes_with_hfgen",
        '''
        """Defines a name that a copied hfgen definition also defines."""

        from hfgen.data.toy import StandardGaussian

        check_generator = None
        ''',
        monkeypatch,
    )
    with pytest.raises(ValueError, match="'check_generator' is defined both"):
        bundle_module(clash, "Clash.")


def _load_text(folder: Path, name: str, text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``text`` as the module ``name`` (a file of ``folder``), as diffusers runs a remote-code file."""
    (folder / f"{name}.py").write_text(text)
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_bundling_puts_stand_ins_for_component_classes_before_the_definitions_that_use_them(tmp_path, monkeypatch):
    name = _write_module(
        tmp_path,
        "checks_components",
        '''
        """Checks its components by class, as a pipeline does."""

        from hfgen.pipelines.base import HfgenPipeline
        from hfgen.schedulers.flow_match_solvers import flow_match_solver
        from hfgen.schedulers.gibbs import GibbsScheduler


        def is_gibbs(scheduler):
            return isinstance(scheduler, GibbsScheduler)
        ''',
        monkeypatch,
    )
    text = bundle_module(name, "Checks.", pipeline_stand_in)
    # flow_match_solvers reads the three solver classes when it is imported: after their stand-ins
    stand_in = text.index('FlowMatchHeunScheduler = component_class("FlowMatchHeunScheduler")')
    assert stand_in < text.index("FlowMatchScheduler = FlowMatchEulerScheduler | FlowMatchHeunScheduler")
    assert "class GibbsScheduler(" not in text and "class FlowMatchHeunScheduler(" not in text
    assert "HfgenPipeline = SamplingPipeline" in text and "def _load_checked" not in text
    (tmp_path / "run").mkdir()
    bundled = _load_text(tmp_path / "run", "checks_components_copy", text, monkeypatch)
    # the component classes as diffusers loads them: the components' own files
    gibbs = _load_text(tmp_path / "run", "scheduling_gibbs", bundle_module("hfgen.schedulers.gibbs", "G."), monkeypatch)
    heun_text = bundle_module("hfgen.schedulers.flow_match_heun", "Heun.")
    heun = _load_text(tmp_path / "run", "scheduling_flow_match_heun", heun_text, monkeypatch)
    assert bundled.is_gibbs(gibbs.GibbsScheduler()) and not bundled.is_gibbs(heun.FlowMatchHeunScheduler())
    assert bundled.flow_match_solver(heun.FlowMatchHeunScheduler()) == "heun"
    with pytest.raises(TypeError, match="`scheduler` must be one of"):
        bundled.flow_match_solver(gibbs.GibbsScheduler())
    with pytest.raises(TypeError, match="GibbsScheduler is defined in its component's file"):
        bundled.GibbsScheduler()
    assert bundled.HfgenPipeline.__name__ == "SamplingPipeline"


def test_a_pipeline_without_an_entry_is_covered_through_its_conformance_class(monkeypatch):
    entries = families()
    variants = {name: entry for name, entry in entries.items() if name.endswith("]")}
    assert variants  # a conformance class's other schedulers are drawn too, each in place of the pipeline's own
    for name, (build, _, _) in variants.items():
        assert type(build().scheduler).__name__ == name[name.index("[") + 1 : -1]
    # without the entries of one pipeline class, its conformance class draws it
    dropped = type(FAMILIES["flow_matching"][0]()).__name__
    fewer = {name: entry for name, entry in FAMILIES.items() if type(entry[0]()).__name__ != dropped}
    monkeypatch.setitem(globals(), "FAMILIES", fewer)
    added = set(families()) - set(entries)
    assert len(added) == 1 and type(families()[added.pop()][0]()).__name__ == dropped
