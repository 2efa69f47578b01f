"""hfgen.choices, and a family's arguments module for its own options, mirror the names of every choice-valued option
without torch: each tuple equals its owner's."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import hfgen.arguments
from hfgen import choices


def mirror_modules() -> list:
    """hfgen.choices and every arguments module that mirrors its own options (each with its ``OWNERS``)."""
    names = [f"hfgen.arguments.{m.name}" for m in pkgutil.iter_modules(hfgen.arguments.__path__)]
    return [choices, *(m for m in map(importlib.import_module, names) if hasattr(m, "OWNERS"))]


MIRRORS = [(module.__name__, name) for module in mirror_modules() for name in sorted(module.OWNERS)]


def owner_names(owner: str) -> tuple:
    module, attribute = owner.split(":")
    return tuple(getattr(importlib.import_module(module), attribute))


@pytest.mark.parametrize(("module", "name"), MIRRORS)
def test_each_mirror_equals_the_names_of_the_component_that_owns_the_option(module, name):
    module = importlib.import_module(module)
    assert getattr(module, name) == owner_names(module.OWNERS[name])


def test_every_mirror_names_its_owner():
    mirrors = {name for name, value in vars(choices).items() if name.isupper() and isinstance(value, tuple)}
    assert mirrors == set(choices.OWNERS)
    assert len(mirror_modules()) >= 2  # a family's own mirrors are found too
    for module in mirror_modules():
        assert all(isinstance(getattr(module, name), tuple) for name in module.OWNERS), module.__name__


def test_the_choices_and_every_arguments_module_import_without_torch():
    code = (
        "import sys, pkgutil, importlib, hfgen.choices, hfgen.arguments as a\n"
        "for m in pkgutil.iter_modules(a.__path__): importlib.import_module(f'{a.__name__}.{m.name}')\n"
        "heavy = sorted(n for n in ('torch', 'diffusers', 'numpy', 'accelerate', 'datasets') if n in sys.modules)\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_learning_rate_schedules_are_those_of_diffusers():
    from diffusers.optimization import SchedulerType

    from hfgen.arguments import LR_SCHEDULERS

    assert LR_SCHEDULERS == tuple(s.value for s in SchedulerType if s.value != "piecewise_constant")


@pytest.mark.parametrize("package", ["hfgen", "hfgen.models", "hfgen.schedulers", "hfgen.pipelines", "hfgen.training"])
def test_every_export_is_the_object_of_the_module_that_declares_it(package):
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__) and len(module.__all__) >= 10
    for name in module.__all__:
        value = getattr(module, name)
        source = importlib.import_module(getattr(value, "__module__", None) or package)
        assert value is getattr(source, name), (package, name)


def test_the_top_level_exports_every_model_scheduler_and_pipeline():
    import hfgen

    for package in hfgen.EXPORTED_PACKAGES:
        assert set(importlib.import_module(package).__all__) <= set(hfgen.__all__), package
    assert {"TimeMLP", "FlowMatchingPipeline", "LangevinScheduler", "get_toy_distribution"} <= set(hfgen.__all__)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_declared_exports_reads_each_modules_all_without_importing_it(tmp_path, monkeypatch):
    from hfgen.lazy import declared_exports

    root = tmp_path / "toypkg"
    _write(root / "__init__.py", "")
    _write(
        root / "alpha.py", "raise RuntimeError('imported')\n__all__ = ['Alpha', 'ALPHA']\nclass Alpha: ...\nALPHA = 1\n"
    )
    _write(root / "beta.py", "from toypkg.alpha import Alpha\n__all__ = ('Alpha', 'beta')\ndef beta(): ...\n")
    _write(root / "sub" / "__init__.py", "__all__ = ['Ignored']\n")
    _write(root / "sub" / "gamma.py", "__all__ = ['Gamma']\nclass Gamma: ...\n")
    _write(root / "_private.py", "__all__ = ['Hidden']\nclass Hidden: ...\n")
    _write(root / "plain.py", "class NotListed: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert declared_exports("toypkg") == {
        "Alpha": "toypkg.alpha",  # defined there; beta only re-exports it
        "ALPHA": "toypkg.alpha",
        "beta": "toypkg.beta",
        "Gamma": "toypkg.sub.gamma",
    }
    _write(root / "delta.py", "__all__ = ['Alpha']\nclass Alpha: ...\n")
    with pytest.raises(ImportError, match="both toypkg.alpha and toypkg.delta define and export 'Alpha'"):
        declared_exports("toypkg")


def test_a_lazy_package_imports_a_name_on_first_use_and_refuses_an_unknown_one():
    code = (
        "import sys, hfgen.models as m; assert 'hfgen.models.mlp' not in sys.modules; "
        "m.TimeMLP; assert 'hfgen.models.mlp' in sys.modules; "
        "assert getattr(m, 'NoSuchModel', None) is None; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr
