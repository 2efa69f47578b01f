r"""The explicit-likelihood models of ``training/train_density.py``, one small
:class:`~hfgen.training.task.TrainingTask` per model over :class:`DensityTask`, the shared base (data, batches,
scoring, figures and card). Each task's ``recipe`` (class default) is its benchmark recipe
(``benchmarks/DENSITY_RESULTS.md``): it fills every :class:`~hfgen.training.density.DensityArguments` field left at
``None``.

Every model but the KDE maximises the log-likelihood ``(1/N) Σ_n log p_θ(x_n)``: the mixture by EM (Dempster, Laird
& Rubin 1977), closed-form steps run as a ``Phase(optimize=False)``; MADE (Germain et al. 2015), the coupling flow
(Dinh et al. 2017; Durkan et al. 2019) and the CNF (Grathwohl et al. 2019) by AdamW on ``−mean log p_θ``. The
KDE's one closed-form step stores the data and picks the bandwidth (Silverman 1986).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor

from hfgen.arguments.density import BASE_RECIPE, IMAGE_RECIPES, RECIPES
from hfgen.data import ToyDistribution, get_toy_distribution
from hfgen.data.images import binarize_test_images
from hfgen.methods.cnf import cnf_nll_loss
from hfgen.metrics import nll_report, sample_quality_report
from hfgen.model_cards.density import density_card
from hfgen.models.coupling_flow import CouplingFlow
from hfgen.models.made import MADE
from hfgen.models.mlp import TimeMLP
from hfgen.pipelines.density import DensityPipeline
from hfgen.pipelines.flow_matching import FlowMatchingPipeline
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler
from hfgen.training.image_data import check_images
from hfgen.training.task import IndexedBatches, Phase, TrainingTask
from hfgen.utils import batch_generator, check_points

#: the stream of the fixed training sample of the toy targets (process streams are 0, 1, …)
TRAIN_SAMPLE_STREAM = -1


def binarize_images(images: Tensor, name: str = "images") -> Tensor:
    """``x = 1[p > 0.5]`` pixel-wise for grey levels ``p`` in ``[0, 1]`` (refuses anything outside)."""
    check_images(images, name)
    return (images > 0.5).to(images.dtype)


def load_density_images(args: Any) -> dict[str, Tensor]:
    """Train and test images ``(N, 1, H, W)`` in ``[0, 1]`` (grey levels) through ``datasets``
    (:func:`hfgen.data.images.load_image_dataset`), as the VAE loads them."""
    from hfgen.data.images import dataset_to_tensors, load_image_splits

    options = {"image_column": args.image_column, "label_column": None, "image_size": args.image_size}
    splits = load_image_splits(
        args.dataset_name, args.train_data_files, args.test_data_files, seed=args.seed, **options
    )
    return {"train": dataset_to_tensors(splits["train"])[0], "test": dataset_to_tensors(splits["test"])[0]}


class DensityBatches(IndexedBatches):
    """Micro-batch ``k`` of process ``s``: ``train_batch_size`` rows of the fixed training set drawn uniformly with
    replacement, or fresh samples of the toy target, from :func:`~hfgen.utils.batch_generator` ``(seed, s, k)`` (a
    pure function of ``k``: resuming is exact); dynamic binarisation draws ``x ~ Bernoulli(p)`` from the same
    generator. A full-batch model (EM) gets the whole training set at every step."""

    def __init__(self, task: DensityTask, stream: int, start: int):
        super().__init__(start)
        self.task, self.stream = task, stream

    def draw(self, index: int) -> tuple[Tensor, torch.Generator | None]:
        return self.task.batch(index, self.stream)


class DensityTask(TrainingTask):
    r"""The shared base of the density tasks: a model ``p_θ`` trained by AdamW on ``−(1/B) Σ_b log p_θ(x_b)``,
    saved as a :class:`DensityPipeline`, scored by sample quality against the toy target and the held-out NLL.

    ``data`` optionally gives the data instead of the arguments' source: ``{"train": points (N, D)}`` for a toy
    target (evaluated against that target), or ``{"train": images, "test": images}`` (grey levels in [0, 1]).
    """

    name = "density"
    card = staticmethod(density_card)
    evaluation_fields = ("num_eval_samples", "num_nll_samples")
    args: Any  # the run's DensityArguments (hfgen.training.density)
    #: the recipe on points: the value of each recipe field left at ``None`` (these are recorded, not read, by the
    #: models that do not use them)
    recipe: ClassVar[dict[str, Any]] = BASE_RECIPE
    #: the recipe on images (``None``: the model does not train on images)
    image_recipe: ClassVar[dict[str, Any] | None] = None
    #: the density grid of the validation and of the final figure
    grid_sizes: ClassVar[tuple[int, int]] = (100, 200)

    def __init__(self, args: Any, data: Mapping[str, Tensor] | None = None):
        super().__init__(args)
        data = dict(data or {})
        self.target: ToyDistribution | None = None
        self.test: Tensor | None = None
        if args.uses_images:
            self._set_images(data or load_density_images(args))
        else:
            self._set_points(data)
        self._model: Any = None

    def _set_images(self, data: Mapping[str, Tensor]) -> None:
        """Binarised train and test images (the test set drawn once, by ``binarize_test_images``, for dynamic
        binarisation)."""
        args = self.args
        for key in ("train", "test"):
            if key not in data:
                raise ValueError(f"image data needs a {key!r} split, got keys {sorted(data)}")
        grey = {key: check_images(data[key], f"{key}_images") for key in ("train", "test")}
        shape = tuple(grey["train"].shape[1:])
        if tuple(grey["test"].shape[1:]) != shape:
            raise ValueError(f"test_images have shape {tuple(grey['test'].shape)}, train_images {shape}")
        self.image_shape = shape
        self.train = binarize_images(grey["train"], "train_images") if args.binarize == "threshold" else grey["train"]
        if args.binarize == "dynamic":  # one fixed draw of the test set, the RBM's (Burda et al. 2016)
            self.test = binarize_test_images(grey["test"])
        else:
            self.test = binarize_images(grey["test"], "test_images")
        self.dim = math.prod(shape)

    def _set_points(self, data: Mapping[str, Tensor]) -> None:
        """The toy target and the training sample: the given points, a fixed sample or ``None`` (fresh batches)."""
        args = self.args
        self.target = get_toy_distribution(args.dataset)
        self.dim = self.target.dim
        if "train" in data:
            self.train = check_points(data["train"], name="train_points")
            if self.train.shape[1] != self.dim:
                raise ValueError(
                    f"`train_points` have dimension {self.train.shape[1]}, but dataset {args.dataset!r} has {self.dim}"
                )
        elif args.num_train_points:
            self.train = self.target.sample(args.num_train_points, batch_generator(args.seed, TRAIN_SAMPLE_STREAM, 0))
        else:
            self.train = None

    # -- networks and data ---------------------------------------------------------------------------------------

    def build_model(self) -> Any:
        self._model = self.make_model()
        return self._model

    def make_model(self) -> Any:
        """The task's model, untrained."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_model")

    def phases(self) -> list[Phase]:
        return [Phase("model", self.args.max_train_steps, "train")]

    def batch(self, index: int, stream: int) -> tuple[Tensor, torch.Generator | None]:
        """Micro-batch ``index`` of process ``stream`` (see :class:`DensityBatches`) and the generator of its
        remaining randomness (the CNF's Hutchinson noise)."""
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

    def loss(self, model: torch.nn.Module, batch: tuple[Tensor, Any], device: torch.device) -> torch.Tensor:
        """``−(1/B) Σ_b log p_θ(x_b)`` on the micro-batch."""
        return -model.log_prob(batch[0].to(device)).mean()

    # -- pipeline and evaluation ---------------------------------------------------------------------------------

    def pipeline(self, model: Any) -> Any:
        return DensityPipeline(model)

    def sample(self, pipeline: Any, num_samples: int, generator: torch.Generator) -> Tensor:
        return pipeline(num_samples, generator=generator).samples.float()

    def score(self, samples: Tensor, generator: torch.Generator) -> dict[str, Any]:
        if self.target is None:
            return {}
        report = sample_quality_report(samples.float(), self.target, generator=generator)
        return {f"samples_{key}": value for key, value in report.items()}

    def log_likelihood_points(self, num_points: int, generator: torch.Generator) -> Tensor | None:
        if self.test is not None:
            return self.test[:num_points]
        return self.target.sample(num_points, generator=generator)

    def log_likelihood(self, pipeline: Any, points: Tensor) -> Tensor:
        dtype = pipeline.model.dtype
        return torch.cat([pipeline.log_prob(chunk.to(dtype)) for chunk in points.split(1000)]).float()

    def score_log_likelihood(self, log_prob: Tensor) -> dict[str, Any]:
        report = nll_report(log_prob.double(), None if self.target is None else self.target.entropy)
        report["num_nll_samples"] = int(log_prob.numel())
        return {key: value for key, value in report.items() if value is not None}

    # -- figures and card ----------------------------------------------------------------------------------------

    def log_prob_function(self, pipeline: Any) -> Any:
        """``x ↦ log p(x)`` of the pipeline, for the density figure."""
        return lambda x: pipeline.log_prob(x.to(pipeline.model.dtype))

    def validation_figures(self, pipeline: Any, samples: Tensor | None) -> dict[str, Any]:
        return self._figures(pipeline, samples, grid_size=self.grid_sizes[0])

    def final_figures(self, pipeline: Any) -> dict[str, Any]:
        samples = self.sample(pipeline, 2000 if self.test is None else 100, torch.Generator().manual_seed(2))
        return self._figures(pipeline, samples, grid_size=self.grid_sizes[1])

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
                self.log_prob_function(pipeline), bounds=(-3, 3), grid_size=grid_size, title="model density p(x)"
            ),
        }


