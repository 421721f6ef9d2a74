"""Kernel: the BPF programs and maps through the native extension, TC attachment, privileges and cleanup.

Runs in the collector process (and `flowcollect cleanup`); the only layer that loads libbpf.
"""
