"""Transport: every ZeroMQ frame format, the public endpoint's proxy and its CURVE keys.

The wire format is read by every process and by subscribers; the proxy runs as a thread of the collector.
"""
