"""hfgen: generative models of a graduate course as Hugging Face diffusers pipelines.

Every component module is imported here, eagerly: diffusers resolves the classes named in a saved
``model_index.json`` (for example ``["hfgen.models.mlp", "TimeMLP"]``) only if they are already imported.
"""

from hfgen.data import TOY_DISTRIBUTIONS, ToyDistribution, get_toy_distribution
from hfgen.methods.schrodinger_bridge import GaussianSchrodingerBridge
from hfgen.models import (
    MADE,
    VAE,
    AutoEncoder,
    CouplingFlow,
    DDPMOracle,
    EnergyMLP,
    FiniteDataVelocity,
    GaussianMixture,
    KernelDensity,
    MnistClassifier,
    MnistClassifierConfig,
    RBMModel,
    ResidualMean,
    StepwiseAffineMean,
    TimeMLP,
)
from hfgen.pipelines import (
    AutoEncoderPipeline,
    DDPMPointsPipeline,
    DensityPipeline,
    EnergyPipeline,
    FlowMatchingPipeline,
    HfgenPipeline,
    PointsPipelineOutput,
    RBMPipeline,
    SchrodingerBridgePipeline,
    ScoreSDEPipeline,
    VAEPipeline,
)
from hfgen.schedulers import (
    BridgeScheduler,
    ConstantAlphaDDPMScheduler,
    FlowMatchEulerScheduler,
    FlowMatchHeunScheduler,
    FlowMatchMidpointScheduler,
    GibbsScheduler,
    LangevinScheduler,
    MALAScheduler,
    VESDEScheduler,
    VPSDEScheduler,
    flow_match_scheduler,
)

__version__ = "0.1.0"

__all__ = [
    "FiniteDataVelocity",
    "ScoreSDEPipeline",
    "VESDEScheduler",
    "VPSDEScheduler",
    "MADE",
    "CouplingFlow",
    "DensityPipeline",
    "GaussianMixture",
    "KernelDensity",
    "TOY_DISTRIBUTIONS",
    "AutoEncoder",
    "AutoEncoderPipeline",
    "BridgeScheduler",
    "ConstantAlphaDDPMScheduler",
    "DDPMOracle",
    "DDPMPointsPipeline",
    "EnergyMLP",
    "EnergyPipeline",
    "FlowMatchEulerScheduler",
    "FlowMatchHeunScheduler",
    "FlowMatchMidpointScheduler",
    "flow_match_scheduler",
    "FlowMatchingPipeline",
    "GibbsScheduler",
    "GaussianSchrodingerBridge",
    "HfgenPipeline",
    "LangevinScheduler",
    "MALAScheduler",
    "MnistClassifier",
    "MnistClassifierConfig",
    "PointsPipelineOutput",
    "RBMModel",
    "RBMPipeline",
    "ResidualMean",
    "SchrodingerBridgePipeline",
    "StepwiseAffineMean",
    "TimeMLP",
    "ToyDistribution",
    "VAE",
    "VAEPipeline",
    "get_toy_distribution",
]
