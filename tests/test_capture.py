"""Reading captures (flowcollect/records/capture.py): pcap and pcapng built byte by byte here,
in both byte orders and time resolutions; every way a file can be wrong is one CaptureError."""
import struct

import pytest

from flowcollect.records.capture import Capture, CaptureError

FRAME = bytes(range(60))


def pcap(records, order="<", magic=0xA1B2C3D4, linktype=1):
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for seconds, fraction, frame, wirelen in records:
        out += struct.pack(order + "IIII", seconds, fraction, len(frame), wirelen) + frame
    return out


def block(kind, body, order="<"):
    body += bytes(-len(body) % 4)
    return struct.pack(order + "II", kind, len(body) + 12) + body + struct.pack(order + "I", len(body) + 12)


def option(code, value, order="<"):
    return struct.pack(order + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def pcapng(blocks, order="<"):
    shb = block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)
    return shb + b"".join(blocks)


def idb(name, tsresol=None, linktype=1, order="<"):
    options = option(2, name.encode(), order)
    if tsresol is not None:
        options += option(9, bytes([tsresol]), order)
    return block(1, struct.pack(order + "HHI", linktype, 0, 65535) + options + option(0, b"", order), order)


def epb(interface, ticks, frame, wirelen=None, flags=None, order="<"):
    body = struct.pack(order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame),
                       len(frame) if wirelen is None else wirelen) + frame + bytes(-len(frame) % 4)
    if flags is not None:
        body += option(2, struct.pack(order + "I", flags), order) + option(0, b"", order)
    return block(6, body, order)


def read(tmp_path, data, name="cap.pcap"):
    path = tmp_path / name
    path.write_bytes(data)
    capture = Capture(str(path))
    return capture, list(capture.chunks())


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("magic, unit_ns", [(0xA1B2C3D4, 1000), (0xA1B23C4D, 1)])
def test_pcap_frames_times_and_a_cut_frame_padded_to_its_wire_length(tmp_path, order, magic, unit_ns):
    capture, chunks = read(tmp_path, pcap([(10, 5, FRAME, 60), (11, 7, FRAME[:40], 60)], order, magic))
    chunk, = chunks
    assert list(chunk.lengths) == [60, 60] and list(chunk.offsets) == [0, 60]
    assert list(chunk.tstamps_ns) == [10 * 10**9 + 5 * unit_ns, 11 * 10**9 + 7 * unit_ns]
    assert bytes(chunk.data[:60]) == FRAME and bytes(chunk.data[60:]) == FRAME[:40] + bytes(20)
    assert list(chunk.egress) == [0, 0] and [i.name for i in capture.interfaces] == ["cap"]


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_directions(tmp_path, order):
    data = pcapng([idb("eth0", order=order), idb("wlan1", tsresol=9, order=order),
                   epb(0, 1_500_000, FRAME, flags=1, order=order),       # microseconds, inbound
                   epb(1, 2_000_000_123, FRAME[:30], 64, flags=2, order=order),  # nanoseconds, outbound
                   block(5, bytes(20), order)], order)                   # statistics: no frame
    capture, (chunk,) = read(tmp_path, data, "cap.pcapng")
    assert [i.name for i in capture.interfaces] == ["eth0", "wlan1"]
    assert list(chunk.interfaces) == [0, 1] and list(chunk.egress) == [0, 1]
    assert list(chunk.tstamps_ns) == [1_500_000_000, 2_000_000_123]
    assert list(chunk.lengths) == [60, 64]


def test_frames_shorter_than_an_ethernet_header_are_counted_and_skipped(tmp_path):
    _, (chunk,) = read(tmp_path, pcap([(1, 0, FRAME[:10], 10), (2, 0, FRAME, 60)]))
    assert chunk.short == 1 and list(chunk.lengths) == [60]


@pytest.mark.parametrize("data, problem", [
    (b"", "too short to be a capture"),
    (b"GIF89a" + bytes(40), "not a pcap or pcapng capture"),
    (pcap([(1, 0, FRAME, 60)])[:-7], "cut short in a frame"),
    (pcap([(1, 0, FRAME, 60)]) + b"\0\0\0", "cut short in a record header"),
    (pcap([], linktype=113), "link type 113 (Linux cooked (tcpdump -i any)): only Ethernet captures"),
    (pcapng([idb("any", linktype=276)]), "link type 276"),
    (pcapng([epb(0, 1, FRAME)]), "a packet of interface 0, which no interface block describes"),
])
def test_every_bad_capture_is_one_line_naming_the_file(tmp_path, data, problem):
    with pytest.raises(CaptureError) as caught:
        read(tmp_path, data)
    message = str(caught.value)
    assert message.startswith(f"replay {tmp_path / 'cap.pcap'}: {problem}") and "\n" not in message
    assert caught.value.exit_code == 2


def test_a_missing_file_is_a_capture_error(tmp_path):
    with pytest.raises(CaptureError, match="No such file or directory"):
        list(Capture(str(tmp_path / "absent.pcap")).chunks())


def test_a_capture_cut_short_gives_its_whole_frames_first_then_the_error(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(pcap([(1, 0, FRAME, 60), (2, 0, FRAME, 60)])[:-10])
    chunks = Capture(str(path)).chunks()
    first = next(chunks)
    assert list(first.lengths) == [60]
    with pytest.raises(CaptureError, match="cut short in a frame"):
        next(chunks)
