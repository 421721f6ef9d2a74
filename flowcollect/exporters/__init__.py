"""Exporters: where evicted, deduplicated and decorated flows leave the agent."""
