"""Prometheus: flow counters and health metrics from several processes, scraped over HTTP from the
collector's /metrics and parsed with prometheus_client's parser; and the series cap."""
import multiprocessing
import socket
import urllib.request

import numpy as np
import prometheus_client

from flowcollect.export.prometheus import health, server
from flowcollect.export.prometheus.flow_counters import OVERFLOW, FlowMetrics
from flowcollect.kernel.flow_kernel import DrainStats
from flowcollect.records.batch import Enrichment, FlowBatch
from tests.flowrows import flow_row
from tests.metrics_http import samples

NAMES = {2: "eth0", 3: "eth1"}


def batch(*rows):
    return FlowBatch(np.concatenate([flow_row(**r) for r in rows]), NAMES, "10.0.0.1")


TCP_EGRESS = dict(if_index=2, direction=1, protocol=6, eth_protocol=0x0800)
UDP_INGRESS = dict(if_index=3, direction=0, protocol=17, eth_protocol=0x86DD)
WORKER_BATCHES = [
    [batch(dict(TCP_EGRESS, packets=1, bytes=100), dict(TCP_EGRESS, packets=2, bytes=200, dst_port=80))],
    [batch(dict(TCP_EGRESS, packets=10, bytes=1000)),
     batch(dict(UDP_INGRESS, packets=5, bytes=50), dict(UDP_INGRESS, packets=7, bytes=70, duplicate=1))],
]


def worker_main(directory, index):
    """A worker process: its flows, and the health events a worker reports."""
    health.enable_multiprocess(directory)
    flow_metrics = FlowMetrics()
    for b in WORKER_BATCHES[index]:
        flow_metrics.write(b)
    health.dedup_dropped(3 + index)
    health.export_error("ipfix" if index == 0 else "jsonl", 2)
    health.lost("worker_queue_full", 10 * (index + 1), 20 * (index + 1))
    health.exported("jsonl", 100, 300)


def collector_main(directory, port, ready, stop):
    """The collector process: kernel-side events, and the HTTP server."""
    health.enable_multiprocess(directory)
    endpoint = server.serve(f"127.0.0.1:{port}", [], server.Tracing(1.0))
    health.kernel_counters({"packets_seen": 1000, "ringbuf_reserve_failed": 0})
    health.kernel_counters({"packets_seen": 1500, "ringbuf_reserve_failed": 4, "lost_bytes": 400})
    health.flows_evicted("timer", 40)
    health.flows_evicted("map_full", 2)
    health.drain_finished(DrainStats(swap_ns=15_000_000, drain_ns=5_000_000, batches=0, overflow_rows=0,
                                     table_bytes=1 << 20, flow_cap=1000, next_flow_cap=2000, grown=2, shrunk=0), 250)
    health.worker_restarted()
    ready.set()
    stop.wait(30)
    endpoint.shutdown()


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_counters_of_every_process_add_up_on_the_collectors_metrics(tmp_path):
    # GIVEN a collector serving /metrics and two workers, all in multiprocess mode on one directory
    spawn = multiprocessing.get_context("spawn")
    directory, port = str(tmp_path), free_tcp_port()
    ready, stop = spawn.Event(), spawn.Event()
    collector = spawn.Process(target=collector_main, args=(directory, port, ready, stop), daemon=True)
    collector.start()
    try:
        assert ready.wait(30)
        # WHEN each worker counts its batches and events, then exits
        for index in range(2):
            worker = spawn.Process(target=worker_main, args=(directory, index))
            worker.start()
            worker.join(30)
            assert worker.exitcode == 0
        # THEN one scrape shows the sums
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        stop.set()
        collector.join(10)
        if collector.is_alive():
            collector.kill()
    got = samples(text)

    def value(name, **labels):
        return got.get((name, frozenset(labels.items())))

    tcp = dict(interface="eth0", direction="egress", protocol="6")
    udp = dict(interface="eth1", direction="ingress", protocol="17")
    assert value("flowcollect_flow_bytes_total", **tcp) == 1300
    assert value("flowcollect_flow_packets_total", **tcp) == 13
    assert value("flowcollect_flow_bytes_total", **udp) == 50  # the duplicate is not counted
    assert value("flowcollect_flow_packets_total", **udp) == 5
    assert value("flowcollect_dedup_dropped_flows_total") == 7
    assert value("flowcollect_export_errors_total", output="ipfix") == 2
    assert value("flowcollect_export_errors_total", output="jsonl") == 2
    assert value("flowcollect_lost_flows_total", cause="worker_queue_full") == 30
    assert value("flowcollect_lost_packets_total", cause="worker_queue_full") == 60
    assert value("flowcollect_exported_flows_total", output="jsonl") == 200
    assert value("flowcollect_exported_packets_total", output="jsonl") == 600
    assert value("flowcollect_kernel_packets_total") == 1500  # totals became a counter
    assert value("flowcollect_lost_packets_total", cause="ring_buffer_full") == 4
    assert value("flowcollect_lost_packets_total", cause="subscriber_too_slow") == 0  # there before any loss
    assert value("flowcollect_lost_bytes_total") == 400
    assert value("flowcollect_evicted_flows_total", reason="timer") == 40
    assert value("flowcollect_evicted_flows_total", reason="map_full") == 2
    assert value("flowcollect_drain_duration_seconds_count") == 1
    assert value("flowcollect_drain_duration_seconds_bucket", le="0.025") == 1
    assert value("flowcollect_drain_duration_seconds_bucket", le="0.01") == 0
    assert value("flowcollect_map_fill_ratio") == 0.25
    assert value("flowcollect_table_bytes") == 1 << 20
    assert value("flowcollect_table_flow_cap") == 2000
    assert value("flowcollect_table_resizes_total", direction="grow") == 2
    assert value("flowcollect_table_resizes_total", direction="shrink") == 0
    assert value("flowcollect_worker_restarts_total") == 1


