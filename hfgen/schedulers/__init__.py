"""Schedulers: diffusers ``SchedulerMixin`` + ``ConfigMixin`` classes, one module per scheduler."""

from hfgen.schedulers.constant_alpha_ddpm import (
    ConstantAlphaDDPMScheduler,
    ConstantAlphaDDPMSchedulerOutput,
    alpha_for_final_alpha_bar,
)
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler, FlowMatchEulerSchedulerOutput
from hfgen.schedulers.gibbs import GibbsScheduler, GibbsSchedulerOutput
from hfgen.schedulers.langevin import LangevinScheduler, LangevinSchedulerOutput, MALAScheduler, MALASchedulerOutput
from hfgen.schedulers.schrodinger_bridge import BridgeScheduler, BridgeSchedulerOutput

__all__ = [
    "BridgeScheduler",
    "BridgeSchedulerOutput",
    "ConstantAlphaDDPMScheduler",
    "ConstantAlphaDDPMSchedulerOutput",
    "alpha_for_final_alpha_bar",
    "FlowMatchEulerScheduler",
    "FlowMatchEulerSchedulerOutput",
    "GibbsScheduler",
    "GibbsSchedulerOutput",
    "LangevinScheduler",
    "LangevinSchedulerOutput",
    "MALAScheduler",
    "MALASchedulerOutput",
]
