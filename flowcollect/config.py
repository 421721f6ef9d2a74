"""Every setting of the agent, declared once.

A Setting gives the config-file key, the command-line flag, the environment
variable (FLOWCOLLECT_<NAME>), the default and the help text; the parser, the
config file, the environment and --print-config all read this one table.
Precedence: defaults < config file < environment < flags.
"""
import argparse
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable

from flowcollect.errors import ConfigError
from flowcollect.interface_filter import parse_interface_list, split_interface_list
from flowcollect.runtime import DEFAULT_PUBLIC_ENDPOINT
from flowcollect.units import format_duration, format_size, parse_duration, parse_size

ENV_PREFIX = "FLOWCOLLECT_"
MAX_FLOWS_LIMIT = 1 << 24


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[Any], Any]  # raises ValueError("<what is accepted>")
    help: str
    show: Callable[[Any], str] = str
    switch: bool = False      # a boolean flag: --name / --no-name
    repeatable: bool = False  # the flag may be given several times; values accumulate

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def env(self):
        return ENV_PREFIX + self.name.upper()


# --- value parsers: each accepts text (flags, env) or a TOML value, raises ValueError(accepted) ---

def integer(low, high=None):
    def parse(value):
        accepted = f"an integer from {low}" + (f" to {high}" if high is not None else " up")
        if isinstance(value, bool):
            raise ValueError(accepted)
        try:
            number = int(str(value).strip(), 10)
        except ValueError:
            raise ValueError(accepted) from None
        if number < low or (high is not None and number > high):
            raise ValueError(accepted)
        return number
    return parse


def choice(*options):
    def parse(value):
        if str(value) not in options:
            raise ValueError("one of " + ", ".join(options))
        return str(value)
    return parse


def duration(value):
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("a duration above zero, such as 200ms, 5s or 1m")
    return seconds


def optional_duration(value):
    return None if value in (None, "") else duration(value)


def ringbuf_bytes(value):
    nbytes = parse_size(value)
    if nbytes < 4096 or nbytes & (nbytes - 1):
        raise ValueError("a power of two of at least 4KiB, such as 4MiB")
    return nbytes


