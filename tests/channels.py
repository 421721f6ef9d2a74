"""Test helpers for stages that talk through channels, as in the seed's tests."""
import threading
import time

import pytest

from flowcollect.pipeline.channel import Closed

TIMEOUT_S = 5.0


def receive_timeout(channel, timeout=TIMEOUT_S):
    """The next item of channel; fails the test if none comes within timeout seconds."""
    try:
        return channel.get(timeout=timeout)
    except TimeoutError:
        pytest.fail(f"nothing received within {timeout} s")
    except Closed:
        pytest.fail("the channel was closed before anything was received")


def require_nothing(channel, wait=0.0):
    """Fails the test if an item arrives within `wait` seconds (a closed channel is nothing)."""
    try:
        item = channel.get(timeout=wait)
    except (TimeoutError, Closed):
        return
    pytest.fail(f"unexpected item: {item!r}")


def wait_taken(channel, timeout=TIMEOUT_S):
    """Wait until a stage has taken everything queued in its input channel; fails the test otherwise."""
    deadline = time.monotonic() + timeout
    while len(channel):
        if time.monotonic() > deadline:
            pytest.fail(f"{len(channel)} items still queued after {timeout} s")
        time.sleep(0.001)


def require_closed(channel, timeout=TIMEOUT_S):
    """Fails the test unless the channel is closed and drained within timeout seconds."""
    try:
        item = channel.get(timeout=timeout)
    except Closed:
        return
    except TimeoutError:
        pytest.fail(f"the channel was not closed within {timeout} s")
    pytest.fail(f"unexpected item before the end: {item!r}")


def start(target, *args):
    """Run a stage in a daemon thread (it dies with the test run if a test hangs)."""
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
