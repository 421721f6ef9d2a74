"""Agent: the processes of `flowcollect run` — the collector, its worker processes and their supervision.

Runs as the collector process (kernel side, supervisor) and its N worker processes (`-m flowcollect.agent.worker`).
"""