def boolean(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("true or false")


def name_list(value):
    """Comma-separated names or /regex/ (a TOML list is accepted as is), checked by the interface filter."""
    entries = [str(v) for v in value] if isinstance(value, list) else split_interface_list(str(value))
    try:
        parse_interface_list(entries)
    except ConfigError as exc:
        raise ValueError(f"interface names or /regex/ ({exc})") from None
    return entries


@dataclass(frozen=True)
class OutputSpec:
    kind: str    # jsonl | zmq | ipfix | none
    target: str  # "-" or a path; a ZeroMQ endpoint; HOST:PORT

    def __str__(self):
        return self.kind if self.kind == "none" else f"{self.kind}:{self.target}"


OUTPUT_ACCEPTED = "jsonl:- | jsonl:PATH | zmq:ENDPOINT | ipfix:HOST:PORT | none"


def host_port(text, default_host=None):
    """(host, port) from HOST:PORT or [IPv6]:PORT."""
    match = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$", text) or re.match(r"^([^:\[\]]*):(\d+)$", text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError("HOST:PORT with a port from 1 to 65535")
    host = match.group(1) or default_host
    if not host:
        raise ValueError("HOST:PORT with a host")
    return host, int(match.group(2))


def output_spec(value):
    text = str(value).strip()
    if text == "none":
        return OutputSpec("none", "")
    kind, _, target = text.partition(":")
    if kind == "jsonl" and target:
        return OutputSpec(kind, target)
    if kind == "zmq" and re.match(r"^(tcp|ipc)://.+", target):
        return OutputSpec(kind, target)
    if kind == "ipfix" and target:
        try:
            host_port(target)
        except ValueError:
            raise ValueError(OUTPUT_ACCEPTED) from None
        return OutputSpec(kind, target)
    raise ValueError(OUTPUT_ACCEPTED)


def output_list(value):
    items = value if isinstance(value, list) else [value]
    return [output_spec(item) for item in items]


def metrics_address(value):
    if value in (None, ""):
        return ""
    host_port(str(value), default_host="0.0.0.0")
    return str(value)


def agent_ip(value):
    if value in (None, ""):
        return ""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError("an IPv4 or IPv6 address") from None


def agent_ip_iface(value):
    text = str(value).strip()
    if text in ("external", "local") or (text.startswith("name:") and len(text) > 5):
        return text
    raise ValueError("external, local or name:IFACE")


def optional_path(value):
    return "" if value in (None, "") else os.path.abspath(str(value))


def flow_attributes(value):
    from flowcollect.exporters.prometheus import parse_attributes  # its module imports this one

    return parse_attributes(",".join(value) if isinstance(value, list) else value)


def _list_show(values):
    return ",".join(str(v) for v in values)


def _default_workers():
    # One core stays with the collector, which owns the kernel side.
    return max(1, (os.cpu_count() or 2) - 1)


SETTINGS = (
    Setting("interfaces", [], name_list, "interfaces to trace: comma-separated names or /regex/ (default: every interface)", _list_show),
    Setting("exclude_interfaces", ["lo"], name_list, "interfaces never traced, same syntax; exclusion wins", _list_show),
    Setting("listen_interfaces", "watch", choice("watch", "poll"), "how new interfaces are found: netlink events (watch) or polling (poll)"),
    Setting("listen_poll_period", 10.0, duration, "polling period when listen_interfaces is poll", format_duration),
    Setting("direction", "both", choice("both", "ingress", "egress"), "which TC hooks count packets"),
    Setting("cache_max_flows", 5000, integer(1, MAX_FLOWS_LIMIT), "flows the kernel map holds between evictions, and the ring-buffer accounter's maximum"),
    Setting("cache_active_timeout", 5.0, duration, "eviction period of the kernel map (e.g. 200ms, 5s, 1m)", format_duration),
    Setting("ringbuf_size", 1 << 22, ringbuf_bytes, "kernel ring buffer for flows that do not fit the map (power of two, e.g. 4MiB)", format_size),
    Setting("sampling", 0, integer(0, 1 << 31), "count 1 packet in N; 0 or 1 counts every packet"),
    Setting("deduper", "none", choice("none", "firstCome"), "drop flows seen on several interfaces: none or firstCome"),
    Setting("deduper_fc_expiry", None, optional_duration, "idle time after which firstCome forgets a flow's interface (default: 2 x cache_active_timeout)",
            lambda v: "" if v is None else format_duration(v)),
    Setting("deduper_just_mark", False, boolean, "keep duplicates, marked duplicate=true, instead of dropping them", str, switch=True),
    Setting("workers", None, integer(1, 256), "worker processes for dedup, decoration and export (default: CPU count - 1, at least 1)",
            lambda v: "" if v is None else str(v)),
    Setting("buffers_length", 50, integer(1, 1 << 20), "batches queued towards each worker and each exporter before the limiter drops"),
    Setting("output", [OutputSpec("jsonl", "-"), OutputSpec("zmq", DEFAULT_PUBLIC_ENDPOINT)], output_list, f"where flows go, repeatable: {OUTPUT_ACCEPTED}", _list_show, repeatable=True),
    Setting("zmq_curve_secret_key_file", "", optional_path,
            "file holding the agent's Z85 CURVE secret key: zmq outputs then authenticate and encrypt "
            "(subscribers need the public key; make one with `flowcollect keygen FILE`)"),
    Setting("metrics_address", "", metrics_address, "serve Prometheus /metrics on HOST:PORT (default: off)"),
    Setting("metrics_flow_attributes", ("interface", "direction", "protocol"), flow_attributes,
            "labels of the flow byte and packet counters: interface, if_index, direction, protocol, eth_protocol, "
            "src_addr, dst_addr, src_port, dst_port, vlan_id, agent_ip", _list_show),
    Setting("metrics_max_series", 2000, integer(1, 1_000_000),
            "flow-counter label sets kept per worker; further flows are counted in one __overflow__ series"),
    Setting("ipfix_mtu", 1400, integer(120, 65535), "largest IPFIX message in bytes, IPFIX header included"),
    Setting("ipfix_template_refresh", 60.0, duration, "resend the IPFIX templates this often", format_duration),
    Setting("ipfix_template_refresh_messages", 256, integer(0, 1 << 20),
            "and after this many data messages (0: only by time)"),
    Setting("agent_ip", "", agent_ip, "the agent IP written in every record (default: resolved from agent_ip_iface)"),
    Setting("agent_ip_iface", "external", agent_ip_iface, "where the agent IP comes from: external, local or name:IFACE"),
    Setting("agent_ip_type", "any", choice("any", "ipv4", "ipv6"), "address family of the resolved agent IP"),
    Setting("log_level", "info", choice("debug", "info", "warning", "error"), "log verbosity"),
)
BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class Config:
    values: dict
    sources: dict = field(default_factory=dict)  # name -> default | file | env | flag

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def deduper_expiry(self):
        """firstCome expiry: the explicit one, or twice the active timeout (the seed's default)."""
        return self.deduper_fc_expiry or 2 * self.cache_active_timeout

    @property
    def worker_count(self):
        return self.workers or _default_workers()

    def render(self):
        """TOML that --config accepts back, each line annotated with where its value came from."""
        lines = []
        for s in SETTINGS:
            value = self.values[s.name]
            if isinstance(value, (list, tuple)):
                text = "[" + ", ".join(f'"{v}"' for v in value) + "]"
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int) and s.show is str:
                text = str(value)
            elif value is None:
                lines.append(f"# {s.name} = (derived)  # {self.sources[s.name]}")
                continue
            else:
                text = f'"{s.show(value)}"'
            lines.append(f"{s.name} = {text}  # {self.sources[s.name]}")
        return "\n".join(lines)


