"""The value parsers of the settings table (flowcollect/settings/model.py).

Each takes text (a flag, an environment variable) or a TOML value and
returns the typed value, or raises Rejected saying what it accepts. These
are the only checks of a setting's own value; what depends on the host (a
writable path, an interface that exists) is checked by the agent's preflight.
"""
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flowcollect.settings.addresses import host_port
from flowcollect.settings.errors import ConfigError
from flowcollect.settings.interface_lists import parse_interface_list, split_interface_list
from flowcollect.settings.units import parse_duration, parse_size

T = TypeVar("T")


class Rejected(ValueError):
    """A value a setting does not take: `accepted` says what it takes; `problem`, if set, what is wrong."""

    def __init__(self, accepted: str, problem: str | None = None) -> None:
        super().__init__(accepted)
        self.accepted = accepted
        self.problem = problem


def _checked(parse: Callable[[object], T], accepted: str, ok: Callable[[T], bool]) -> Callable[[object], T]:
    """A parser that takes what `parse` reads and `ok` accepts, and says `accepted` otherwise."""
    def parse_checked(value: object) -> T:
        try:
            parsed = parse(value)
        except ValueError:
            raise Rejected(accepted) from None
        if not ok(parsed):
            raise Rejected(accepted)
        return parsed
    return parse_checked


def _decimal(value: object) -> int:
    if isinstance(value, bool):  # a TOML true is not the number 1
        raise ValueError(value)
    return int(str(value).strip(), 10)


def integer(low: int, high: int | None = None) -> Callable[[object], int]:
    accepted = f"an integer from {low}" + (f" to {high}" if high is not None else " up")
    return _checked(_decimal, accepted, lambda n: n >= low and (high is None or n <= high))


def optional(parse: Callable[[object], T]) -> Callable[[object], T | None]:
    """The parser, with "" (or no value) meaning "derived from other settings"."""
    def parse_optional(value: object) -> T | None:
        return None if value in (None, "") else parse(value)
    return parse_optional


def choice(*options: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if str(value) not in options:
            raise Rejected("one of " + ", ".join(options))
        return str(value)
    return parse


# Below a millisecond an eviction period or an expiry means polling the kernel continuously.
duration = _checked(parse_duration, "a duration of at least 1ms, such as 200ms, 5s or 1m",
                    lambda seconds: seconds >= 1e-3)
ringbuf_bytes = _checked(parse_size, "a power of two of at least 4KiB, such as 4MiB",
                         lambda nbytes: nbytes >= 4096 and not nbytes & (nbytes - 1))


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise Rejected("true or false")


def interface_list(value: object) -> tuple[str, ...]:
    """Comma-separated names or /regex/ (a TOML list is accepted as is)."""
    entries = [str(v) for v in value] if isinstance(value, list | tuple) else split_interface_list(str(value))
    try:
        parse_interface_list(entries)
    except ConfigError as exc:
        raise Rejected(f"interface names or /regex/ ({exc})") from None
    return tuple(entries)


@dataclass(frozen=True)
class OutputSpec:
    kind: str    # jsonl | zmq | ipfix | netflow9 | none
    target: str  # "-" or a path; a ZeroMQ endpoint; HOST:PORT

    def __str__(self) -> str:
        return self.kind if self.kind == "none" else f"{self.kind}:{self.target}"


OUTPUT_ACCEPTED = "jsonl:- | jsonl:PATH | zmq:ENDPOINT | ipfix:HOST:PORT | netflow9:HOST:PORT | none"


def output_spec(value: object) -> OutputSpec:
    text = str(value).strip()
    if text == "none":
        return OutputSpec("none", "")
    kind, _, target = text.partition(":")
    if kind == "jsonl" and target:
        return OutputSpec(kind, target)
    if kind == "zmq" and re.match(r"^(tcp|ipc)://.+", target):
        return OutputSpec(kind, target)
    if kind in ("ipfix", "netflow9") and target:
        try:
            host_port(target)
        except ValueError:
            raise Rejected(OUTPUT_ACCEPTED) from None
        return OutputSpec(kind, target)
    raise Rejected(OUTPUT_ACCEPTED)


def output_list(value: object) -> tuple[OutputSpec, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(output_spec(item) for item in items)


def metrics_address(value: object) -> str:
    if value in (None, ""):
        return ""
    try:
        host_port(str(value), default_host="0.0.0.0")
    except ValueError as exc:
        raise Rejected(str(exc)) from None
    return str(value)


def agent_ip(value: object) -> str:
    """An address that can identify this host, normalised; "" when it is to be resolved."""
    if value in (None, ""):
        return ""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise Rejected("an IPv4 or IPv6 address") from None
    if address.is_unspecified or address.is_multicast:
        raise Rejected("an IPv4 or IPv6 address of this host", "cannot identify a host (unspecified or multicast)")
    return str(address)


AGENT_IP_IFACE_NAMED = "name:"


def agent_ip_iface(value: object) -> str:
    text = str(value).strip()
    named = text.startswith(AGENT_IP_IFACE_NAMED) and len(text) > len(AGENT_IP_IFACE_NAMED)
    if text in ("external", "local") or named:
        return text
    raise Rejected(f"one of external, local, {AGENT_IP_IFACE_NAMED}IFACE")


def optional_path(value: object) -> str:
    return "" if value in (None, "") else os.path.abspath(str(value))


# Labels the flow byte and packet counters can carry (flowcollect/export/prometheus/flow_counters.py).
FLOW_ATTRIBUTES = ("interface", "if_index", "direction", "protocol", "eth_protocol", "src_addr", "dst_addr",
                   "src_port", "dst_port", "vlan_id", "agent_ip")


def flow_attributes(value: object) -> tuple[str, ...]:
    """Distinct attributes, comma-separated (or a TOML list)."""
    text = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in names if a not in FLOW_ATTRIBUTES]
    if not names or unknown or len(set(names)) != len(names):
        raise Rejected("a comma-separated list of distinct attributes from: " + ", ".join(FLOW_ATTRIBUTES))
    return names


# Opt-in enrichment (docs/records.md): kernel programs and record fields beyond the counts.
FEATURES = ("drops", "rtt", "dns")


def feature_list(value: object) -> tuple[str, ...]:
    """Distinct features, comma-separated (or a TOML list), in FEATURES order; "" or "none": none."""
    text = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    names = [a.strip() for a in text.split(",") if a.strip()]
    if names == ["none"]:
        return ()
    unknown = [a for a in names if a not in FEATURES]
    if unknown or len(set(names)) != len(names):
        raise Rejected("none, or a comma-separated list of distinct features from: " + ", ".join(FEATURES))
    return tuple(f for f in FEATURES if f in names)