def test_series_beyond_the_cap_go_to_one_overflow_series():
    # GIVEN flow metrics by destination port, capped at 3 series
    registry = prometheus_client.CollectorRegistry()
    flow_metrics = FlowMetrics(attributes=("dst_port",), max_series=3, registry=registry)
    capped_before = prometheus_client.REGISTRY.get_sample_value("flowcollect_flow_series_capped_flows_total") or 0
    # WHEN flows to 5 ports arrive (port 443 twice, in two batches)
    flow_metrics.write(batch(*[dict(TCP_EGRESS, dst_port=p, packets=1, bytes=p) for p in (443, 80, 22)]))
    flow_metrics.write(batch(*[dict(TCP_EGRESS, dst_port=p, packets=1, bytes=p) for p in (443, 8080, 9090, 9090)]))
    # THEN the first three ports keep their series, the other flows share the overflow one
    got = samples(prometheus_client.generate_latest(registry).decode())
    bytes_by_port = {dict(labels)["dst_port"]: v for (name, labels), v in got.items()
                     if name == "flowcollect_flow_bytes_total"}
    assert bytes_by_port == {"443": 886, "80": 80, "22": 22, OVERFLOW: 8080 + 2 * 9090}
    capped = prometheus_client.REGISTRY.get_sample_value("flowcollect_flow_series_capped_flows_total")
    assert capped - capped_before == 3


def test_address_attributes_label_ip_flows_with_their_text():
    registry = prometheus_client.CollectorRegistry()
    flow_metrics = FlowMetrics(attributes=("src_addr", "dst_port"), registry=registry)
    flow_metrics.write(batch(dict(eth_protocol=0x0800, src_ip="10.1.2.3", dst_port=53, bytes=10, packets=1),
                              dict(eth_protocol=0x86DD, src_ip="2001:db8::1", dst_port=53, bytes=20, packets=1),
                              dict(eth_protocol=0x0806, bytes=40, packets=1)))
    got = samples(prometheus_client.generate_latest(registry).decode())
    by_address = {dict(labels)["src_addr"]: v for (name, labels), v in got.items()
                  if name == "flowcollect_flow_bytes_total"}
    assert by_address == {"10.1.2.3": 10, "2001:db8::1": 20, "": 40}


def test_drops_rtt_and_dns_latency_by_the_flow_attributes_under_the_same_cap():
    # GIVEN flow metrics by destination port capped at 2 series, and flows with drops, RTT and DNS
    registry = prometheus_client.CollectorRegistry()
    flow_metrics = FlowMetrics(attributes=("dst_port",), max_series=2, registry=registry)
    flows = batch(dict(TCP_EGRESS, dst_port=53, packets=4, drop_packets=3, drop_reason=12),
                  dict(TCP_EGRESS, dst_port=53, packets=1, drop_packets=1, drop_reason=3, dns_flags=3,
                       dns_latency_ns=400_000),
                  dict(TCP_EGRESS, dst_port=80, packets=9, rtt_ns=30_000_000),
                  dict(TCP_EGRESS, dst_port=99, packets=1, drop_packets=2, drop_reason=12, rtt_ns=3_000_000))
    flows.enrichment = Enrichment(("drops", "rtt", "dns"), {3: "NO_SOCKET", 12: "NETFILTER_DROP"})
    # WHEN they are counted
    flow_metrics.write(flows)
    # THEN drops by cause and port, the third port's in the overflow series as its flow counters are
    got = samples(prometheus_client.generate_latest(registry).decode())
    drops = {(dict(labels)["cause"], dict(labels)["dst_port"]): v for (name, labels), v in got.items()
             if name == "flowcollect_drop_packets_total"}
    assert drops == {("NETFILTER_DROP", "53"): 3, ("NO_SOCKET", "53"): 1, ("NETFILTER_DROP", OVERFLOW): 2}
    # AND one RTT observation per connection, one DNS latency per answered exchange, in seconds

    def value(name, **labels):
        return got[(name, frozenset(labels.items()))]

    assert value("flowcollect_flow_rtt_seconds_count", dst_port="80") == 1
    assert value("flowcollect_flow_rtt_seconds_bucket", dst_port="80", le="0.025") == 0
    assert value("flowcollect_flow_rtt_seconds_bucket", dst_port="80", le="0.05") == 1
    assert value("flowcollect_flow_rtt_seconds_count", dst_port=OVERFLOW) == 1
    assert value("flowcollect_dns_latency_seconds_count", dst_port="53") == 1
    assert value("flowcollect_dns_latency_seconds_sum", dst_port="53") == 0.0004
