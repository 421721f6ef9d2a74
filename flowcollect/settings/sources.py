"""Where settings come from, and how they are shown: defaults < config file < environment < flags.

The command line, the FLOWCOLLECT_* environment and a TOML config file all
go through the parsers of the one table (flowcollect/settings/model.py); a
value that is not accepted is one ConfigError naming where it came from.
"""
import argparse
import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from flowcollect.settings.errors import ConfigError
from flowcollect.settings.model import BY_NAME, ENV_PREFIX, SETTINGS, Setting, Settings
from flowcollect.settings.values import Rejected

CONFIG_ENV = ENV_PREFIX + "CONFIG"


@dataclass(frozen=True)
class Resolved:
    """The effective settings and, per setting, where its value came from: default | file | env | flag;
    warnings: what looks like a mistake but stops nothing (an unknown FLOWCOLLECT_* variable)."""

    settings: Settings
    sources: Mapping[str, str]
    warnings: tuple[str, ...] = ()

    def render(self) -> str:
        """TOML that --config accepts back, each line annotated with where its value came from."""
        lines = []
        for s in SETTINGS:
            value = getattr(self.settings, s.name)
            if isinstance(value, list | tuple):
                text = "[" + ", ".join(f'"{item}"' for item in value) + "]"
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


def _apply(setting: Setting, raw: object, where: str) -> Any:
    try:
        return setting.parse(raw)
    except Rejected as exc:
        problem = exc.problem or "is not accepted"
        raise ConfigError(f"{where}: {raw!r} {problem}; expected {exc.accepted}") from None


def read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config {path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None


def resolve(flags: Mapping[str, Any], environ: Mapping[str, str],
            file_values: Mapping[str, Any] | None = None, file_name: str | None = None) -> Resolved:
    """The effective settings from raw flag values, the environment and a config file's table."""
    values: dict[str, Any] = {}  # each typed by its setting's parser
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
            parsed: list[tuple[object, ...]] = [_apply(setting, text, setting.flag) for text in raw]
            values[name] = tuple(item for items in parsed for item in items)
        elif setting.switch:
            values[name] = raw
        else:
            values[name] = _apply(setting, raw, setting.flag)
        sources[name] = "flag"
    return Resolved(dataclasses.replace(Settings(), **values), sources, unknown_variables(environ))


def unknown_variables(environ: Mapping[str, str]) -> tuple[str, ...]:
    """A warning for every FLOWCOLLECT_* variable that is no setting: a typo would otherwise go unseen."""
    known = [s.env for s in SETTINGS] + [CONFIG_ENV]
    warnings = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            warnings.append(f"{name} is not a flowcollect setting{hint}: it is ignored")
    return tuple(warnings)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2, and no
    abbreviated options (a typo must not silently mean another setting)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):  # often a value that starts with '-', e.g. a CURVE key
            message += "; a value that starts with '-' goes after '=', as in --option=VALUE"
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per setting; absent options stay absent so that precedence can apply."""
    for s in SETTINGS:
        if s.switch:
            parser.add_argument(s.flag, dest=s.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS,
                                help=f"{s.help} (default: {s.default_shown()}) [env {s.env}]")
        else:
            parser.add_argument(s.flag, dest=s.name, action="append" if s.repeatable else "store",
                                default=argparse.SUPPRESS, metavar=s.metavar,
                                help=f"{s.help} (default: {s.default_shown()}) [env {s.env}]")


def from_arguments(namespace: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Resolved:
    """Settings from a parsed argparse namespace (its setting attributes) plus env and --config."""
    environ = os.environ if environ is None else environ
    flags = {s.name: getattr(namespace, s.name) for s in SETTINGS if hasattr(namespace, s.name)}
    config_path = getattr(namespace, "config", None) or environ.get(CONFIG_ENV)
    file_values = read_file(config_path) if config_path else None
    return resolve(flags, environ, file_values, config_path)


def options_summary(names: tuple[str, ...]) -> str:
    """Lines `  --flag METAVAR   help` for the named settings: the main options, in a command's epilog."""
    lines = []
    for name in names:
        setting = BY_NAME[name]
        first_clause = setting.help.split(": ")[0].split("; ")[0]
        lines.append(f"  {setting.flag} {setting.metavar}".ljust(40) + first_clause)
    return "\n".join(lines)


def settings_table() -> str:
    """The settings as a markdown table (docs/configuration.md holds this, checked by a test)."""
    rows = ["| setting (config file) | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = s.default_shown() or '""'
        flag = f"{s.flag} / --no-{s.flag[2:]}" if s.switch else s.flag
        rows.append(f"| `{s.name}` | `{flag}` | `{s.env}` | `{default}` | {s.help} |")
    return "\n".join(rows)