class MADETask(DensityTask):
    r"""MADE: ``log p(x) = Σ_d log p(x_d | x_{<d})`` with Gaussian-mixture conditionals on points, Bernoulli on
    binarised images."""

    recipe = RECIPES["made"]
    image_recipe = IMAGE_RECIPES["made"]

    def make_model(self) -> MADE:
        args, image = self.args, self.test is not None
        return MADE(
            dim=self.dim,
            hidden_sizes=list(args.hidden_sizes),
            conditional="bernoulli" if image else "gaussian_mixture",
            num_components=args.num_components,
            num_masks=args.num_masks,
            order=args.order,
            direct_connections=args.direct_connections,
            image_shape=list(self.image_shape) if image else None,
            seed=args.seed,
        )

    def loss(self, model: torch.nn.Module, batch: tuple[Tensor, Any], device: torch.device) -> torch.Tensor:
        """``−(1/B) Σ_b log p_θ(x_b)``; an ensemble of ``M > 1`` masks is trained order- and
        connectivity-agnostically (Germain et al. 2015, §4.2): one mask ``m`` drawn uniformly per micro-batch from
        the batch's generator, loss ``−(1/B) Σ_b log p_m(x_b)``, while ``log p = logmeanexp_m log p_m`` is evaluated."""
        if model.num_masks == 1:
            return super().loss(model, batch, device)
        mask_index = int(torch.randint(model.num_masks, (1,), generator=batch[1]))
        return -model.log_prob(batch[0].to(device), mask_index=mask_index).mean()


