"""Model cards: rendered from model_cards/ templates, YAML metadata that parses, metrics that match the run."""

import ast
import re

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.errors import HFValidationError
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results
from huggingface_hub.utils import validate_repo_id

from hfgen.hub import card_template, markdown_table
from hfgen.methods.flow_matching import PATHS, get_path
from hfgen.model_cards.flow_matching import flow_matching_card
from hfgen.training import FlowMatchingArguments

METRICS = {
    "train_seconds": 12.5,
    "train_steps": 300,
    "samples_w2": 0.0912,
    "samples_w2_floor": 0.0801,
    "samples_w2_ratio": 0.0912 / 0.0801,
    "samples_mmd": 3.2e-5,
    "samples_fraction_in_support": 0.953,
    "nll": 2.2,
    "nll_stderr": 0.01,
    "entropy": 2.0794415416798357,
    "nll_minus_entropy": 2.2 - 2.0794415416798357,
    "num_processes": 2,
    "samples_seen": 300 * 512 * 2,
    "validation": [
        {"step": 150, "samples_w2": 0.2, "samples_w2_ratio": 2.5, "nll_minus_entropy": 0.5},
        {"step": 300, "samples_w2": 0.0912, "samples_w2_ratio": 1.14, "nll_minus_entropy": 0.12},
    ],
}


def front_matter(text: str) -> dict:
    _, yaml_block, _ = text.split("---\n", 2)
    return yaml.safe_load(yaml_block)


def test_card_round_trips_through_model_card_load_with_the_run_metrics(tmp_path):
    args = FlowMatchingArguments(output_dir=str(tmp_path), coupling="ot", ema_decay=0.99)
    flow_matching_card(args, METRICS, repo_id="someone/fm-checkerboard").save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")
    metadata = front_matter((tmp_path / "README.md").read_text(encoding="utf-8"))
    assert metadata["library_name"] == "diffusers" and "flow-matching" in metadata["tags"]
    assert metadata["model-index"][0]["name"] == "fm-checkerboard"
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["wasserstein-2"] == pytest.approx(0.0912)
    assert values["nll-minus-entropy"] == pytest.approx(METRICS["nll_minus_entropy"], abs=1e-6)
    assert {r.dataset_name for r in card.data.eval_results} == {"checkerboard"}
    body = card.text
    assert 'FlowMatchingPipeline.from_pretrained("someone/fm-checkerboard")' in body
    assert "| W2 / floor | 1.14 |" in body and "| in support | 0.953 |" in body
    assert "exact minibatch optimal transport" in body and "decay 0.99" in body
    assert "| coupling | ot |" in body and "![samples](samples.png)" in body
    assert "Trained for 300 optimizer steps on 2 data-parallel processes (307,200 training samples) in 12 s." in body
    assert "| step | W2 | W2 / floor | NLL − entropy |" in body and "| 150 | 0.2000 | 2.5000 | 0.5000 |" in body
    assert metadata["source_distribution"] == "gaussian" and "ot-cfm" in metadata["tags"]


def test_card_without_metrics_has_no_model_index_and_loads_from_the_output_folder(tmp_path):
    args = FlowMatchingArguments(output_dir=str(tmp_path), ema_decay=0.0)
    card = flow_matching_card(args, {})
    assert "model-index" not in front_matter(str(card))
    assert f'from_pretrained("{tmp_path.name}")' in card.text and str(tmp_path) not in card.text
    assert "moving average" not in card.text
    assert "Validation during training" not in card.text


@pytest.mark.parametrize(("coupling", "described"), [
    ("independent", "independent pairs x_0 ~ source, x_1 ~ target"),
    ("ot", "pairs coupled by exact minibatch optimal transport"),
    ("sinkhorn", "pairs drawn from the entropic minibatch OT plan (Sinkhorn), regularisation 2σ² = 0.5"),
])  # fmt: skip
def test_the_card_names_the_coupling_solver_and_steps_the_run_used(tmp_path, coupling, described):
    args = FlowMatchingArguments(output_dir=str(tmp_path), coupling=coupling, sigma=0.5, solver="heun",
                                 num_inference_steps=40, num_eval_samples=3_000, max_train_steps=300)  # fmt: skip
    body = flow_matching_card(args, METRICS | {"evaluation_samples": 2_000}).text
    assert f"conditional flow matching, {described})" in body
    # the samples the final evaluation drew (metrics.json), with the run's solver and steps
    assert "2,000 samples (heun, 40 steps) against as many data samples" in body and "Euler samples" not in body
    assert "pipe(num_samples=1000, num_inference_steps=40," in body


