"""Subscriber: `flowcollect sub`, a client of the agent's public endpoint (JSON lines or a live table).

Runs in a process of its own, anywhere the endpoint reaches; it imports nothing that loads libbpf.
"""
