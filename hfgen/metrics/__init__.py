"""Sample-quality and likelihood metrics: exact W2, its finite-sample floor, MMD, NLL.

Points are ``(N, D)`` float tensors (numpy arrays are accepted too); every metric is computed in float64 on
the CPU and returned as a Python ``float``. By job: ``wasserstein`` (the exact W2 and its solvers), ``kernel``
(MMD and the median-heuristic bandwidth), ``sample_quality`` (W2 beside its floor, support, the combined
report), ``likelihood`` (NLL reports); ``arrays`` validates the inputs.
"""

from hfgen.metrics.arrays import ArrayLike
from hfgen.metrics.kernel import median_heuristic, mmd
from hfgen.metrics.likelihood import negative_log_likelihood, nll_report
from hfgen.metrics.sample_quality import (
    Sampler,
    fraction_in_support,
    sample_quality_report,
    w2_against_floor,
    wasserstein2_floor,
)
from hfgen.metrics.wasserstein import DEFAULT_NUM_ITER_MAX, DENSE_MAX_ARCS, wasserstein2

__all__ = [
    "DEFAULT_NUM_ITER_MAX",
    "DENSE_MAX_ARCS",
    "ArrayLike",
    "Sampler",
    "fraction_in_support",
    "median_heuristic",
    "mmd",
    "negative_log_likelihood",
    "nll_report",
    "sample_quality_report",
    "w2_against_floor",
    "wasserstein2",
    "wasserstein2_floor",
]
