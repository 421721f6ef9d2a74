"""`sub --top`'s model: names, the eviction clock, the window of evictions and its rates, the screen, the keys."""
import io
import os
import termios

import pytest
from rich.console import Console

from flowcollect.subscriber import naming
from flowcollect.subscriber.eviction_clock import EvictionClock
from flowcollect.subscriber.keys import Keys
from flowcollect.subscriber.top_screen import rows_that_fit, screen, si
from flowcollect.subscriber.top_talkers import Talker, TopTalkers, evictions_in_window, talker
from flowcollect.subscriber.top_view import TopView


def record(**fields):
    """A JSON flow record (docs/records.md) with the fields a test names; UDP over IPv4 otherwise."""
    base = dict(interface="eth0", if_index=2, direction="ingress", src_mac="02:00:00:00:00:01",
                dst_mac="02:00:00:00:00:02", eth_protocol=0x0800, src_addr="10.0.0.1", dst_addr="10.0.0.2",
                src_port=4000, dst_port=53, protocol=17, icmp_type=0, icmp_code=0, vlan_id=0,
                packets=1, bytes=100)
    return {**base, **fields}


# --- names ---

@pytest.mark.parametrize(("protocol", "name"), [(6, "tcp"), (17, "udp"), (1, "icmp"), (58, "icmpv6"),
                                                (132, "sctp"), (47, "47"), (0, "0")])
def test_protocol_names_else_the_number(protocol, name):
    assert naming.protocol_name(protocol) == name


@pytest.mark.parametrize(("ethertype", "name"), [(0x0806, "arp"), (0x88CC, "lldp"), (0x88B5, "0x88b5"),
                                                 (0x0842, "0x0842")])
def test_ethertype_names_else_hex(ethertype, name):
    assert naming.ethertype_name(ethertype) == name


@pytest.mark.parametrize(("protocol", "icmp_type", "name"), [
    (1, 8, "echo-request"), (1, 0, "echo-reply"), (1, 3, "destination-unreachable"), (1, 11, "time-exceeded"),
    (58, 128, "echo-request"), (58, 129, "echo-reply"), (58, 135, "nd-neighbor-solicit"),
    (58, 143, "mld2-listener-report"), (1, 200, "type 200"), (58, 0, "type 0"),
])
def test_icmp_type_names(protocol, icmp_type, name):
    assert naming.icmp_type_name(protocol, icmp_type) == name


def test_talkers_of_each_kind_of_record():
    assert talker(record()) == Talker("eth0", "ingress", "udp", "10.0.0.1:4000", "10.0.0.2:53")
    v6 = record(eth_protocol=0x86DD, src_addr="fd00:199::3", dst_addr="fd00::1", src_port=42531, dst_port=443,
                protocol=6, direction="egress")
    assert talker(v6) == Talker("eth0", "egress", "tcp", "[fd00:199::3]:42531", "[fd00::1]:443")
    ping = record(protocol=1, icmp_type=8, src_port=0, dst_port=0)
    assert talker(ping) == Talker("eth0", "ingress", "icmp echo-request", "10.0.0.1", "10.0.0.2")
    ns = record(eth_protocol=0x86DD, src_addr="fe80::1", dst_addr="ff02::1:ff00:2", protocol=58, icmp_type=135,
                src_port=0, dst_port=0)
    assert talker(ns) == Talker("eth0", "ingress", "icmpv6 nd-neighbor-solicit", "fe80::1", "ff02::1:ff00:2")
    arp = record(eth_protocol=0x0806, src_addr=None, dst_addr=None, src_port=0, dst_port=0, protocol=0)
    assert talker(arp) == Talker("eth0", "ingress", "arp", "02:00:00:00:00:01", "02:00:00:00:00:02")
    other = record(eth_protocol=0x88B5, src_addr=None, dst_addr=None, interface="", if_index=7, protocol=0)
    assert talker(other) == Talker("if7", "ingress", "0x88b5", "02:00:00:00:00:01", "02:00:00:00:00:02")
    gre = record(protocol=47, src_port=0, dst_port=0)
    assert talker(gre) == Talker("eth0", "ingress", "47", "10.0.0.1", "10.0.0.2")


