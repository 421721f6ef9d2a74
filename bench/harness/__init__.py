"""The harness that both the benchmarks and the tests drive the real agent with.

Network namespaces and veth pairs that are always removed, crafted frames, and the `flowcollect` command as a process.
"""
