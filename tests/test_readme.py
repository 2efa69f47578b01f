"""The README runs as written: every ```bash line and every ```python block, in order, in a fresh folder.

The folder holds what the README's relative paths need (links to ``training/`` and the environment ``.venv``) and
the local MNIST copies its offline recipe writes (``mnist/train.parquet``, ``mnist/test.parquet``: random 28 × 28
digits with labels). Training lines run as smoke runs (``HFGEN_SMOKE_STEPS``, read by
``hfgen.arguments``), without network (``HF_HUB_OFFLINE=1``) and on the CPU (``ACCELERATE_USE_CPU``).
A new block or line is picked up by itself; the few lines that cannot run here are in :data:`SUBSTITUTIONS`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from factories import write_image_parquet

from hfgen.cli.smoke import SMOKE_STEPS_VARIABLE, smoke_capped
from hfgen.training import DDPMPointsArguments, FlowMatchingArguments
from hfgen.training.classifier import ClassifierArguments
from hfgen.training.density import DensityArguments
from hfgen.training.schrodinger_bridge import SchrodingerBridgeArguments

ROOT = Path(__file__).resolve().parents[1]
SMOKE_STEPS = "4"
HUB_MNIST = "--dataset_name ylecun/mnist"
LOCAL_MNIST = "--train_data_files mnist/train.parquet --test_data_files mnist/test.parquet"


def makefile_recipe(target: str) -> str:
    """The shell command of a Makefile target's recipe (continuations joined, ``$(BIN)/`` → ``.venv/bin/``)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"the Makefile has no recipe for {target!r}")
    return " ".join(line.strip().rstrip("\\").strip() for line in match.group(1).splitlines()).replace(
        "$(BIN)/", ".venv/bin/"
    )


#: the README lines that cannot run here as written, each with what runs instead (None: skipped) and why
SUBSTITUTIONS: dict[str, tuple[str | None, str]] = {
    "make demo": (makefile_recipe("demo"), "the demo's own command; `make` would (re)install the environment"),
    "make test": (None, "it runs the test suite, this test included"),
    "python app.py --model out/fm-checkerboard": (
        None,
        "it serves the demo until stopped; tests/test_space.py runs it in headless Chromium",
    ),
}
#: substrings replaced in every line, with why
REPLACEMENTS: dict[str, tuple[str, str]] = {
    HUB_MNIST: (LOCAL_MNIST, "no network: the local MNIST copies the README's offline recipe writes"),
}
#: lines skipped wherever they contain this, with why
SKIPPED: dict[str, str] = {
    "load_dataset('ylecun/mnist')": "the Hub download of the offline recipe: the test writes those files itself",
}


@dataclass(frozen=True)
class Step:
    """One thing the README asks to run: a shell line or a Python block, with its line number."""

    kind: str
    code: str
    line: int