def _apply(setting, raw, where):
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {raw!r} is not accepted; expected {exc}") from None


def read_file(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None


def resolve(flags, environ, file_values=None, file_name=None):
    """The effective Config from raw flag values, the environment and a config file's table."""
    values = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    for key, raw in (file_values or {}).items():
        setting = BY_NAME.get(key)
        if setting is None:
            raise ConfigError(f"config file {file_name}: unknown setting {key!r}; see flowcollect --print-config")
        values[key] = _apply(setting, raw, f"config file {file_name}: {key}")
        sources[key] = "file"
    for setting in SETTINGS:
        if setting.env in environ:
            values[setting.name] = _apply(setting, environ[setting.env], setting.env)
            sources[setting.name] = "env"
    for name, raw in flags.items():
        setting = BY_NAME[name]
        if setting.repeatable:
            values[name] = [spec for item in raw for spec in _apply(setting, item, setting.flag)]
        elif setting.switch:
            values[name] = raw
        else:
            values[name] = _apply(setting, raw, setting.flag)
        sources[name] = "flag"
    return Config(values, sources)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2, and no
    abbreviated options (a typo must not silently mean another setting)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_setting_arguments(parser):
    """One option per setting; absent options stay absent so that precedence can apply."""
    for s in SETTINGS:
        if s.switch:
            parser.add_argument(s.flag, dest=s.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=f"{s.help} [env {s.env}]")
        else:
            parser.add_argument(s.flag, dest=s.name, action="append" if s.repeatable else "store",
                                default=argparse.SUPPRESS, metavar=s.name.split("_")[-1].upper(),
                                help=f"{s.help} (default: {s.show(s.default) if s.default is not None else 'derived'}) [env {s.env}]")


def from_arguments(namespace, environ=None):
    """Config from a parsed argparse namespace (its setting attributes) plus env and --config."""
    environ = os.environ if environ is None else environ
    flags = {s.name: getattr(namespace, s.name) for s in SETTINGS if hasattr(namespace, s.name)}
    config_path = getattr(namespace, "config", None) or environ.get(ENV_PREFIX + "CONFIG")
    file_values = read_file(config_path) if config_path else None
    return resolve(flags, environ, file_values, config_path)


def settings_table():
    """The settings as a markdown table (docs/configuration.md holds this, checked by a test)."""
    rows = ["| setting (config file) | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = "derived" if s.default is None else s.show(s.default) or '""'
        flag = f"{s.flag} / --no-{s.flag[2:]}" if s.switch else s.flag
        rows.append(f"| `{s.name}` | `{flag}` | `{s.env}` | `{default}` | {s.help} |")
    return "\n".join(rows)
