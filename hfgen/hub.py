"""Model cards rendered from the Jinja templates in ``model_cards/`` with huggingface_hub's ``ModelCard``, and
uploads to the Hub through one helper."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from hfgen.remote_code import component_entries, remote_pipeline_module

LICENSE = "apache-2.0"
TASK = "unconditional-generation"


def card_template(name: str) -> str:
    """Text of the template ``model_cards/<name>.md`` (shipped in the package as ``hfgen.model_cards``)."""
    template = resources.files("hfgen.model_cards").joinpath(f"{name}.md")
    if not template.is_file():
        raise FileNotFoundError(f"no model-card template named {name!r} in hfgen.model_cards")
    return template.read_text(encoding="utf-8")


def markdown_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """A Markdown table; ``|`` inside cells is escaped."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def sample_quality_rows(metrics: Mapping[str, Any], sampler_note: str) -> list[tuple[Any, ...]]:
    """Card rows for the sample-quality metrics of a run (``samples_w2``, its floor and ratio, MMD², support);
    ``sampler_note`` says how the samples were drawn (for example ``"10,000 Euler samples"``)."""
    rows: list[tuple[Any, ...]] = []
    if "samples_w2" in metrics:
        note = f"exact OT (POT), {sampler_note} against as many data samples"
        rows.append(("W2 to fresh data samples", f"{metrics['samples_w2']:.4f}", note))
        rows.append(("W2 floor", f"{metrics['samples_w2_floor']:.4f}", "W2 between two data samples of that size"))
        rows.append(("W2 / floor", f"{metrics['samples_w2_ratio']:.2f}", "1.00 is as good as a fresh data sample"))
    if "samples_mmd" in metrics:
        rows.append(
            (
                "MMD²",
                f"{metrics['samples_mmd']:.2e}",
                "Gaussian kernels; the unbiased estimate, so slightly negative when samples and data match",
            )
        )
    if "samples_fraction_in_support" in metrics:
        rows.append(("in support", f"{metrics['samples_fraction_in_support']:.3f}", "fraction of samples"))
    return rows


