"""Settings: every setting declared once, parsed and validated once, and the errors they raise.

The bottom layer: imported by every process (collector, workers, `flowcollect sub`); imports no other layer.
"""
