"""Schedulers: diffusers ``SchedulerMixin`` + ``ConfigMixin`` classes, one module per scheduler."""

from hfgen.schedulers.flow_match_euler import FlowMatchEulerScheduler, FlowMatchEulerSchedulerOutput

__all__ = ["FlowMatchEulerScheduler", "FlowMatchEulerSchedulerOutput"]
