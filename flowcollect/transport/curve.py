"""CURVE keys for the public ZeroMQ endpoint (authentication and encryption over tcp).

`flowcollect keygen FILE` writes the agent's secret key to FILE (owner-only)
and its public key to FILE.pub, for subscribers: a key in a file never meets
a shell or an argument parser (a Z85 key may start with '-' or hold '$').
"""
import os
import struct

import zmq
from zmq.utils import z85

from flowcollect.settings.errors import ConfigError

Z85_KEY_LENGTH = 40
PUBLIC_SUFFIX = ".pub"


def _is_z85_key(key: bytes) -> bool:
    if len(key) != Z85_KEY_LENGTH or not set(key) <= set(z85.Z85CHARS):
        return False
    try:
        z85.decode(key)
    except struct.error:  # five characters worth more than 32 bits
        return False
    return True


def _read_key(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    if not _is_z85_key(key):
        raise ConfigError(f"{what} {path}: expected a {Z85_KEY_LENGTH}-character Z85 key "
                          "(make one with `flowcollect keygen FILE`)")
    return key


def read_secret_key(path: str) -> bytes | None:
    """The Z85 secret key in `path` (bytes), or None when no path is set."""
    return _read_key(path, "zmq_curve_secret_key_file") if path else None


def read_public_key(path: str) -> str:
    """The agent's Z85 public key from a file (FILE.pub as keygen writes it), for a subscriber."""
    return _read_key(path, "--curve-server-key-file").decode()


def check_public_key(key: str) -> str:
    """The agent's Z85 public key as given on the command line (--curve-server-key=KEY)."""
    if not key.isascii() or not _is_z85_key(key.encode()):
        raise ConfigError(f"--curve-server-key: expected the agent's {Z85_KEY_LENGTH}-character Z85 public key "
                          "(FILE.pub of `flowcollect keygen FILE`; or give the file: --curve-server-key-file)")
    return key


def public_key(secret: bytes) -> str:
    return zmq.curve_public(secret).decode()


def write_keypair(path: str) -> str:
    """Write a new secret key to `path` (owner-only) and the public key to path.pub; return the public key."""
    public, secret = zmq.curve_keypair()
    for target, key, mode in ((path, secret, 0o600), (path + PUBLIC_SUFFIX, public, 0o644)):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
    return public.decode()
