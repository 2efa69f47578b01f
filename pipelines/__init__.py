"""diffusers ``DiffusionPipeline`` subclasses, shipped as ``hfgen.pipelines``."""

from hfgen.pipelines.base import HfgenPipeline, PointsPipelineOutput
from hfgen.pipelines.ddpm_points import DDPMPointsPipeline, DDPMPointsPipelineOutput
from hfgen.pipelines.flow_matching import FlowMatchingPipeline

__all__ = [
    "DDPMPointsPipeline",
    "DDPMPointsPipelineOutput",
    "FlowMatchingPipeline",
    "HfgenPipeline",
    "PointsPipelineOutput",
]
