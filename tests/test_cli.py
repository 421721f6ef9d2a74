"""The command-line contract (docs/configuration.md): settings, precedence, errors, privileges."""
import os
import subprocess
import sys

import pytest

from flowcollect.settings import model, sources

FLOWCOLLECT = os.path.join(os.path.dirname(sys.executable), "flowcollect")

BAD_VALUES = {
    "interfaces": "/[unclosed/",
    "exclude_interfaces": "/(/",
    "listen_interfaces": "sometimes",
    "listen_poll_period": "soon",
    "direction": "sideways",
    "tc_attach_mode": "xdp",
    "cache_max_flows": "0",
    "cache_active_timeout": "5 parsecs",
    "ringbuf_size": "1000",
    "sampling": "-1",
    "flow_clock": "sundial",
    "deduper": "lastCome",
    "features": "drops,speed",
    "deduper_fc_expiry": "0s",
    "deduper_just_mark": "maybe",
    "workers": "0",
    "queue_max_flows": "none",
    "accounter_max_flows": "-3",
    "output": "kafka:broker:9092",
    "metrics_address": "localhost",
    "metrics_flow_attributes": "interface,colour",
    "metrics_max_series": "0",
    "ipfix_mtu": "100",
    "ipfix_template_refresh": "never",
    "ipfix_template_refresh_messages": "-5",
    "zmq_curve_secret_key_file": None,  # any path is accepted; the file is read when the agent starts
    "agent_ip": "10.0.0.256",
    "agent_ip_iface": "internal",
    "agent_ip_type": "ipv5",
    "log_level": "chatty",
}


def run(*args, env=None, **kwargs):
    return subprocess.run([FLOWCOLLECT, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, **kwargs)


def test_every_setting_has_a_bad_value_in_this_test():
    assert set(BAD_VALUES) == {s.name for s in model.SETTINGS}


@pytest.mark.parametrize("name", sorted(n for n, v in BAD_VALUES.items() if v is not None))
def test_bad_flag_value_is_one_line_naming_the_setting_exit_2(name):
    setting = model.BY_NAME[name]
    arg = f"{setting.flag}={BAD_VALUES[name]}" if not setting.switch else None
    if setting.switch:  # a switch takes no value on the command line: try its env var instead
        result = run("--check-config", env={setting.env: BAD_VALUES[name]})
        named = setting.env
    else:
        result = run(arg, "--check-config")
        named = setting.flag
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "expected" in lines[0], result.stderr


@pytest.mark.parametrize("name", ["cache_max_flows", "direction", "output"])
def test_bad_env_and_file_values_are_named_too(tmp_path, name):
    setting = model.BY_NAME[name]
    result = run("--check-config", env={setting.env: BAD_VALUES[name]})
    assert result.returncode == 2 and setting.env in result.stderr
    conf = tmp_path / "flowcollect.toml"
    conf.write_text(f'{name} = "{BAD_VALUES[name]}"\n')
    result = run("--config", str(conf), "--check-config")
    assert result.returncode == 2 and name in result.stderr and str(conf) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("output", ["netflow9:127.0.0.1:2055", "netflow9:[::1]:9995", "ipfix:localhost:4739"])
def test_collector_outputs_are_accepted(output):
    result = run("--output", output, "--print-config")
    assert result.returncode == 0, result.stderr
    assert f'output = ["{output}"]  # flag' in result.stdout.splitlines()


@pytest.mark.parametrize("output", ["netflow9:", "netflow9:collector", "netflow9:127.0.0.1:0", "netflow9:[::1:2055",
                                    "netflow9:127.0.0.1:65536", "netflow9:no-such-host.invalid:2055"])
def test_a_bad_collector_target_is_one_line_exit_2(output):
    result = run("--output", output, "--check-config")
    assert result.returncode == 2
    line, = result.stderr.strip().splitlines()
    assert line.startswith("flowcollect: --output") and output in line, line


@pytest.mark.parametrize("args, named", [
    (["--cache-active-timeout", "500us"], "--cache-active-timeout"),  # below 1 ms: a busy loop
    (["--deduper-fc-expiry", "0.5ms"], "--deduper-fc-expiry"),
    (["--cache-max-flows", "10000", "--accounter-max-flows", "5000"], "accounter_max_flows"),
    (["--ringbuf-size", "12KiB"], "--ringbuf-size"),  # not a power of two
])
def test_settings_that_cannot_work_are_one_line_exit_2(args, named):
    result = run(*args, "--check-config")
    assert result.returncode == 2
    line, = result.stderr.strip().splitlines()
    assert named in line, line


def test_unknown_option_and_unknown_file_key_exit_2(tmp_path):
    result = run("--cache-max-flow", "10")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    conf = tmp_path / "flowcollect.toml"
    conf.write_text("cache_max_flow = 10\n")
    result = run("--config", str(conf), "--check-config")
    assert result.returncode == 2 and "cache_max_flow" in result.stderr


def test_precedence_defaults_file_env_flags(tmp_path):
    conf = tmp_path / "flowcollect.toml"
    conf.write_text('cache_max_flows = 111\nsampling = 3\ndirection = "egress"\nworkers = 2\n')
    result = run("--config", str(conf), "--print-config", "--sampling", "7",
                 env={"FLOWCOLLECT_SAMPLING": "5", "FLOWCOLLECT_DIRECTION": "ingress"})
    assert result.returncode == 0, result.stderr
    lines = {line.split(" = ")[0]: line for line in result.stdout.splitlines() if " = " in line}
    assert lines["cache_max_flows"] == "cache_max_flows = 111  # file"
    assert lines["direction"] == 'direction = "ingress"  # env'
    assert lines["sampling"] == "sampling = 7  # flag"
    assert lines["cache_active_timeout"] == 'cache_active_timeout = "5s"  # default'


def test_printed_config_is_accepted_back(tmp_path):
    printed = run("--print-config", "--cache-active-timeout", "200ms", "--output", "jsonl:/tmp/x.jsonl")
    conf = tmp_path / "printed.toml"
    conf.write_text(printed.stdout)
    again = run("--config", str(conf), "--print-config")
    assert again.returncode == 0, again.stderr
    strip = lambda text: [line.split("  #")[0] for line in text.splitlines()]  # noqa: E731
    assert strip(again.stdout) == strip(printed.stdout)


def _unprivileged(*args):
    """flowcollect as nobody, with no capabilities at all."""
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "--inh-caps=-all", "--bounding-set=-all", FLOWCOLLECT, *args],
                          capture_output=True, text=True, timeout=60)


