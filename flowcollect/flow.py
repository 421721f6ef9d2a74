"""The seed's `flow` package API, in Python: one import for the pipeline's stages
and the interface plumbing around them."""
from flowcollect.interfaces.agent_ip import resolve_agent_ip
from flowcollect.interfaces.attacher import TcAttacher
from flowcollect.interfaces.filter import InterfaceFilter
from flowcollect.interfaces.informer import ADDED, DELETED, Event, Interface, new_informer
from flowcollect.interfaces.namer import InterfaceNamer
from flowcollect.pipeline.accounter import Accounter
from flowcollect.pipeline.decorator import decorate
from flowcollect.pipeline.deduper import DEDUPER_FIRST_COME, DEDUPER_NONE, Deduper, deduper_provider
from flowcollect.pipeline.limiter import CapacityLimiter
from flowcollect.pipeline.map_tracer import MapTracer
from flowcollect.pipeline.ringbuf_tracer import RingBufTracer

__all__ = [
    "ADDED",
    "DEDUPER_FIRST_COME",
    "DEDUPER_NONE",
    "DELETED",
    "Accounter",
    "CapacityLimiter",
    "Deduper",
    "Event",
    "Interface",
    "InterfaceFilter",
    "InterfaceNamer",
    "MapTracer",
    "RingBufTracer",
    "TcAttacher",
    "decorate",
    "deduper_provider",
    "new_informer",
    "resolve_agent_ip",
]
