"""The pipeline stages of the seed's flow package, one module each.

Each stage has a per-batch core that runs synchronously (what the worker
processes call: dedup -> decorate -> limit) and a channel form for threads
(flowcollect.channel). flowcollect.flow re-exports them under the seed's names.
"""
