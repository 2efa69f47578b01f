"""Arguments of ``training/train_vae.py``: a VAE or an autoencoder on images, without torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hfgen.arguments.common import check_image_data_source
from hfgen.arguments.image_data import ImageDataArguments
from hfgen.choices import ARCHITECTURES, LIKELIHOODS, NORMALIZATIONS
from hfgen.cli.parser import documented, recipe

__all__ = ["VAEArguments"]

MODELS = ("vae", "ae")
BINARIZE = ("dynamic", "fixed", "none")


@dataclass
@recipe(max_train_steps=8_000, learning_rate=3e-3, checkpointing_steps=1_000, validation_steps=1_000)
class VAEArguments(ImageDataArguments):
    """Arguments of ``training/train_vae.py`` (``--dataset_name`` or ``--train_data_files`` is required).

    The defaults, shared by the AE and the VAE, train a 2-D Bernoulli model on dynamically binarised MNIST: MLP
    784 → 512 → 256 → 2 with ReLU and LayerNorm in the encoder, batch 512 (one large matrix product per layer is
    cheaper per image on a CPU than four of batch 128), AdamW 3e-3 with 200 warm-up steps and cosine decay,
    8,000 steps (68 epochs), EMA 0.999; `benchmarks/VAE_RESULTS.md` has the measured time and metrics."""

    run_only_fields = ImageDataArguments.run_only_fields | {
        "num_importance_samples",
        "quadrature_grid_size",
        "knn_neighbors",
    }

    output_dir: str = documented("out/vae-mnist", "where the run writes its outputs")
    model: str = documented("vae", f"which model to train: {MODELS}")
    label_column: str = "label"
    binarize: str = documented(
        "dynamic", f"{BINARIZE}: a fresh Bernoulli draw per batch, one draw per image, or grey levels"
    )
    latent_dim: int = 2
    architecture: str = documented("mlp", f"encoder/decoder networks: {ARCHITECTURES}")
    hidden_sizes: list[int] = field(
        default_factory=lambda: [512, 256], metadata={"help": "encoder MLP widths (the decoder reverses them)"}
    )
    conv_channels: list[int] = field(default_factory=lambda: [32, 64], metadata={"help": "conv encoder channels"})
    activation: str = "relu"
    normalization: str = documented(
        "layer", f"{NORMALIZATIONS}: LayerNorm before each hidden activation of the encoder"
    )
    likelihood: str = documented("bernoulli", f"p(x | z): {LIKELIHOODS}")
    observation_std: float = documented(1.0, "s of the Gaussian likelihood N(x; m(z), s² I)")
    kl_weight: float = documented(1.0, "β of the VAE loss −log p(x | z) + β KL (1: the negative ELBO)")
    neighbor_weight: float = documented(
        0.0, "λ of the AE's k-NN-graph neighbour-embedding term −log p(x | e(x)) + λ L_nb (0: reconstruction only)"
    )
    neighbor_k: int = documented(15, "k of the k-NN graph of the training images (with --neighbor_weight > 0)")
    neighbor_components: int = documented(50, "principal components the k-NN graph is computed on")
    neighbor_negatives: int = documented(5, "random negatives per graph edge in the neighbour-embedding term")
    num_validation_samples: int = documented(256, "prior samples drawn and plotted at each validation")
    num_validation_nll_samples: int = documented(200, "test images whose IWAE bound is logged at each validation")
    num_eval_images: int = documented(10_000, "test images for reconstruction, ELBO and k-NN (capped at the split)")
    num_eval_samples: int = documented(1_000, "generated images scored by the classifier at the end")
    num_nll_images: int = documented(1_000, "test images for the final IWAE bound (VAE)")
    num_importance_samples: int = documented(1_000, "K of the IWAE bound")
    quadrature_grid_size: int = documented(
        200, "G: exact log p(x) of a 2-D-latent VAE by quadrature on a G × G grid over ±6σ, checked at G/2 (0: off)"
    )
    knn_neighbors: int = documented(5, "k of the k-NN accuracy of test codes against training codes")
    classifier_path: str | None = documented(None, "folder of a saved MnistClassifier to score generated images")

    positive_fields = (
        *ImageDataArguments.positive_fields,
        *("latent_dim", "num_eval_images", "num_eval_samples", "neighbor_k", "neighbor_components"),
        *("num_importance_samples", "knn_neighbors"),
    )
    nonnegative_fields = (
        *ImageDataArguments.nonnegative_fields,
        *("num_nll_images", "num_validation_nll_samples", "quadrature_grid_size"),
    )
    choice_fields = {
        **ImageDataArguments.choice_fields,
        "model": MODELS,
        "binarize": BINARIZE,
        "architecture": ARCHITECTURES,
        "normalization": NORMALIZATIONS,
        "likelihood": LIKELIHOODS,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_image_data_source(self, ("train_data_files", "test_data_files", "classifier_path"))
        if not self.kl_weight > 0:
            raise ValueError(f"`kl_weight` must be > 0, got {self.kl_weight}")
        if self.model == "ae" and self.kl_weight != 1.0:
            raise ValueError(f"`kl_weight` applies to the VAE only, got model='ae' with kl_weight={self.kl_weight}")
        if not self.neighbor_weight >= 0:
            raise ValueError(f"`neighbor_weight` must be >= 0, got {self.neighbor_weight}")
        if self.model == "vae" and self.neighbor_weight != 0:
            raise ValueError(
                f"`neighbor_weight` applies to the autoencoder only (--model ae), got model='vae' with "
                f"neighbor_weight={self.neighbor_weight}"
            )
        negatives = self.neighbor_negatives
        if isinstance(negatives, bool) or not isinstance(negatives, int) or not 0 <= negatives < self.train_batch_size:
            raise ValueError(
                f"`neighbor_negatives` must be an int in [0, train_batch_size − 1 = {self.train_batch_size - 1}], "
                f"got {negatives!r}"
            )
        if not self.observation_std > 0:
            raise ValueError(f"`observation_std` must be > 0, got {self.observation_std}")

    @property
    def uses_neighbor_graph(self) -> bool:
        """Whether the autoencoder trains with the neighbour-embedding term (the VAE refuses a weight)."""
        return self.neighbor_weight > 0

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of :class:`~hfgen.models.vae.VAE` / :class:`~hfgen.models.vae.AutoEncoder`."""
        return {
            "in_channels": self.num_channels,
            "image_size": self.image_size,
            "latent_dim": self.latent_dim,
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "normalization": self.normalization,
            "architecture": self.architecture,
            "conv_channels": list(self.conv_channels),
            "likelihood": self.likelihood,
            "observation_std": self.observation_std,
        }
