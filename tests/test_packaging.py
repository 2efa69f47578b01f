"""`from hfgen import FlowMatchingPipeline` works from the editable install and from a built wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import hfgen, hfgen.pipelines; from hfgen import FlowMatchingPipeline; from hfgen.hub import card_template; "
    "assert '{{ card_data }}' in card_template('flow_matching'); "
    "print(hfgen.pipelines.__file__)"
)


def run_probe(cwd: Path, env_path: str | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    if env_path:
        env["PYTHONPATH"] = env_path
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_editable_install_maps_pipelines_into_the_package(tmp_path):
    assert Path(run_probe(tmp_path)) == REPO / "pipelines" / "__init__.py"


@pytest.mark.slow
def test_wheel_ships_the_pipelines_folder_as_hfgen_pipelines(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, REPO],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("hfgen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hfgen/pipelines/flow_matching.py" in names and "hfgen/models/mlp.py" in names
    assert "hfgen/model_cards/flow_matching.md" in names
    assert not any(name.startswith(("tests/", "pipelines/")) for name in names)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    assert Path(run_probe(tmp_path, env_path=str(site))) == site / "hfgen" / "pipelines" / "__init__.py"


def test_every_package_folder_is_listed_for_the_wheel():
    """setuptools ships only the packages pyproject.toml lists (the editable install finds the others anyway): every
    folder with an ``__init__.py`` under hfgen/, pipelines/ and model_cards/ must be listed under its import name."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            found.add(".".join([package, *init.parent.relative_to(REPO / folder).parts]))
    assert found <= set(setuptools["packages"]), (
        f"not in pyproject.toml's packages: {sorted(found - set(setuptools['packages']))}"
    )
