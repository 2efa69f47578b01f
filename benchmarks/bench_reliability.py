"""A hostile review, repeatable: bad inputs and careless commands, each classified by what hfgen does with it.

Every case is tried as a user would — through the training scripts (a subprocess, as from a shell) or through the
library's entry points — and gets one outcome:

- ``clear``: refused with a message that names what was wrong (a script prints one ``error:`` line, exit 2);
- ``handled``: accepted and done right (a value cast, a folder left intact, a file not uploaded);
- ``unclear``: refused, but with a traceback or a message that does not name the mistake;
- ``silent``: accepted although it is wrong;
- ``lost``: a finished run's files changed or a mixed folder loads;
- ``crash``: the process died (out of memory, killed) instead of refusing;
- ``security``: a file outside the folder was read, listed or shown, or a file of the folder was run.

    OMP_NUM_THREADS=1 python benchmarks/bench_reliability.py      # → RELIABILITY_RESULTS.md, reliability_results.json
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from report import Page, markdown, table
from report import write_results as write_page

from hfgen import (
    ConstantAlphaDDPMScheduler,
    DDPMPointsPipeline,
    FlowMatchEulerScheduler,
    FlowMatchingPipeline,
    HfgenPipeline,
    TimeMLP,
    VAEPipeline,
)
from hfgen.hub import upload_files
from hfgen.methods.continuous_flows import log_prob as ode_log_prob
from hfgen.models import VAE
from hfgen.pipelines.base import RUN_IN_PROGRESS_FILE
from hfgen.training import CheckpointError
from hfgen.training.engine import OutputFolderLock

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
OUTCOMES = ("clear", "handled", "unclear", "silent", "lost", "crash", "security")
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, CheckpointError)
#: a run of a few seconds: the smallest network, no validation, a small final evaluation
TINY = [
    "--max_train_steps",
    "4",
    "--hidden_size",
    "8",
    "--num_layers",
    "1",
    "--validation_steps",
    "0",
    "--num_eval_samples",
    "50",
    "--num_nll_samples",
    "0",
    "--report_to",
    "none",
    "--evaluation",
    "fast",
]


@dataclass
class Result:
    group: str
    case: str
    outcome: str
    detail: str


def script(name: str, *flags: str) -> subprocess.CompletedProcess:
    """Run ``training/<name>`` as a user would from the repository root."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "training" / name), *flags],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def must_run(name: str, *flags: str) -> None:
    """Run a script that has to succeed (the setup of a case)."""
    process = script(name, *flags)
    if process.returncode != 0:
        raise RuntimeError(f"the setup run {name} {' '.join(flags)} failed:\n{process.stderr[-2000:]}")


def script_refusal(process: subprocess.CompletedProcess, *words: str) -> tuple[str, str]:
    """``clear`` when the script stopped with one ``error:`` line naming ``words``."""
    if process.returncode == 0:
        return "silent", "exit 0"
    # hfgen's own refusals print "error: …"; argparse's print "train_fm.py: error: argument --x: …"
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:") or ": error: " in line]
    if "Traceback" in process.stderr or not errors:
        lines = [line for line in process.stderr.splitlines() if line.strip()]
        return "unclear", (lines[-1] if lines else f"exit {process.returncode}")[:160]
    named = all(word in errors[-1] for word in words)
    return ("clear" if named else "unclear"), errors[-1][:160]


def refusal(call: Callable[[], object], *words: str) -> tuple[str, str]:
    """``clear`` when ``call`` raises a user error whose message names ``words``."""
    try:
        call()
    except USER_ERRORS as error:
        message = str(error)
        return ("clear" if all(word in message for word in words) else "unclear"), message[:160]
    except Exception as error:  # noqa: BLE001 (any other exception is an unclear refusal)
        return "unclear", f"{type(error).__name__}: {error}"[:160]
    return "silent", "no error"


#: run in a child process by :func:`refusal_in_child`: a memory cap, the case's code, and one JSON line of its outcome
_CHILD = """
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    exec(sys.stdin.read(), {})
except MemoryError:
    print(json.dumps({"kind": "crash", "message": "MemoryError"}))
except (ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
    print(json.dumps({"kind": "refused", "message": str(error)}))
except Exception as error:
    message = f"{type(error).__name__}: {error}"
    out_of_memory = any(word in message for word in ("can't allocate memory", "bad_alloc", "out of memory"))
    print(json.dumps({"kind": "crash" if out_of_memory else "other", "message": message}))
else:
    print(json.dumps({"kind": "none", "message": "no error"}))
"""


def refusal_in_child(code: str, *words: str, memory_gb: float = 4.0, timeout: float = 120.0) -> tuple[str, str]:
    """Run ``code`` in a child process whose address space is capped at ``memory_gb``: ``clear`` when it raises a
    user error naming ``words``; ``crash`` when it runs out of memory, dies or is still running after ``timeout``
    seconds (a request that should have been refused at once)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    try:
        process = subprocess.run(
            [sys.executable, "-c", _CHILD, str(int(memory_gb * 2**30))],
            input=code,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "crash", f"still running after {timeout:.0f} s"
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        last = (process.stderr.strip().splitlines() or [f"exit {process.returncode}"])[-1]
        return "crash", f"exit {process.returncode}: {last}"[:160]
    outcome = json.loads(lines[-1])
    if outcome["kind"] == "refused":
        return ("clear" if all(word in outcome["message"] for word in words) else "unclear"), outcome["message"][:160]
    return {"crash": "crash", "other": "unclear", "none": "silent"}[outcome["kind"]], outcome["message"][:160]


def handled(call: Callable[[], bool], what: str) -> tuple[str, str]:
    """``handled`` when ``call`` returns True, ``silent`` when False, ``unclear`` when it raises."""
    try:
        ok = call()
    except Exception as error:  # noqa: BLE001
        return "unclear", f"{type(error).__name__}: {error}"[:160]
    return ("handled" if ok else "silent"), what


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file of a finished run except the lock file."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".hfgen-run.lock"):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def kept(outcome: tuple[str, str], folder: Path, before: str) -> tuple[str, str]:
    """A refusal that still changed the finished run in ``folder`` is ``lost``."""
    return ("lost", "the finished run changed") if folder_digest(folder) != before else outcome


def killed_overwrite(folder: Path) -> object:
    """Start an overwriting run on ``folder``, kill it (SIGKILL) once it has started writing, then load the
    folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    flags = [*TINY, "--max_train_steps", "1000000", "--overwrite_output_dir", "--output_dir", str(folder)]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "training" / "train_fm.py"), *flags],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (folder / RUN_IN_PROGRESS_FILE).exists():
        if time.monotonic() > deadline or process.poll() is not None:
            break
        time.sleep(0.2)
    time.sleep(2.0)
    process.kill()
    process.wait()
    return FlowMatchingPipeline.from_pretrained(folder)


