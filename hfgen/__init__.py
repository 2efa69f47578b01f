"""hfgen: generative models of a graduate course as Hugging Face diffusers pipelines.

The classes are imported on first use (PEP 562): ``import hfgen`` and ``from hfgen.training.arguments import …``
(a script's ``--help``) do not import torch. diffusers resolves a class named in a saved ``model_index.json`` (for
example ``["hfgen", "TimeMLP"]``) with ``getattr(hfgen, "TimeMLP")``, which imports it here.
"""

from __future__ import annotations

from hfgen.lazy import lazy_exports

__version__ = "0.1.0"

#: every public name and the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["get_toy_distribution", "TOY_DISTRIBUTIONS", "ToyDistribution"], "hfgen.data"),
    **dict.fromkeys(["GaussianSchrodingerBridge"], "hfgen.methods.schrodinger_bridge"),
    **dict.fromkeys(
        [
            "AutoEncoder",
            "CouplingFlow",
            "DDPMOracle",
            "EnergyMLP",
            "FiniteDataVelocity",
            "GaussianMixture",
            "KernelDensity",
            "MADE",
            "MnistClassifier",
            "MnistClassifierConfig",
            "RBMModel",
            "ResidualMean",
            "StepwiseAffineMean",
            "TimeMLP",
            "VAE",
        ],
        "hfgen.models",
    ),
    **dict.fromkeys(
        [
            "AutoEncoderPipeline",
            "DDPMImagePipeline",
            "DDPMPointsPipeline",
            "DensityPipeline",
            "EnergyPipeline",
            "FlowMatchingImagePipeline",
            "FlowMatchingPipeline",
            "HfgenPipeline",
            "PointsPipelineOutput",
            "RBMPipeline",
            "SchrodingerBridgePipeline",
            "ScoreSDEPipeline",
            "VAEPipeline",
        ],
        "hfgen.pipelines",
    ),
    **dict.fromkeys(
        [
            "BridgeScheduler",
            "ConstantAlphaDDPMScheduler",
            "flow_match_scheduler",
            "FlowMatchEulerScheduler",
            "FlowMatchHeunScheduler",
            "FlowMatchMidpointScheduler",
            "GibbsScheduler",
            "LangevinScheduler",
            "MALAScheduler",
            "VESDEScheduler",
            "VPSDEScheduler",
        ],
        "hfgen.schedulers",
    ),
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
