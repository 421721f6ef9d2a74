"""The syntax of an interface list setting: exact interface names or `/regex/`.

`interfaces` and `exclude_interfaces` share it. Regexes use re.search
semantics, as the seed: /^br-/ matches br-0 but not abr-3. The interface
filter (flowcollect/interfaces/filter.py) matches names against the entries.
"""
import re
from collections.abc import Iterable

from flowcollect.settings.errors import ConfigError

IFNAMSIZ = 16  # the kernel's limit, NUL included: a longer exact name can never match

Entry = str | re.Pattern[str]
"""An exact interface name, or a compiled /regex/."""


def compile_entry(entry: object, setting: str) -> Entry:
    """An exact name as itself, a /regex/ as a compiled pattern; ConfigError naming `setting` otherwise."""
    if not isinstance(entry, str):
        raise ConfigError(f"{setting}: {entry!r} is not an interface name or /regex/")
    entry = entry.strip()
    if entry.startswith("/"):
        if len(entry) < 3 or not entry.endswith("/"):
            raise ConfigError(f"{setting}: {entry!r} is not a /regex/ (a non-empty pattern between two slashes)")
        try:
            return re.compile(entry[1:-1])
        except re.error as exc:
            raise ConfigError(f"{setting}: bad regex {entry!r}: {exc}") from None
    if not entry or len(entry) >= IFNAMSIZ or "/" in entry or any(c.isspace() for c in entry):
        raise ConfigError(f"{setting}: {entry!r} is not an interface name "
                          f"(1 to {IFNAMSIZ - 1} characters, no '/' or spaces) nor a /regex/")
    return entry


def split_interface_list(text: str) -> list[str]:
    """Split the comma-separated CLI form into entries.

    A comma inside a /regex/ belongs to the regex (/^(eth|br){1,2}/), so a
    regex entry runs to the first slash that is followed by a comma or the end.
    Empty entries are dropped: "" is the empty list.
    """
    entries, i = [], 0
    while i < len(text):
        while i < len(text) and text[i] in " \t,":
            i += 1
        if i == len(text):
            break
        if text[i] == "/":
            end = i + 1
            while end < len(text) and not (text[end] == "/" and text[end + 1:].lstrip()[:1] in ("", ",")):
                end += 1
            end += 1  # past the closing slash, or past the end when there is none
        else:
            end = text.find(",", i)
            end = len(text) if end < 0 else end
        entries.append(text[i:end].strip())
        i = end
    return entries


def parse_interface_list(value: str | Iterable[object], setting: str = "interfaces") -> list[Entry]:
    """Entries from the CLI/env string form or from a list (config file)."""
    entries: Iterable[object] = split_interface_list(value) if isinstance(value, str) else list(value)
    return [compile_entry(entry, setting) for entry in entries]
