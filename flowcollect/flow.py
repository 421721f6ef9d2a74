"""The seed's `flow` package API, in Python: one import for the pipeline's stages
and the interface plumbing around them."""
from flowcollect.agent_ip import resolve_agent_ip
from flowcollect.informer import ADDED, DELETED, Event, Interface, new_informer
from flowcollect.interface_filter import InterfaceFilter
from flowcollect.interface_namer import InterfaceNamer
from flowcollect.stages.accounter import Accounter
from flowcollect.stages.decorator import decorate
from flowcollect.stages.deduper import DEDUPER_FIRST_COME, DEDUPER_NONE, Deduper, deduper_provider
from flowcollect.stages.limiter import CapacityLimiter
from flowcollect.stages.map_tracer import MapTracer
from flowcollect.stages.ringbuf_tracer import RingBufTracer
from flowcollect.tc_attacher import TcAttacher

__all__ = [
    "DEDUPER_NONE",
    "DEDUPER_FIRST_COME",
    "Deduper",
    "deduper_provider",
    "decorate",
    "InterfaceNamer",
    "Accounter",
    "CapacityLimiter",
    "MapTracer",
    "RingBufTracer",
    "InterfaceFilter",
    "new_informer",
    "ADDED",
    "DELETED",
    "Event",
    "Interface",
    "resolve_agent_ip",
    "TcAttacher",
]