def readme_steps(text: str) -> list[Step]:
    """The ```bash lines (continuations joined, comment-only lines dropped) and ```python blocks of ``text``."""
    steps: list[Step] = []
    for match in re.finditer(r"^```(bash|python)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        kind, body = match.group(1), match.group(2)
        first = text.count("\n", 0, match.start(2)) + 1
        if kind == "python":
            steps.append(Step(kind, body, first))
            continue
        parts: list[str] = []
        for offset, line in enumerate(body.splitlines()):
            if not parts:
                start = first + offset
            parts.append(line.strip().removesuffix("\\").strip())
            if line.rstrip().endswith("\\"):
                continue
            command, parts = " ".join(parts).strip(), []
            if command and not command.startswith("#"):
                steps.append(Step(kind, command, start))
    return steps


def runnable(step: Step) -> str | None:
    """What runs for ``step`` here: its code, with the substitutions above applied; ``None`` when skipped."""
    if step.kind == "python":
        return step.code
    bare = step.code.split("#", 1)[0].strip()
    if bare in SUBSTITUTIONS:
        return SUBSTITUTIONS[bare][0]
    if bare.startswith("make "):
        raise ValueError(f"README line {step.line} runs {bare!r}: add it to SUBSTITUTIONS")
    if any(marker in step.code for marker in SKIPPED):
        return None
    command = step.code
    for old, (new, _) in REPLACEMENTS.items():
        command = command.replace(old, new)
    return command


def write_mnist(folder: Path) -> None:
    """``train.parquet`` (64 rows) and ``test.parquet`` (32 rows): random 28 × 28 digits, labels 0 … 9."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for split, rows in (("train", 64), ("test", 32)):
        pixels = (rng.random((rows, 28, 28)) < 0.2).astype(np.uint8) * 255
        write_image_parquet(folder / f"{split}.parquet", pixels, [i % 10 for i in range(rows)])


def test_readme_parser_and_substitutions() -> None:
    text = "```bash\nmake demo  # x\n# comment\na \\\n  b\n```\n\n```python\nprint(1)\n```\n"
    steps = readme_steps(text)
    assert [(s.kind, s.line) for s in steps] == [("bash", 2), ("bash", 4), ("python", 9)]
    assert steps[1].code == "a b"
    assert runnable(steps[0]).startswith(".venv/bin/accelerate launch") and "training/train_fm.py" in runnable(steps[0])
    assert runnable(Step("bash", f"python t.py {HUB_MNIST} --x 1", 1)) == f"python t.py {LOCAL_MNIST} --x 1"
    assert runnable(Step("bash", "make test", 1)) is None
    with pytest.raises(ValueError, match="SUBSTITUTIONS"):
        runnable(Step("bash", "make bench", 1))


def test_smoke_steps_cap_runs_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SMOKE_STEPS_VARIABLE, raising=False)
    args = FlowMatchingArguments()
    assert smoke_capped(args) is args
    monkeypatch.setenv(SMOKE_STEPS_VARIABLE, "6")
    smoke = smoke_capped(args)
    assert (smoke.max_train_steps, smoke.checkpointing_steps, smoke.validation_steps) == (6, 3, 0)
    assert (smoke.num_eval_samples, smoke.train_batch_size, smoke.hidden_size) == (256, 64, args.hidden_size)
    assert smoke_capped(FlowMatchingArguments(max_train_steps=2)).max_train_steps == 2
    assert smoke_capped(DensityArguments(model="made")).max_train_steps == 6  # the recipe's 6,000 steps, capped
    assert smoke_capped(DensityArguments(model="gmm")).em_iterations == 6  # the recipe's 100 EM iterations, capped
    bridge = smoke_capped(SchrodingerBridgeArguments())  # 6 optimizer steps per half-iteration, 1 IPF iteration
    assert (bridge.half_iteration_steps, bridge.ipf_iterations, bridge.max_train_steps) == (6, 1, 12)
    mnist = ClassifierArguments(dataset_name="ylecun/mnist")
    assert smoke_capped(mnist).max_train_steps == 6  # unset (num_epochs passes) becomes the cap
    assert smoke_capped(DDPMPointsArguments()).num_inference_steps == 20  # None (all T steps) becomes the cap
    monkeypatch.setenv(SMOKE_STEPS_VARIABLE, "0")
    with pytest.raises(ValueError, match=f"{SMOKE_STEPS_VARIABLE} must be an int >= 1"):
        smoke_capped(args)


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        reason = "the README runs in the virtual environment `make` creates; this Python is not in one"
        if os.environ.get("CI"):  # CI installs with `make`: there a missing environment is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    (tmp_path / "training").symlink_to(ROOT / "training")
    (tmp_path / ".venv").symlink_to(venv)
    write_mnist(tmp_path / "mnist")
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HFGEN_SMOKE_STEPS": SMOKE_STEPS,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / ".hf"),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    steps = readme_steps((ROOT / "README.md").read_text(encoding="utf-8"))
    assert any(s.kind == "python" for s in steps) and any("training/" in s.code for s in steps)
    for index, step in enumerate(steps):
        code = runnable(step)
        if code is None:
            continue
        if step.kind == "python":
            script = tmp_path / f"readme_block_{index}.py"
            script.write_text(code, encoding="utf-8")
            argv = [sys.executable, script.name]
        else:
            argv = ["bash", "-e", "-c", code]
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-3000:]
            pytest.fail(
                f"README line {step.line} ({step.kind}) failed with status {result.returncode}:\n{code}\n{output}"
            )