# ---- the cases -------------------------------------------------------------------------------------------------


def output_folder_cases(work: Path) -> list[Result]:
    finished = work / "finished"
    must_run("train_fm.py", *TINY, "--checkpointing_steps", "0", "--output_dir", str(finished))
    before = folder_digest(finished)
    results = []

    def case(name: str, outcome: tuple[str, str]) -> None:
        results.append(Result("output folders", name, *outcome))

    process = script("train_fm.py", *TINY, "--output_dir", str(finished))
    case("a new run into a finished run's folder", kept(script_refusal(process, "holds"), finished, before))
    process = script(
        "train_fm.py",
        *TINY,
        "--seed",
        "7",
        "--hidden_size",
        "32",
        "--dataset",
        "moons",
        "--resume_from_checkpoint",
        "latest",
        "--output_dir",
        str(finished),
    )
    case(
        "`--resume_from_checkpoint latest` with other arguments over a finished run without checkpoints",
        kept(script_refusal(process, "finished run"), finished, before),
    )
    lock = OutputFolderLock(finished)
    try:
        process = script("train_fm.py", *TINY, "--overwrite_output_dir", "--output_dir", str(finished))
        case(
            "a second run on a folder in use (`--overwrite_output_dir`)",
            kept(script_refusal(process, "in use", str(os.getpid())), finished, before),
        )
    finally:
        lock.release()
    case(
        "`--overwrite_output_dir`, then the new run is killed: does the mixed folder load?",
        refusal(lambda: killed_overwrite(finished), "not finished"),
    )
    leftovers = work / "leftovers"
    for name in ("checkpoint-100", ".tmp-checkpoint-5", ".delete-checkpoint-2"):
        (leftovers / "checkpoints" / name).mkdir(parents=True)
    process = script(
        "train_fm.py", *TINY, "--overwrite_output_dir", "--checkpointing_steps", "2", "--output_dir", str(leftovers)
    )
    names = sorted(p.name for p in (leftovers / "checkpoints").iterdir())
    case(
        "empty and half-written checkpoint folders left by a kill",
        handled(lambda: process.returncode == 0 and names == ["checkpoint-2", "checkpoint-4"], f"kept {names}"),
    )
    return results


def argument_cases(work: Path) -> list[Result]:
    config = work / "run.yaml"
    config.write_text("max_train_steps: 3\n")
    bad = [
        ("--learning_rate", "1e39", "learning_rate"),
        ("--checkpointing_steps", "2.5", "checkpointing_steps"),
        ("--max_grad_norm", "nan", "max_grad_norm"),
        ("--time_beta", "inf", "time_beta"),
        ("--lr_warmup_steps", "2.5", "lr_warmup_steps"),
        ("--seed", "1.5", "seed"),
        ("--hidden_size", "0", "hidden_size"),
        ("--adam_beta1", "2.0", "adam_beta1"),
        ("--num_eval_samples", "0", "num_eval_samples"),
        ("--dataset", "spiral9", "spiral9"),
        ("--max_train_steps", "-5", "max_train_steps"),
        ("--coupling", "optimal", "coupling"),
    ]
    results = []
    for flag, value, name in bad:
        process = script("train_fm.py", flag, value, "--output_dir", str(work / f"bad-{name}"))
        outcome = script_refusal(process, name)
        if (work / f"bad-{name}" / "args.json").exists():
            outcome = ("unclear", "refused only after args.json was written")
        results.append(Result("arguments", f"`{flag} {value}`", *outcome))
    process = script("train_fm.py", f"--config={config}", "--config", str(config), "--output_dir", str(work / "c2"))
    results.append(Result("arguments", "`--config` given twice", *script_refusal(process, "--config")))
    folder = work / "config-equals"
    process = script("train_fm.py", f"--config={config}", *TINY[2:], "--output_dir", str(folder))
    results.append(
        Result(
            "arguments",
            "`--config=FILE` (with `=`) is read",
            *handled(
                lambda: (
                    process.returncode == 0 and json.loads((folder / "args.json").read_text())["max_train_steps"] == 3
                ),
                "max_train_steps 3 from the file",
            ),
        )
    )
    diverging = work / "diverging"
    first = script(
        "train_fm.py",
        *TINY,
        "--learning_rate",
        "10",
        "--max_grad_norm",
        "0",
        "--checkpointing_steps",
        "1",
        "--output_dir",
        str(diverging),
    )  # a learning rate that may diverge
    resumed = script(
        "train_fm.py",
        *TINY,
        "--checkpointing_steps",
        "1",
        "--learning_rate",
        "1e-3",
        "--max_grad_norm",
        "1",
        "--resume_from_checkpoint",
        "latest",
        "--output_dir",
        str(diverging),
    )
    name = "resume with a lower learning rate and clipping (arguments that do not decide the network)"
    results.append(
        Result(
            "arguments",
            name,
            *handled(
                lambda: resumed.returncode == 0, f"first run exit {first.returncode}, resume exit {resumed.returncode}"
            ),
        )
    )
    return results


def checkpoint_cases(work: Path) -> list[Result]:
    folder = work / "checkpointed"
    must_run(
        "train_fm.py",
        *TINY,
        "--checkpointing_steps",
        "2",
        "--checkpoints_total_limit",
        "0",
        "--output_dir",
        str(folder),
    )
    checkpoint = folder / "checkpoints" / "checkpoint-2"
    results = []

    def resume(name: str, *words: str, checkpoint: str = "checkpoint-2") -> None:
        process = script(
            "train_fm.py",
            *TINY,
            "--checkpointing_steps",
            "2",
            "--checkpoints_total_limit",
            "0",
            "--resume_from_checkpoint",
            checkpoint,
            "--output_dir",
            str(folder),
        )
        outcome = script_refusal(process, *words)
        if "weights_only=False" in process.stderr or "weights_only set to False" in process.stderr:
            outcome = ("unclear", "torch's advice to load with weights_only=False reached the user")
        results.append(Result("checkpoints", name, *outcome))

    optimizer = checkpoint / "optimizer.bin"
    saved = optimizer.read_bytes()
    optimizer.write_bytes(b"\x80\x04\x95garbage")
    resume("a corrupt `optimizer.bin`", "checkpoint-2")
    optimizer.write_bytes(saved)
    state = checkpoint / "trainer_state.json"
    saved_state = state.read_text()
    state.write_text(json.dumps({**json.loads(saved_state), "step": -3}))
    resume("`trainer_state.json` with a negative step", "-3")
    state.write_text(saved_state)
    resume("a checkpoint that does not exist", "checkpoint-9", checkpoint="checkpoint-9")
    return results


