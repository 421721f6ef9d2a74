"""Records: one flow in user space (the numpy layout of bpf/flow.h, the batch, its JSON text), and capture files.

Imported by every process: the collector and the workers, and subscribers, so nothing here loads libbpf.
"""
