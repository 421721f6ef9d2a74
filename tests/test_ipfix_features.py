"""IPFIX with --features: the features' fields as enterprise-specific elements (export/template_export.py),
decoded by an independent reader (tshark's IPFIX dissector) from a capture of the messages."""
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest

from bench.harness import frames
from flowcollect.export.ipfix import IpfixEncoder
from flowcollect.export.netflow9 import NetflowV9Encoder
from flowcollect.export.template_export import FEATURE_ELEMENTS, FLOWCOLLECT_PEN
from flowcollect.records.batch import Enrichment, FlowBatch
from tests.flowrows import flow_row

FEATURES = ("drops", "rtt", "dns")
IPFIX_PORT = 4739


def featured_flow():
    row = flow_row(eth_protocol=0x0800, src_ip="10.0.0.1", dst_ip="10.0.0.2", src_port=4000, dst_port=53,
                   protocol=17, packets=5, bytes=500, drop_packets=3, drop_bytes=300, drop_reason=12,
                   drop_tcp_state=1, rtt_ns=61_000_000, handshake_rtt_ns=250_000, dns_id=0x1234, dns_rcode=3,
                   dns_flags=3, dns_latency_ns=400_000, dns_unanswered=2)
    name = b"missing.test"
    row["dns_name"][0, :len(name)] = np.frombuffer(name, np.uint8)
    return FlowBatch(row, enrichment=Enrichment(FEATURES))


def write_capture(path, messages):
    """The messages as UDP datagrams to the IPFIX port, in a pcap file."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for message in messages:
            frame = frames.ethernet(bytes(6), bytes(6), frames.ETH_P_IP, frames.ipv4(
                "10.0.0.1", "10.0.0.2", frames.UDP, frames.udp("10.0.0.1", "10.0.0.2", 5000, IPFIX_PORT, message)))
            f.write(struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_feature_fields_are_enterprise_elements_a_collector_decodes(tmp_path):
    # GIVEN an IPFIX encoder of an agent with every feature, and a flow with each field set
    messages = IpfixEncoder(1, features=FEATURES).encode(featured_flow())
    capture = tmp_path / "ipfix.pcap"
    write_capture(capture, messages)
    # WHEN tshark decodes the capture
    text = subprocess.run(["tshark", "-r", str(capture), "-d", f"udp.port=={IPFIX_PORT},cflow", "-V"],
                          check=True, capture_output=True, text=True).stdout
    # THEN the template names each element with flowcollect's enterprise number, and the record their values
    assert text.count(f"PEN: Example Enterprise Number for Documentation Use ({FLOWCOLLECT_PEN})") == 4 * sum(
        len(elements) for elements in FEATURE_ELEMENTS.values())  # in each of the four IP templates
    values = {int(t): bytes.fromhex(v.replace("…", "").strip()) for t, v in re.findall(
        r"Enterprise Private entry: \(Example Enterprise Number for Documentation Use\) Type (\d+): "
        r"Value \(hex bytes\): ([0-9a-f …]+)", text)}
    assert {t: int.from_bytes(v, "big") for t, v in values.items() if t != 12} == {
        1: 3, 2: 300, 3: 12, 4: 1, 5: 61_000_000, 6: 250_000, 7: 0x1234, 8: 3, 9: 3, 10: 400_000, 11: 2}
    assert values[12].startswith(b"missing.test\0")
    # AND the standard elements are read as before
    assert "SrcPort: 4000" in text and "DstPort: 53" in text and "Octets: 500" in text


def test_without_features_and_in_netflow_v9_the_templates_are_as_before():
    plain = IpfixEncoder(1)
    assert [t.record() for t in IpfixEncoder(1, features=()).templates] == [t.record() for t in plain.templates]
    assert [t.record() for t in NetflowV9Encoder(1, features=FEATURES).templates] == [
        t.record() for t in NetflowV9Encoder(1).templates]
    featured = IpfixEncoder(1, features=("rtt",))
    assert [len(t.elements) - len(p.elements) for t, p in zip(featured.templates, plain.templates, strict=True)] == [
        2, 2, 2, 2, 0]  # the IP templates get rtt's two elements, frames that are not IP none
