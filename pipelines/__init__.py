"""diffusers ``DiffusionPipeline`` subclasses, shipped as ``hfgen.pipelines``."""

from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.ddpm_points import DDPMPointsPipeline, DDPMPointsPipelineOutput
from hfgen.pipelines.density import DensityPipeline, DensityPipelineOutput
from hfgen.pipelines.energy import EnergyPipeline, EnergyPipelineOutput
from hfgen.pipelines.flow_matching import FlowMatchingPipeline
from hfgen.pipelines.image_common import ImageGenerationPipelineOutput
from hfgen.pipelines.image_ddpm import DDPMImagePipeline
from hfgen.pipelines.image_flow_matching import FlowMatchingImagePipeline, ImageLogProbOutput
from hfgen.pipelines.rbm import RBMPipeline, RBMPipelineOutput
from hfgen.pipelines.sampling import PointsPipelineOutput
from hfgen.pipelines.schrodinger_bridge import SchrodingerBridgePipeline
from hfgen.pipelines.score_sde import ScoreSDEPipeline, ScoreSDEPipelineOutput
from hfgen.pipelines.vae import AutoEncoderPipeline, ImagesPipelineOutput, LatentGridOutput, VAEPipeline

__all__ = [
    "ScoreSDEPipeline",
    "ScoreSDEPipelineOutput",
    "DensityPipeline",
    "DensityPipelineOutput",
    "AutoEncoderPipeline",
    "DDPMPointsPipeline",
    "DDPMPointsPipelineOutput",
    "EnergyPipeline",
    "EnergyPipelineOutput",
    "FlowMatchingPipeline",
    "FlowMatchingImagePipeline",
    "DDPMImagePipeline",
    "ImageGenerationPipelineOutput",
    "ImageLogProbOutput",
    "HfgenPipeline",
    "ImagesPipelineOutput",
    "LatentGridOutput",
    "PointsPipelineOutput",
    "RBMPipeline",
    "RBMPipelineOutput",
    "SchrodingerBridgePipeline",
    "VAEPipeline",
]