def pipeline_cases(work: Path) -> list[Result]:
    torch.manual_seed(0)
    fm = FlowMatchingPipeline(TimeMLP(dim=2, hidden_size=8, num_layers=1), FlowMatchEulerScheduler())
    ddpm = DDPMPointsPipeline(
        TimeMLP(dim=2, hidden_size=8, num_layers=1, time_scale=1.0),
        ConstantAlphaDDPMScheduler.from_final_alpha_bar(10, 0.01),
    )
    vae = VAEPipeline(VAE(image_size=8, hidden_sizes=[16, 8]))
    for pipe in (fm, ddpm, vae):
        pipe.set_progress_bar_config(disable=True)
    points = torch.zeros(3, 2)
    images = torch.rand(2, 1, 8, 8)
    cases: list[tuple[str, tuple[str, str]]] = []
    for label, pipe in (("flow matching", fm), ("DDPM", ddpm), ("VAE", vae)):
        for value in (0, -3, 2.5, True):
            cases.append(
                (f"{label}: `num_samples={value!r}`", refusal(lambda p=pipe, v=value: p(num_samples=v), "num_samples"))
            )
        cases.append((f"{label}: `num_samples=10**9`", refusal(lambda p=pipe: p(num_samples=10**9), "num_samples")))
        cases.append(
            (
                f"{label}: a seed where a generator belongs",
                refusal(lambda p=pipe: p(num_samples=2, generator=3), "generator"),
            )
        )
    cases += [
        ("flow matching: `velocity_field(x, t=nan)`", refusal(lambda: fm.velocity_field(points, t=math.nan), "`t`")),
        (
            "flow matching: `velocity_field` of float64 points",
            handled(lambda: fm.velocity_field(points.double(), t=0.5).dtype == torch.float64, "cast, float64 out"),
        ),
        (
            "flow matching: `velocity_field` of float16 points",
            handled(lambda: fm.velocity_field(points.half(), t=0.5).dtype == torch.float16, "cast, float16 out"),
        ),
        (
            "flow matching: `log_prob(x, rtol=-1, atol=-1)`",
            refusal(lambda: fm.log_prob(points, rtol=-1, atol=-1), "rtol"),
        ),
        (
            "flow matching: `log_prob` of points with a NaN",
            refusal(lambda: fm.log_prob(torch.tensor([[0.0, math.nan]])), "NaN"),
        ),
        ("flow matching: points of shape (3,)", refusal(lambda: fm.log_prob(torch.zeros(3)), "(N, 2)")),
        (
            "DDPM: `forward_trajectory(x0, [0.5, 1.7])`",
            refusal(lambda: ddpm.forward_trajectory(points, timesteps=[0.5, 1.7]), "timesteps"),
        ),
        (
            "DDPM: `forward_trajectory(x0, [0, 99])` past T",
            refusal(lambda: ddpm.forward_trajectory(points, timesteps=[0, 99]), "timesteps"),
        ),
        ("VAE: `log_prob` of images × 255", refusal(lambda: vae.log_prob(images * 255), "[0, 1]")),
        ("VAE: `encode` of negative images", refusal(lambda: vae.encode(images - 1), "[0, 1]")),
        ("VAE: `encode` of images of the wrong size", refusal(lambda: vae.encode(torch.rand(2, 1, 9, 9)), "8")),
        (
            "Hutchinson `log_prob` with a seed where a generator belongs",
            refusal(
                lambda: ode_log_prob(
                    lambda x, t: -x,
                    points,
                    lambda z: -0.5 * (z**2).sum(1),
                    divergence_method="hutchinson",
                    generator=[1],
                ),
                "generator",
            ),
        ),
    ]
    saved = work / "saved-fm"
    fm.save_pretrained(saved)
    weights = saved / "velocity" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    cases.append(
        (
            "a weight file with one byte flipped, `verify=True`",
            refusal(lambda: HfgenPipeline.from_pretrained(saved, verify=True), "diffusion_pytorch_model.safetensors"),
        )
    )
    (saved / "velocity" / "config.json").write_text("[]")
    cases.append(
        ("a component `config.json` holding `[]`", refusal(lambda: HfgenPipeline.from_pretrained(saved), "config.json"))
    )
    cases.append(
        (
            "a folder that does not exist",
            refusal(lambda: HfgenPipeline.from_pretrained(work / "nowhere", local_files_only=True), "nowhere"),
        )
    )
    (work / "empty").mkdir()
    cases.append(
        (
            "a folder without `model_index.json`",
            refusal(lambda: HfgenPipeline.from_pretrained(work / "empty"), "model_index.json"),
        )
    )
    return [Result("library inputs", name, *outcome) for name, outcome in cases]


def data_cases(work: Path) -> list[Result]:
    from datasets import Dataset

    from hfgen.data.images import dataset_to_tensors, load_image_splits

    rng = np.random.default_rng(0)

    def parquet(name: str, rows: int = 8, labels: list | None = None, column: str = "image", corrupt: int = -1):
        import io

        from datasets import Features, Image, Value
        from PIL import Image as PILImage

        pngs = []
        for i in range(rows):
            buffer = io.BytesIO()
            PILImage.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(buffer, format="PNG")
            pngs.append({"bytes": b"\x89PNG\r\n\x1a\n truncated" if i == corrupt else buffer.getvalue(), "path": None})
        labels = labels if labels is not None else [i % 10 for i in range(rows)]
        label_type = Value("string") if labels and isinstance(labels[0], str) else Value("int64")
        features = Features({column: Image(), "label": label_type})
        path = work / f"{name}.parquet"
        Dataset.from_dict({column: pngs, "label": labels}, features=features).to_parquet(str(path))
        return str(path)

    def load(train: str, test: str | None = None):
        splits = load_image_splits(None, train, test, test_split="test" if test else None)
        return [dataset_to_tensors(splits[name], batch_size=4) for name in splits]

    good = parquet("good")
    cases = [
        ("a parquet file with zero rows", refusal(lambda: load(parquet("empty", rows=0)), "no rows")),
        (
            "train and test files with different columns",
            refusal(lambda: load(good, parquet("other", column="img")), "columns"),
        ),
        ("one corrupt PNG row", refusal(lambda: load(parquet("corrupt", corrupt=3)), "row 3")),
        ("string labels", refusal(lambda: load(parquet("strings", labels=[str(i) for i in range(8)])), "label")),
        ("negative labels", refusal(lambda: load(parquet("negative", labels=[-1] * 8)), "label -1")),
        ("a directory where a parquet file belongs", refusal(lambda: load(str(work)), str(work))),
    ]
    return [Result("data", name, *outcome) for name, outcome in cases]


