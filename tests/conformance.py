"""Shared conformance tests for every hfgen pipeline and scheduler (as diffusers' ``PipelineTesterMixin`` and
``SchedulerCommonTest``).

A test module subclasses :class:`PipelineConformance` or :class:`SchedulerConformance` in a class named ``Test…``
and fills the hooks; pytest collects the inherited ``test_*`` methods. Where a pipeline legitimately differs from
the points/prior-sampling contract, the subclass adapts it through a hook (and says why), it never skips silently.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import factories
import numpy as np
import pytest
import torch

from hfgen import HfgenPipeline
from hfgen.pipelines.base import CHECKSUMS_FILE
from hfgen.remote_code import pipeline_module_name

BAD_NUM_SAMPLES = (0, -1, 1.5, True)
TESTS = Path(__file__).resolve().parent


def conformance_classes(base: type) -> list[type]:
    """Every ``Test…`` subclass of ``base`` (:class:`PipelineConformance` or :class:`SchedulerConformance`) that a
    test module of this folder defines, each family's in its own file: the modules are imported first (by the names
    pytest gives them), so that a check over all of them holds whichever test files run."""
    for path in sorted(TESTS.glob("test_*.py")):
        importlib.import_module(path.stem)
    found, pending = [], list(base.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        found.append(cls)
    return sorted({cls for cls in found if cls.__name__.startswith("Test")}, key=lambda cls: cls.__qualname__)


def tiny_pipelines() -> dict[str, Callable[..., HfgenPipeline]]:
    """Every pipeline kind the demo serves, by name: the tiny random factory (seeded, progress bar disabled; keyword
    arguments such as ``seed``) that the kind's conformance class declares as ``kind`` and ``tiny``, in its family's
    test file, so that the cross-family tests (demo, guards, reliability) draw a new family without an entry."""
    kinds: dict[str, Callable[..., HfgenPipeline]] = {}
    for cls in conformance_classes(PipelineConformance):
        if "kind" in vars(cls):
            assert cls.kind not in kinds, f"two conformance classes declare the kind {cls.kind!r}"
            kinds[cls.kind] = cls.tiny
    return kinds


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def public_config(config: Any) -> dict[str, Any]:
    """A config without diffusers' bookkeeping (``_name_or_path``, ``_use_default_values``, ``_class_name``…), as
    JSON stores it (a tuple default comes back as a list)."""
    return json.loads(json.dumps({key: value for key, value in dict(config).items() if not key.startswith("_")}))


def _assert_same(a: Any, b: Any, what: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{what} differ"
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=what)
    else:
        assert a == b, f"{what} differ: {a!r} != {b!r}"


class PipelineConformance:
    """What every pipeline does: save/load and Hub-id round trips, repeatable draws, ``return_dict=False``, output
    types, argument checks and a silent progress bar.

    Hooks: ``pipeline_class``; ``get_pipeline()`` (tiny and seeded, progress bar disabled); ``call_kwargs`` (small
    sizes); ``output_name`` (``"samples"`` or ``"images"``); optionally ``output_type_kwargs`` (e.g. a trajectory so
    that every field's output type is checked), ``sample()`` (how a draw is made from a generator),
    ``to_numpy_layout()`` (how a ``"pt"`` field is laid out under ``"np"``), ``size_argument`` +
    ``bad_size_overrides()``, ``takes_num_inference_steps`` and ``float64_call()``; ``kind`` and ``tiny`` (a
    staticmethod: its tiny random factory) for a pipeline the demo serves (:func:`tiny_pipelines`);
    ``other_schedulers``, factories of the schedulers the pipeline also samples with, each saved and loaded by
    diffusers alone in place of its own (tests/test_remote_code.py).
    """

    pipeline_class: type[HfgenPipeline]
    kind: str
    tiny: Callable[..., HfgenPipeline]
    other_schedulers: tuple[Callable[[], Any], ...] = ()
    output_name = "samples"
    call_kwargs: dict[str, Any] = {}
    output_type_kwargs: dict[str, Any] = {}
    size_argument = "num_samples"
    takes_num_inference_steps = True
    shows_progress = True  # False only for pipelines that draw in one pass (nothing to show progress of)

    def get_pipeline(self) -> HfgenPipeline:
        raise NotImplementedError

    def sample(self, pipeline: HfgenPipeline, generator: torch.Generator | None = None, **overrides: Any) -> Any:
        """One call of the pipeline: ``call_kwargs`` updated by ``overrides``, drawing from ``generator``."""
        return pipeline(**{**self.call_kwargs, "generator": generator, **overrides})

    def bad_size_overrides(self) -> list[dict[str, Any]]:
        """Calls that ask for an invalid number of draws; each must raise an error naming ``size_argument``."""
        return [{self.size_argument: value} for value in BAD_NUM_SAMPLES]

    def to_numpy_layout(self, name: str, tensor: torch.Tensor) -> np.ndarray:
        """What field ``name`` of a ``"pt"`` output is under ``output_type="np"``."""
        return tensor.cpu().numpy()

    # float64_call(self, pipeline, dtype) -> tensor: optional, where the pipeline takes tensor inputs (log_prob,
    # transport, encode…): the same inputs in ``dtype`` give the same result up to float32 rounding.

    def _draw(self, pipeline: HfgenPipeline, seed: int = 0, **overrides: Any) -> Any:
        return getattr(self.sample(pipeline, seeded(seed), **overrides), self.output_name)

    def _parameters(self) -> set[str]:
        return set(inspect.signature(self.pipeline_class.__call__).parameters)

    # ------------------------------------------------------------------------------------------------- tests

    def test_save_and_load_give_identical_samples(self, tmp_path):
        pipeline = self.get_pipeline()
        pipeline.save_pretrained(tmp_path)
        index = json.loads((tmp_path / "model_index.json").read_text())
        # diffusers' remote-code layout (["pipeline_x", "XPipeline"] and pipeline_x.py) for the pipelines that have one
        module = pipeline_module_name(self.pipeline_class)
        class_name = self.pipeline_class.__name__
        assert index["_class_name"] == ([module, class_name] if module else class_name)
        folders = sorted(
            name
            for name, value in index.items()
            if not name.startswith("_") and isinstance(value, list) and value[0] is not None
        )
        expected = [*folders, "model_index.json", CHECKSUMS_FILE, *([f"{module}.py"] if module else [])]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
        for folder in folders:
            assert (tmp_path / folder / "config.json").is_file() or (
                tmp_path / folder / "scheduler_config.json"
            ).is_file()
            if (tmp_path / folder / "config.json").is_file():
                assert (tmp_path / folder / "diffusion_pytorch_model.safetensors").is_file()
        assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))
        expected = self._draw(pipeline)
        for loader in (self.pipeline_class, HfgenPipeline):
            loaded = loader.from_pretrained(tmp_path)
            assert type(loaded) is self.pipeline_class
            for name in folders:
                assert public_config(getattr(loaded, name).config) == public_config(getattr(pipeline, name).config)
            assert public_config(loaded.config) == public_config(pipeline.config)
            loaded.set_progress_bar_config(disable=True)
            _assert_same(self._draw(loaded), expected, f"{self.output_name} after {loader.__name__}.from_pretrained")

    def test_verify_checks_every_weight_file_against_its_recorded_sha256(self, tmp_path):
        pipeline = self.get_pipeline()
        pipeline.save_pretrained(tmp_path)
        sums = json.loads((tmp_path / CHECKSUMS_FILE).read_text())
        assert sorted(sums) == sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.safetensors"))
        assert all(len(digest) == 64 for digest in sums.values())
        self.pipeline_class.from_pretrained(tmp_path, verify=True)
        if not sums:
            return  # nothing to corrupt (a pipeline whose components hold no weights)
        weights = tmp_path / sorted(sums)[0]
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0x01  # one flipped bit in the last tensor's data
        weights.write_bytes(bytes(data))
        self.pipeline_class.from_pretrained(tmp_path)  # safetensors itself has no checksum: loads silently
        with pytest.raises(ValueError, match="do not match their recorded SHA-256"):
            self.pipeline_class.from_pretrained(tmp_path, verify=True)

    def test_load_by_hub_repo_id_from_the_offline_cache(self, tmp_path):
        pipeline = self.get_pipeline()
        pipeline.save_pretrained(tmp_path / "saved")
        repo_id = f"hfgen-tests/conformance-{type(self).__name__.lower()}"
        factories.publish_to_local_hub_cache(tmp_path / "saved", repo_id)
        for loader in (self.pipeline_class, HfgenPipeline):
            loaded = loader.from_pretrained(repo_id)
            assert type(loaded) is self.pipeline_class
            loaded.set_progress_bar_config(disable=True)
            _assert_same(self._draw(loaded), self._draw(pipeline), f"{self.output_name} loaded from {repo_id}")
        with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
            self.pipeline_class.from_pretrained("hfgen-tests/does-not-exist")

    def test_same_generator_same_samples_different_seeds_different_samples(self):
        pipeline = self.get_pipeline()
        first = self._draw(pipeline, seed=0)
        _assert_same(self._draw(pipeline, seed=0), first, f"{self.output_name} of two draws seeded 0")
        assert not torch.equal(self._draw(pipeline, seed=1), first), "seeds 0 and 1 gave the same draw"

    def test_return_dict_false_returns_a_tuple_led_by_the_output(self):
        pipeline = self.get_pipeline()
        as_tuple = self.sample(pipeline, seeded(), return_dict=False)
        assert isinstance(as_tuple, tuple)
        _assert_same(as_tuple[0], self._draw(pipeline), f"tuple[0] and .{self.output_name}")

    def test_output_types_pt_and_np_hold_the_same_values(self):
        pipeline = self.get_pipeline()
        as_pt = self.sample(pipeline, seeded(), output_type="pt", **self.output_type_kwargs)
        as_np = self.sample(pipeline, seeded(), output_type="np", **self.output_type_kwargs)
        assert isinstance(getattr(as_pt, self.output_name), torch.Tensor)
        assert isinstance(getattr(as_np, self.output_name), np.ndarray)
        assert list(as_pt.keys()) == list(as_np.keys())
        for name, value in as_pt.items():
            other = as_np[name]
            if isinstance(value, torch.Tensor) and isinstance(other, np.ndarray):
                np.testing.assert_array_equal(other, self.to_numpy_layout(name, value), err_msg=name)
            else:  # fields that are not in the output type (e.g. the latents) stay as they are
                _assert_same(other, value, name)
        with pytest.raises(ValueError, match="output_type"):
            self.sample(pipeline, seeded(), output_type="latent")

    def test_bad_num_samples_are_refused(self):
        assert self.size_argument in self._parameters()
        pipeline = self.get_pipeline()
        for overrides in self.bad_size_overrides():
            with pytest.raises((ValueError, TypeError), match=self.size_argument):
                self.sample(pipeline, seeded(), **overrides)

    def test_bad_num_inference_steps_are_refused(self):
        # A hook, checked against the signature: pipelines without steps (one decoder pass) must declare it.
        assert ("num_inference_steps" in self._parameters()) == self.takes_num_inference_steps
        if self.takes_num_inference_steps:
            with pytest.raises((ValueError, TypeError), match="num_inference_steps"):
                self.sample(self.get_pipeline(), seeded(), num_inference_steps=0)

    def test_progress_bar_can_be_disabled(self, capsys):
        pipeline = self.get_pipeline()
        pipeline.set_progress_bar_config(disable=False)
        self.sample(pipeline, seeded())
        shown = capsys.readouterr().err
        assert bool(shown) == self.shows_progress, f"progress bar shown: {bool(shown)}, expected {self.shows_progress}"
        pipeline.set_progress_bar_config(disable=True)
        self.sample(pipeline, seeded())
        captured = capsys.readouterr()
        assert captured.err == "" and captured.out == ""

    def test_float64_inputs_are_accepted(self):
        if not hasattr(self, "float64_call"):
            pytest.skip(f"{self.pipeline_class.__name__} takes no tensor inputs (no float64_call hook)")
        pipeline = self.get_pipeline()
        single, double = self.float64_call(pipeline, torch.float32), self.float64_call(pipeline, torch.float64)
        assert isinstance(double, torch.Tensor) and double.shape == single.shape
        assert torch.isfinite(double).all()
        torch.testing.assert_close(double.to(single.dtype), single, rtol=1e-5, atol=1e-5)


class SchedulerConformance:
    """What every scheduler does: config round trips, ``set_timesteps`` checks and a loop that follows
    ``timesteps``.

    Hooks: ``scheduler_class``; ``scheduler_kwargs`` (a non-default config) or ``get_scheduler()``;
    ``num_inference_steps`` (a valid grid
    size); ``set_timesteps_kwargs`` (extras such as a direction); ``model_output(sample, t)`` (a stand-in network);
    ``call_step(scheduler, sample, t, generator)`` (one call of ``step``, for a step that takes more than the
    network's output, such as MALA's energy); ``step_off_schedule(scheduler, sample)`` (a call that leaves the
    schedule and must be refused). Every call passes a generator: the same seed must give the same trajectory, which
    holds the stochastic steps (Langevin, Gibbs, SDE) to drawing all their noise from it.
    """

    scheduler_class: type
    scheduler_kwargs: dict[str, Any] = {}
    num_inference_steps = 4
    set_timesteps_kwargs: dict[str, Any] = {}

    def get_scheduler(self):
        return self.scheduler_class(**self.scheduler_kwargs)

    def model_output(self, sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(sample) + 0.01 * float(t)

    def call_step(self, scheduler, sample: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> Any:
        """One call of ``scheduler.step`` at ``(sample, t)`` given the stand-in network's output."""
        return scheduler.step(self.model_output(sample, t), t, sample, generator=generator)

    def step_off_schedule(self, scheduler, sample: torch.Tensor) -> None:
        """After a full loop, one more step is refused (the scheduler keeps its position)."""
        self.call_step(scheduler, sample, scheduler.timesteps[-1], None)

    def _timesteps(self, scheduler) -> torch.Tensor:
        scheduler.set_timesteps(self.num_inference_steps, **self.set_timesteps_kwargs)
        return scheduler.timesteps.clone()

    def _run(self, scheduler, seed: int = 0) -> tuple[torch.Tensor, int]:
        generator = seeded(seed)
        sample = torch.randn(5, 2, generator=generator)
        calls = 0
        for t in self._timesteps(scheduler):
            out = self.call_step(scheduler, sample, t, generator)
            assert out.prev_sample.shape == sample.shape and torch.isfinite(out.prev_sample).all()
            sample, calls = out.prev_sample, calls + 1
        return sample, calls

    def _assert_equal_schedulers(self, loaded, scheduler) -> None:
        assert type(loaded) is self.scheduler_class
        assert public_config(loaded.config) == public_config(scheduler.config)
        assert torch.equal(self._timesteps(loaded), self._timesteps(scheduler))

    def test_save_config_and_from_config_round_trip(self, tmp_path):
        scheduler = self.get_scheduler()
        scheduler.save_config(tmp_path)
        assert (tmp_path / "scheduler_config.json").is_file()
        config = self.scheduler_class.load_config(tmp_path)
        self._assert_equal_schedulers(self.scheduler_class.from_config(config), scheduler)
        self._assert_equal_schedulers(self.scheduler_class.from_config(scheduler.config), scheduler)

    def test_save_pretrained_and_from_pretrained_round_trip(self, tmp_path):
        scheduler = self.get_scheduler()
        scheduler.save_pretrained(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["scheduler_config.json"]
        loaded = self.scheduler_class.from_pretrained(tmp_path)
        self._assert_equal_schedulers(loaded, scheduler)
        _assert_same(self._run(loaded)[0], self._run(scheduler)[0], "samples of the reloaded scheduler")

    @pytest.mark.parametrize("steps", [0, -1, 1.5, "2", True])
    def test_set_timesteps_rejects_zero_and_non_integers(self, steps):
        with pytest.raises((ValueError, TypeError), match="num_inference_steps"):
            self.get_scheduler().set_timesteps(steps, **self.set_timesteps_kwargs)

    def test_set_timesteps_rejects_an_integral_float(self):
        with pytest.raises((ValueError, TypeError), match="num_inference_steps"):
            self.get_scheduler().set_timesteps(float(self.num_inference_steps), **self.set_timesteps_kwargs)

    def test_step_follows_the_timesteps(self):
        scheduler = self.get_scheduler()
        end, calls = self._run(scheduler)
        assert calls == len(scheduler.timesteps) > 0
        with pytest.raises((RuntimeError, ValueError)):
            self.step_off_schedule(scheduler, end)
        again, _ = self._run(scheduler)  # set_timesteps restarts the schedule: same generator, same trajectory
        assert torch.equal(again, end)
