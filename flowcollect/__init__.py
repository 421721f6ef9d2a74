"""flowcollect: an eBPF network-flow agent for busy Linux hosts."""

__version__ = "0.1.0"