def privacy_cases(work: Path) -> list[Result]:
    folder = work / "to-upload"
    must_run("train_fm.py", *TINY, "--checkpointing_steps", "0", "--output_dir", str(folder))
    planted = ["credentials.json", "notes/my_script.py", "sweep/checkpoints/checkpoint-1/trainer_state.json"]
    for name in planted:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    sent = upload_files(folder)
    card = (folder / "README.md").read_text(encoding="utf-8")
    return [
        Result(
            "privacy",
            "planted files beside a run (credentials.json, a script, a sweep's checkpoints)",
            *handled(lambda: not set(planted) & set(sent) and "args.json" not in sent, f"{len(sent)} files sent"),
        ),
        Result(
            "privacy",
            "absolute local paths in the model card",
            *handled(lambda: str(work) not in card and str(Path.home()) not in card, "card names data, not paths"),
        ),
    ]


#: run by :func:`concurrent_loads` in a child process: save two pipelines alternately into a folder for a while
_SAVER = """
import sys, time, torch
from hfgen import FlowMatchEulerScheduler, FlowMatchingPipeline, TimeMLP
pipes = []
for seed in (0, 1):
    torch.manual_seed(seed)
    pipes.append(FlowMatchingPipeline(TimeMLP(dim=2, hidden_size=8, num_layers=1), FlowMatchEulerScheduler()))
print("ready", flush=True)
deadline, i = time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < deadline:
    pipes[i % 2].save_pretrained(sys.argv[1])
    i += 1
"""


def concurrent_loads(folder: Path, seconds: float = 4.0) -> tuple[str, str]:
    """Load ``folder`` over and over while another process saves two pipelines into it alternately: ``lost`` when a
    load returns weights of neither, ``unclear`` when a refusal does not say that the folder is being saved into,
    ``clear`` otherwise (every load whole or refused saying why)."""
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(TimeMLP(dim=2, hidden_size=8, num_layers=1).state_dict())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    saver = subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True, env=env
    )
    saver.stdout.readline()
    whole = refused = 0
    try:
        while saver.poll() is None:
            try:
                loaded = HfgenPipeline.from_pretrained(folder).velocity.state_dict()
            except (ValueError, OSError) as error:
                if "being written" not in str(error) and "saved into by another process" not in str(error):
                    return "unclear", f"{type(error).__name__}: {error}"[:160]
                refused += 1
                time.sleep(0.002)  # leave the saver the processor
                continue
            if not any(all(torch.equal(loaded[key], model[key]) for key in model) for model in models):
                return "lost", "a load returned weights of neither save"
            whole += 1
    finally:
        saver.wait(timeout=120)
    return "clear", f"{whole} loads whole, {refused} refused as being saved into, none mixed or 'corrupt'"


