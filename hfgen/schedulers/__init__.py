"""Schedulers: diffusers ``SchedulerMixin`` + ``ConfigMixin`` classes, one module per scheduler.

``hfgen.schedulers.bridge`` is imported for the pipelines saved before the bridge scheduler moved (see it).
"""

from hfgen.schedulers import bridge  # noqa: F401 (the former module path, named by older model_index.json files)
from hfgen.schedulers.constant_alpha_ddpm import (
    ConstantAlphaDDPMScheduler,
    ConstantAlphaDDPMSchedulerOutput,
    alpha_for_final_alpha_bar,
)
from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler, FlowMatchEulerSchedulerOutput
from hfgen.schedulers.flow_match_heun import FlowMatchHeunScheduler, FlowMatchHeunSchedulerOutput
from hfgen.schedulers.flow_match_midpoint import FlowMatchMidpointScheduler, FlowMatchMidpointSchedulerOutput
from hfgen.schedulers.flow_match_solvers import FLOW_MATCH_SCHEDULERS, flow_match_scheduler, flow_match_solver
from hfgen.schedulers.gibbs import GibbsScheduler, GibbsSchedulerOutput
from hfgen.schedulers.langevin import LangevinScheduler, LangevinSchedulerOutput, MALAScheduler, MALASchedulerOutput
from hfgen.schedulers.schrodinger_bridge import BridgeScheduler, BridgeSchedulerOutput
from hfgen.schedulers.score_sde import ScoreSDEScheduler, ScoreSDESchedulerOutput, VESDEScheduler, VPSDEScheduler

__all__ = [
    "ScoreSDEScheduler",
    "ScoreSDESchedulerOutput",
    "VESDEScheduler",
    "VPSDEScheduler",
    "BridgeScheduler",
    "BridgeSchedulerOutput",
    "ConstantAlphaDDPMScheduler",
    "ConstantAlphaDDPMSchedulerOutput",
    "alpha_for_final_alpha_bar",
    "FlowMatchEulerScheduler",
    "FlowMatchEulerSchedulerOutput",
    "FlowMatchHeunScheduler",
    "FlowMatchHeunSchedulerOutput",
    "FlowMatchMidpointScheduler",
    "FlowMatchMidpointSchedulerOutput",
    "FLOW_MATCH_SCHEDULERS",
    "flow_match_scheduler",
    "flow_match_solver",
    "GibbsScheduler",
    "GibbsSchedulerOutput",
    "LangevinScheduler",
    "LangevinSchedulerOutput",
    "MALAScheduler",
    "MALASchedulerOutput",
]
