"""The errors flowcollect reports to an operator, each with its exit code (docs/configuration.md)."""


class FlowcollectError(Exception):
    """Base of flowcollect's errors; str() is one line an operator can act on."""

    exit_code = 1


class ConfigError(FlowcollectError):
    """A setting has a value we cannot accept (exit 2)."""

    exit_code = 2