def loading_cases(work: Path) -> list[Result]:
    from unittest.mock import create_autospec

    from huggingface_hub import HfApi
    from safetensors.torch import load_file, save_file

    from hfgen import DensityPipeline, GaussianMixture, space
    from hfgen.hub import push_folder_to_hub
    from hfgen.model_cards.ddpm_points import ddpm_points_card
    from hfgen.model_cards.density import density_card
    from hfgen.model_cards.energy import energy_card
    from hfgen.model_cards.image_diffusion import image_ddpm_card, image_flow_matching_card
    from hfgen.model_cards.rbm import rbm_card
    from hfgen.model_cards.score_sde import score_sde_card
    from hfgen.model_cards.vae import vae_card
    from hfgen.pipelines.base import write_checksums
    from hfgen.pipelines.loading import SAVING_FILE
    from hfgen.training import (
        DDPMImageArguments,
        DDPMPointsArguments,
        DensityArguments,
        EnergyArguments,
        FlowMatchingImageArguments,
        RBMArguments,
        ScoreSDEArguments,
        VAEArguments,
    )

    def saved(name: str) -> Path:
        torch.manual_seed(0)
        folder = work / "loading" / name
        FlowMatchingPipeline(TimeMLP(dim=2, hidden_size=8, num_layers=1), FlowMatchEulerScheduler()).save_pretrained(
            folder
        )
        return folder

    def edit_json(path: Path, change: Callable[[dict], object]) -> None:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    def edit_weights(folder: Path, change: Callable[[dict], object], component: str = "velocity") -> None:
        path = folder / component / "diffusion_pytorch_model.safetensors"
        tensors = load_file(path)
        change(tensors)
        save_file(tensors, path)

    def load(folder: Path, **kwargs: object) -> Callable[[], object]:
        return lambda: HfgenPipeline.from_pretrained(folder, **kwargs)

    cases: list[tuple[str, tuple[str, str]]] = []
    folder = saved("missing")
    edit_weights(folder, lambda tensors: tensors.pop("body.1.bias"))
    cases.append(
        (
            "a weights file missing a tensor",
            refusal(load(folder), "velocity", "body.1.bias", "diffusion_pytorch_model.safetensors"),
        )
    )
    folder = saved("unexpected")
    edit_weights(folder, lambda tensors: tensors.update(extra=torch.zeros(3)))
    cases.append(("a weights file with a tensor the model lacks", refusal(load(folder), "velocity", "extra")))
    folder = saved("shape")
    edit_weights(folder, lambda tensors: tensors.update({"body.1.bias": torch.zeros(9)}))
    cases.append(("a tensor of the wrong shape", refusal(load(folder), "velocity", "body.1.bias", "(9,)")))

    folder = saved("escape")
    victim = work / "loading" / "victim"
    victim.mkdir()
    (victim / "config.json").write_text('["private: hunter2"]')
    edit_json(folder / "model_index.json", lambda index: index.update({"../victim": index.pop("velocity")}))
    outcome = refusal(load(folder), "../victim")
    try:
        listed = [name for name in upload_files(folder) if name.startswith("../")]
    except ValueError:
        listed = []
    if "hunter2" in outcome[1] or listed:
        outcome = ("security", f"a file outside the folder was shown or listed: {listed or outcome[1]}"[:160])
    cases.append(("a component key `../victim` in model_index.json (load and upload)", outcome))

    torch.manual_seed(0)
    mixture = GaussianMixture(num_components=3, dim=2, covariance_type="full")
    torch.nn.init.normal_(mixture.scale_tril_offdiag)
    folder = work / "loading" / "mixture"
    DensityPipeline(mixture).save_pretrained(folder)
    edit_json(folder / "model" / "config.json", lambda config: config.update(covariance_type="diag"))
    cases.append(
        ("a full mixture's config changed to `covariance_type: diag`", refusal(load(folder), "scale_tril_offdiag"))
    )
    edit_json(folder / "model" / "config.json", lambda config: config.update(covariance_type="full"))
    edit_json(folder / "model_index.json", lambda index: index.update(model=["modeling_kde", "KernelDensity"]))
    cases.append(
        (
            "a mixture's entry changed to `['modeling_kde', 'KernelDensity']`",
            refusal(load(folder), "KernelDensity", "GaussianMixture"),
        )
    )

    folder = saved("nan")
    edit_weights(
        folder, lambda tensors: tensors.update({key: torch.full_like(t, math.nan) for key, t in tensors.items()})
    )
    write_checksums(folder)
    cases.append(
        ("all-NaN weights, checksums rewritten to match, `verify=True`", refusal(load(folder, verify=True), "NaN"))
    )
    folder = saved("class-name")
    edit_json(
        folder / "model_index.json",
        lambda index: index.update(_class_name=["pipeline_ddpm_points", "DDPMPointsPipeline"]),
    )
    cases.append(
        (
            "`_class_name` changed to another pipeline",
            refusal(load(folder), "DDPMPointsPipeline", "velocity", "FlowMatchingPipeline"),
        )
    )
    folder = saved("no-hidden-size")
    edit_json(folder / "velocity" / "config.json", lambda config: config.pop("hidden_size"))
    cases.append(("a config without `hidden_size`", refusal(load(folder), "hidden_size")))

    folder = saved("cut-index")
    index_file = folder / "model_index.json"
    index_file.write_text(index_file.read_text()[:40])
    cases.append(("`model_index.json` cut in half", refusal(load(folder), "model_index.json", "corrupt")))
    folder = saved("saving")
    (folder / SAVING_FILE).write_text("1\n")
    cases.append(("a folder that a save is writing", refusal(load(folder), "being written")))
    cases.append(("loads while another process saves into the folder", concurrent_loads(saved("race"))))

    private = work / "private-place" / "run"
    image_args = {"dataset_name": "ylecun/mnist"}
    cards = [
        ("density", density_card(DensityArguments(output_dir=str(private)), {})),
        ("score", score_sde_card(ScoreSDEArguments(output_dir=str(private)), {})),
        ("energy", energy_card(EnergyArguments(output_dir=str(private)), {})),
        ("ddpm points", ddpm_points_card(DDPMPointsArguments(output_dir=str(private)), {})),
        ("image fm", image_flow_matching_card(FlowMatchingImageArguments(output_dir=str(private), **image_args), {})),
        ("image ddpm", image_ddpm_card(DDPMImageArguments(output_dir=str(private), **image_args), {})),
        ("vae", vae_card(VAEArguments(output_dir=str(private), **image_args), {})),
        ("rbm", rbm_card(RBMArguments(output_dir=str(private), **image_args), {})),
    ]
    leaking = [family for family, card in cards if str(private) in str(card)]
    outcome = ("silent", f"the local path is in the cards of {leaking}") if leaking else ("handled", "folder name only")
    cases.append(("cards of a run without `--hub_model_id` (seven families)", outcome))
    folder = saved("old-card")
    (folder / "README.md").write_text(f'pipe = FlowMatchingPipeline.from_pretrained("{folder.resolve()}")\n')
    api = create_autospec(HfApi, instance=True)
    outcome = refusal(lambda: push_folder_to_hub(folder, "someone/run", api=api), "README.md", "local path")
    cases.append(("`push_folder_to_hub` of a folder whose README holds its local path", outcome))

    space.clear_cache()
    messages = []
    for name in ("no-such-folder", "empty-folder"):
        (work / "loading" / "empty-folder").mkdir(exist_ok=True)
        try:
            space.load_pipeline(str(work / "loading" / name))
        except Exception as error:  # noqa: BLE001 (the message is what is compared)
            messages.append(str(error).replace(name, "NAME"))
    same = len(messages) == 2 and messages[0] == messages[1]
    cases.append(
        (
            "demo: Load a folder that does not exist, and one that is not a pipeline",
            ("handled", "one message for both") if same else ("security", "the messages tell which folders exist"),
        )
    )
    folder = saved("demo")
    first = space.load_pipeline(str(folder))
    torch.manual_seed(1)
    other = FlowMatchingPipeline(TimeMLP(dim=2, hidden_size=8, num_layers=1), FlowMatchEulerScheduler())
    other.save_pretrained(folder)
    cases.append(
        (
            "demo: a folder saved again with another model",
            handled(
                lambda: (
                    torch.equal(space.load_pipeline(str(folder)).velocity.body[1].bias, other.velocity.body[1].bias)
                    and not torch.equal(first.velocity.body[1].bias, other.velocity.body[1].bias)
                ),
                "loaded again",
            ),
        )
    )
    kept, text = space.load_model(str(work / "loading" / "no-such-folder"), current=str(folder))
    cases.append(
        (
            "demo: a failed Load after a working one",
            handled(lambda: kept is not None and kept.name == str(folder), "the working model stays loaded"),
        )
    )
    pipe = space.load_pipeline(str(folder))
    cases.append(("demo: `sample(seed=1e30)`", refusal(lambda: space.sample(pipe, seed=1e30), "seed")))
    cases.append(
        (
            "demo: `density_image(half_width=1e308)`",
            refusal(lambda: space.density_image(pipe, half_width=1e308), "half_width"),
        )
    )
    return [Result("loading", name, *outcome) for name, outcome in cases]


