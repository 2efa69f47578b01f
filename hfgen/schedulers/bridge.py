"""Former module path of :class:`BridgeScheduler`: ``model_index.json`` files saved before the scheduler moved to
:mod:`hfgen.schedulers.schrodinger_bridge` name ``["hfgen.schedulers.bridge", "BridgeScheduler"]``, and diffusers
imports that path (and looks up ``SchedulerMixin`` in it) to load them."""

from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401 (looked up here by diffusers)

from hfgen.schedulers.schrodinger_bridge import BridgeScheduler  # noqa: F401 (the former path of this class)
