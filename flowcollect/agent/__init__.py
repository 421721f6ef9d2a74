"""Agent: the processes of `flowcollect run` — the collector, its worker processes and their supervision.

The collector owns the kernel side and starts N workers (`python -m flowcollect.agent.worker`).
"""
