"""Arguments of ``training/train_rbm.py``: a 500-hidden-unit RBM by PCD-1 on binarised MNIST, without torch."""

from __future__ import annotations

from dataclasses import dataclass

from hfgen.arguments.common import check_image_data_source
from hfgen.arguments.image_data import ImageDataArguments
from hfgen.choices import TEST_BINARIZATION_SEED
from hfgen.cli.parser import documented, recipe

__all__ = ["RBMArguments"]

METHODS = ("pcd", "cd")
BINARIZE = ("dynamic", "fixed", "threshold")
#: the fewest AIS steps a run accepts: with fewer, AIS is hardly more than importance sampling from the base model and
#: its ``log Ẑ`` misses by many times the standard error it reports (a 784 × 14 RBM, ``W ~ N(0, 0.2²)``, exact
#: ``log Z`` by enumeration, 100 runs: 1 step misses by 7–9 nats with a standard error of 0.5, 2 steps by 1.5–3.5,
#: 20 steps stay within about one standard error)
MIN_AIS_BETAS = 20


@dataclass
@recipe(
    train_batch_size=100,
    learning_rate=1e-3,
    adam_beta1=0.5,
    lr_warmup_steps=0,
    ema_decay=0.0,
    checkpointing_steps=3_000,
    validation_steps=3_000,
)
class RBMArguments(ImageDataArguments):
    """Arguments of ``training/train_rbm.py`` (``--dataset_name`` or ``--train_data_files`` is required).

    The defaults train a 500-hidden-unit RBM by PCD-1 (Tieleman 2008) on dynamically binarised MNIST: batch 100,
    100 persistent chains, 12,000 steps (20 epochs), AdamW 1e-3 with β₁ = 0.5 and cosine decay, visible biases
    started at the base rate (Hinton 2010, §8.1); `benchmarks/ENERGY_RESULTS.md` has the measured time and test
    log-likelihood."""

    run_only_fields = ImageDataArguments.run_only_fields | {
        "num_sample_steps",
        "ais_num_chains",
        "ais_num_betas",
        "validation_ais_num_betas",
    }

    output_dir: str = documented("out/rbm-mnist", "where the run writes its outputs")
    binarize: str = documented(
        "dynamic",
        f"{BINARIZE}: a fresh Bernoulli(pixel) draw per batch (the test set drawn once, seed "
        f"{TEST_BINARIZATION_SEED}), one draw per image, or pixel > 0.5",
    )
    num_hidden: int = documented(500, "hidden units H")
    weight_init_std: float = documented(0.01, "W starts as N(0, s²) (Hinton 2010, §8)")
    method: str = documented("pcd", f"{METHODS}: persistent chains (Tieleman 2008) or chains started at the data")
    gibbs_steps: int = documented(1, "k: block-Gibbs sweeps per update")
    num_chains: int = documented(100, "persistent chains per process (PCD)")
    max_train_steps: int = documented(12_000, "optimizer steps (20 epochs of 60,000 images at batch 100)")
    num_validation_samples: int = documented(64, "Gibbs samples drawn and plotted at each validation")
    num_sample_steps: int = documented(1_000, "Gibbs sweeps from uniform noise for each sample")
    num_validation_nll_samples: int = documented(1_000, "test images whose AIS log-likelihood is logged (0: none)")
    num_eval_images: int = documented(10_000, "test images for the reconstruction error and pseudo-likelihood")
    num_nll_images: int = documented(10_000, "test images for the final AIS log-likelihood (capped at the split)")
    ais_num_chains: int = documented(100, "AIS runs (Salakhutdinov & Murray 2008 use 100)")
    ais_num_betas: int = documented(14_500, "intermediate distributions of the final AIS (Salakhutdinov & Murray 2008)")
    validation_ais_num_betas: int = documented(1_000, "intermediate distributions of AIS at each validation")

    positive_fields = (
        *ImageDataArguments.positive_fields,
        *("num_hidden", "gibbs_steps", "num_chains", "num_sample_steps", "num_eval_images", "ais_num_chains"),
        *("ais_num_betas", "validation_ais_num_betas"),
    )
    nonnegative_fields = (*ImageDataArguments.nonnegative_fields, "num_nll_images", "num_validation_nll_samples")
    choice_fields = {**ImageDataArguments.choice_fields, "binarize": BINARIZE, "method": METHODS}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_image_data_source(self)
        for name in ("ais_num_betas", "validation_ais_num_betas"):
            if getattr(self, name) < MIN_AIS_BETAS:
                raise ValueError(
                    f"`{name}` must be >= {MIN_AIS_BETAS} for a meaningful AIS estimate of log Z (Salakhutdinov & "
                    f"Murray 2008 use 14,500), got {getattr(self, name)}"
                )
        if not self.weight_init_std >= 0:
            raise ValueError(f"`weight_init_std` must be >= 0, got {self.weight_init_std}")

    @property
    def num_visible(self) -> int:
        return self.num_channels * self.image_size**2