# --- the eviction clock ---

def test_the_period_is_the_spacing_of_bursts_and_a_burst_is_one_eviction():
    clock = EvictionClock()
    assert clock.period is None and clock.latest_eviction(0.0) is None
    assert clock.arrived(10.0) == 10.0
    clock.handled(10.004)
    assert clock.arrived(10.02) == 10.0  # another worker's message of the same eviction
    clock.handled(10.3)  # a slow subscriber: the next message waited in the queue
    assert clock.arrived(10.31) == 10.0
    clock.handled(10.32)
    assert clock.period is None and clock.latest_eviction(11.0) == 10.0
    for t in (10.5, 11.0, 11.5):
        assert clock.arrived(t) == t
        clock.handled(t + 0.001)
    assert clock.period == 0.5
    assert clock.latest_eviction(11.55) == 11.5
    # Evictions that found nothing send nothing: they are predicted, a grace of 0.1 s after their time.
    assert clock.latest_eviction(12.05) == 11.5
    assert clock.latest_eviction(12.15) == 12.0
    assert clock.latest_eviction(13.65) == 13.5


def test_the_period_ignores_a_skipped_eviction_and_an_early_swap():
    clock = EvictionClock()
    for t in (0.0, 1.0, 2.0, 4.0, 5.0, 5.2, 6.0, 7.0):  # nothing at 3.0; the map half full at 5.2
        clock.arrived(t)
        clock.handled(t + 0.001)
    assert clock.period == 1.0


# --- the window and its rates ---

def evictions(talkers, times, *records_of_each):
    for t in times:
        eviction = talkers.clock.arrived(t)
        talkers.add(records_of_each, eviction)
        talkers.clock.handled(t + 0.001)


def test_rates_are_over_whole_evictions_of_the_agents_period():
    assert (evictions_in_window(0.5), evictions_in_window(5.0), evictions_in_window(0.3)) == (10, 2, 17)
    talkers = TopTalkers()
    evictions(talkers, [i * 0.5 for i in range(12)], record(bytes=1420, packets=10))
    view = talkers.view(5.55)
    assert (view.period_s, view.evictions, view.window_s) == (0.5, 10, 5.0)
    row, = view.rows
    # Evictions at 1.0 .. 5.5 are in the 5 s window that ends at 5.5: 10 of them.
    assert (row.bytes, row.packets, row.flows) == (14200, 100, 1)
    assert (row.bits_per_s, row.packets_per_s) == (22720.0, 20.0)
    # The traffic stops: evictions go on (predicted), and the window slides past the last ones.
    row, = talkers.view(8.0).rows  # evictions at 6.0 .. 7.5 sent nothing; 3.0 .. 5.5 are left
    assert (row.bytes, row.packets, row.bits_per_s) == (8520, 60, 8520 * 8 / 5.0)
    assert talkers.view(11.0).rows == []


def test_before_the_second_eviction_there_are_counts_but_no_rates():
    talkers = TopTalkers()
    evictions(talkers, [3.0], record(bytes=500, packets=5))
    view = talkers.view(3.2)
    row, = view.rows
    assert (row.bytes, row.packets, row.bits_per_s, row.packets_per_s) == (500, 5, None, None)
    assert view.period_s is None and view.window_s is None


