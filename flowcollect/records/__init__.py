"""Records: what one flow is in user space — the numpy layout of bpf/flow.h, the batch, and its JSON text.

Imported by every process: the collector and the workers, and subscribers, so nothing here loads libbpf.
"""
