"""Arguments of ``training/train_density.py`` and each model's recipe, without torch: the arguments left at
``None`` take the model's benchmark recipe (:data:`RECIPES`; MADE on images :data:`IMAGE_RECIPES`), which the
model's task class holds as its ``recipe``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfgen.arguments.common import TrainingArguments, check_image_data_source, check_toy_name
from hfgen.checks import check_int, check_number, check_sizes
from hfgen.choices import (
    ACTIVATION_NAMES,
    ADAPTIVE_SOLVERS,
    BANDWIDTH_RULES,
    COUPLING_LAYERS,
    COVARIANCE_TYPES,
    FIXED_STEP_SOLVERS,
    LINEAR_PARAMETRIZATIONS,
    MADE_ORDERS,
)
from hfgen.cli.parser import documented

__all__ = ["DensityArguments"]

#: the value of each recipe argument left at ``None`` (a model records those it does not read)
BASE_RECIPE: dict[str, Any] = {
    "max_train_steps": 1_000,
    "em_iterations": 100,
    "train_batch_size": 512,
    "learning_rate": 1e-3,
    "num_components": 8,
    "num_train_points": 0,
    "hidden_sizes": [128],
    "hidden_size": 64,
    "num_layers": 2,
    "activation": "silu",
}
#: each ``--model``'s benchmark recipe on points
RECIPES: dict[str, dict[str, Any]] = {
    "gmm": {**BASE_RECIPE, "em_iterations": 100, "num_components": 8, "num_train_points": 10_000},
    "kde": {**BASE_RECIPE, "num_train_points": 10_000},
    "made": {
        **BASE_RECIPE,
        "max_train_steps": 6_000,
        "train_batch_size": 512,
        "learning_rate": 2e-3,
        "num_components": 16,
        "hidden_sizes": [128, 128],
        "num_train_points": 0,
    },
    "coupling": {
        **BASE_RECIPE,
        "max_train_steps": 2_000,
        "train_batch_size": 512,
        "learning_rate": 2e-3,
        "hidden_size": 128,
        "num_layers": 3,
        "activation": "relu",
        "num_train_points": 0,
    },
    "cnf": {
        **BASE_RECIPE,
        "max_train_steps": 3_000,
        "train_batch_size": 256,
        "learning_rate": 2e-3,
        "hidden_size": 64,
        "num_layers": 3,
        "activation": "silu",
        "num_train_points": 0,
    },
}
#: the recipes on images (MADE, with Bernoulli conditionals, is the one model that trains on them)
IMAGE_RECIPES: dict[str, dict[str, Any]] = {
    "made": {
        **BASE_RECIPE,
        "max_train_steps": 12_000,
        "train_batch_size": 128,
        "learning_rate": 1e-3,
        "hidden_sizes": [500],
        "num_train_points": 0,
    },
}

MODELS = tuple(RECIPES)
BINARIZE = ("threshold", "dynamic")
DIVERGENCES = ("exact", "hutchinson")
#: the arguments a recipe fills when left at ``None``
_RECIPE_FIELDS = sorted(BASE_RECIPE)


def recipe_help(name: str, models: tuple[str, ...], on_images: bool = True) -> str:
    """The end of a recipe argument's help: the value each of ``models`` (those that read it) takes when it is unset,
    and, with ``on_images``, MADE's on images where it differs."""
    values = []
    for model in models:
        text = f"{model} {RECIPES[model][name]}"
        if on_images and model in IMAGE_RECIPES and IMAGE_RECIPES[model][name] != RECIPES[model][name]:
            text += f" (on images {IMAGE_RECIPES[model][name]})"
        values.append(text)
    return f"; unset: the model's recipe, {', '.join(values)}"


#: the models that train by gradient steps
_GRADIENT_MODELS = ("made", "coupling", "cnf")


