"""Every setting of the agent, declared once: the fields of the frozen Settings dataclass.

Each field carries its default and, in its metadata, its parser, help text
and how --print-config shows it; the flag (--cache-max-flows), the
environment variable (FLOWCOLLECT_CACHE_MAX_FLOWS) and the config-file key
(cache_max_flows) follow from its name. The command line, the environment,
the config file, --print-config and docs/configuration.md all read this one
table (flowcollect/settings/sources.py).
"""
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from flowcollect.settings import values as v
from flowcollect.settings.addresses import DEFAULT_PUBLIC_ENDPOINT
from flowcollect.settings.errors import ConfigError
from flowcollect.settings.units import format_duration, format_size

ENV_PREFIX = "FLOWCOLLECT_"
MAX_FLOWS_LIMIT = 1 << 24
# ~150,000 one-packet ring-buffer records (112 bytes with their header): over half a second of a
# flood of new flows at 250k/s while the collector waits for CPU (tests/test_floods.py on a loaded host).
RINGBUF_DEFAULT_BYTES = 1 << 24
ACCOUNTER_DEFAULT_FLOWS = 200_000  # ~40 MiB of aggregated flows (flowcollect/pipeline/flow_table.py)
T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """One row of the table: what the command line, the environment and the config file need."""

    name: str
    default: object
    parse: Callable[[object], object]  # raises values.Rejected
    help: str
    show: Callable[[Any], str] = str
    switch: bool = False      # a boolean flag: --name / --no-name
    repeatable: bool = False  # the flag may be given several times; values accumulate
    metavar: str = "N"        # what the flag takes, in --help: N, DURATION, watch|poll, ...
    default_text: str = ""    # the default in words, where the value alone says nothing ("" or derived)

    def default_shown(self) -> str:
        """The default as --help and docs/configuration.md show it."""
        if self.default_text:
            return self.default_text
        return self.show(self.default) if not self.switch else ("on" if self.default else "off")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _setting(default: T, parse: Callable[[object], T], help: str, show: Callable[[Any], str] = str, *,
             metavar: str = "N", default_text: str = "", switch: bool = False, repeatable: bool = False) -> T:
    """A Settings field: its default, and the rest of its table row in the field's metadata."""
    row = {"parse": parse, "help": help, "show": show, "switch": switch, "repeatable": repeatable,
           "metavar": metavar, "default_text": default_text}
    return field(default=default, metadata={"setting": row})


def _choice(default: str, options: tuple[str, ...], help: str) -> str:
    """A setting that takes one of `options` (listed in --help as its metavar)."""
    return _setting(default, v.choice(*options), help, metavar="|".join(options))


def _list_show(values: tuple[object, ...]) -> str:
    return ",".join(str(value) for value in values)


def _derived(show: Callable[[Any], str]) -> Callable[[Any], str]:
    return lambda value: "" if value is None else show(value)