def test_without_root_one_line_names_the_missing_capabilities():
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    result = _unprivileged("--interfaces", "lo", "--output", "none")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CAP_BPF" in lines[0] and "CAP_NET_ADMIN" in lines[0] and "root" in lines[0]


def test_root_without_cap_bpf_is_told_which_one_is_missing():
    if os.geteuid() != 0:
        pytest.skip("needs root to drop a capability")
    result = subprocess.run(["setpriv", "--inh-caps=-bpf,-sys_admin", "--bounding-set=-bpf,-sys_admin",
                             FLOWCOLLECT, "--output", "none"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    line, = result.stderr.strip().splitlines()
    assert "CAP_BPF" in line and "CAP_NET_ADMIN" not in line


def test_docs_configuration_lists_every_setting_as_declared():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "configuration.md")
    with open(path) as f:
        doc = f.read()
    assert sources.settings_table() in doc, (
        "regenerate the table: python -c 'from flowcollect.settings import sources; print(sources.settings_table())'")


def test_run_help_says_each_default_once_and_what_each_option_takes():
    result = run("run", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert text.count("(default:") == len(model.SETTINGS)
    assert "(default: )" not in text and "(default: derived)" not in text
    for option in ("--listen-interfaces watch|poll", "--direction both|ingress|egress",
                   "--log-level debug|info|warning|error", "--agent-ip-type any|ipv4|ipv6",
                   "--cache-active-timeout DURATION", "--ringbuf-size SIZE", "--output SPEC",
                   "--metrics-address HOST:PORT", "(default: every interface)", "(default: CPU count - 1, at least 1)"):
        assert option in text, option


def test_top_level_help_lists_the_commands_and_the_agent_s_main_options():
    result = run("--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    for text in ("run", "sub", "replay", "cleanup", "keygen", "--interfaces LIST", "--output SPEC",
                 "--cache-active-timeout DURATION", "--config FILE", "flowcollect run --help"):
        assert text in result.stdout, text


def test_a_value_that_starts_with_a_dash_is_told_to_go_after_the_equals_sign():
    result = run("sub", "--curve-server-key", "-Xk7b", "--count", "1")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "goes after '=', as in --option=VALUE" in result.stderr
