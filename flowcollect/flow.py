"""The seed's `flow` package API, in Python: one import for the pipeline's stages."""
from flowcollect.stages.accounter import Accounter
from flowcollect.stages.decorator import InterfaceNamer, decorate
from flowcollect.stages.deduper import DEDUPER_FIRST_COME, DEDUPER_NONE, Deduper, deduper_provider
from flowcollect.stages.limiter import CapacityLimiter
from flowcollect.stages.map_tracer import MapTracer
from flowcollect.stages.ringbuf_tracer import RingBufTracer

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
]
