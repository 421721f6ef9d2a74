"""Interfaces: which network interfaces exist, which to trace, their names, and the agent's own address.

Runs in the collector process: the informer's thread attaches our TC programs as interfaces come and go.
"""