def test_sort_by_bytes_packets_or_flows_with_a_limit_and_a_total():
    talkers = TopTalkers()
    big = record(src_port=1, bytes=9000, packets=6)
    chatty = record(src_port=2, bytes=3000, packets=50)
    many = [record(src_port=3, icmp_code=0, vlan_id=v, bytes=100, packets=1) for v in range(4)]  # 4 flows, one talker
    evictions(talkers, [0.0, 1.0], big, chatty, *many)
    view = talkers.view(1.05, "bytes", limit=2)
    assert [r.talker.source for r in view.rows] == ["10.0.0.1:1", "10.0.0.1:2"]
    assert view.talkers == 3
    assert [r.talker.source for r in talkers.view(1.05, "packets").rows] == ["10.0.0.1:2", "10.0.0.1:1",
                                                                            "10.0.0.1:3"]
    by_flows = talkers.view(1.05, "flows").rows
    assert [(r.talker.source, r.flows) for r in by_flows] == [("10.0.0.1:3", 4), ("10.0.0.1:1", 1),
                                                              ("10.0.0.1:2", 1)]
    total = talkers.view(1.05).total
    # Window: 5 evictions of 1 s; the two so far are in it.
    assert (total.bytes, total.packets, total.flows) == (2 * 12400, 2 * 60, 6)
    assert (total.bits_per_s, total.packets_per_s) == (2 * 12400 * 8 / 5.0, 24.0)


def test_the_same_packets_on_two_interfaces_are_two_talkers():
    talkers = TopTalkers()
    routed = dict(src_addr="10.1.0.1", dst_addr="10.2.0.1", bytes=700, packets=7)
    evictions(talkers, [0.0, 1.0], record(interface="to-a", direction="ingress", **routed),
              record(interface="to-c", direction="egress", **routed))
    rows = talkers.view(1.05).rows
    assert sorted((r.talker.interface, r.talker.direction, r.bytes, r.packets) for r in rows) == [
        ("to-a", "ingress", 1400, 14), ("to-c", "egress", 1400, 14)]


# --- the screen ---

@pytest.mark.parametrize(("value", "text"), [(0, "0"), (2.5, "2.50"), (12.34, "12.3"), (950, "950"),
                                             (999.6, "1.00k"), (2272, "2.27k"), (22720, "22.7k"),
                                             (1.5e6, "1.50M"), (3.4e9, "3.40G"), (0.004, "0.00")])
def test_si_prefixes_three_digits(value, text):
    assert si(value) == text


def rendered(view, height, width=160, sort="bytes", status=""):
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    console.print(screen(view, "ipc:///run/flowcollect/flows.sock", sort, status, width, height))
    return console.file.getvalue().splitlines()


def test_the_screen_fills_the_terminal_height_and_no_more():
    talkers = TopTalkers()
    evictions(talkers, [0.0, 0.5], *[record(src_port=1000 + i, bytes=100 + i) for i in range(50)])
    for height in (40, 12):
        status = "a warning too long for one line " * 8
        lines = rendered(talkers.view(0.55, limit=rows_that_fit(height)), height, status=status)
        assert len(lines) == height
        assert lines[1].split() == ["iface", "dir", "proto", "source", "destination", "bit/s",
                                    "pkt/s", "bytes", "packets", "flows"]
        rows = lines[3:-2]
        assert len(rows) == rows_that_fit(height)
        # Two evictions of 0.5 s so far, in a window of 10: 298 bytes x 8 / 5 s.
        assert rows[0].split() == ["eth0", "ingress", "udp", "10.0.0.1:1049", "10.0.0.2:53", "477", "0.40",
                                   "298", "2", "1"]
        assert "window 5.0 s = 10 evictions of 0.50 s" in lines[0] and "50 talkers" in lines[0]
        assert "[b]ytes" in lines[-2] and "[q] quit" in lines[-2] and "sorted by bytes" in lines[-2]
        assert lines[-1].startswith("a warning too long") and lines[-1].endswith("…")


def test_cells_are_text_not_markup():
    """rich would read [fd00:100::1] as a markup tag and :100: as an emoji."""
    talkers = TopTalkers()
    evictions(talkers, [0.0], record(eth_protocol=0x86DD, src_addr="fd00:100::1", dst_addr="fd00:100::2",
                                     src_port=4002, dst_port=5002, interface="[bold]x"))
    row = rendered(talkers.view(0.1), 10)[3].split()
    assert row[:5] == ["[bold]x", "ingress", "udp", "[fd00:100::1]:4002", "[fd00:100::2]:5002"]


