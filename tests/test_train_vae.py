"""training/train_vae.py and hfgen.training.vae on tiny synthetic 8 × 8 digits: arguments, the batch stream, a
full run (pipeline, card, plots, metrics), exact resume and the script in a subprocess."""

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch
from factories import digit_parquet_files, train_task
from huggingface_hub import ModelCard
from training_runs import assert_resumed_run_is_exact, file_run_args, launch

from hfgen import VAE, AutoEncoder, AutoEncoderPipeline, VAEPipeline
from hfgen.image_metrics import knn_accuracy, reconstruction_metrics
from hfgen.models.classifier import MnistClassifier, MnistClassifierConfig
from hfgen.training import VAEArguments, VAETask, run

TINY = {
    "image_size": 8,
    "hidden_sizes": [16, 8],
    "train_batch_size": 16,
    "max_train_steps": 6,
    "lr_warmup_steps": 2,
    "checkpointing_steps": 3,
    "validation_steps": 3,
    "logging_steps": 2,
    "num_validation_samples": 16,
    "num_validation_nll_samples": 4,
    "num_eval_images": 20,
    "num_eval_samples": 16,
    "num_nll_images": 8,
    "num_importance_samples": 10,
    "knn_neighbors": 3,
    "report_to": "none",
}


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    return digit_parquet_files(tmp_path_factory.mktemp("digits"), 64)


tiny_args = partial(file_run_args, VAEArguments, TINY)


def test_argument_errors_name_the_argument(data_files):
    train, _ = data_files  # the data-source checks: tests/test_image_data.py
    bad = [("model", "gan"), ("binarize", "otsu"), ("likelihood", "poisson"), ("architecture", "vit")]
    for name, value in [*bad, ("normalization", "batch")]:
        with pytest.raises(ValueError, match=f"`{name}` must be one of .*{value}"):
            VAEArguments(train_data_files=train, **{name: value})
    with pytest.raises(ValueError, match="`kl_weight` applies to the VAE only"):
        VAEArguments(train_data_files=train, model="ae", kl_weight=0.5)
    with pytest.raises(ValueError, match="`kl_weight` must be > 0"):
        VAEArguments(train_data_files=train, kl_weight=0.0)
    with pytest.raises(ValueError, match="`neighbor_weight` applies to the autoencoder only"):
        VAEArguments(train_data_files=train, neighbor_weight=1.0)
    with pytest.raises(ValueError, match="`neighbor_weight` must be >= 0"):
        VAEArguments(train_data_files=train, model="ae", neighbor_weight=-1.0)
    with pytest.raises(ValueError, match=r"`neighbor_negatives` must be an int in \[0, train_batch_size − 1 = 15\]"):
        VAEArguments(
            train_data_files=train, model="ae", neighbor_weight=1.0, train_batch_size=16, neighbor_negatives=16
        )
    with pytest.raises(ValueError, match="`neighbor_k` must be an int >= 1"):
        VAEArguments(train_data_files=train, model="ae", neighbor_weight=1.0, neighbor_k=0)
    with pytest.raises(ValueError, match="`num_importance_samples` must be an int >= 1, got 0"):
        VAEArguments(train_data_files=train, num_importance_samples=0)
    with pytest.raises(ValueError, match="`train_batch_size`"):  # the shared checks still run
        VAEArguments(train_data_files=train, train_batch_size=0)
    args = VAEArguments(train_data_files=train)
    assert (args.output_dir, args.model, args.latent_dim, args.binarize) == ("out/vae-mnist", "vae", 2, "dynamic")
    assert "num_importance_samples" in args.run_only_fields and "kl_weight" not in args.run_only_fields


def test_the_default_recipe_and_its_normalisation_reach_the_model(data_files):
    train, _ = data_files
    args = VAEArguments(train_data_files=train)
    recipe = (args.train_batch_size, args.max_train_steps, args.learning_rate, args.activation, args.normalization)
    assert recipe == (512, 8_000, 3e-3, "relu", "layer")
    for normalization, count in (("layer", 2), ("none", 0)):
        kwargs = replace(args, normalization=normalization, image_size=8, hidden_sizes=[16, 8]).model_kwargs()
        for model in (VAE(**kwargs), AutoEncoder(**kwargs)):
            assert model.config.normalization == normalization
            assert sum(isinstance(m, torch.nn.LayerNorm) for m in model.encoder.modules()) == count


