"""Pipeline: the seed's flow stages and the batch helpers they share, one module each.

The tracers and the accounter run as threads of the collector; the deduper, decorator and limiter in the workers.
"""