@dataclass(frozen=True)
class Settings:
    """The agent's effective settings (defaults < config file < environment < flags)."""

    interfaces: tuple[str, ...] = _setting(
        (), v.interface_list, "interfaces to trace: comma-separated names or /regex/", _list_show,
        metavar="LIST", default_text="every interface")
    exclude_interfaces: tuple[str, ...] = _setting(
        ("lo",), v.interface_list, "interfaces never traced, same syntax; exclusion wins", _list_show,
        metavar="LIST")
    listen_interfaces: str = _choice(
        "watch", ("watch", "poll"), "how new interfaces are found: netlink events (watch) or polling (poll)")
    listen_poll_period: float = _setting(
        10.0, v.duration, "polling period when listen_interfaces is poll", format_duration, metavar="DURATION")
    direction: str = _choice("both", ("both", "ingress", "egress"), "which TC hooks count packets")
    cache_max_flows: int = _setting(
        100_000, v.integer(1, MAX_FLOWS_LIMIT),
        "the most flows the kernel flow table holds between two evictions, all CPUs together: each CPU's "
        "part starts at 512, grows when it fills and shrinks back when quiet, within this bound")
    cache_active_timeout: float = _setting(
        5.0, v.duration, "eviction period of the kernel map (e.g. 200ms, 5s, 1m)", format_duration,
        metavar="DURATION")
    accounter_max_flows: int | None = _setting(
        None, v.optional(v.integer(1, MAX_FLOWS_LIMIT)),
        "flows the ring-buffer accounter aggregates before it evicts them all, at least cache_max_flows",
        _derived(str), default_text=f"the larger of {ACCOUNTER_DEFAULT_FLOWS:,} and cache_max_flows")
    ringbuf_size: int = _setting(
        RINGBUF_DEFAULT_BYTES, v.ringbuf_bytes,
        "kernel ring buffer for flows that do not fit the map (power of two, e.g. 16MiB)",
        format_size, metavar="SIZE")
    sampling: int = _setting(0, v.integer(0, 1 << 31), "count 1 packet in N; 0 or 1 counts every packet")
    flow_clock: str = _choice(
        "fine", ("fine", "tick"),
        "the clock of the flows' times: the fine clock read for every packet, or a 0.5 ms tick the kernel "
        "programs read for free while they run 250,000 times a second or more (times up to 0.5 ms early, "
        "5 ms when the tick is held up; each tick costs a wake-up)")
    tc_attach_mode: str = _choice(
        "auto", ("auto", "tcx", "tc"),
        "TCX links where the kernel has them (auto; they go with the agent's process), or only tcx, "
        "or only legacy clsact filters (tc)")
    features: tuple[str, ...] = _setting(
        (), v.feature_list,
        "opt-in enrichment, each with its own kernel programs: drops (packets the kernel dropped, and why), "
        "rtt (TCP round-trip time), dns (DNS id, name, rcode, latency); comma-separated",
        lambda names: _list_show(names) or "none", metavar="LIST")
    deduper: str = _choice("none", ("none", "firstCome"), "drop flows seen on several interfaces, or not")
    deduper_fc_expiry: float | None = _setting(
        None, v.optional(v.duration),
        "idle time after which firstCome forgets a flow's interface", _derived(format_duration),
        metavar="DURATION", default_text="2 x cache_active_timeout")
    deduper_just_mark: bool = _setting(
        False, v.boolean, "keep duplicates, marked duplicate=true, instead of dropping them", switch=True)
    workers: int | None = _setting(
        None, v.optional(v.integer(1, 256)),
        "worker processes for dedup, decoration and export", _derived(str),
        default_text="CPU count - 1, at least 1")
    queue_max_flows: int = _setting(
        500_000, v.integer(1024, MAX_FLOWS_LIMIT),
        "flows queued at each hand-off (kernel drains to the collector, the collector to each worker, "
        "a worker to its outputs) before the newest are dropped and counted")
    output: tuple[v.OutputSpec, ...] = _setting(
        (v.OutputSpec("jsonl", "-"), v.OutputSpec("zmq", DEFAULT_PUBLIC_ENDPOINT)), v.output_list,
        f"where flows go, repeatable: {v.OUTPUT_ACCEPTED}", _list_show, metavar="SPEC", repeatable=True)
    zmq_curve_secret_key_file: str = _setting(
        "", v.optional_path,
        "file holding the agent's Z85 CURVE secret key: zmq outputs then authenticate and encrypt "
        "(subscribers need the public key; make one with `flowcollect keygen FILE`)",
        metavar="FILE", default_text="none: no CURVE")
    metrics_address: str = _setting(
        "", v.metrics_address, "serve Prometheus /metrics (and /healthz) on HOST:PORT", metavar="HOST:PORT",
        default_text="off")
    metrics_flow_attributes: tuple[str, ...] = _setting(
        ("interface", "direction", "protocol"), v.flow_attributes,
        "labels of the flow byte and packet counters: " + ", ".join(v.FLOW_ATTRIBUTES), _list_show,
        metavar="LIST")
    metrics_max_series: int = _setting(
        2000, v.integer(1, 1_000_000),
        "flow-counter label sets kept per worker; further flows are counted in one __overflow__ series")
    ipfix_mtu: int = _setting(
        1400, v.integer(120, 65535), "largest IPFIX or NetFlow v9 message in bytes, header included",
        metavar="BYTES")
    ipfix_template_refresh: float = _setting(
        60.0, v.duration, "resend the IPFIX and NetFlow v9 templates this often", format_duration,
        metavar="DURATION")
    ipfix_template_refresh_messages: int = _setting(
        256, v.integer(0, 1 << 20), "and after this many data messages (0: only by time)")
    agent_ip: str = _setting(
        "", v.agent_ip, "the agent IP written in every record", metavar="IP",
        default_text="resolved from agent_ip_iface")
    agent_ip_iface: str = _setting(
        "external", v.agent_ip_iface, "where the agent IP comes from", metavar="external|local|name:IFACE")
    agent_ip_type: str = _choice("any", ("any", "ipv4", "ipv6"), "address family of the resolved agent IP")
    log_level: str = _choice("info", ("debug", "info", "warning", "error"), "log verbosity")

    def __post_init__(self) -> None:
        # Checks between settings; each value was checked by its own parser already.
        if self.accounter_max_flows is not None and self.accounter_max_flows < self.cache_max_flows:
            raise ConfigError(
                f"accounter_max_flows {self.accounter_max_flows} is below cache_max_flows {self.cache_max_flows}: "
                "the accounter holds the new flows a full map sends it; make it at least as large")

    @property
    def deduper_expiry(self) -> float:
        """firstCome expiry: the explicit one, or twice the active timeout (the seed's default)."""
        return self.deduper_fc_expiry or 2 * self.cache_active_timeout

    @property
    def accounter_flows(self) -> int:
        """The accounter's capacity: the explicit one, or room for a whole map and more."""
        return self.accounter_max_flows or max(ACCOUNTER_DEFAULT_FLOWS, self.cache_max_flows)

    @property
    def worker_count(self) -> int:
        # One core stays with the collector, which owns the kernel side.
        return self.workers or max(1, (os.cpu_count() or 2) - 1)


SETTINGS = tuple(Setting(f.name, f.default, **f.metadata["setting"]) for f in fields(Settings))
BY_NAME = {s.name: s for s in SETTINGS}


def check(name: str, value: object) -> Any:
    """The parsed value of one setting, for code that takes a setting's value directly (the seed's API).

    The same parser as the command line, so a value is accepted or refused the
    same way wherever it comes from; ConfigError names the setting.
    """
    try:
        return BY_NAME[name].parse(value)
    except v.Rejected as exc:
        raise ConfigError(f"{name}: {value!r} {exc.problem or 'is not ' + exc.accepted}") from None