def test_the_batch_stream_is_a_pure_function_of_its_index_and_shards_each_epoch(data_files, tmp_path):
    task = VAETask(tiny_args(tmp_path, data_files))
    per_epoch = 64 // 2 // 16  # two processes: 32 images each, 2 batches of 16 per epoch
    first, again = task.batch(5, 1, 2), task.batch(5, 1, 2)
    assert torch.equal(first[0], again[0])
    assert torch.equal(torch.randn(3, generator=first[1]), torch.randn(3, generator=again[1]))
    assert set(first[0].unique().tolist()) <= {0.0, 1.0}  # dynamically binarised
    assert not torch.equal(task.batch(0, 0, 2)[0], task.batch(0, 1, 2)[0])

    # One epoch of both processes visits 64 distinct training images (binarisation off to compare them).
    grey = VAETask(tiny_args(tmp_path, data_files, binarize="none"))
    seen = torch.cat([grey.batch(k, s, 2)[0] for s in (0, 1) for k in range(per_epoch)]).flatten(1)
    assert seen.shape[0] == 64 and torch.unique(seen, dim=0).shape[0] == torch.unique(grey.train_images, dim=0).shape[0]
    # the next epoch is another order of the same images
    second = torch.cat([grey.batch(per_epoch + k, s, 2)[0] for s in (0, 1) for k in range(per_epoch)]).flatten(1)
    assert not torch.equal(seen, second)
    assert torch.equal(seen.sort(0).values, second.sort(0).values)

    # Dynamic binarisation draws Bernoulli(pixel): over many batches the mean matches the grey levels.
    draws = torch.stack([task.batch(k * per_epoch * 2, 0, 1)[0] for k in range(200)])
    rows = grey.batch(0, 0, 1)[0]
    assert torch.equal(rows, grey.train_images[task.permutation(0)[:16]])
    greys = torch.stack([grey.batch(k * per_epoch * 2, 0, 1)[0] for k in range(200)])
    assert abs(float(draws.mean() - greys.mean())) < 0.01 and float(greys.mean()) > 0.1


def test_with_the_neighbour_term_each_image_brings_one_of_its_graph_neighbours(data_files, tmp_path):
    from hfgen.methods.neighbor_embedding import nearest_neighbor_graph

    options = {"model": "ae", "neighbor_weight": 1.0, "neighbor_k": 3, "neighbor_components": 10}
    task = VAETask(tiny_args(tmp_path, data_files, binarize="none", **options))
    graph = task.neighbor_graph
    assert torch.equal(graph, nearest_neighbor_graph(task.train_images.flatten(1), 3, num_components=10))
    images, generator, neighbours = task.batch(4, 1, 2)
    again = task.batch(4, 1, 2)
    assert torch.equal(neighbours, again[2]) and torch.equal(images, again[0])
    flat = task.train_images.flatten(1)
    for image, neighbour in zip(images.flatten(1), neighbours.flatten(1), strict=True):
        row = int((flat == image).all(1).nonzero()[0])  # synthetic images are distinct
        assert any(torch.equal(flat[j], neighbour) for j in graph[row])
    # the images of the stream are those of a run without the term (the neighbours are drawn after them)
    plain = VAETask(tiny_args(tmp_path, data_files, binarize="none", model="ae"))
    assert torch.equal(plain.batch(4, 1, 2)[0], images) and plain.batch(4, 1, 2)[2] is None
    # with dynamic binarisation the neighbours are binarised too
    binary = VAETask(tiny_args(tmp_path, data_files, **options)).batch(0, 0, 1)[2]
    assert set(binary.unique().tolist()) <= {0.0, 1.0}


