"""Prometheus: the agent's own metrics and the flow counters, defined here once.

Every process of the agent counts into them (multiprocess mode); the collector serves /metrics and /healthz.
"""