def training_row(metrics: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The card row for the training budget, when the run reports it."""
    if "train_seconds" not in metrics:
        return []
    return [("training", f"{metrics['train_steps']} steps, {metrics['train_seconds']:.0f} s", "")]


def training_summary(metrics: Mapping[str, Any]) -> str:
    """One sentence on how the run trained: steps, processes, samples seen and time."""
    if "train_steps" not in metrics:
        return ""
    processes = metrics.get("num_processes", 1)
    parallel = f" on {processes} data-parallel processes" if processes > 1 else ""
    cpu = f" ({metrics['train_cpu_seconds']:.0f} s of CPU time)" if "train_cpu_seconds" in metrics else ""
    return (
        f"Trained for {metrics['train_steps']:,} optimizer steps{parallel} "
        f"({metrics.get('samples_seen', 0):,} training samples) in {metrics.get('train_seconds', 0):.0f} s{cpu}."
    )


#: the columns of a toy-data run's validation table: metric key → header
SAMPLE_QUALITY_COLUMNS = (
    ("samples_w2", "W2"),
    ("samples_w2_ratio", "W2 / floor"),
    ("nll_minus_entropy", "NLL − entropy"),
)


def validation_table(
    history: list[Mapping[str, Any]],
    final: Mapping[str, Any] | None = None,
    columns: Sequence[tuple[str, str]] = SAMPLE_QUALITY_COLUMNS,
    digits: int = 4,
) -> str:
    """The metrics logged at each validation (EMA weights), one row per validation and one column per metric of
    ``columns`` that any record has, ending with the ``final`` evaluation's row when the last validation was before
    the last step; empty without validations."""
    if not history:
        return ""
    records = list(history)
    if final is not None and "train_steps" in final and records[-1]["step"] != final["train_steps"]:
        records.append({**final, "step": f"{final['train_steps']} (final)"})
    shown = [(key, name) for key, name in columns if any(key in record for record in records)]
    rows = [
        (record["step"], *(f"{record[key]:.{digits}f}" if key in record else "" for key, _ in shown))
        for record in records
    ]
    return markdown_table(("step", *(name for _, name in shown)), rows)


def eval_results(
    metrics: Mapping[str, Any],
    names: Mapping[str, tuple[str, ...]],
    dataset_name: str,
    dataset_type: str,
    dataset_split: str | None = None,
) -> list[EvalResult]:
    """``EvalResult``s for a card's ``model-index``: ``names`` maps a ``metrics.json`` key to its
    ``(metric_type, metric_name, …)``; keys the run did not report are skipped."""
    return [
        EvalResult(
            task_type=TASK,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(float(metrics[key]), 6),
        )
        for key, (metric_type, metric_name, *_) in names.items()
        if key in metrics
    ]


#: arguments naming local data files: a card shows only the file name
DATA_PATH_ARGUMENTS = ("train_data_files", "test_data_files", "classifier_path", "data_root")


def public_value(name: str, value: Any) -> Any:
    """``value`` as a card may show it: a data file (:data:`DATA_PATH_ARGUMENTS`) or any absolute path reduced to
    its last part, so that home folders and data locations stay private."""
    if isinstance(value, (list, tuple)):
        return [public_value(name, item) for item in value]
    if isinstance(value, str) and (name in DATA_PATH_ARGUMENTS or os.path.isabs(value) or value.startswith("~")):
        return Path(value).name or value
    return value


def usage_repo_id(repo_id: str | None, output_dir: str | os.PathLike) -> str:
    """What a card's usage line loads (``from_pretrained("…")``): the Hub repo id, or for a run given none, the name
    of its output folder only (its local path is private, and means nothing on the Hub)."""
    return repo_id or Path(os.path.abspath(output_dir)).name


def config_table(arguments: Mapping[str, Any]) -> str:
    """The card's configuration table: every argument and its value, local paths reduced to their last part."""
    return markdown_table(("argument", "value"), sorted((k, public_value(k, v)) for k, v in arguments.items()))


#: the sample-quality metrics every toy-data card reports in its ``model-index``
SAMPLE_QUALITY_RESULTS = {
    "samples_w2": ("wasserstein-2", "W2"),
    "samples_w2_ratio": ("wasserstein-2-over-floor", "W2 / floor"),
    "samples_fraction_in_support": ("fraction-in-support", "fraction in support"),
}
#: ... and, for a model with a log-density, its held-out NLL
LIKELIHOOD_RESULTS = {
    **SAMPLE_QUALITY_RESULTS,
    "nll": ("nll", "NLL (nats)"),
    "nll_minus_entropy": ("nll-minus-entropy", "NLL − entropy (nats)"),
}


def nll_rows(metrics: Mapping[str, Any], note: str, divergence: str = "KL(target ‖ model)") -> list[tuple[Any, ...]]:
    """Card rows for a held-out NLL (``note`` says on what), with the entropy and ``NLL − entropy`` (the
    ``divergence`` it estimates) where the data's entropy is known."""
    rows: list[tuple[Any, ...]] = []
    if metrics.get("nll") is not None:
        rows.append(("NLL (nats)", f"{metrics['nll']:.4f} ± {metrics['nll_stderr']:.4f}", note))
    if metrics.get("entropy") is not None:
        rows.append(("entropy (nats)", f"{metrics['entropy']:.4f}", "the lowest NLL any model can reach"))
        rows.append(("NLL − entropy", f"{metrics['nll_minus_entropy']:.4f}", divergence))
    return rows


def metric_rows(
    metrics: Mapping[str, Any],
    described: Mapping[str, tuple[str, str, str]],
    stderr: Mapping[str, str],
    value_format: str = ",.4f",
) -> list[tuple[Any, ...]]:
    """Card rows ``(name, value ± its standard error, note)`` of the metrics ``described`` (``key → (model-index
    type, name, note)``) that the run reported; ``stderr`` names each one's standard-error key."""
    rows = []
    for key, (_, name, note) in described.items():
        if key in metrics:
            value = metrics[key]
            text = f"{value:{value_format}}" if isinstance(value, float) else str(value)
            error = metrics.get(stderr.get(key, ""))
            if isinstance(error, float):
                text += f" ± {error:{value_format.lstrip(',')}}"
            rows.append((name, text, note))
    return rows


def render_card(
    template: str,
    args: Any,
    metrics: Mapping[str, Any],
    repo_id: str | None,
    *,
    default_name: str,
    tags: list[str],
    results: list[EvalResult] | None = None,
    card_data: Mapping[str, Any] | None = None,
    **values: Any,
) -> ModelCard:
    """Render the template ``model_cards/<template>.md`` for a training run with ``args`` (its arguments: the
    template reads them as ``args.<name>``) and ``metrics`` (its ``metrics.json``).

    The card's metadata: ``library_name`` hfgen, the license, ``tags``, ``results`` as its ``model-index``, the
    data set when it is a Hub id, and ``card_data`` (other ``ModelCardData`` fields). The template also gets
    ``model_name`` (the repo's name, else ``default_name``), ``repo_id`` (what the usage line loads),
    ``training_summary``, ``config_table`` (every argument) and ``values``, which may override these."""
    model_name = repo_id.split("/")[-1] if repo_id else default_name
    hub_dataset = getattr(args, "dataset_name", None)
    data = {"library_name": "hfgen", "datasets": [hub_dataset] if hub_dataset else None, **(card_data or {})}
    metadata = ModelCardData(license=LICENSE, tags=tags, model_name=model_name, eval_results=results or None, **data)
    context = {
        "repo_id": usage_repo_id(repo_id, args.output_dir),
        "training_summary": training_summary(metrics),
        "config_table": config_table(args.to_dict()),
        **values,
    }
    return ModelCard.from_template(
        metadata, template_str=card_template(template), model_name=model_name, args=args, **context
    )


#: what a training run adds to its pipeline's files on the Hub: the card, the metrics and the top-level plots.
#: Its ``args.json`` (local paths), checkpoints (pickled optimizer and random states), validation figures and logs
#: stay local, and so does anything else found in the folder.
RUN_FILES = ("README.md", "metrics.json")


def upload_files(folder: str | os.PathLike) -> list[str]:
    """The files of ``folder`` an upload sends, as paths relative to it: ``model_index.json``,
    ``weights_sha256.json``, each component's config, safetensors weights (one file or shards with their
    ``*.safetensors.index.json``) and remote-code module (the folders ``model_index.json`` names), a remote-code
    pipeline module, :data:`RUN_FILES` and the top-level figures (``*.png``, ``*.gif``).
    A component name that is not a plain folder name (``../other``) is refused before any file is listed.

    A folder without ``model_index.json`` that holds one transformers model (``config.json`` and its safetensors
    weights, as ``save_pretrained`` of a ``PreTrainedModel`` writes them: the MNIST classifier) sends those, the
    run's files and figures."""
    root = Path(folder)
    if not (root / "model_index.json").is_file():
        names = ["config.json", *_weight_files(root), *RUN_FILES, *_figures(root)]
        return sorted(name for name in set(names) if (root / name).is_file())
    index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    names = ["model_index.json", "weights_sha256.json", *RUN_FILES]
    pipeline_module = remote_pipeline_module(index)
    if pipeline_module is not None:  # diffusers' remote-code layout: the pipeline's module
        names.append(f"{pipeline_module}.py")
    for component, (library, _) in component_entries(index).items():
        names += [f"{component}/{name}" for name in ("config.json", "scheduler_config.json", f"{library}.py")]
        names += [f"{component}/{name}" for name in _weight_files(root / component)]
    names += _figures(root)
    return sorted(name for name in set(names) if (root / name).is_file())


def _figures(root: Path) -> list[str]:
    """The run's top-level figures (``*.png``, ``*.gif``)."""
    return [p.name for p in (*root.glob("*.png"), *root.glob("*.gif"))]


#: a component's weights: one file, or the shards that an index file lists (diffusers' and transformers' names)
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")


def _weight_files(component: Path) -> list[str]:
    """The weight files of a saved component: :data:`WEIGHT_FILES`, and the shards named by the ``weight_map`` of
    their ``.index.json`` (never any other ``.safetensors`` file that lies in the folder)."""
    names = []
    for weights in WEIGHT_FILES:
        names.append(weights)
        index = component / f"{weights}.index.json"
        if index.is_file():
            shards = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()
            names += [index.name, *(Path(shard).name for shard in shards)]
    return sorted(set(names))


#: files an upload sends as they are, never read as text
BINARY_SUFFIXES = (".safetensors", ".png", ".gif")


def check_no_local_path(folder: str | os.PathLike, files: list[str]) -> None:
    """Refuse an upload of ``files`` (relative to ``folder``) when a text file among them holds the folder's absolute
    local path (a model card written by an older hfgen, say): a ``ValueError`` names the files."""
    root = Path(folder)
    paths = {os.path.abspath(root), str(root.resolve())} - {os.path.abspath(os.sep)}
    revealing = [
        name
        for name in files
        if not name.endswith(BINARY_SUFFIXES)
        and any(path in (root / name).read_text(encoding="utf-8", errors="replace") for path in paths)
    ]
    if revealing:
        raise ValueError(
            f"{revealing} in {folder} contain the folder's local path {sorted(paths)[0]}, which an upload must not "
            "reveal: replace it (a usage line loads the repo id) and push again"
        )


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    api: HfApi | None = None,
    private: bool | None = None,
    commit_message: str = "Upload with hfgen",
    revision: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Upload a saved pipeline, transformers model or training-run folder to the Hub model repo ``repo_id`` (created
    if missing).

    Exactly the files a saved pipeline consists of, plus the run's card, metrics and plots, are sent
    (:func:`upload_files`); nothing else in the folder is, and a text file that holds the folder's local path is
    refused (:func:`check_no_local_path`). ``api`` defaults to an
    ``HfApi()`` that uses the login cached by ``hf auth login`` (or ``HF_TOKEN``); tokens are never printed or
    stored. Returns the upload's ``CommitInfo``.
    """
    folder = Path(folder)
    is_model = (folder / "config.json").is_file() and any((folder / name).is_file() for name in _weight_files(folder))
    if not (folder / "model_index.json").is_file() and not is_model:
        raise FileNotFoundError(
            f"{folder} has no model_index.json (a saved pipeline) nor config.json with safetensors weights (a saved "
            "transformers model): save one there before pushing it"
        )
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must look like 'user/name', got {repo_id!r}")
    files = upload_files(folder)
    check_no_local_path(folder, files)
    api = api or HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        commit_message=commit_message,
        revision=revision,
        create_pr=create_pr,
        allow_patterns=files,
    )


def pipeline_card(pipeline: Any, repo_id: str) -> ModelCard:
    """A model card for a pipeline pushed on its own (not from a training run): metadata, components, usage."""
    components = [
        (name, f"{type(module).__module__}.{type(module).__name__}") for name, module in pipeline.components.items()
    ]
    card_data = ModelCardData(
        library_name="hfgen",
        license=LICENSE,
        tags=["hfgen", "diffusers", type(pipeline).__name__],
        model_name=repo_id.split("/")[-1],
    )
    return ModelCard.from_template(
        card_data,
        template_str=card_template("pipeline"),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        pipeline_class=type(pipeline).__name__,
        description=(type(pipeline).__doc__ or "").strip().split("\n\n")[0],
        components_table=markdown_table(("component", "class"), components),
    )


def push_pipeline_to_hub(
    pipeline: Any,
    repo_id: str,
    *,
    card: ModelCard | None = None,
    api: HfApi | None = None,
    private: bool | None = None,
    commit_message: str = "Upload with hfgen",
) -> Any:
    """Save ``pipeline`` (safetensors + configs) with ``card`` (default :func:`pipeline_card`) to a temporary
    folder and upload it with :func:`push_folder_to_hub`."""
    with tempfile.TemporaryDirectory(prefix="hfgen-push-") as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        (card or pipeline_card(pipeline, repo_id)).save(os.path.join(tmp, "README.md"))
        return push_folder_to_hub(tmp, repo_id, api=api, private=private, commit_message=commit_message)