def test_a_tiny_vae_run_writes_pipeline_card_plots_and_metrics(data_files, tmp_path):
    classifier_dir = tmp_path / "classifier"
    torch.manual_seed(0)
    MnistClassifier(MnistClassifierConfig(image_size=8, conv_channels=[4, 8], hidden_size=16)).save_pretrained(
        classifier_dir
    )
    out = tmp_path / "vae"
    args = tiny_args(out, data_files, classifier_path=str(classifier_dir))
    returned = run(VAETask(args))

    for name in ["model_index.json", "vae/diffusion_pytorch_model.safetensors", "README.md", "metrics.json",
                 "latent_scatter.png", "latent_grid.png", "reconstructions.png", "samples.png",
                 "checkpoints/checkpoint-6/ema.safetensors", "validation/step-0000003-latent_grid.png",
                 "validation/step-0000006-samples.png"]:  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 6 and metrics["samples_seen"] == 6 * 16
    assert metrics["num_importance_samples"] == 10 and metrics["num_nll_images"] == 8
    assert metrics["nll"] == pytest.approx(-metrics["iwae"]) and returned["nll"] == pytest.approx(metrics["nll"])
    assert 0.0 <= metrics["knn_accuracy"] <= 1.0 and metrics["reconstruction_nll"] > 0
    assert len(metrics["samples_label_distribution"]) == 10 and metrics["samples_frechet_distance"] >= 0
    assert [r["step"] for r in metrics["validation"]] == [3, 6] and "nll" in metrics["validation"][0]

    pipe = VAEPipeline.from_pretrained(out)
    assert pipe.vae.config.hidden_sizes == [16, 8] and pipe.vae.config.image_size == 8
    # the saved metrics are those of the saved weights, on the first num_eval_images test images
    task = VAETask(args)
    images, labels = task.eval_images()
    assert metrics["reconstruction_nll"] == pytest.approx(
        reconstruction_metrics(pipe.vae, images)["reconstruction_nll"]
    )
    train_codes, test_codes = pipe.encode(task.train_images), pipe.encode(images)
    assert metrics["knn_accuracy"] == knn_accuracy(train_codes, task.train_labels, test_codes, labels, k=3)
    assert pipe(num_samples=2, generator=torch.Generator().manual_seed(0)).images.shape == (2, 1, 8, 8)

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "diffusers" and card.data.license == "apache-2.0"
    assert "variational-autoencoder" in card.data.tags and card.data.datasets is None  # local files
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    pairs = [
        ("nll", "nll"),
        ("elbo", "elbo"),
        ("knn_accuracy", "knn-accuracy"),
        ("reconstruction_nll", "reconstruction-nll"),
        ("samples_confidence", "classifier-confidence"),
    ]
    for key, metric_type in pairs:
        assert values[metric_type] == pytest.approx(metrics[key], abs=1e-6), key
    assert {r.dataset_name for r in card.data.eval_results} == {Path(data_files[0]).parent.name}
    assert "½ Σ_i (σ_i² + μ_i² − 1 − 2 log σ_i)" in card.text
    assert f'VAEPipeline.from_pretrained("{out.name}")' in card.text and "![latent grid](latent_grid.png)" in card.text


def test_the_autoencoder_card_names_the_hub_dataset(data_files, tmp_path):
    from hfgen.model_cards.vae import vae_card

    args = replace(
        tiny_args(tmp_path, data_files, model="ae"),
        dataset_name="ylecun/mnist",
        train_data_files=None,
        test_data_files=None,
    )
    metrics = {"reconstruction_nll": 12.5, "knn_accuracy": 0.75, "train_steps": 6}
    card = vae_card(args, metrics, repo_id="user/ae-mnist")
    loaded = ModelCard(str(card))
    assert loaded.data.datasets == ["ylecun/mnist"] and "autoencoder" in loaded.data.tags
    assert {r.metric_type: r.metric_value for r in loaded.data.eval_results} == {
        "reconstruction-nll": 12.5,
        "knn-accuracy": 0.75,
    }
    assert 'AutoEncoderPipeline.from_pretrained("user/ae-mnist")' in card.text and "KL" not in card.text
    assert "Neighbour-embedding term" not in card.text  # reconstruction only


@pytest.mark.parametrize(
    "options",
    [{}, {"model": "ae", "neighbor_weight": 2.0, "neighbor_k": 3, "neighbor_components": 10}],
    ids=["vae", "ae-with-neighbour-term"],
)
def test_a_run_resumed_at_step_3_ends_bit_for_bit_where_the_uninterrupted_run_ends(data_files, tmp_path, options):
    args = tiny_args(
        tmp_path / "full", data_files, validation_steps=0, train_batch_size=24, **options
    )  # 2-batch epochs
    assert_resumed_run_is_exact(lambda a: train_task(VAETask(a)), args, tmp_path, "model")