def write_results(results: list[Result], seconds: float) -> None:
    """Store the cases as ``reliability_results.json`` with the count of each outcome, and write the page."""
    counts = Counter(result.outcome for result in results)
    summary = {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}
    payload = {
        "cases": len(results),
        **summary,
        "seconds": round(seconds, 1),
        "results": [result.__dict__ for result in results],
    }
    write_page(payload, HERE, PAGE, render)
    print(json.dumps(summary))


def render(payload: dict) -> str:
    """The Markdown page of the stored cases: the count of each outcome (of :data:`OUTCOMES`), then every case."""
    results = payload["results"]
    counts = Counter(result["outcome"] for result in results)
    lines = [
        "# Reliability: a hostile review, repeatable",
        "",
        "`OMP_NUM_THREADS=1 python benchmarks/bench_reliability.py` "
        f"({len(results)} cases, {payload['seconds']:.0f} s). Outcomes: "
        + ", ".join(f"{name} {counts.get(name, 0)}" for name in OUTCOMES)
        + ".",
        "",
        "clear: refused, naming the mistake (scripts: one `error:` line, exit 2); handled: accepted and done right;",
        "unclear: refused without naming it; silent: accepted although wrong; lost: a finished run changed;",
        "crash: the process died instead of refusing; security: a file outside the folder was read or shown, or a",
        "file of the folder was run.",
        "",
    ]
    rows = ([r["group"], r["case"], r["outcome"], r["detail"].replace("|", "/")] for r in results)
    return markdown(lines + table(["group", "case", "outcome", "what hfgen said or did"], rows))


#: a tiny diffusers UNet (two levels of 8 and 16 channels) for 1-channel images
TINY_UNET = {
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 4,
}
#: the start of each memory case's child: tiny networks of the families whose cases it runs
_GUARD_SETUP = f"""
import torch
from diffusers import UNet2DModel
from hfgen import (EnergyMLP, EnergyPipeline, FlowMatchingImagePipeline, FlowMatchEulerScheduler, GibbsScheduler,
                   LangevinScheduler, RBMModel, RBMPipeline, ScoreSDEPipeline, TimeMLP, VPSDEScheduler)
image_fm = FlowMatchingImagePipeline(UNet2DModel(sample_size=28, **{TINY_UNET!r}), FlowMatchEulerScheduler())
rbm = RBMPipeline(RBMModel(num_visible=784, num_hidden=8, image_size=28, in_channels=1), GibbsScheduler())
energy = EnergyPipeline(EnergyMLP(dim=2, hidden_size=8, num_layers=1), LangevinScheduler())
sde = ScoreSDEPipeline(TimeMLP(dim=2, hidden_size=8, num_layers=1), VPSDEScheduler())
"""

#: this benchmark's results page (found by benchmarks/report.py)
PAGE = Page("reliability", "reliability_results.json", "RELIABILITY_RESULTS.md")


def guard_cases(work: Path) -> list[Result]:
    """Requests that cannot fit in memory, on every entry point (refused before allocating, checked in a child with
    4 GB of address space), and the lower-level public methods given what the point pipelines refuse."""
    from hfgen import (
        DDPMImagePipeline,
        FlowMatchingImagePipeline,
        GibbsScheduler,
        RBMModel,
        RBMPipeline,
        ScoreSDEPipeline,
        VPSDEScheduler,
    )

    memory = [
        (
            "RBM: `start=` 4,096 images, `return_trajectory`, 10⁷ sweeps",
            "rbm(start=torch.rand(4096, 1, 28, 28), num_inference_steps=10**7, return_trajectory=True)",
            "`start`=4,096 needs at least",
        ),
        (
            "energy: `start_samples=` 10⁵ points, `return_trajectory`, 10⁷ steps",
            "energy(start_samples=torch.zeros(10**5, 2), num_inference_steps=10**7, return_trajectory=True)",
            "`start_samples`=100,000 needs at least",
        ),
        (
            "score SDE: SDEdit with 10⁹ steps",
            "sde(strength=0.5, start_samples=torch.zeros(100, 2), num_inference_steps=10**9)",
            "needs at least",
            "plan of 1,000,000,000 steps",
        ),
        (
            "image flow matching: 10⁹ steps with `return_trajectory`",
            "image_fm(num_samples=4, num_inference_steps=10**9, return_trajectory=True)",
            "`num_samples`=4 needs at least",
        ),
        (
            "energy: `log_partition(grid_size=200_000)`",
            "energy.log_partition(grid_size=200_000)",
            "`grid_size`=200,000",
        ),
    ]
    cases = [(name, refusal_in_child(_GUARD_SETUP + code, *words, memory_gb=4.0)) for name, code, *words in memory]
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    image_fm = FlowMatchingImagePipeline(UNet2DModel(sample_size=28, **TINY_UNET), FlowMatchEulerScheduler())
    alpha_schedule = ConstantAlphaDDPMScheduler.from_final_alpha_bar(10, 1e-3)
    image_ddpm = DDPMImagePipeline(UNet2DModel(sample_size=8, **TINY_UNET), alpha_schedule)
    rbm = RBMPipeline(RBMModel(num_visible=16, num_hidden=4, image_size=4, in_channels=1), GibbsScheduler())
    sde = ScoreSDEPipeline(TimeMLP(dim=2, hidden_size=8, num_layers=1), VPSDEScheduler())
    fm = FlowMatchingPipeline(TimeMLP(dim=2, hidden_size=8, num_layers=1), FlowMatchEulerScheduler())
    for pipe in (image_fm, image_ddpm, rbm, sde, fm):
        pipe.set_progress_bar_config(disable=True)
    y28, y8, points = torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 8, 8), torch.zeros(3, 2)
    cases += [
        (
            "image flow matching: `velocity_field(x, t=nan)`",
            refusal(lambda: image_fm.velocity_field(y28, math.nan), "`t`"),
        ),
        ("image flow matching: `velocity_field(x, t=5.0)`", refusal(lambda: image_fm.velocity_field(y28, 5.0), "`t`")),
        (
            "image flow matching: 8×8 input to a 28×28 network",
            refusal(lambda: image_fm.velocity_field(torch.zeros(2, 1, 8, 8), 0.5), "`sample`", "(N, 1, 28, 28)"),
        ),
        (
            "image flow matching: `velocity_field([[0.]])`",
            refusal(lambda: image_fm.velocity_field([[0.0]], 0.5), "`sample`"),
        ),
        (
            "image DDPM: `noise_prediction(x, 10**6)`",
            refusal(lambda: image_ddpm.noise_prediction(y8, 10**6), "`timestep`"),
        ),
        ("image DDPM: `noise_prediction(x, -5)`", refusal(lambda: image_ddpm.noise_prediction(y8, -5), "`timestep`")),
        (
            "image DDPM: `clipped_noise(eps, 0, x)`",
            refusal(lambda: image_ddpm.clipped_noise(y8, 0, y8), "`timestep`", "1 … 10"),
        ),
        (
            "flow matching: `log_prob` of a meta tensor",
            refusal(lambda: fm.log_prob(torch.zeros(3, 2, device="meta")), "meta"),
        ),
        (
            "RBM: an empty `start`",
            refusal(lambda: rbm(start=torch.zeros(0, 1, 4, 4), num_inference_steps=2), "`start`"),
        ),
        (
            "score SDE: `rtol=nan`",
            refusal(
                lambda: sde(num_samples=3, num_inference_steps=2, sampler="probability_flow", rtol=math.nan), "`rtol`"
            ),
        ),
        ("score SDE: `score(x, 'a')`", refusal(lambda: sde.score(points, "a"), "`t`")),
        (
            "image flow matching: `log_prob` of NaN images",
            refusal(lambda: image_fm.log_prob(torch.full((2, 1, 28, 28), math.nan)), "`images`"),
        ),
        (
            "flow matching: `log_prob(ode_solver='foo')`",
            refusal(lambda: fm.log_prob(points, ode_solver="foo"), "`ode_solver`", "'foo'"),
        ),
    ]
    return [Result("guards", name, *outcome) for name, outcome in cases]