@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_path_describes_its_equation(name):
    description = get_path(name).describe()
    assert "x_t" in description and "x_0" in description and "x_1" in description


def test_unknown_template_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no model-card template named 'nope'"):
        card_template("nope")


def test_markdown_table_escapes_pipes():
    assert markdown_table(("a", "b"), [("x|y", 1)]).splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]


def test_every_metrics_row_of_the_card_shows_its_own_metrics_json_value(tmp_path):
    # distinct numbers, so a swapped value/stderr or a floor row showing the model's W2 cannot pass
    metrics = {**METRICS, "samples_w2": 0.1234, "samples_w2_floor": 0.0567, "samples_w2_ratio": 0.1234 / 0.0567}
    metrics |= {"samples_mmd": 7.5e-4, "nll": 2.345, "nll_stderr": 0.0678, "entropy": 2.1, "nll_minus_entropy": 0.245}
    args = FlowMatchingArguments(output_dir=str(tmp_path))
    text = flow_matching_card(args, metrics).text
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines() if line.count("|") >= 4
    }
    assert rows["W2 to fresh data samples"] == "0.1234"
    assert rows["W2 floor"] == "0.0567"
    assert rows["W2 / floor"] == f"{0.1234 / 0.0567:.2f}"
    assert rows["MMD²"] == "7.50e-04"
    assert rows["NLL (nats)"] == "2.3450 ± 0.0678"
    assert rows["entropy (nats)"] == "2.1000"
    assert rows["NLL − entropy"] == "0.2450"


def test_cards_show_local_data_paths_by_their_file_name_only(tmp_path):
    from hfgen.model_cards.classifier import classifier_card
    from hfgen.training.classifier import ClassifierArguments

    private = "/home/alice/secret-project/mnist/train.parquet"
    args = ClassifierArguments(output_dir="/home/alice/runs/clf", train_data_files=private)
    metrics = {"test_accuracy": 0.9, "train_accuracy": 0.95, "num_test_images": 10, "num_train_images": 100}
    text = str(classifier_card(args, metrics))
    assert "/home/alice" not in text
    assert "| train_data_files | train.parquet |" in text and "| output_dir | clf |" in text


def test_the_card_ends_its_validation_table_with_the_final_step_and_omits_unused_settings(tmp_path):
    metrics = {**METRICS, "train_steps": 400}  # last validation at 300
    text = flow_matching_card(FlowMatchingArguments(output_dir=str(tmp_path)), metrics).text
    assert f"| 400 (final) | {METRICS['samples_w2']:.4f} |" in text
    assert "| sigma |" not in text and "| sigma_min |" in text  # the linear path uses σ_min, not σ
    brownian = flow_matching_card(FlowMatchingArguments(output_dir=str(tmp_path), path="brownian"), metrics).text
    assert "| sigma |" in brownian and "| sigma_min |" not in brownian
    assert "unbiased estimate, so slightly negative" in text


#: every metric some family's card reports in its model-index (each card picks its own)
ALL_METRICS = {
    **{k: v for k, v in METRICS.items() if k != "validation"},
    "samples_frechet_distance": 3.5,
    "samples_confidence": 0.9,
    "samples_label_entropy": 2.2,
    "log_likelihood": -90.0,
    "log_likelihood_stderr": 0.5,
    "log_partition": 200.0,
    "elbo": -100.0,
    "elbo_stderr": 0.4,
    "iwae_stderr": 0.3,
    "reconstruction_mse": 0.01,
    "knn_accuracy": 0.95,
    **{f"{d}_{k}": 0.1 for d in ("forward", "backward") for k in ("w2", "w2_floor", "w2_ratio")},
    "test_accuracy": 0.99,
    "train_accuracy": 0.995,
    "num_test_images": 100,
    "num_train_images": 1000,
}
IMAGE_TAG = "unconditional-image-generation"


