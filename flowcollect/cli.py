"""The `flowcollect` command: run the agent (default), subscribe, check settings.

Exit codes (docs/configuration.md): 0 success (also after SIGTERM/SIGINT),
1 runtime failure (missing privileges, kernel errors), 2 a bad option,
config file or value, or a setting this host cannot honour at start (an
endpoint another agent holds, a port in use). Every error is one line on
stderr.
"""
import argparse
import dataclasses
import logging
import sys

from flowcollect import __version__
from flowcollect.agent import logs
from flowcollect.settings import sources
from flowcollect.settings.addresses import DEFAULT_PUBLIC_ENDPOINT
from flowcollect.settings.errors import ConfigError, FlowcollectError

COMMANDS = ("run", "sub", "replay", "keygen", "cleanup")
MAIN_OPTIONS = ("interfaces", "output", "cache_active_timeout", "cache_max_flows", "metrics_address", "log_level")


def build_parser() -> argparse.ArgumentParser:
    parser = sources.OneLineParser(
        prog="flowcollect", description="eBPF network-flow agent.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="With no command, flowcollect runs the agent. Its main options (every one: flowcollect run --help;\n"
               "each also an environment variable and a config-file key, docs/configuration.md):\n"
               + sources.options_summary(MAIN_OPTIONS) + "\n  --config FILE".ljust(41) + "TOML file of settings")
    parser.add_argument("--version", action="version", version=f"flowcollect {__version__}")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run the agent (the default command)")
    sources.add_setting_arguments(run)
    run.add_argument("--config", metavar="FILE", help=f"TOML file of settings [env {sources.CONFIG_ENV}]")
    run.add_argument("--print-config", action="store_true", help="print the effective settings as TOML and exit")
    run.add_argument("--check-config", action="store_true", help="check the settings and exit")
    sub = commands.add_parser(
        "sub", help="subscribe to a running agent's flows",
        description="Print a running agent's flows as JSON lines, or show a live table of its top talkers. "
                    "With no flows after a few seconds, says once on stderr why that may be, and keeps waiting.")
    sub.add_argument("--endpoint", default=DEFAULT_PUBLIC_ENDPOINT,
                     help="the agent's zmq output: tcp://HOST:PORT or ipc://PATH (default: %(default)s)")
    sub.add_argument("--format", choices=("json", "binary"), default="json",
                     help="topic to read: json, or binary decoded to JSON lines")
    sub.add_argument("--top", action="store_true",
                     help="a live table of the top talkers on this terminal: rates over whole evictions; "
                          "keys b, p, f sort by bytes, packets, flows; q quits")
    sub.add_argument("--count", type=int, default=None, help="exit after this many flows")
    curve_key = sub.add_mutually_exclusive_group()
    curve_key.add_argument("--curve-server-key-file", metavar="FILE", default=None,
                           help="file with the agent's CURVE public key (FILE.pub from `flowcollect keygen FILE`), "
                                "for an agent with --zmq-curve-secret-key-file")
    curve_key.add_argument("--curve-server-key", metavar="KEY", default=None,
                           help="the agent's CURVE public key itself (40 Z85 characters); give it as "
                                "--curve-server-key=KEY, quoted: a key may start with '-' and holds "
                                "characters a shell expands")
    replay = commands.add_parser("replay", help="count the flows of a capture (pcap, pcapng) with the same "
                                 "kernel programs and pipeline, to the outputs (default jsonl:-)")
    replay.add_argument("capture", metavar="FILE", help="a pcap or pcapng capture of Ethernet frames")
    sources.add_setting_arguments(replay)
    replay.add_argument("--config", metavar="FILE", help=f"TOML file of settings [env {sources.CONFIG_ENV}]")
    cleanup = commands.add_parser("cleanup",
                                  help="remove what agents that are gone left behind (never a running one's)")
    cleanup.add_argument("--interfaces", default="", help="comma-separated names (default: every interface)")
    keygen = commands.add_parser(
        "keygen", help="write a new CURVE key pair (FILE, FILE.pub); print the public key",
        description="Write a new CURVE key pair: the secret key to FILE (owner-only) for the agent's "
                    "--zmq-curve-secret-key-file, the public key to FILE.pub for subscribers "
                    "(flowcollect sub --curve-server-key-file FILE.pub). Prints the public key.")
    keygen.add_argument("file", metavar="FILE", help="where to write the secret key (created, owner-only; "
                                                     "FILE.pub beside it)")
    return parser


def run_agent(args: argparse.Namespace) -> int:
    resolved = sources.from_arguments(args)
    if args.print_config:
        print(resolved.render())
        return 0
    from flowcollect.agent import preflight

    settings = resolved.settings
    verdict = preflight.check(settings, resolved.warnings)
    agent_ip = verdict.agent_ip
    if args.check_config:
        for warning in verdict.warnings:
            print(f"flowcollect: warning: {warning}", file=sys.stderr)
        print(f"flowcollect: configuration OK (agent IP {agent_ip.address}: {agent_ip.how})")
        return 0
    logs.setup(settings.log_level)
    for warning in verdict.warnings:
        logging.getLogger("flowcollect").warning("%s", warning)
    from flowcollect.agent.collector import Collector
    from flowcollect.kernel.privileges import require_kernel_privileges

    require_kernel_privileges()
    collector = Collector(settings, str(agent_ip.address))
    collector.install_signal_handlers()
    return collector.run()


def run_replay(args: argparse.Namespace) -> int:
    from flowcollect.agent import preflight
    from flowcollect.agent.replay import check_outputs, replay
    from flowcollect.settings.values import OutputSpec

    resolved = sources.from_arguments(args)
    settings = resolved.settings
    if resolved.sources["output"] == "default":  # the agent's default adds a zmq endpoint, which needs an agent
        settings = dataclasses.replace(settings, output=(OutputSpec("jsonl", "-"),))
    ignored = settings.features
    # A capture has no drops, sockets or DNS timing of this host to add (docs/configuration.md).
    settings = dataclasses.replace(settings, features=())
    check_outputs(settings)
    verdict = preflight.check(settings, resolved.warnings)
    logs.setup(settings.log_level)
    if ignored:
        logging.getLogger("flowcollect").warning("replay: --features %s is not applied to a capture",
                                                 ",".join(ignored))
    for warning in verdict.warnings:
        if not warning.startswith("interfaces:"):  # a capture's interfaces are not this host's
            logging.getLogger("flowcollect").warning("%s", warning)
    return replay(args.capture, settings, str(verdict.agent_ip.address))


def subscribe(args: argparse.Namespace) -> int:
    from flowcollect.subscriber import stream
    from flowcollect.transport import curve

    server_key = args.curve_server_key
    if server_key is not None:
        curve.check_public_key(server_key)
    if args.curve_server_key_file:
        server_key = curve.read_public_key(args.curve_server_key_file)
    logs.setup("info")
    return stream.run(args.endpoint, args.format, args.top, args.count, server_key)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "cleanup":
            from flowcollect.kernel.cleanup import remove_leftovers
            from flowcollect.kernel.privileges import require_kernel_privileges

            logs.setup("info")
            require_kernel_privileges()
            names = [n.strip() for n in args.interfaces.split(",") if n.strip()]
            filters, folders = remove_leftovers(names)
            print(f"flowcollect: removed {filters} filters and {folders} folders of agents that are gone")
            return 0
        if args.command == "keygen":
            from flowcollect.transport import curve

            try:
                print(curve.write_keypair(args.file))
            except OSError as exc:
                raise ConfigError(f"keygen {args.file}: {exc.strerror}") from None
            return 0
        if args.command == "sub":
            return subscribe(args)
        if args.command == "replay":
            return run_replay(args)
        return run_agent(args)
    except FlowcollectError as exc:
        print(f"flowcollect: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
