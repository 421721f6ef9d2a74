"""Text forms of durations and sizes used by settings: "5s", "200ms", "1m"; "4MiB"."""
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h)\s*$")
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|K|M|G)?\s*$")
_SIZE_BYTES = {None: 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
               "G": 1 << 30, "GiB": 1 << 30}


def parse_duration(text: object) -> float:
    """Seconds (float) from "5s", "200ms", "1.5m", "1h". Raises ValueError."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError("a duration such as 200ms, 5s, 1m or 1h")
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    for unit, scale in (("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale and (seconds / scale) == int(seconds / scale):
            return f"{int(seconds / scale)}{unit}"
    return f"{seconds * 1e9:.0f}ns"


def parse_size(text: object) -> int:
    """Bytes from "4MiB", "65536", "64K". Raises ValueError."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError("a size in bytes, optionally with KiB, MiB or GiB")
    return int(match.group(1)) * _SIZE_BYTES[match.group(2)]


def format_size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return str(nbytes)
