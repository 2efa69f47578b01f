r"""The MNIST-family autoencoder and VAE as a :class:`~hfgen.training.task.TrainingTask`: arguments, an exactly
resumable image stream with dynamic binarisation, held-out metrics, figures and the model card.

The VAE (Kingma & Welling 2014) maximises the ELBO ``log p(x) ≥ E_q[log p(x | z)] − KL(q(z | x) ‖ p(z))`` with
``z = μ(x) + σ(x) ⊙ ε``; the autoencoder minimises ``−log p(x | z = e(x))``. Test log-likelihoods are the
importance-weighted bound with ``K`` samples (Burda et al. 2016, "Importance Weighted Autoencoders").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from hfgen.arguments.vae import VAEArguments
from hfgen.data.images import dynamic_binarize
from hfgen.image_metrics import classifier_scores, knn_accuracy, likelihood_bounds, reconstruction_metrics
from hfgen.methods.neighbor_embedding import nearest_neighbor_graph
from hfgen.methods.vae import autoencoder_loss, negative_elbo
from hfgen.model_cards.vae import vae_card
from hfgen.models.vae import VAE, AutoEncoder
from hfgen.pipelines.vae import AutoEncoderPipeline, VAEPipeline
from hfgen.training.image_data import ImageStreamTask, check_image_shapes, load_classifier
from hfgen.utils import batch_generator

__all__ = ["evaluate_vae", "train_vae", "VAETask"]


def load_vae_data(args: VAEArguments) -> dict[str, Tensor]:
    """Train and test ``images`` ``(N, C, H, W)`` in [0, 1] and their ``labels``.

    ``binarize="fixed"`` binarises every image once (:mod:`hfgen.data.images`); ``"dynamic"`` keeps grey levels
    for training (each batch is redrawn) and binarises the test images once with a generator seeded by
    ``seed`` (a fixed draw of the dynamically binarised test set, as in Burda et al. 2016).
    """
    data = args.load_images(binarize="fixed" if args.binarize == "fixed" else None)
    data["test_grey"] = data["test_images"]
    if args.binarize == "dynamic":
        data["test_images"] = dynamic_binarize(data["test_images"], torch.Generator().manual_seed(args.seed))
    return data


class VAETask(ImageStreamTask):
    r"""Train an :class:`AutoEncoder` or a :class:`VAE` on MNIST-family images.

    Batches come from :class:`~hfgen.training.image_data.ImageStreamTask`'s exactly resumable stream; with dynamic
    binarisation ``x ~ Bernoulli(pixels)`` and the reparametrisation noise ``ε`` come from the batch's generator
    ``batch_generator(seed, s, k)``. With ``neighbor_weight > 0`` (the
    autoencoder only) each image also brings one of its ``neighbor_k`` nearest training images, drawn with the same
    generator, from a k-NN graph of the training set (:func:`~hfgen.methods.neighbor_embedding.nearest_neighbor_graph`
    on
    ``neighbor_components`` principal components) that is built at the first batch, inside the training time.

    Validation and evaluation: :meth:`score` reports reconstruction (``−log p(x | ẑ)``, MSE), the ELBO (VAE) and
    the k-NN accuracy of test codes on held-out images, and classifier scores of generated images when
    ``classifier_path`` is set; the IWAE bound goes through the likelihood hooks (VAE only).
    """

    name = "vae"
    card = staticmethod(vae_card)
    evaluation_fields, fast_evaluation_sizes = ("num_eval_samples", "num_nll_images"), (200, 200)
    args: VAEArguments

    def __init__(self, args: VAEArguments, data: Mapping[str, Tensor] | None = None):
        super().__init__(args)
        data = dict(data) if data is not None else load_vae_data(args)
        self.train_images, self.train_labels = data["train_images"], data["train_labels"]
        self.test_images, self.test_labels = data["test_images"], data["test_labels"]
        self.test_grey = data.get("test_grey", self.test_images)
        check_image_shapes(self)
        self.classifier = load_classifier(args.classifier_path)
        self.name = "vae" if self.is_vae else "autoencoder"
        self._pipeline: VAEPipeline | AutoEncoderPipeline | None = None
        self._neighbor_graph: Tensor | None = None
        self._quadrature: tuple[Tensor, Tensor] | None = None

    @property
    def neighbor_graph(self) -> Tensor:
        """``(N, neighbor_k)`` indices of the nearest training images of each training image (built once)."""
        if self._neighbor_graph is None:
            self._neighbor_graph = nearest_neighbor_graph(
                self.train_images.flatten(1), self.args.neighbor_k, num_components=self.args.neighbor_components
            )
        return self._neighbor_graph

    @property
    def is_vae(self) -> bool:
        return self.args.model == "vae"

    def build_model(self) -> VAE | AutoEncoder:
        return (VAE if self.is_vae else AutoEncoder)(**self.args.model_kwargs())

    def batch(self, index: int, stream: int, num_streams: int) -> tuple[Tensor, torch.Generator, Tensor | None]:
        """Micro-batch ``index`` of process ``stream`` out of ``num_streams``: the images, the generator of
        its remaining randomness (the VAE's ε) and, with the neighbour term, one graph neighbour of each image
        (else None)."""
        rows = self.rows(index, stream, num_streams)
        generator = batch_generator(self.args.seed, stream, index)
        images = self.train_images[rows]
        if self.args.binarize == "dynamic":
            images = dynamic_binarize(images, generator)
        if not self.args.uses_neighbor_graph:
            return images, generator, None
        graph = self.neighbor_graph
        choice = torch.randint(graph.shape[1], (rows.shape[0],), generator=generator)
        neighbors = self.train_images[graph[rows, choice]]
        if self.args.binarize == "dynamic":
            neighbors = dynamic_binarize(neighbors, generator)
        return images, generator, neighbors

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> Tensor:
        images, generator, neighbors = batch
        if device.type != "cpu":  # ε is drawn on the device, from a seed that comes from the batch's generator
            seed = int(torch.randint(2**62, (1,), generator=generator))
            generator = torch.Generator(device).manual_seed(seed)
        if self.is_vae:
            return negative_elbo(model, images.to(device), generator, beta=self.args.kl_weight).loss
        if neighbors is None:
            return autoencoder_loss(model, images.to(device)).loss
        return autoencoder_loss(
            model,
            images.to(device),
            neighbors.to(device),
            neighbor_weight=self.args.neighbor_weight,
            num_negatives=self.args.neighbor_negatives,
        ).loss

    def pipeline(self, model: VAE | AutoEncoder) -> VAEPipeline | AutoEncoderPipeline:
        return VAEPipeline(model) if isinstance(model, VAE) else AutoEncoderPipeline(model)

    def eval_images(self) -> tuple[Tensor, Tensor]:
        """The first ``num_eval_images`` test images and their labels."""
        n = self.args.num_eval_images
        return self.test_images[:n], self.test_labels[:n]

    @torch.no_grad()
    def sample(
        self, pipeline: VAEPipeline | AutoEncoderPipeline, num_samples: int, generator: torch.Generator
    ) -> Tensor:
        """Generated images ``(N, C, H, W)``: VAE, ``E[x | z]`` with ``z ~ N(0, I)``; autoencoder (no prior),
        ``d(z)`` with ``z ~ N(m, C)``, the Gaussian fitted to the codes of the evaluation images. The pipeline is
        kept for :meth:`score`, which measures its held-out metrics."""
        self._pipeline = pipeline
        if isinstance(pipeline, VAEPipeline):
            return pipeline(num_samples, generator=generator).images.cpu()
        codes = pipeline.encode(self.eval_images()[0]).double().cpu()
        cov = torch.atleast_2d(codes.T.cov()) + 1e-6 * torch.eye(codes.shape[1], dtype=torch.float64)
        noise = torch.randn((num_samples, codes.shape[1]), generator=generator, dtype=torch.float64)
        latents = codes.mean(0) + noise @ torch.linalg.cholesky(cov).T
        return pipeline.decode(latents.float()).cpu()

    @torch.no_grad()
    def score(self, samples: Tensor, generator: torch.Generator) -> dict[str, Any]:
        """Held-out metrics of the pipeline that drew ``samples`` and, with a classifier, scores of the samples."""
        if self._pipeline is None:
            raise RuntimeError("score() needs the pipeline of a preceding sample() call")
        pipeline, model = self._pipeline, self._pipeline.model
        images, labels = self.eval_images()
        metrics: dict[str, Any] = reconstruction_metrics(model, images)
        if self.is_vae:
            bounds = likelihood_bounds(model, images, num_importance_samples=1, generator=generator)
            metrics |= {"elbo": bounds["elbo"], "elbo_stderr": bounds["elbo_stderr"]}
        train_codes = pipeline.encode(self.train_images)
        test_codes = pipeline.encode(images)
        metrics["knn_accuracy"] = knn_accuracy(
            train_codes, self.train_labels, test_codes, labels, k=self.args.knn_neighbors
        )
        if self.classifier is not None:
            reference = self.test_grey[: samples.shape[0]]
            scores = classifier_scores(self.classifier, samples, reference_images=reference)
            metrics |= {f"samples_{key}": value for key, value in scores.items()}
        return metrics

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> Tensor | None:
        return self.test_images[:num_points] if self.is_vae else None

    @torch.no_grad()
    def log_likelihood(self, pipeline: VAEPipeline, points: Tensor) -> Tensor:
        """IWAE bound ``log (1/K) Σ_k p(x, z_k) / q(z_k | x)`` per image, ``K = num_importance_samples``, with
        noise from a generator seeded by the run's seed (repeatable evaluations). With a 2-D latent space and
        ``quadrature_grid_size = G > 0`` the exact ``log p(x)`` by quadrature (:meth:`VAEPipeline.log_prob`) on
        grids of ``G`` and ``G/2`` points per axis is kept for :meth:`score_log_likelihood` (this process's
        images)."""
        generator = torch.Generator().manual_seed(self.args.seed)
        chunks = [pipeline.vae.iwae_bound(c, self.args.num_importance_samples, generator) for c in points.split(100)]
        grid = self.args.quadrature_grid_size
        self._quadrature = None
        if grid and pipeline.vae.config.latent_dim == 2:
            exact = [pipeline.log_prob(points, grid_size=g) for g in (grid, max(grid // 2, 1))]
            self._quadrature = (exact[0], exact[1])
        return torch.cat(chunks)

    def score_log_likelihood(self, log_prob: Tensor) -> dict[str, float]:
        values = log_prob.double()
        stderr = float(values.std() / values.numel() ** 0.5) if values.numel() > 1 else float("nan")
        metrics = {
            "iwae": float(values.mean()),
            "iwae_stderr": stderr,
            "nll": -float(values.mean()),
            "num_importance_samples": self.args.num_importance_samples,
            "num_nll_images": int(values.numel()),
        }
        if self._quadrature is not None:
            fine, coarse = (q.double() for q in self._quadrature)
            count = fine.numel()
            metrics |= {
                "quadrature_nll": -float(fine.mean()),
                "quadrature_nll_stderr": float(fine.std() / count**0.5) if count > 1 else float("nan"),
                "quadrature_grid_size": self.args.quadrature_grid_size,
                "quadrature_grid_change": float((fine - coarse).abs().max()),
                "num_quadrature_images": count,
            }
        return metrics

    def _figures(self, pipeline: VAEPipeline | AutoEncoderPipeline, samples: Tensor | None) -> dict[str, Any]:
        from hfgen.plotting.latent import latent_model_figures

        return latent_model_figures(pipeline, *self.eval_images(), samples, is_vae=self.is_vae)

    def validation_figures(self, pipeline: VAEPipeline | AutoEncoderPipeline, samples: Tensor) -> dict[str, Any]:
        return self._figures(pipeline, samples)

    def final_figures(self, pipeline: VAEPipeline | AutoEncoderPipeline) -> dict[str, Any]:
        return self._figures(pipeline, self.sample(pipeline, 64, torch.Generator().manual_seed(2)))


def train_vae(args: VAEArguments, data: Mapping[str, Tensor] | None = None) -> tuple[Any, dict[str, Any], VAETask]:
    """Train in this process without writing outputs (benchmarks, notebooks); returns the (EMA) pipeline, the
    training numbers and the task (which holds the data)."""
    from hfgen.training.trainer import train_in_process

    task = VAETask(args, data)
    result = train_in_process(task)
    return result.pipeline, result.metrics, task


def evaluate_vae(pipeline: Any, task: VAETask, seed: int = 1) -> dict[str, Any]:
    """Final metrics of a trained pipeline in this process: held-out reconstruction, ELBO, k-NN accuracy,
    classifier scores of ``num_eval_samples`` generated images and the IWAE bound on ``num_nll_images``."""
    from hfgen.training.evaluation import evaluate_in_process

    args = task.args
    return evaluate_in_process(task, pipeline, args.num_eval_samples, args.num_nll_images, seed)
