"""The systemd unit and the sample config it runs with (systemd/), checked by systemd's own tools and
by the agent's --check-config, with the paths of this checkout in place of /opt/flowcollect."""
import os
import subprocess
import sys
import tomllib

import pytest

from bench.harness.agent import FLOWCOLLECT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(REPO, "systemd", "flowcollect.service")
SAMPLE = os.path.join(REPO, "systemd", "flowcollect.toml")
INSTALLED_SAMPLE = "/etc/flowcollect/flowcollect.toml"


def unit_lines():
    with open(UNIT) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_systemd_analyze_verify_passes_on_the_unit_with_the_sample_config(tmp_path):
    venv = os.path.dirname(os.path.dirname(sys.executable))
    with open(UNIT) as f:
        text = f.read().replace("/opt/flowcollect/.venv", venv).replace("/opt/flowcollect", REPO)
    text = text.replace(INSTALLED_SAMPLE, SAMPLE)
    unit = tmp_path / "flowcollect.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_unit_runs_the_sample_config_and_never_restarts_a_setting_to_fix():
    lines = unit_lines()
    assert f"ExecStart=/opt/flowcollect/.venv/bin/flowcollect --config {INSTALLED_SAMPLE}" in lines
    assert "RestartPreventExitStatus=2" in lines and "Restart=on-failure" in lines


@pytest.mark.kernel
def test_the_sample_config_passes_check_config_and_keeps_flows_out_of_the_journal(netns_factory):
    with open(SAMPLE, "rb") as f:
        outputs = tomllib.load(f)["output"]
    assert "jsonl:-" not in outputs
    ns = netns_factory("svc")
    result = ns.exec(FLOWCOLLECT, "--config", SAMPLE, "--check-config", check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flowcollect: configuration OK (agent IP 127.0.0.1")
