r"""The closed-form density tasks of ``training/train_density.py``: a Gaussian mixture fitted by EM (Dempster, Laird
& Rubin 1977) and a kernel density estimate (Silverman 1986), each over :class:`ClosedFormTask`, whose steps run as
a ``Phase(optimize=False)`` on the whole fixed training sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from hfgen.arguments.density import RECIPES
from hfgen.methods.kde import select_bandwidth
from hfgen.methods.mixtures import e_step, kmeans_plus_plus, m_step
from hfgen.models.kde import KernelDensity, rule_bandwidth
from hfgen.models.mixture import GaussianMixture
from hfgen.training.density_tasks import DensityTask
from hfgen.training.engine import progress_bar
from hfgen.training.task import Phase


class ClosedFormTask(DensityTask):
    """A model fitted to a fixed training sample by closed-form steps (``Phase(optimize=False)``), each on the
    whole sample."""

    def __init__(self, args: Any, data: Mapping[str, Tensor] | None = None):
        super().__init__(args, data)
        if self.train is None:
            raise ValueError(f"model {args.model!r} fits a fixed sample: set `num_train_points` > 0")

    def batch(self, index: int, stream: int) -> tuple[Tensor, None]:
        """The whole training sample, at every step."""
        return self.train, None


class GMMTask(ClosedFormTask):
    r"""``p(x) = Σ_k π_k N(x; μ_k, Σ_k)``, initialised by k-means++ on the training sample and fitted by
    ``em_iterations`` EM iterations, one E- and M-step each; the training log-likelihood before each step is kept
    (``em_log_likelihood``: it never decreases)."""

    recipe = RECIPES["gmm"]

    def __init__(self, args: Any, data: Mapping[str, Tensor] | None = None):
        super().__init__(args, data)
        if self.train.shape[0] < args.num_components:
            raise ValueError(
                f"`train_points` has {self.train.shape[0]} points, fewer than `num_components`="
                f"{args.num_components}: EM needs at least one point per component"
            )
        self.em_history: list[float] = []

    def make_model(self) -> GaussianMixture:
        args = self.args
        model = GaussianMixture(args.num_components, self.dim, args.covariance_type).double()
        initialize_gmm(model, self.train.double(), args.num_inits, args.reg_covar, args.seed)
        return model

    def phases(self) -> list[Phase]:
        return [Phase("model", self.args.em_iterations, "em", optimize=False)]

    def update(self, model: torch.nn.Module, batch: tuple[Tensor, Any], device: torch.device) -> torch.Tensor:
        """One EM step (E-step, then M-step) on the whole training sample; returns ``−(1/N) Σ log p(x_n)`` before
        the step."""
        data = batch[0].to(device).double()
        log_resp, log_prob = e_step(model, data)
        m_step(model, data, log_resp, self.args.reg_covar)
        self.em_history.append(float(log_prob.mean()))
        return -log_prob.mean()

    def state_dict(self) -> dict[str, torch.Tensor]:
        if not self.em_history:
            return {}
        return {"em_log_likelihood": torch.tensor(self.em_history, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.em_history = state["em_log_likelihood"].tolist() if "em_log_likelihood" in state else []

    def score(self, samples: Tensor, generator: torch.Generator) -> dict[str, Any]:
        metrics = super().score(samples, generator)
        if self.em_history:
            with torch.no_grad():
                final = float(self._model.log_prob(self.train.double()).mean())
            history = [*self.em_history, final]
            metrics["em_log_likelihood"] = history
            metrics["em_monotone"] = all(b >= a - 1e-9 for a, b in zip(history, history[1:], strict=False))
        return metrics


class KDETask(ClosedFormTask):
    r"""``p(x) = (1/n) Σ_i N(x; x_i, h² I)`` on the training sample; its one closed-form step stores the points and
    chooses ``h`` (a rule, a number, or the k-fold cross-validated grid maximiser)."""

    recipe = RECIPES["kde"]

    def __init__(self, args: Any, data: Mapping[str, Tensor] | None = None):
        super().__init__(args, data)
        self.bandwidth: float | None = None

    def make_model(self) -> KernelDensity:
        bandwidth = self.args.kde_bandwidth()
        model = KernelDensity(self.train.shape[0], self.dim, "scott" if bandwidth == "cv" else bandwidth)
        model.data = torch.zeros_like(self.train)  # the data's dtype
        return model

    def phases(self) -> list[Phase]:
        return [Phase("model", 1, "kde", optimize=False)]

    def update(self, model: torch.nn.Module, batch: tuple[Tensor, Any], device: torch.device) -> torch.Tensor:
        """Store the points and choose the bandwidth; returns ``−`` its held-out score (CV) or the training
        ``−mean log p``."""
        data = batch[0].to(device)
        model.data.copy_(data)
        if self.args.kde_bandwidth() != "cv":
            self.bandwidth = model.bandwidth
            return -model.log_prob(data).mean()
        scott = rule_bandwidth(data, "scott")
        grid = scott * torch.logspace(math.log10(0.1), math.log10(2.0), self.args.bandwidth_grid_size)
        generator = torch.Generator().manual_seed(self.args.seed)
        folds = self.args.cv_folds
        with progress_bar(folds * grid.numel(), f"kde: {folds}-fold bandwidth search") as bar:
            selection = select_bandwidth(data, grid, folds, generator, progress=bar.update)
        self._set_bandwidth(selection.bandwidth)
        return -selection.scores.max()

    def _set_bandwidth(self, bandwidth: float) -> None:
        self.bandwidth = float(bandwidth)
        self._model.register_to_config(bandwidth=self.bandwidth)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.bandwidth is None:
            return {}
        return {"bandwidth": torch.tensor([self.bandwidth], dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "bandwidth" in state and self.args.kde_bandwidth() == "cv":
            self._set_bandwidth(float(state["bandwidth"][0]))

    def score(self, samples: Tensor, generator: torch.Generator) -> dict[str, Any]:
        metrics = super().score(samples, generator)
        if self.bandwidth is not None:
            metrics["bandwidth"] = self.bandwidth
        return metrics


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
