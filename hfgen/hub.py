"""Model cards rendered from the Jinja templates in ``model_cards/`` with huggingface_hub's ``ModelCard``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from importlib import resources
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

if TYPE_CHECKING:
    from hfgen.training import FlowMatchingArguments

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


def flow_matching_metrics_table(metrics: Mapping[str, float], num_samples: int) -> str:
    """The card's metrics table from the ``metrics.json`` of a flow-matching run (missing entries are skipped);
    ``num_samples`` is the sample size of the W2, MMD and support figures."""
    rows: list[tuple[Any, ...]] = []
    if "samples_w2" in metrics:
        note = f"exact OT (POT), {num_samples:,} Euler samples against as many target samples"
        rows.append(("W2 to fresh target samples", f"{metrics['samples_w2']:.4f}", note))
        rows.append(("W2 floor", f"{metrics['samples_w2_floor']:.4f}", "W2 between two target samples of that size"))
        rows.append(("W2 / floor", f"{metrics['samples_w2_ratio']:.2f}", "1.00 is as good as a fresh target sample"))
    if "samples_mmd" in metrics:
        rows.append(("MMD²", f"{metrics['samples_mmd']:.2e}", "Gaussian kernel"))
    if "samples_fraction_in_support" in metrics:
        rows.append(("in support", f"{metrics['samples_fraction_in_support']:.3f}", "fraction of samples"))
    if "nll" in metrics:
        rows.append(("NLL (nats)", f"{metrics['nll']:.4f} ± {metrics['nll_stderr']:.4f}", "held-out target points"))
        rows.append(("entropy (nats)", f"{metrics['entropy']:.4f}", "the lowest NLL any model can reach"))
        rows.append(("NLL − entropy", f"{metrics['nll_minus_entropy']:.4f}", "KL(target ‖ model)"))
    if "train_seconds" in metrics:
        rows.append(("training", f"{metrics['train_steps']} steps, {metrics['train_seconds']:.0f} s", ""))
    return markdown_table(("metric", "value", "note"), rows)


def flow_matching_eval_results(args: FlowMatchingArguments, metrics: Mapping[str, float]) -> list[EvalResult]:
    """Machine-readable metrics for the card's ``model-index``."""
    names = {
        "samples_w2": ("wasserstein-2", "W2"),
        "samples_w2_ratio": ("wasserstein-2-over-floor", "W2 / floor"),
        "samples_fraction_in_support": ("fraction-in-support", "fraction in support"),
        "nll": ("nll", "NLL (nats)"),
        "nll_minus_entropy": ("nll-minus-entropy", "NLL − entropy (nats)"),
    }
    return [
        EvalResult(
            task_type=TASK,
            dataset_type=f"hfgen/{args.dataset}",
            dataset_name=args.dataset,
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(float(metrics[key]), 6),
        )
        for key, (metric_type, metric_name) in names.items()
        if key in metrics
    ]


def flow_matching_card(
    args: FlowMatchingArguments, metrics: Mapping[str, float], repo_id: str | None = None
) -> ModelCard:
    """Render ``model_cards/flow_matching.md`` for a training run: metadata, math, usage, metrics, config.

    ``repo_id`` is the Hub id the usage snippet loads (the output folder when ``None``).
    """
    model_name = repo_id.split("/")[-1] if repo_id else f"fm-{args.source}-to-{args.dataset}"
    card_data = ModelCardData(
        library_name="hfgen",
        license=LICENSE,
        tags=["hfgen", "flow-matching", "diffusers", "toy-2d"],
        model_name=model_name,
        eval_results=flow_matching_eval_results(args, metrics) or None,
    )
    coupling = (
        "pairs coupled by exact minibatch optimal transport"
        if args.coupling == "ot"
        else "independent pairs x_0 ~ source, x_1 ~ target"
    )
    return ModelCard.from_template(
        card_data,
        template_str=card_template("flow_matching"),
        model_name=model_name,
        repo_id=repo_id or args.output_dir,
        source=args.source,
        target=args.dataset,
        path_description=args.probability_path().describe(),
        coupling_description=coupling,
        time_beta=args.time_beta,
        solver=args.solver,
        num_inference_steps=args.num_inference_steps,
        ema_decay=args.ema_decay,
        metrics_table=flow_matching_metrics_table(metrics, args.num_eval_samples),
        config_table=markdown_table(("argument", "value"), sorted(asdict(args).items())),
    )