def _card_cases(data_file: str) -> dict:
    """Every family's card: (card function, its arguments, the expected pipeline tag, the Hub data set or None)."""
    from hfgen.model_cards.classifier import classifier_card
    from hfgen.model_cards.ddpm_points import ddpm_points_card
    from hfgen.model_cards.density import density_card
    from hfgen.model_cards.energy import energy_card
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
        FlowMatchingImageArguments,
        RBMArguments,
        SchrodingerBridgeArguments,
        ScoreSDEArguments,
        VAEArguments,
    )

    mnist, fashion, local = (
        {"dataset_name": "ylecun/mnist"},
        {"dataset_name": "zalando-datasets/fashion_mnist"},
        {"train_data_files": data_file},
    )
    return {
        "flow matching": (flow_matching_card, FlowMatchingArguments(), None, None),
        "bridge": (schrodinger_bridge_card, SchrodingerBridgeArguments(), None, None),
        "density gmm": (density_card, DensityArguments(model="gmm"), None, None),
        "density made images": (density_card, DensityArguments(model="made", **mnist), IMAGE_TAG, "ylecun/mnist"),
        "density made local images": (density_card, DensityArguments(model="made", **local), IMAGE_TAG, None),
        "score": (score_sde_card, ScoreSDEArguments(), None, None),
        "energy": (energy_card, EnergyArguments(), None, None),
        "ddpm points": (ddpm_points_card, DDPMPointsArguments(), None, None),
        "image flow matching": (
            image_flow_matching_card,
            FlowMatchingImageArguments(**mnist),
            IMAGE_TAG,
            "ylecun/mnist",
        ),
        "image flow matching local": (image_flow_matching_card, FlowMatchingImageArguments(**local), IMAGE_TAG, None),
        "image flow matching local folder": (  # a folder named like a Hub id, but local
            image_flow_matching_card,
            FlowMatchingImageArguments(dataset_name="mnist"),
            IMAGE_TAG,
            None,
        ),
        "image ddpm class-conditional": (
            image_ddpm_card,
            DDPMImageArguments(**fashion, class_conditional=True),
            IMAGE_TAG,
            "zalando-datasets/fashion_mnist",
        ),
        "vae": (vae_card, VAEArguments(**mnist), IMAGE_TAG, "ylecun/mnist"),
        "autoencoder local": (vae_card, VAEArguments(model="ae", **local), "image-feature-extraction", None),
        "rbm local": (rbm_card, RBMArguments(**local), IMAGE_TAG, None),
        "classifier": (classifier_card, ClassifierArguments(**mnist), "image-classification", "ylecun/mnist"),
    }


def _is_hub_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def test_every_family_card_follows_the_hub_conventions(tmp_path, monkeypatch):
    """library_name is the library that loads the folder, pipeline_tag the Hub task of image models (none for 2-D
    points), ``datasets`` only a Hub data set the run trained on, a model-index that huggingface_hub parses back to
    the same results with a dataset type that is the Hub id or visibly none, and a diffusers-only usage snippet."""
    monkeypatch.chdir(tmp_path)  # the cards' folders and the local data file live here
    data_file = tmp_path / "mnist" / "train.parquet"
    data_file.parent.mkdir()
    data_file.touch()
    for family, (make_card, args, pipeline_tag, hub_dataset) in _card_cases(str(data_file)).items():
        card = ModelCard(str(make_card(args, ALL_METRICS, repo_id=f"someone/{family.replace(' ', '-')}")))
        data = card.data
        is_classifier = family == "classifier"
        assert data.library_name == ("transformers" if is_classifier else "diffusers"), family
        assert data.get("pipeline_tag") == pipeline_tag, family
        assert data.get("datasets") == ([hub_dataset] if hub_dataset else None), family
        assert "hfgen" in data.tags, family
        results = data.eval_results or []
        assert results or is_classifier, family
        name, parsed = model_index_to_eval_results(eval_results_to_model_index(data.model_name, results))
        assert name == data.model_name and parsed == results, family
        for result in results:
            if hub_dataset:
                assert result.dataset_type == hub_dataset, family
            else:  # toy or local data: a type that no one can take for a Hub id
                assert not _is_hub_id(result.dataset_type) and ":" in result.dataset_type, (family, result)
            assert result.task_type == (pipeline_tag or "unconditional-generation"), family
        blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
        for block in blocks:
            ast.parse(block)
        if not is_classifier:
            loads = f'DiffusionPipeline.from_pretrained("someone/{family.replace(" ", "-")}", trust_remote_code=True)'
            assert any(loads in block and "import hfgen" not in block and "from hfgen" not in block for block in blocks)
            assert any("from hfgen" in block for block in blocks), family