def test_the_script_trains_an_autoencoder_in_a_subprocess(data_files, tmp_path):
    out = tmp_path / "ae"
    train, test = data_files
    flags = [f"--{k}={' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in TINY.items()]
    flags = [f for f in flags if not f.startswith("--hidden_sizes")] + ["--hidden_sizes", "16", "8"]
    result = launch("train_vae.py", "--model", "ae", "--train_data_files", train, "--test_data_files", test,
                    "--output_dir", str(out), "--binarize", "fixed", "--neighbor_weight", "1.5", "--neighbor_k", "4",
                    *flags)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert "nll" not in metrics and "elbo" not in metrics and 0 <= metrics["knn_accuracy"] <= 1
    assert json.loads(result.stdout[result.stdout.index("{") :])["knn_accuracy"] == metrics["knn_accuracy"]
    for name in ("latent_scatter.png", "latent_grid.png", "reconstructions.png", "samples.png"):
        assert (out / name).is_file(), name
    pipe = AutoEncoderPipeline.from_pretrained(out)
    assert pipe.encode(torch.rand(3, 1, 8, 8)).shape == (3, 2)
    card = ModelCard.load(out / "README.md")
    assert card.data.eval_results[0].metric_value == pytest.approx(metrics["reconstruction_nll"], abs=1e-6)
    assert "Neighbour-embedding term" in card.text and "λ = 1.5" in card.text and "4 nearest training" in card.text


@pytest.mark.slow
def test_two_processes_train_a_vae_data_parallel(data_files, tmp_path):
    # real data parallelism on CPU (gloo DDP): each process draws its own shard of every epoch
    out = tmp_path / "ddp"
    train, test = data_files
    flags = [f"--{k}={v}" for k, v in TINY.items() if k != "hidden_sizes"] + ["--hidden_sizes", "16", "8"]
    launch("train_vae.py", "--train_data_files", train, "--test_data_files", test, "--output_dir", str(out), *flags,
           processes=2)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    batch, steps = TINY["train_batch_size"], TINY["max_train_steps"]
    assert metrics["num_processes"] == 2 and metrics["samples_seen"] == 2 * steps * batch
    # Bernoulli log-likelihoods are ≤ 0 and the KL ≥ 0, so the ELBO and the IWAE bound are negative
    assert metrics["elbo"] < 0 and metrics["nll"] > 0 and 0 <= metrics["knn_accuracy"] <= 1
    assert [r["step"] for r in metrics["validation"]] == [3, 6]
    for rank in (0, 1):  # each process's random state is checkpointed
        assert (out / "checkpoints" / "checkpoint-6" / f"random_states_{rank}.pkl").is_file()
    assert VAEPipeline.from_pretrained(out)(num_samples=2).images.shape == (2, 1, 8, 8)


def test_the_vae_loss_weighs_the_kl_by_kl_weight(data_files, tmp_path):
    from hfgen.methods.vae import negative_elbo

    task = VAETask(tiny_args(tmp_path, data_files, kl_weight=0.3))
    torch.manual_seed(0)
    model = task.build_model()
    images, _, neighbors = task.batch(0, 0, 1)
    loss = task.loss(model, (images, torch.Generator().manual_seed(5), neighbors), torch.device("cpu"))
    expected = negative_elbo(model, images, torch.Generator().manual_seed(5), beta=0.3)
    torch.testing.assert_close(loss, expected.loss)
    torch.testing.assert_close(loss, expected.reconstruction + 0.3 * expected.kl)
    assert expected.kl > 0 and not torch.isclose(loss, expected.reconstruction + expected.kl)


def test_the_neighbour_term_takes_the_run_s_weight_and_negatives(data_files, tmp_path):
    from hfgen.methods.vae import autoencoder_loss

    options = {
        "model": "ae",
        "neighbor_weight": 0.5,
        "neighbor_negatives": 2,
        "neighbor_k": 3,
        "neighbor_components": 10,
    }
    task = VAETask(tiny_args(tmp_path, data_files, **options))
    torch.manual_seed(0)
    model = task.build_model()
    images, generator, neighbors = task.batch(0, 0, 1)
    loss = task.loss(model, (images, generator, neighbors), torch.device("cpu"))
    expected = autoencoder_loss(model, images, neighbors, neighbor_weight=0.5, num_negatives=2)
    assert torch.equal(loss, expected.loss)
    assert not torch.equal(loss, autoencoder_loss(model, images, neighbors, neighbor_weight=0.5).loss)  # 5 negatives


def test_the_iwae_bound_uses_the_run_s_number_of_importance_samples(data_files, tmp_path):
    task = VAETask(tiny_args(tmp_path, data_files, num_importance_samples=3, quadrature_grid_size=0))
    torch.manual_seed(0)
    pipeline = task.pipeline(task.build_model())
    points = task.log_likelihood_points(4, torch.Generator())
    bound = task.log_likelihood(pipeline, points)
    # the noise comes from a generator seeded by the run's seed
    assert torch.equal(bound, pipeline.vae.iwae_bound(points, 3, torch.Generator().manual_seed(task.args.seed)))
    assert not torch.equal(bound, pipeline.vae.iwae_bound(points, 4, torch.Generator().manual_seed(task.args.seed)))
    assert task.score_log_likelihood(bound)["num_importance_samples"] == 3
