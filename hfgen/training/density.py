r"""Explicit-likelihood models as a :class:`~hfgen.training.trainer.TrainingTask`: a Gaussian mixture fitted by EM,
a kernel density estimate, MADE, a coupling flow (RealNVP or neural spline) and a continuous normalising flow trained
by maximum likelihood (FFJORD), on the toy targets of :mod:`hfgen.data` or, for MADE, on binarised MNIST-family images.

Every model but the KDE maximises the log-likelihood ``(1/N) Σ_n log p_θ(x_n)``: the mixture by EM (Dempster, Laird
& Rubin 1977), closed-form steps run as a ``Phase(optimize=False)``; MADE (Germain et al. 2015), the coupling flow
(Dinh et al. 2017; Durkan et al. 2019) and the CNF (Grathwohl et al. 2019) by AdamW on ``−mean log p_θ``. The
KDE's one closed-form step stores the data and picks the bandwidth (Silverman 1986).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hfgen.data import ToyDistribution, get_toy_distribution
from hfgen.data.images import TEST_BINARIZATION_SEED, binarize_test_images
from hfgen.methods.cnf import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS, cnf_nll_loss
from hfgen.methods.kde import select_bandwidth
from hfgen.methods.mixtures import e_step, kmeans_plus_plus, m_step
from hfgen.metrics import nll_report, sample_quality_report
from hfgen.models.coupling_flow import COUPLINGS, LINEAR_PARAMETRIZATIONS, CouplingFlow
from hfgen.models.kde import BANDWIDTH_RULES, KernelDensity, rule_bandwidth
from hfgen.models.made import MADE, ORDERS
from hfgen.models.mixture import COVARIANCE_TYPES, GaussianMixture
from hfgen.models.mlp import ACTIVATIONS, TimeMLP
from hfgen.pipelines.density import DensityPipeline
from hfgen.pipelines.flow_matching import FlowMatchingPipeline
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler
from hfgen.training.arguments import TrainingArguments, documented
from hfgen.training.trainer import Phase, TrainingTask, evaluate_in_process, train_in_process
from hfgen.utils import batch_generator, check_points

MODELS = ("gmm", "kde", "made", "coupling", "cnf")
BINARIZE = ("threshold", "dynamic")
DIVERGENCES = ("exact", "hutchinson")
#: the stream of the fixed training sample of the toy targets (process streams are 0, 1, …)
TRAIN_SAMPLE_STREAM = -1

#: each model's benchmark recipe (``benchmarks/DENSITY_RESULTS.md``), by kind of data: it fills every argument
#: left at ``None``. gmm/kde fit a fixed sample of ``num_train_points``; the gradient models see fresh samples of
#: the toy target at every batch (``num_train_points = 0``).
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("gmm", "points"): {"max_train_steps": 100, "num_components": 8, "num_train_points": 10_000},
    ("kde", "points"): {"max_train_steps": 1, "num_train_points": 10_000},
    ("made", "points"): {
        "max_train_steps": 6_000,
        "train_batch_size": 512,
        "learning_rate": 2e-3,
        "num_components": 16,
        "hidden_sizes": [128, 128],
        "num_train_points": 0,
    },
    ("made", "images"): {
        "max_train_steps": 12_000,
        "train_batch_size": 128,
        "learning_rate": 1e-3,
        "hidden_sizes": [500],
        "num_train_points": 0,
    },
    ("coupling", "points"): {
        "max_train_steps": 2_000,
        "train_batch_size": 512,
        "learning_rate": 2e-3,
        "hidden_size": 128,
        "num_layers": 3,
        "activation": "relu",
        "num_train_points": 0,
    },
    ("cnf", "points"): {
        "max_train_steps": 3_000,
        "train_batch_size": 256,
        "learning_rate": 2e-3,
        "hidden_size": 64,
        "num_layers": 3,
        "activation": "silu",
        "num_train_points": 0,
    },
}
_RECIPE_FIELDS = sorted({key for recipe in RECIPES.values() for key in recipe})


@dataclass
class DensityArguments(TrainingArguments):
    """Arguments of ``training/train_density.py``. Arguments left unset (``None``) take the model's recipe for
    the kind of data (``RECIPES``; the benchmark's settings), so ``--model gmm --dataset 8gaussians`` alone
    reproduces the benchmark row. Image data (``--dataset_name`` or ``--train_data_files``) is for ``--model made``
    (Bernoulli conditionals); points use the toy target ``--dataset``."""

    run_only_fields = TrainingArguments.run_only_fields | {
        "num_eval_samples",
        "num_nll_samples",
        "num_validation_nll_samples",
    }

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
    max_train_steps: int | None = documented(None, "optimizer (or EM) steps; None: the model's recipe")
    train_batch_size: int | None = documented(None, "samples per process and micro-batch; None: the recipe")
    learning_rate: float | None = documented(None, "AdamW learning rate; None: the recipe")
    num_train_points: int | None = documented(
        None, "points of the fixed training sample (0: fresh target samples at every batch); None: the recipe"
    )
    num_components: int | None = documented(
        None, "GMM components, or mixture components of each MADE conditional on points; None: the recipe"
    )
    covariance_type: str = documented("full", f"GMM covariances: {COVARIANCE_TYPES}")
    reg_covar: float = documented(1e-6, "added to the GMM covariance diagonals at every M-step")
    num_inits: int = documented(10, "GMM: k-means++ seedings; the one of least k-means inertia initialises EM")
    bandwidth: str = documented(
        "cv", f"KDE bandwidth h: a number > 0, a rule {BANDWIDTH_RULES}, or 'cv' (k-fold held-out likelihood)"
    )
    bandwidth_grid_size: int = documented(16, "with --bandwidth cv: bandwidths (Scott's h × 0.1 … 2, geometric)")
    cv_folds: int = documented(5, "with --bandwidth cv: folds of the cross-validation")
    hidden_sizes: list[int] | None = documented(None, "MADE hidden widths; None: the recipe")
    num_masks: int = documented(
        1, "MADE: masks (orders and connectivities) in the ensemble, one drawn per batch in training"
    )
    direct_connections: bool = documented(
        False, "MADE: masked linear connections from the inputs to the outputs (Germain et al.'s direct_input_connect)"
    )
    order: str = documented("natural", f"MADE variable order: {ORDERS}")
    num_couplings: int = documented(8, "coupling flow: coupling blocks")
    invertible_linear: bool = documented(True, "coupling flow: a learned invertible linear map in each block")
    linear_parametrization: str = documented(
        "lu",
        f"coupling flow: {LINEAR_PARAMETRIZATIONS}, the linear map as a dense matrix starting as a random rotation or "
        "as LU factors starting as the identity",
    )
    coupling_type: str = documented(
        "spline", f"coupling flow: {COUPLINGS}, RealNVP or rational-quadratic splines (Durkan et al. 2019)"
    )
    num_bins: int = documented(16, "spline coupling flow: bins of each rational-quadratic spline")
    tail_bound: float = documented(3.0, "spline coupling flow: the splines act on [-B, B], the identity outside")
    unconditional_splines: bool = documented(
        False, "spline coupling flow: each coupling also maps its kept coordinates through learned splines of their own"
    )
    num_position_frequencies: int = documented(
        3, "coupling flow: the coupling networks read octave encodings sin/cos(2^k π x), k < L, of their input (0: x)"
    )
    hidden_size: int | None = documented(None, "coupling-network or CNF velocity width; None: the recipe")
    num_layers: int | None = documented(None, "coupling-network hidden layers, or CNF velocity layers; None: recipe")
    activation: str | None = documented(
        None, f"coupling-network or CNF velocity activation: {sorted(ACTIVATIONS)}; None: the recipe"
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

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"`model` must be one of {MODELS}, got {self.model!r}")
        if self.uses_images and self.model != "made":
            raise ValueError(
                f"image data (dataset_name / train_data_files) needs `model`='made' (Bernoulli conditionals), got "
                f"model={self.model!r}"
            )
        recipe = RECIPES[(self.model, "images" if self.uses_images else "points")]
        for name in _RECIPE_FIELDS:
            if getattr(self, name) is None:
                setattr(self, name, recipe.get(name, _FALLBACK[name]))
        super().__post_init__()
        if self.uses_images:
            if self.dataset_name is not None and self.train_data_files is not None:
                raise ValueError(
                    f"pass one image source: `dataset_name`={self.dataset_name!r} or "
                    f"`train_data_files`={self.train_data_files!r}"
                )
            for name in ("train_data_files", "test_data_files"):
                path = getattr(self, name)
                if path is not None and not os.path.exists(path):
                    raise FileNotFoundError(f"`{name}` {path!r} does not exist")
        else:
            get_toy_distribution(self.dataset)  # raises for unknown names
        if self.test_data_files is not None and self.train_data_files is None:
            raise ValueError("`test_data_files` needs `train_data_files` (a Hub dataset brings its own test split)")
        choices = (
            ("binarize", BINARIZE),
            ("covariance_type", COVARIANCE_TYPES),
            ("order", ORDERS),
            ("activation", tuple(ACTIVATIONS)),
            ("divergence", DIVERGENCES),
            ("coupling_type", COUPLINGS),
            ("linear_parametrization", LINEAR_PARAMETRIZATIONS),
            ("solver", FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}")
        positive = (
            "num_components",
            "num_inits",
            "num_couplings",
            "hidden_size",
            "num_masks",
            "num_ode_steps",
            "image_size",
        )
        for name in (*positive, "num_eval_samples", "num_inference_steps", "bandwidth_grid_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        for name in (
            "num_train_points",
            "num_layers",
            "num_nll_samples",
            "num_validation_nll_samples",
            "num_position_frequencies",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be an int >= 0, got {value!r}")
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, int) or self.cv_folds < 2:
            raise ValueError(f"`cv_folds` must be an int >= 2, got {self.cv_folds!r}")
        if not self.hidden_sizes or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden_sizes
        ):
            raise ValueError(f"`hidden_sizes` must be a non-empty list of ints >= 1, got {self.hidden_sizes!r}")
        if not (math.isfinite(self.reg_covar) and self.reg_covar >= 0):
            raise ValueError(f"`reg_covar` must be a finite number >= 0, got {self.reg_covar}")
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ValueError(f"`num_bins` must be an int >= 2, got {self.num_bins!r}")
        if not (math.isfinite(self.tail_bound) and self.tail_bound > 0):
            raise ValueError(f"`tail_bound` must be a finite number > 0, got {self.tail_bound}")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError(f"`time_scale` must be a finite number > 0, got {self.time_scale}")
        if not (math.isfinite(self.ode_tolerance) and self.ode_tolerance > 0):
            raise ValueError(f"`ode_tolerance` must be a finite number > 0, got {self.ode_tolerance}")
        self.kde_bandwidth()  # raises for a bandwidth <= 0 or an unknown rule
        if self.model == "gmm" and self.num_train_points < self.num_components:
            raise ValueError(
                f"`num_train_points`={self.num_train_points} is fewer than `num_components`={self.num_components}: "
                "EM needs a fixed training sample with at least one point per component"
            )
        if self.model == "kde" and self.num_train_points < 2:
            raise ValueError(f"`num_train_points` must be >= 2 for the KDE's data, got {self.num_train_points}")
        if self.model == "kde" and self.max_train_steps != 1:
            raise ValueError(
                f"the KDE takes one closed-form step: `max_train_steps` must be 1, got {self.max_train_steps}"
            )

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


#: values of recipe fields that a model's recipe does not use (they are recorded, not read)
_FALLBACK: dict[str, Any] = {
    "max_train_steps": 1_000,
    "train_batch_size": 512,
    "learning_rate": 1e-3,
    "num_components": 8,
    "num_train_points": 0,
    "hidden_sizes": [128],
    "hidden_size": 64,
    "num_layers": 2,
    "activation": "silu",
}


def binarize_images(images: Tensor, name: str = "images") -> Tensor:
    """``x = 1[p > 0.5]`` pixel-wise for grey levels ``p`` in ``[0, 1]`` (refuses anything outside)."""
    check_images(images, name)
    return (images > 0.5).to(images.dtype)


def check_images(images: object, name: str) -> Tensor:
    """Check that ``images`` is a finite float ``(N, C, H, W)`` tensor with values in ``[0, 1]``."""
    if not isinstance(images, Tensor) or not torch.is_floating_point(images):
        raise TypeError(f"`{name}` must be a floating-point torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"`{name}` must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"`{name}` has NaN or inf values; images must be finite, in [0, 1]")
    if bool(((images < 0) | (images > 1)).any()):
        raise ValueError(
            f"`{name}` must lie in [0, 1] for the Bernoulli model, got range [{float(images.min())}, "
            f"{float(images.max())}]"
        )
    return images


def load_density_images(args: DensityArguments) -> dict[str, Tensor]:
    """Train and test images ``(N, 1, H, W)`` in ``[0, 1]`` (grey levels) through ``datasets``
    (:func:`hfgen.data.images.load_image_dataset`), as the VAE loads them."""
    from hfgen.data.images import dataset_to_tensors, load_image_splits

    options = {"image_column": args.image_column, "label_column": None, "image_size": args.image_size}
    splits = load_image_splits(
        args.dataset_name, args.train_data_files, args.test_data_files, seed=args.seed, **options
    )
    return {"train": dataset_to_tensors(splits["train"])[0], "test": dataset_to_tensors(splits["test"])[0]}


class DensityBatches:
    """Micro-batch ``k`` of process ``s``: ``train_batch_size`` rows of the fixed training set drawn uniformly with
    replacement, or fresh samples of the toy target, from :func:`~hfgen.utils.batch_generator` ``(seed, s, k)`` (a
    pure function of ``k``: resuming is exact); dynamic binarisation draws ``x ~ Bernoulli(p)`` from the same
    generator. A full-batch model (EM) gets the whole training set at every step."""

    def __init__(self, task: DensityTask, stream: int, start: int):
        self.task, self.stream, self.next_index = task, stream, start

    def __iter__(self) -> DensityBatches:
        return self

    def __next__(self) -> tuple[Tensor, torch.Generator | None]:
        index, self.next_index = self.next_index, self.next_index + 1
        return self.task.batch(index, self.stream)


class DensityTask(TrainingTask):
    r"""Fit one explicit density model (``args.model``) by maximum likelihood.

    * ``gmm``: ``p(x) = Σ_k π_k N(x; μ_k, Σ_k)``, initialised by k-means++ on the training sample and fitted by
      EM, one E- and M-step per (closed-form) step; the training log-likelihood before each step is kept
      (``em_log_likelihood``: it never decreases).
    * ``kde``: ``p(x) = (1/n) Σ_i N(x; x_i, h² I)`` on the training sample; its one closed-form step stores the
      points and chooses ``h`` (a rule, a number, or the k-fold cross-validated grid maximiser).
    * ``made``: ``log p(x) = Σ_d log p(x_d | x_{<d})`` with Gaussian-mixture conditionals on points, Bernoulli on
      binarised images.
    * ``coupling``: RealNVP or a neural spline flow, ``log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|``.
    * ``cnf``: ``log p_1(x) = log N(z(0); 0, I) − ∫_0^1 Tr ∂v_θ/∂z dt`` (FFJORD) with a :class:`TimeMLP`
      velocity; the result is a :class:`FlowMatchingPipeline`.

    ``data`` optionally gives the data instead of the arguments' source: ``{"train": points (N, D)}`` for a toy
    target (evaluated against that target), or ``{"train": images, "test": images}`` (grey levels in [0, 1]).
    """

    name = "density"
    args: DensityArguments

    def __init__(self, args: DensityArguments, data: Mapping[str, Tensor] | None = None):
        super().__init__(args)
        data = dict(data or {})
        self.target: ToyDistribution | None = None
        self.test: Tensor | None = None
        if args.uses_images:
            data = data or load_density_images(args)
            for key in ("train", "test"):
                if key not in data:
                    raise ValueError(f"image data needs a {key!r} split, got keys {sorted(data)}")
            grey = {key: check_images(data[key], f"{key}_images") for key in ("train", "test")}
            shape = tuple(grey["train"].shape[1:])
            if tuple(grey["test"].shape[1:]) != shape:
                raise ValueError(f"test_images have shape {tuple(grey['test'].shape)}, train_images {shape}")
            self.image_shape = shape
            self.train = (
                binarize_images(grey["train"], "train_images") if args.binarize == "threshold" else grey["train"]
            )
            if args.binarize == "dynamic":  # one fixed draw of the test set, the RBM's (Burda et al. 2016)
                self.test = binarize_test_images(grey["test"])
            else:
                self.test = binarize_images(grey["test"], "test_images")
            self.dim = math.prod(shape)
        else:
            self.target = get_toy_distribution(args.dataset)
            self.dim = self.target.dim
            if "train" in data:
                self.train = check_points(data["train"], name="train_points")
                if self.train.shape[1] != self.dim:
                    raise ValueError(
                        f"`train_points` have dimension {self.train.shape[1]}, but dataset {args.dataset!r} has "
                        f"{self.dim}"
                    )
            elif args.num_train_points:
                generator = batch_generator(args.seed, TRAIN_SAMPLE_STREAM, 0)
                self.train = self.target.sample(args.num_train_points, generator)
            else:
                self.train = None
        if self.train is not None and args.model == "gmm" and self.train.shape[0] < args.num_components:
            raise ValueError(
                f"`train_points` has {self.train.shape[0]} points, fewer than `num_components`="
                f"{args.num_components}: EM needs at least one point per component"
            )
        if args.model in ("gmm", "kde") and self.train is None:
            raise ValueError(f"model {args.model!r} fits a fixed sample: set `num_train_points` > 0")
        self.em_history: list[float] = []
        self.bandwidth: float | None = None
        self._model: Any = None

    # -- networks and data ---------------------------------------------------------------------------------------

    def build_model(self) -> Any:
        args, dim = self.args, self.dim
        if args.model == "gmm":
            model = GaussianMixture(args.num_components, dim, args.covariance_type).double()
            initialize_gmm(model, self.train.double(), args.num_inits, args.reg_covar, args.seed)
        elif args.model == "kde":
            bandwidth = args.kde_bandwidth()
            model = KernelDensity(self.train.shape[0], dim, "scott" if bandwidth == "cv" else bandwidth)
            model.data = torch.zeros_like(self.train)  # the data's dtype
        elif args.model == "made":
            image = self.test is not None
            model = MADE(
                dim=dim,
                hidden_sizes=list(args.hidden_sizes),
                conditional="bernoulli" if image else "gaussian_mixture",
                num_components=args.num_components,
                num_masks=args.num_masks,
                order=args.order,
                direct_connections=args.direct_connections,
                image_shape=list(self.image_shape) if image else None,
                seed=args.seed,
            )
        elif args.model == "coupling":
            model = CouplingFlow(
                dim=dim,
                num_couplings=args.num_couplings,
                hidden_size=args.hidden_size,
                num_hidden_layers=args.num_layers,
                invertible_linear=args.invertible_linear,
                coupling_type=args.coupling_type,
                num_bins=args.num_bins,
                tail_bound=args.tail_bound,
                activation=args.activation,
                linear_parametrization=args.linear_parametrization,
                unconditional_splines=args.unconditional_splines and args.coupling_type == "spline",
                num_position_frequencies=args.num_position_frequencies,
            )
            model.initialize_actnorm(self.batch(0, 0)[0])  # data-dependent init on the first batch
        else:
            model = TimeMLP(
                dim=dim,
                hidden_size=args.hidden_size,
                num_layers=args.num_layers,
                activation=args.activation,
                time_scale=args.time_scale,
            )
        self._model = model
        return model

    @property
    def closed_form(self) -> bool:
        return self.args.model in ("gmm", "kde")

    def phases(self) -> list[Phase]:
        name = {"gmm": "em", "kde": "kde"}.get(self.args.model, "train")
        return [Phase("model", self.args.max_train_steps, name, optimize=not self.closed_form)]

    def batch(self, index: int, stream: int) -> tuple[Tensor, torch.Generator | None]:
        """Micro-batch ``index`` of process ``stream`` (see :class:`DensityBatches`) and the generator of its
        remaining randomness (the CNF's Hutchinson noise); a closed-form step gets the whole sample and ``None``."""
        if self.closed_form:
            return self.train, None
        generator = batch_generator(self.args.seed, stream, index)
        size = self.args.train_batch_size
        if self.train is None:
            return self.target.sample(size, generator), generator
        rows = self.train[torch.randint(self.train.shape[0], (size,), generator=generator)]
        if self.test is not None and self.args.binarize == "dynamic":
            rows = torch.bernoulli(rows, generator=generator)
        return rows, generator

    @contextmanager
    def batches(self, start: int, stream: int, phase: int = 0) -> Iterator[DensityBatches]:
        yield DensityBatches(self, stream, start)

    def _velocity(self, model: torch.nn.Module) -> Any:
        return lambda x, t: model(x, t, return_dict=False)[0]

    def loss(self, model: torch.nn.Module, batch: tuple[Tensor, Any], device: torch.device) -> torch.Tensor:
        """``−(1/B) Σ_b log p_θ(x_b)`` on the micro-batch (the CNF's through :func:`hfgen.methods.cnf.cnf_nll_loss`).

        A MADE ensemble of ``M > 1`` masks is trained order- and connectivity-agnostically (Germain et al. 2015,
        §4.2): one mask ``m`` drawn uniformly per micro-batch from the batch's generator, loss ``−(1/B) Σ_b log
        p_m(x_b)``; the ensemble ``log p = logmeanexp_m log p_m`` is what is evaluated."""
        points, generator = batch[0].to(device), batch[1]
        if self.args.model == "made" and model.num_masks > 1:
            mask_index = int(torch.randint(model.num_masks, (1,), generator=generator))
            return -model.log_prob(points, mask_index=mask_index).mean()
        if self.args.model != "cnf":
            return -model.log_prob(points).mean()
        args = self.args
        return cnf_nll_loss(
            self._velocity(model),
            points,
            _standard_normal_log_prob,
            solver=args.solver,
            num_steps=args.num_ode_steps,
            rtol=args.ode_tolerance,
            atol=args.ode_tolerance,
            divergence_method=args.divergence,
            generator=generator,
        )

    def update(self, model: torch.nn.Module, batch: tuple[Tensor, Any], device: torch.device) -> torch.Tensor:
        """GMM: one EM step (E-step, then M-step) on the whole training sample; returns ``−(1/N) Σ log p(x_n)``
        before the step. KDE: stores the points and chooses the bandwidth; returns ``−`` its held-out score (CV) or
        the training ``−mean log p``."""
        data = batch[0].to(device)
        if self.args.model == "gmm":
            log_resp, log_prob = e_step(model, data.double())
            m_step(model, data.double(), log_resp, self.args.reg_covar)
            self.em_history.append(float(log_prob.mean()))
            return -log_prob.mean()
        model.data.copy_(data)
        bandwidth = self.args.kde_bandwidth()
        if bandwidth == "cv":
            scott = rule_bandwidth(data, "scott")
            grid = scott * torch.logspace(math.log10(0.1), math.log10(2.0), self.args.bandwidth_grid_size)
            generator = torch.Generator().manual_seed(self.args.seed)
            selection = select_bandwidth(data, grid, self.args.cv_folds, generator)
            self._set_bandwidth(selection.bandwidth)
            return -selection.scores.max()
        self.bandwidth = model.bandwidth
        return -model.log_prob(data).mean()

    def _set_bandwidth(self, bandwidth: float) -> None:
        self.bandwidth = float(bandwidth)
        self._model.register_to_config(bandwidth=self.bandwidth)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {}
        if self.em_history:
            state["em_log_likelihood"] = torch.tensor(self.em_history, dtype=torch.float64)
        if self.bandwidth is not None:
            state["bandwidth"] = torch.tensor([self.bandwidth], dtype=torch.float64)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.em_history = state["em_log_likelihood"].tolist() if "em_log_likelihood" in state else []
        if "bandwidth" in state and self.args.kde_bandwidth() == "cv":
            self._set_bandwidth(float(state["bandwidth"][0]))

    # -- pipeline and evaluation ---------------------------------------------------------------------------------

    def pipeline(self, model: Any) -> DensityPipeline | FlowMatchingPipeline:
        if self.args.model == "cnf":
            return FlowMatchingPipeline(model, FlowMatchEulerScheduler())
        return DensityPipeline(model)

    def sample(self, pipeline: Any, num_samples: int, generator: torch.Generator) -> Tensor:
        if isinstance(pipeline, FlowMatchingPipeline):
            return pipeline(num_samples, self.args.num_inference_steps, generator=generator).samples
        return pipeline(num_samples, generator=generator).samples.float()

    def score(self, samples: Tensor, generator: torch.Generator) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        if self.target is not None:
            report = sample_quality_report(samples.float(), self.target, generator=generator)
            metrics = {f"samples_{key}": value for key, value in report.items()}
        if self.args.model == "gmm" and self.em_history:
            with torch.no_grad():
                final = float(self._model.log_prob(self.train.double()).mean())
            history = [*self.em_history, final]
            metrics["em_log_likelihood"] = history
            metrics["em_monotone"] = all(b >= a - 1e-9 for a, b in zip(history, history[1:], strict=False))
        if self.args.model == "kde" and self.bandwidth is not None:
            metrics["bandwidth"] = self.bandwidth
        return metrics

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> Tensor | None:
        if self.test is not None:
            return self.test[:num_points]
        return self.target.sample(num_points, generator=generator)

    def log_likelihood(self, pipeline: Any, points: Tensor) -> Tensor:
        if isinstance(pipeline, FlowMatchingPipeline):
            return pipeline.log_prob(points.to(pipeline.velocity.dtype))
        dtype = pipeline.model.dtype
        return torch.cat([pipeline.log_prob(chunk.to(dtype)) for chunk in points.split(1000)]).float()

    def score_log_likelihood(self, log_prob: Tensor) -> dict[str, Any]:
        report = nll_report(log_prob.double(), None if self.target is None else self.target.entropy)
        report["num_nll_samples"] = int(log_prob.numel())
        return {key: value for key, value in report.items() if value is not None}

    # -- figures and card ----------------------------------------------------------------------------------------

    def _log_prob_fn(self, pipeline: Any) -> Any:
        if isinstance(pipeline, FlowMatchingPipeline):
            return lambda x: pipeline.log_prob(x, rtol=1e-3, atol=1e-3)
        return lambda x: pipeline.log_prob(x.to(pipeline.model.dtype))

    def validation_figures(self, pipeline: Any, samples: Tensor | None) -> dict[str, Any]:
        return self._figures(pipeline, samples, grid_size=40 if self.args.model == "cnf" else 100)

    def final_figures(self, pipeline: Any) -> dict[str, Any]:
        samples = self.sample(pipeline, 2000 if self.test is None else 100, torch.Generator().manual_seed(2))
        return self._figures(pipeline, samples, grid_size=60 if self.args.model == "cnf" else 200)

    def _figures(self, pipeline: Any, samples: Tensor | None, grid_size: int) -> dict[str, Any]:
        from hfgen import plotting

        if samples is None:
            return {}
        if self.test is not None:
            return {"samples.png": plotting.plot_image_grid(samples[:100].float(), ncols=10, title="MADE samples")}
        if self.dim != 2:
            return {}
        generator = torch.Generator().manual_seed(3)
        reference = self.target.sample(min(samples.shape[0], 2000), generator)
        return {
            "samples.png": plotting.plot_samples(samples[:2000].float(), reference=reference, title="samples"),
            "density.png": plotting.plot_density(
                self._log_prob_fn(pipeline), bounds=(-3, 3), grid_size=grid_size, title="model density p(x)"
            ),
        }

    def model_card(self, metrics: dict[str, Any], repo_id: str | None) -> Any:
        return density_card(self.args, metrics, repo_id=repo_id)


def initialize_gmm(model: GaussianMixture, data: Tensor, num_inits: int, reg_covar: float, seed: int) -> None:
    r"""Initialise EM from the best of ``num_inits`` k-means++ seedings (Arthur & Vassilvitskii 2007): the centres
    ``c`` of least inertia ``Σ_n min_k ‖x_n − c_k‖²`` (as scikit-learn's ``KMeans(n_init)`` chooses), then one M-step
    on the hard assignments to the nearest centre (weights, means, covariances)."""
    best: tuple[float, Tensor] | None = None
    for attempt in range(num_inits):
        generator = torch.Generator().manual_seed(seed + 7919 * attempt)
        centres = data[kmeans_plus_plus(data, model.config.num_components, generator)]
        inertia = float(torch.cdist(data, centres).min(dim=1).values.square().sum())
        if best is None or inertia < best[0]:
            best = (inertia, centres)
    labels = torch.cdist(data, best[1]).argmin(dim=1)
    resp = torch.nn.functional.one_hot(labels, model.config.num_components).to(data.dtype)
    m_step(model, data, resp.log(), reg_covar)


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I) = −‖z‖²/2 − (D/2) log 2π`` per row."""
    return -0.5 * z.square().sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def train_density(
    args: DensityArguments, data: Mapping[str, Tensor] | None = None
) -> tuple[Any, dict[str, Any], DensityTask]:
    """Train in this process without writing outputs (benchmarks, notebooks); returns the pipeline, the training
    numbers and the task (which holds the data)."""
    task = DensityTask(args, data)
    result = train_in_process(task)
    return result.pipeline, result.metrics, task


def evaluate_density(pipeline: Any, task: DensityTask, seed: int = 1) -> dict[str, Any]:
    """Final metrics of a trained pipeline in this process: sample quality of ``num_eval_samples`` samples (points)
    and the NLL of ``num_nll_samples`` held-out points or test images."""
    num_samples = task.args.num_eval_samples if task.test is None else 1
    return evaluate_in_process(task, pipeline, num_samples, task.args.num_nll_samples, seed)


# ---- model card ------------------------------------------------------------------------------------------

_MODEL_NAMES = {
    "gmm": "Gaussian mixture (EM)",
    "kde": "Gaussian kernel density estimate",
    "made": "MADE",
    "coupling": "coupling flow",
    "cnf": "continuous normalising flow (FFJORD, maximum likelihood)",
}
_COUPLING_NAMES = {"affine": "RealNVP coupling flow", "spline": "neural spline flow (rational-quadratic couplings)"}


def density_metrics_table(metrics: Mapping[str, Any]) -> str:
    """The card's metrics table from a run's ``metrics.json`` (missing entries are skipped)."""
    from hfgen.hub import markdown_table, sample_quality_rows, training_row

    rows = sample_quality_rows(metrics, "model samples")
    if "nll" in metrics:
        count = metrics.get("num_nll_samples", "")
        what = "held-out points" if "entropy" in metrics else "test images"
        rows.append(("NLL (nats)", f"{metrics['nll']:.4f} ± {metrics['nll_stderr']:.4f}", f"{count} {what}"))
    if "entropy" in metrics:
        rows.append(("entropy (nats)", f"{metrics['entropy']:.4f}", "the lowest NLL any model can reach"))
        rows.append(("NLL − entropy", f"{metrics['nll_minus_entropy']:.4f}", "KL(target ‖ model)"))
    if "bandwidth" in metrics:
        rows.append(("bandwidth h", f"{metrics['bandwidth']:.4f}", "kernel standard deviation"))
    if "em_log_likelihood" in metrics:
        history = metrics["em_log_likelihood"]
        note = "never decreased" if metrics.get("em_monotone") else "DECREASED at some step"
        rows.append(("EM train log-likelihood", f"{history[0]:.4f} → {history[-1]:.4f}", note))
    return markdown_table(("metric", "value", "note"), rows + training_row(metrics))


def density_eval_results(args: DensityArguments, metrics: Mapping[str, Any]) -> list[Any]:
    """Machine-readable metrics for the card's ``model-index``."""
    from hfgen.hub import SAMPLE_QUALITY_RESULTS, eval_results

    names = {
        **SAMPLE_QUALITY_RESULTS,
        "nll": ("nll", "NLL (nats)"),
        "nll_minus_entropy": ("nll-minus-entropy", "NLL − entropy (nats)"),
    }
    return eval_results(metrics, names, args.dataset_label, args.dataset_name or f"hfgen/{args.dataset_label}")


def density_card(args: DensityArguments, metrics: Mapping[str, Any], repo_id: str | None = None) -> Any:
    """Render ``model_cards/density.md`` for a training run: metadata, the model's equations, usage, metrics,
    figures, training summary and configuration. ``repo_id`` is the Hub id the usage snippet loads."""
    from huggingface_hub import ModelCard, ModelCardData

    from hfgen.hub import (
        LICENSE,
        card_template,
        config_table,
        training_summary,
        usage_repo_id,
        validation_table,
    )

    label = args.dataset_label.split("/")[-1]
    model_name = repo_id.split("/")[-1] if repo_id else f"{args.model}-{label}"
    card_data = ModelCardData(
        library_name="hfgen",
        license=LICENSE,
        tags=["hfgen", "diffusers", "density-estimation", args.model, "image" if args.uses_images else "toy-2d"],
        datasets=[args.dataset_name] if args.dataset_name else None,
        model_name=model_name,
        eval_results=density_eval_results(args, metrics) or None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=card_template("density"),
        model_name=model_name,
        repo_id=usage_repo_id(repo_id, args.output_dir),
        model=args.model,
        model_title=_COUPLING_NAMES[args.coupling_type] if args.model == "coupling" else _MODEL_NAMES[args.model],
        dataset=args.dataset_label,
        images=args.uses_images,
        binarize=args.binarize,
        test_binarization_seed=TEST_BINARIZATION_SEED,
        num_components=args.num_components,
        covariance_type=args.covariance_type,
        reg_covar=args.reg_covar,
        bandwidth=args.bandwidth,
        hidden_sizes=" → ".join(str(h) for h in args.hidden_sizes),
        num_couplings=args.num_couplings,
        invertible_linear=args.invertible_linear,
        linear_parametrization=args.linear_parametrization,
        unconditional_splines=args.unconditional_splines,
        num_position_frequencies=args.num_position_frequencies,
        activation=args.activation,
        coupling_type=args.coupling_type,
        num_bins=args.num_bins,
        tail_bound=args.tail_bound,
        solver=args.solver,
        num_ode_steps=args.num_ode_steps,
        divergence=args.divergence,
        fixed_step=args.solver in FIXED_STEP_SOLVERS,
        ema_decay=args.ema_decay if args.model in ("made", "coupling", "cnf") else 0,
        metrics_table=density_metrics_table(metrics),
        training_summary=training_summary(metrics),
        validation_table=validation_table(metrics.get("validation", [])),
        config_table=config_table(args.to_dict()),
    )