def test_on_a_narrow_terminal_only_names_and_addresses_are_cut():
    talkers = TopTalkers()
    evictions(talkers, [0.0, 0.5], record(eth_protocol=0x86DD, src_addr="fd00:100::1234:5678", src_port=44444,
                                          dst_addr="fd00:100::8765:4321", dst_port=55555, bytes=123456789,
                                          packets=1234567))
    line = rendered(talkers.view(0.55), 10, width=100)[3]
    row = line.split()
    assert len(line) == 100
    # 246,913,578 bytes x 8 in 5 s (two evictions of a window of ten, of 0.5 s)
    assert row[0:2] == ["eth0", "ingress"] and row[-5:] == ["395M", "494k", "246,913,578", "2,469,134", "1"]
    assert row[3:5] == ["[fd00:100…", "[fd00:100:…"]
    # Narrower still: numbers are left out rather than cut.
    lines = rendered(talkers.view(0.55), 10, width=80)
    assert lines[1].split() == ["iface", "dir", "proto", "source", "destinati…", "bit/s", "pkt/s", "bytes"]
    assert lines[3].split()[3:] == ["[fd00:100:…", "[fd00:100…", "395M", "494k", "246,913,578"]
    assert len(lines[3]) == 80


def test_the_view_before_rates_says_it_measures_the_period():
    talkers = TopTalkers()
    evictions(talkers, [0.0], record())
    lines = rendered(talkers.view(0.1), 10)
    assert "measuring the eviction period" in lines[0]
    assert lines[3].split()[5:7] == ["…", "…"]


# --- the keys ---

def test_keys_in_cbreak_mode_on_a_terminal_restored_after(tmp_path):
    master, slave = os.openpty()
    with os.fdopen(slave, "r") as tty_in:
        before = termios.tcgetattr(slave)
        view = TopView("ipc:///x", console=Console(file=io.StringIO(), width=80, height=10), keys=Keys(tty_in))
        with view:
            lflag = termios.tcgetattr(slave)[3]
            assert not lflag & termios.ICANON and not lflag & termios.ECHO and lflag & termios.ISIG
            os.write(master, b"p")
            view.pressed()
            assert view.sort == "packets" and not view.quit
            os.write(master, b"fx")
            view.pressed()
            assert view.sort == "flows"
            os.write(master, b"q")
            view.pressed()
            assert view.quit
        assert termios.tcgetattr(slave) == before
    os.close(master)


def test_no_keys_when_stdin_is_not_a_terminal(tmp_path):
    with open(tmp_path / "stdin", "w+") as not_a_tty, Keys(not_a_tty) as keys:
        assert keys.fd is None and keys.read() == ""


def test_the_features_columns_when_the_stream_carries_them():
    # GIVEN records of an agent with --features drops,rtt: dropped packets, and a connection's RTT twice
    talkers = TopTalkers()
    evictions(talkers, [0.0, 0.5], record(drop_packets=3, rtt_ns=None),
              record(src_port=4001, protocol=6, drop_packets=0, rtt_ns=61_200_000),
              record(src_port=4001, protocol=6, drop_packets=0, rtt_ns=1_500_000))
    # THEN the view has their columns, after the others: drops summed, the largest RTT, no DNS latency
    view = talkers.view(0.55)
    assert view.features == ("drops", "rtt")
    lines = rendered(view, 10)
    assert lines[1].split()[-3:] == ["flows", "drops", "rtt"]
    rows = {line.split()[3]: line.split() for line in lines[3:5]}
    assert rows["10.0.0.1:4000"][-2:] == ["6", "-"]  # two evictions of 3 dropped packets
    assert rows["10.0.0.1:4001"][-2:] == ["0", "61.2ms"]
    # AND a stream without them shows none
    plain = TopTalkers()
    evictions(plain, [0.0], record())
    assert plain.view(0.1).features == () and rendered(plain.view(0.1), 10)[1].split()[-1] == "flows"
