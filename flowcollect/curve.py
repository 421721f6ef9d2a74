"""CURVE keys for the public ZeroMQ endpoint (authentication and encryption over tcp)."""
import os

import zmq

from flowcollect.errors import ConfigError


def read_secret_key(path):
    """The Z85 secret key in `path` (bytes), or None when no path is set."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"zmq_curve_secret_key_file {path}: {exc.strerror}") from None
    if len(key) != 40:
        raise ConfigError(f"zmq_curve_secret_key_file {path}: expected a 40-character Z85 key "
                          "(make one with `flowcollect keygen FILE`)")
    return key


def public_key(secret):
    return zmq.curve_public(secret).decode()


def write_keypair(path):
    """Write a new secret key to `path` (owner-only); return the public key to give subscribers."""
    public, secret = zmq.curve_keypair()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\n")
    return public.decode()