@dataclass
class DensityArguments(TrainingArguments):
    """Arguments of ``training/train_density.py``. Arguments left unset (``None``) take the model's recipe for
    the kind of data (:data:`RECIPES` or :data:`IMAGE_RECIPES`; the benchmark's settings), so ``--model gmm
    --dataset 8gaussians`` alone reproduces the benchmark row. Image data (``--dataset_name`` or
    ``--train_data_files``) is for ``--model made`` (Bernoulli conditionals); points use the toy target
    ``--dataset``."""

    step_fields = ("em_iterations",)

    output_dir: str = documented("out/density", "where the run writes its outputs")
    model: str = documented("gmm", f"which density model to train: {MODELS}")
    dataset: str = documented("8gaussians", "toy target of hfgen.data (points; ignored with image data)")
    dataset_name: str | None = documented(None, "Hub image dataset id, e.g. ylecun/mnist (MADE only)")
    train_data_files: str | None = documented(None, "local training parquet file of images (MADE only)")
    test_data_files: str | None = documented(
        None, "local test parquet file (default: a tenth of the train split held out)"
    )
    image_column: str = "image"
    image_size: int = 28
    binarize: str = documented(
        "threshold", f"{BINARIZE}: pixels x = 1[p > 0.5] (train and test), or x ~ Bernoulli(p) per batch"
    )
    max_train_steps: int | None = documented(
        None, "optimizer steps of made, coupling and cnf" + recipe_help("max_train_steps", _GRADIENT_MODELS)
    )
    em_iterations: int | None = documented(
        None, "GMM: EM iterations (E-step, then M-step)" + recipe_help("em_iterations", ("gmm",))
    )
    train_batch_size: int | None = documented(
        None, "samples per process and micro-batch" + recipe_help("train_batch_size", _GRADIENT_MODELS)
    )
    learning_rate: float | None = documented(
        None, "AdamW learning rate" + recipe_help("learning_rate", _GRADIENT_MODELS)
    )
    num_train_points: int | None = documented(
        None,
        "points of the fixed training sample (0: fresh target samples at every batch)"
        + recipe_help("num_train_points", MODELS),
    )
    num_components: int | None = documented(
        None,
        "GMM components, or mixture components of each MADE conditional on points"
        + recipe_help("num_components", ("gmm", "made"), on_images=False),
    )
    covariance_type: str = documented("full", f"GMM covariances: {COVARIANCE_TYPES}")
    reg_covar: float = documented(1e-6, "added to the GMM covariance diagonals at every M-step")
    num_inits: int = documented(10, "GMM: k-means++ seedings; the one of least k-means inertia initialises EM")
    bandwidth: str = documented(
        "cv", f"KDE bandwidth h: a number > 0, a rule {BANDWIDTH_RULES}, or 'cv' (k-fold held-out likelihood)"
    )
    bandwidth_grid_size: int = documented(16, "with --bandwidth cv: bandwidths (Scott's h × 0.1 … 2, geometric)")
    cv_folds: int = documented(5, "with --bandwidth cv: folds of the cross-validation")
    hidden_sizes: list[int] | None = documented(None, "MADE hidden widths" + recipe_help("hidden_sizes", ("made",)))
    num_masks: int = documented(
        1, "MADE: masks (orders and connectivities) in the ensemble, one drawn per batch in training"
    )
    direct_connections: bool = documented(
        False, "MADE: masked linear connections from the inputs to the outputs (Germain et al.'s direct_input_connect)"
    )
    order: str = documented("natural", f"MADE variable order: {MADE_ORDERS}")
    num_couplings: int = documented(8, "coupling flow: coupling blocks")
    invertible_linear: bool = documented(True, "coupling flow: a learned invertible linear map in each block")
    linear_parametrization: str = documented(
        "lu",
        f"coupling flow: {LINEAR_PARAMETRIZATIONS}, the linear map as a dense matrix starting as a random rotation or "
        "as LU factors starting as the identity",
    )
    coupling_type: str = documented(
        "spline", f"coupling flow: {COUPLING_LAYERS}, RealNVP or rational-quadratic splines (Durkan et al. 2019)"
    )
    num_bins: int = documented(16, "spline coupling flow: bins of each rational-quadratic spline")
    tail_bound: float = documented(3.0, "spline coupling flow: the splines act on [-B, B], the identity outside")
    unconditional_splines: bool = documented(
        False, "spline coupling flow: each coupling also maps its kept coordinates through learned splines of their own"
    )
    num_position_frequencies: int = documented(
        3, "coupling flow: the coupling networks read octave encodings sin/cos(2^k π x), k < L, of their input (0: x)"
    )
    hidden_size: int | None = documented(
        None, "coupling-network or CNF velocity width" + recipe_help("hidden_size", ("coupling", "cnf"))
    )
    num_layers: int | None = documented(
        None, "coupling-network hidden layers, or CNF velocity layers" + recipe_help("num_layers", ("coupling", "cnf"))
    )
    activation: str | None = documented(
        None,
        f"coupling-network or CNF velocity activation: {sorted(ACTIVATION_NAMES)}"
        + recipe_help("activation", ("coupling", "cnf")),
    )
    time_scale: float = documented(
        1.0,
        "CNF velocity: t is embedded as sin/cos(ω_k s t), ω_k ≤ 1; s = 1 keeps v smooth in t between the training "
        "solver's steps (a large s lets it fit only the step times)",
    )
    solver: str = documented(
        "rk4", f"CNF training solver: fixed-step {FIXED_STEP_SOLVERS} or adaptive {ADAPTIVE_SOLVERS} (torchdiffeq)"
    )
    num_ode_steps: int = documented(8, "CNF training: steps of a fixed-step solver")
    ode_tolerance: float = documented(1e-5, "CNF training: rtol = atol of an adaptive solver")
    divergence: str = documented("exact", f"CNF training divergence: {DIVERGENCES}")
    num_inference_steps: int = documented(100, "CNF sampling: Euler steps of the validation and evaluation samples")
    num_eval_samples: int = documented(10_000, "samples for W2, MMD and support at the end (points)")
    num_nll_samples: int = documented(5_000, "held-out points or test images for the final NLL")
    num_validation_nll_samples: int = documented(1_000, "held-out points for the NLL at each validation (0: none)")
    validation_steps: int = documented(1_000, "sample, plot and score every N steps (0: never)")
    checkpointing_steps: int = documented(1_000, "save the training state every N steps (0: never)")

    positive_fields = (
        *TrainingArguments.positive_fields,
        *("num_components", "num_inits", "num_couplings", "num_masks", "num_ode_steps", "image_size"),
        *("em_iterations", "num_eval_samples", "num_inference_steps", "bandwidth_grid_size"),
    )
    nonnegative_fields = (
        *TrainingArguments.nonnegative_fields,
        *("num_train_points", "num_nll_samples", "num_validation_nll_samples", "num_position_frequencies"),
    )
    choice_fields = {
        **TrainingArguments.choice_fields,
        "binarize": BINARIZE,
        "covariance_type": COVARIANCE_TYPES,
        "order": MADE_ORDERS,
        "activation": ACTIVATION_NAMES,
        "divergence": DIVERGENCES,
        "coupling_type": COUPLING_LAYERS,
        "linear_parametrization": LINEAR_PARAMETRIZATIONS,
        "solver": FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS,
    }

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"`model` must be one of {MODELS}, got {self.model!r}")
        if self.uses_images and self.model != "made":
            raise ValueError(
                f"image data (dataset_name / train_data_files) needs `model`='made' (Bernoulli conditionals), got "
                f"model={self.model!r}"
            )
        recipe = self.recipe()
        for name in _RECIPE_FIELDS:
            if getattr(self, name) is None:
                setattr(self, name, recipe[name])
        super().__post_init__()
        if self.uses_images:
            check_image_data_source(self)
        else:
            check_toy_name(self.dataset, "dataset")
            if self.test_data_files is not None:
                raise ValueError("`test_data_files` needs `train_data_files` (a Hub dataset brings its own test split)")
        check_int(self.cv_folds, "cv_folds", 2)
        check_sizes(self.hidden_sizes, "hidden_sizes", allow_empty=False)
        check_number(self.reg_covar, "reg_covar", low=0.0)
        check_int(self.num_bins, "num_bins", 2)
        for name in ("tail_bound", "time_scale", "ode_tolerance"):
            check_number(getattr(self, name), name, low=0.0, open_low=True)
        self.kde_bandwidth()  # raises for a bandwidth <= 0 or an unknown rule
        if self.model == "gmm" and self.num_train_points < self.num_components:
            raise ValueError(
                f"`num_train_points`={self.num_train_points} is fewer than `num_components`={self.num_components}: "
                "EM needs a fixed training sample with at least one point per component"
            )
        if self.model == "kde" and self.num_train_points < 2:
            raise ValueError(f"`num_train_points` must be >= 2 for the KDE's data, got {self.num_train_points}")

    @property
    def uses_images(self) -> bool:
        """Whether the run trains on images (``dataset_name`` or ``train_data_files`` set)."""
        return self.dataset_name is not None or self.train_data_files is not None

    @property
    def dataset_label(self) -> str:
        """The data's name: the toy target, the Hub id or the folder of the local training file."""
        if self.dataset_name is not None:
            return self.dataset_name
        if self.train_data_files is not None:
            return Path(self.train_data_files).resolve().parent.name
        return self.dataset

    def run_length(self) -> tuple[int, int]:
        """``(EM iterations, the recipe's)`` of the mixture; ``(optimizer steps, the recipe's)`` of the others."""
        name = "em_iterations" if self.model == "gmm" else "max_train_steps"
        return getattr(self, name), self.recipe()[name]

    def recipe(self) -> dict[str, Any]:
        """The model's recipe for the kind of data: :data:`IMAGE_RECIPES` on images, else :data:`RECIPES`."""
        return (IMAGE_RECIPES if self.uses_images else RECIPES)[self.model]

    def kde_bandwidth(self) -> float | str:
        """``--bandwidth`` as the KDE takes it: ``"cv"``, a rule name, or a float ``> 0``."""
        if self.bandwidth == "cv" or self.bandwidth in BANDWIDTH_RULES:
            return self.bandwidth
        try:
            value = float(self.bandwidth)
        except ValueError:
            raise ValueError(
                f"`bandwidth` must be a number > 0, 'cv' or one of {BANDWIDTH_RULES}, got {self.bandwidth!r}"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"`bandwidth` must be a finite number > 0, got {self.bandwidth!r}")
        return value
