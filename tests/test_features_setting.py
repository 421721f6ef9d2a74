"""--features (docs/configuration.md): the names it takes, and the capability probe's one line when the
kernel cannot do a feature asked for."""
import os
import shutil
import subprocess
import sys

import pytest

from flowcollect.settings import values

FLOWCOLLECT = os.path.join(os.path.dirname(sys.executable), "flowcollect")


def run(*args, prefix=()):
    return subprocess.run([*prefix, FLOWCOLLECT, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("given", "parsed"), [
    ("", ()), ("none", ()), ("dns", ("dns",)), ("dns, drops", ("drops", "dns")), (["rtt", "drops"], ("drops", "rtt")),
    ("drops,rtt,dns", ("drops", "rtt", "dns")),
])
def test_features_are_a_subset_in_one_order(given, parsed):
    assert values.feature_list(given) == parsed


@pytest.mark.parametrize("given", ["drops,drops", "latency", "none,dns", "DNS"])
def test_other_features_are_refused(given):
    with pytest.raises(values.Rejected, match="drops, rtt, dns"):
        values.feature_list(given)


def test_print_config_gives_back_what_check_config_takes(tmp_path):
    printed = run("--features", "dns,drops", "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert 'features = ["drops", "dns"]  # flag' in printed.stdout.splitlines()
    config = tmp_path / "agent.toml"
    config.write_text(printed.stdout)
    again = run("--config", str(config), "--print-config")
    assert 'features = ["drops", "dns"]  # file' in again.stdout.splitlines()


@pytest.mark.kernel
def test_this_kernel_can_do_every_feature():
    """The host these tests run on has BTF, kfree_skb with its reason and tcp_rcv_established."""
    from flowcollect.kernel import features

    assert features.missing(("drops", "rtt", "dns")) == ""
    checked = run("--features", "drops,rtt,dns", "--check-config", "--output", "none")
    assert checked.returncode == 0, checked.stderr


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_a_kernel_without_btf_is_one_line_naming_what_is_missing_exit_2():
    """GIVEN a mount namespace where /sys/kernel/btf is an empty folder (a kernel built without BTF)
    WHEN the agent is asked for drops and rtt THEN one line names both, exit 2; dns alone still passes."""
    hide_btf = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs none /sys/kernel/btf && exec "$@"', "hide-btf")
    result = run("--features", "drops,rtt,dns", "--check-config", "--output", "none", prefix=hide_btf)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--features drops,rtt,dns: this kernel cannot: drops needs the kernel's BTF" in lines[0]
    assert "rtt needs the kernel's BTF" in lines[0]
    assert "Traceback" not in result.stderr
    dns_only = run("--features", "dns", "--check-config", "--output", "none", prefix=hide_btf)
    assert dns_only.returncode == 0, dns_only.stderr
