"""Export: where decorated flows leave the agent — one Sink protocol, its outputs, and every Prometheus metric.

Sinks run in the worker processes' export threads; the collector serves /metrics and counts its own metrics here.
"""