class CouplingTask(DensityTask):
    r"""A RealNVP or neural spline coupling flow, ``log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|``."""

    recipe = RECIPES["coupling"]

    def make_model(self) -> CouplingFlow:
        args = self.args
        model = CouplingFlow(
            dim=self.dim,
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
        return model


class CNFTask(DensityTask):
    r"""FFJORD: ``log p_1(x) = log N(z(0); 0, I) − ∫_0^1 Tr ∂v_θ/∂z dt`` with a :class:`TimeMLP` velocity; the
    result is a :class:`FlowMatchingPipeline`."""

    recipe = RECIPES["cnf"]
    grid_sizes = (40, 60)

    def make_model(self) -> TimeMLP:
        args = self.args
        return TimeMLP(
            dim=self.dim,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            activation=args.activation,
            time_scale=args.time_scale,
        )

    def loss(self, model: torch.nn.Module, batch: tuple[Tensor, Any], device: torch.device) -> torch.Tensor:
        """``−(1/B) Σ_b log p_θ(x_b)`` through :func:`hfgen.methods.cnf.cnf_nll_loss`."""
        args = self.args
        return cnf_nll_loss(
            lambda x, t: model(x, t, return_dict=False)[0],
            batch[0].to(device),
            _standard_normal_log_prob,
            solver=args.solver,
            num_steps=args.num_ode_steps,
            rtol=args.ode_tolerance,
            atol=args.ode_tolerance,
            divergence_method=args.divergence,
            generator=batch[1],
        )

    def pipeline(self, model: Any) -> FlowMatchingPipeline:
        return FlowMatchingPipeline(model, FlowMatchEulerScheduler())

    def sample(self, pipeline: Any, num_samples: int, generator: torch.Generator) -> Tensor:
        return pipeline(num_samples, self.args.num_inference_steps, generator=generator).samples

    def log_likelihood(self, pipeline: Any, points: Tensor) -> Tensor:
        return pipeline.log_prob(points.to(pipeline.velocity.dtype))

    def log_prob_function(self, pipeline: Any) -> Any:
        return lambda x: pipeline.log_prob(x, rtol=1e-3, atol=1e-3)


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I) = −‖z‖²/2 − (D/2) log 2π`` per row."""
    return -0.5 * z.square().sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