def front_door_cases(work: Path) -> list[Result]:
    """The scripts' front door (issue 23, items 3, 6 and 10): refusals before the folder is touched, data that do not
    fit the task, checkpoints that do not fit the run, a failed upload, and runs of two processes."""
    from datasets import ClassLabel, Dataset, Features, Image
    from safetensors.torch import load_file, save_file

    rng = np.random.default_rng(0)
    results: list[Result] = []

    def case(name: str, outcome: tuple[str, str]) -> None:
        results.append(Result("front door", name, *outcome))

    def digits(name: str, rows: int) -> str:
        """A parquet file of ``rows`` random 28 × 28 grey images with the labels 0 … 9."""
        from PIL import Image as PILImage

        pixels = rng.integers(0, 256, (rows, 28, 28), dtype=np.uint8)
        data = {"image": [PILImage.fromarray(p) for p in pixels], "label": [i % 10 for i in range(rows)]}
        features = Features({"image": Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})
        path = work / f"{name}.parquet"
        Dataset.from_dict(data, features=features).to_parquet(str(path))
        return str(path)

    def untouched(outcome: tuple[str, str], folder: Path) -> tuple[str, str]:
        """A refusal that left a folder behind came too late."""
        return ("unclear", f"refused after writing {folder.name}/") if folder.exists() else outcome

    images = ["--train_data_files", digits("digits-train", 40), "--test_data_files", digits("digits-test", 20)]
    quick = ["--max_train_steps", "1", "--report_to", "none", "--train_batch_size", "8"]
    setup_errors = [
        ("train_density.py", ["--model", "made", "--image_size", "8"], "made: `--image_size 8` on 28-px data", "8x8"),
        ("train_rbm.py", ["--image_size", "8"], "rbm: `--image_size 8` on 28-px data", "8x8"),
        ("train_fm.py", ["--image_size", "8"], "image flow matching: `--image_size 8` on 28-px data", "8x8"),
        ("train_fm.py", ["--num_channels", "3"], "image flow matching: `--num_channels 3` on grey images", "3 channel"),
        ("train_fm.py", ["--image_column", "nosuch"], "`--image_column nosuch`", "nosuch"),
        ("train_fm.py", ["--label_column", "nosuch"], "`--label_column nosuch`", "nosuch"),
        ("train_fm.py", ["--class_conditional", "--num_classes", "5"], "`--num_classes 5` on 10-class data",
         "num_classes"),
    ]  # fmt: skip
    for index, (name, flags, label, word) in enumerate(setup_errors):
        folder = work / f"setup-{index}"
        process = script(name, *images, *flags, *quick, "--output_dir", str(folder))
        case(label, untouched(script_refusal(process, word), folder))
    text = work / "notes.txt"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    folder = work / "setup-text"
    process = script("train_fm.py", "--train_data_files", str(text), *quick, "--output_dir", str(folder))
    case("`--train_data_files` a text file (not parquet)", untouched(script_refusal(process, "notes.txt"), folder))
    folder = work / "cnf-foo"
    process = script("train_density.py", "--model", "cnf", "--solver", "foo", "--output_dir", str(folder))
    case("`train_density.py --model cnf --solver foo`", untouched(script_refusal(process, "solver", "foo"), folder))
    folder = work / "ais-1"
    process = script("train_rbm.py", *images, "--ais_num_betas", "1", *quick, "--output_dir", str(folder))
    case("`train_rbm.py --ais_num_betas 1` (AIS from one distribution)", script_refusal(process, "ais_num_betas"))

    # a refused resume over a finished run that holds checkpoint-4
    finished = work / "finished-4"
    must_run("train_fm.py", *TINY, "--checkpointing_steps", "4", "--output_dir", str(finished))
    before = folder_digest(finished)
    process = script("train_fm.py", *TINY, "--max_train_steps", "2", "--resume_from_checkpoint", "latest",
                     "--output_dir", str(finished))  # fmt: skip
    case(
        "`--max_train_steps 2 --resume_from_checkpoint latest` over a finished run holding checkpoint-4",
        kept(script_refusal(process, "checkpoint-4", "past the end"), finished, before),
    )
    optimizer = finished / "checkpoints" / "checkpoint-4" / "optimizer.bin"
    optimizer.write_bytes(b"\x80\x04\x95garbage")
    before = folder_digest(finished)
    process = script("train_fm.py", *TINY, "--resume_from_checkpoint", "latest", "--output_dir", str(finished))
    case(
        "a resume at the end of a finished run whose `optimizer.bin` is corrupt",
        kept(script_refusal(process, "checkpoint-4", "corrupt"), finished, before),
    )

    # task states that do not fit: RBM chains of another shape, an energy replay buffer of NaN
    rbm = ["--num_hidden", "8", "--num_chains", "5", "--num_sample_steps", "2", "--num_eval_images", "8",
           "--num_nll_images", "8", "--ais_num_chains", "8", "--ais_num_betas", "20", "--num_validation_samples", "4",
           "--validation_steps", "0", "--checkpointing_steps", "4"]  # fmt: skip
    energy = ["--hidden_size", "8", "--num_layers", "1", "--train_batch_size", "16", "--buffer_size", "40",
              "--langevin_steps", "2", "--num_eval_samples", "40", "--num_nll_samples", "20", "--num_sample_steps",
              "2", "--grid_size", "16", "--max_train_steps", "4", "--validation_steps", "0", "--checkpointing_steps",
              "4", "--report_to", "none"]  # fmt: skip
    tampered = [
        ("train_rbm.py", [*images, *quick, "--max_train_steps", "4", *rbm], "chains", lambda x: x[:3],
         "resume with RBM persistent chains of another shape"),
        ("train_ebm.py", energy, "buffer", lambda x: x * math.nan, "resume with an energy replay buffer of NaN"),
    ]  # fmt: skip
    for name, flags, key, change, label in tampered:
        folder = work / f"tampered-{key}"
        must_run(name, *flags, "--output_dir", str(folder))
        state_file = folder / "checkpoints" / "checkpoint-4" / "task_state.safetensors"
        state = load_file(str(state_file))
        save_file({**state, key: change(state[key]).contiguous()}, str(state_file))
        before = folder_digest(folder)
        process = script(name, *flags, "--resume_from_checkpoint", "latest", "--output_dir", str(folder))
        case(label, kept(script_refusal(process, "checkpoint-4", "task_state.safetensors"), folder, before))

    # random states that Accelerate cannot read: it only logs at INFO level and carries on
    source = work / "random-states"
    must_run("train_fm.py", *TINY, "--checkpointing_steps", "2", "--output_dir", str(source))
    resumed = work / "random-states-resumed"
    shutil.copytree(source / "checkpoints" / "checkpoint-2", resumed / "checkpoints" / "checkpoint-2")
    pickled = resumed / "checkpoints" / "checkpoint-2" / "random_states_0.pkl"
    pickled.write_bytes(pickled.read_bytes()[:50])
    process = script("train_fm.py", *TINY, "--checkpointing_steps", "2", "--resume_from_checkpoint", "latest",
                     "--output_dir", str(resumed))  # fmt: skip
    case(
        "resume from a checkpoint whose `random_states_0.pkl` is corrupt",
        handled(
            lambda: process.returncode == 0 and "not exact" in process.stderr and pickled.name in process.stderr,
            "warned: the resumed run is not exact",
        ),
    )

    # the Hub unreachable (HF_HUB_OFFLINE=1): the saved run must survive the failed upload and say how to push it
    folder = work / "push-offline"
    process = script("train_fm.py", *TINY, "--checkpointing_steps", "0", "--push_to_hub", "--hub_model_id",
                     "someone/tiny", "--output_dir", str(folder))  # fmt: skip
    outcome = script_refusal(process, "saved in", "push_folder_to_hub")
    if outcome[0] == "clear" and not (folder / "model_index.json").is_file():
        outcome = ("lost", "the run was not saved")
    case("`--push_to_hub` with the Hub unreachable", outcome)

    # two processes: exact resume of a task state (RBM chains), and a refusal only the main process can make
    two = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]  # fmt: skip

    def launch(name: str, *flags: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true"}
        command = [sys.executable, *two, str(REPO / "training" / name), *flags]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    def tensors(folder: Path) -> dict[str, torch.Tensor]:
        files = sorted(folder.rglob("*.safetensors"))
        return {f"{path.relative_to(folder)}:{k}": v for path in files for k, v in load_file(str(path)).items()}

    pcd = [*images, *quick, *rbm, "--max_train_steps", "4", "--checkpointing_steps", "2", "--checkpoints_total_limit",
           "0"]  # fmt: skip
    straight, resumed = work / "two-straight", work / "two-resumed"
    first = launch("train_rbm.py", *pcd, "--output_dir", str(straight))
    if first.returncode == 0:
        shutil.copytree(straight / "checkpoints" / "checkpoint-2", resumed / "checkpoints" / "checkpoint-2")
    second = launch("train_rbm.py", *pcd, "--resume_from_checkpoint", "latest", "--output_dir", str(resumed))

    def same_safetensors() -> bool:
        expected, got = tensors(straight), tensors(resumed)
        return sorted(expected) == sorted(got) and all(torch.equal(v, got[k]) for k, v in expected.items())

    case(
        "2 processes: an RBM run resumed after a checkpoint vs the straight run",
        handled(
            lambda: first.returncode == 0 and second.returncode == 0 and same_safetensors(),
            "the same safetensors, chains included",
        ),
    )
    before = folder_digest(straight)
    process = launch("train_rbm.py", *pcd, "--output_dir", str(straight))
    errors = {line for line in process.stderr.splitlines() if line.startswith("error:")}
    message = next(iter(errors), "")
    together = process.returncode != 0 and len(errors) == 1 and "holds" in message and "[rank1]" not in process.stderr
    outcome = ("clear", message[:160]) if together else ("unclear", "the other process failed on its own")
    case("2 processes: a new run into a finished run's folder (only the main process checks it)",
         kept(outcome, straight, before))  # fmt: skip
    return results


#: every group of cases, in the order they run (a new group is one function above and one line here)
CASE_GROUPS: list[Callable[[Path], list[Result]]] = [
    output_folder_cases,
    argument_cases,
    checkpoint_cases,
    pipeline_cases,
    data_cases,
    privacy_cases,
    loading_cases,
    guard_cases,
    front_door_cases,
]


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hfgen-reliability-") as tmp:
        work = Path(tmp)
        results = []
        for cases in CASE_GROUPS:
            found = cases(work)
            for result in found:
                print(f"{result.outcome:8s} {result.group}: {result.case} — {result.detail}", flush=True)
            results += found
    write_results(results, time.perf_counter() - start)


if __name__ == "__main__":
    main()
