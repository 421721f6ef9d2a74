"""Which interfaces the agent attaches to: an allow list and an exclude list.

Entries are exact interface names or `/regex/` (the syntax and its checks:
flowcollect/settings/interface_lists.py). Exclusion wins; an empty allow list
means every interface; `lo` is excluded by default.
"""
from collections.abc import Iterable

from flowcollect.settings.interface_lists import Entry, parse_interface_list

DEFAULT_EXCLUDE = ("lo",)


def _matches(entry: Entry, name: str) -> bool:
    return entry == name if isinstance(entry, str) else entry.search(name) is not None


class InterfaceFilter:
    """allowed(name): is name on the allow list (or the list is empty) and not excluded."""

    def __init__(self, allow: str | Iterable[object] = (), exclude: str | Iterable[object] = DEFAULT_EXCLUDE) -> None:
        self.allow = parse_interface_list(allow, "interfaces")
        self.exclude = parse_interface_list(exclude, "exclude_interfaces")

    def allowed(self, name: str) -> bool:
        if any(_matches(entry, name) for entry in self.exclude):
            return False
        return not self.allow or any(_matches(entry, name) for entry in self.allow)

    def __repr__(self) -> str:
        def show(entries: list[Entry]) -> list[str]:
            return [e if isinstance(e, str) else f"/{e.pattern}/" for e in entries]
        return f"InterfaceFilter(allow={show(self.allow)}, exclude={show(self.exclude)})"
