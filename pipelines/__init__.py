"""diffusers ``DiffusionPipeline`` subclasses, shipped as ``hfgen.pipelines``."""

from hfgen.pipelines.base import HfgenPipeline, PointsPipelineOutput
from hfgen.pipelines.flow_matching import FlowMatchingPipeline

__all__ = ["FlowMatchingPipeline", "HfgenPipeline", "PointsPipelineOutput"]
