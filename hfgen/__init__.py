"""hfgen: generative models of a graduate course as Hugging Face diffusers pipelines.

Every component module is imported here, eagerly: diffusers resolves the classes named in a saved
``model_index.json`` (for example ``["hfgen.models.mlp", "TimeMLP"]``) only if they are already imported.
"""

from hfgen.data import TOY_DISTRIBUTIONS, ToyDistribution, get_toy_distribution
from hfgen.models import DDPMOracle, TimeMLP
from hfgen.pipelines import DDPMPointsPipeline, FlowMatchingPipeline, HfgenPipeline, PointsPipelineOutput
from hfgen.schedulers import ConstantAlphaDDPMScheduler, FlowMatchEulerScheduler

__version__ = "0.1.0"

__all__ = [
    "TOY_DISTRIBUTIONS",
    "ConstantAlphaDDPMScheduler",
    "DDPMOracle",
    "DDPMPointsPipeline",
    "FlowMatchEulerScheduler",
    "FlowMatchingPipeline",
    "HfgenPipeline",
    "PointsPipelineOutput",
    "TimeMLP",
    "ToyDistribution",
    "get_toy_distribution",
]
