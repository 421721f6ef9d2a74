"""A small RFC 7011 (IPFIX) and RFC 3954 (NetFlow v9) reader for tests: messages back into records by element id."""
import struct


def decode_messages(messages, templates=None):
    """IPFIX: [(header dict, [(template id, {element id: bytes})])] for each message; templates carry over."""
    templates = {} if templates is None else templates
    decoded = []
    for message in messages:
        version, length, export_time, sequence, domain = struct.unpack_from("!HHIII", message)
        assert version == 10 and length == len(message), "IPFIX header: version 10, length of the message"
        header = {"export_time": export_time, "sequence": sequence, "domain": domain, "length": length}
        records, _ = _read_sets(message, 16, templates, template_set_id=2, alignment=1)
        decoded.append((header, records))
    return decoded


def decode_v9_messages(messages, templates=None):
    """NetFlow v9: the same, the header with count, uptime, unix_secs, sequence and source_id."""
    templates = {} if templates is None else templates
    decoded = []
    for message in messages:
        version, count, uptime, unix_secs, sequence, source_id = struct.unpack_from("!HHIIII", message)
        assert version == 9, "NetFlow v9 header: version 9"
        header = {"count": count, "uptime": uptime, "unix_secs": unix_secs, "sequence": sequence,
                  "source_id": source_id, "length": len(message)}
        records, template_records = _read_sets(message, 20, templates, template_set_id=0, alignment=4)
        assert count == len(records) + template_records, "count: the template and data records of the packet"
        decoded.append((header, records))
    return decoded


def _read_sets(message, offset, templates, template_set_id, alignment):
    """The data records of the sets from offset on, and how many template records they held."""
    records, template_records = [], 0
    while offset < len(message):
        set_id, set_length = struct.unpack_from("!HH", message, offset)
        assert set_length >= 4 and offset + set_length <= len(message), "set within the message"
        assert set_length % alignment == 0, f"set padded to {alignment} bytes"
        body = message[offset + 4:offset + set_length]
        if set_id == template_set_id:
            position = 0
            while len(body) - position >= 4:
                template_id, count = struct.unpack_from("!HH", body, position)
                fields = [struct.unpack_from("!HH", body, position + 4 + 4 * i) for i in range(count)]
                assert all(not (element & 0x8000) for element, _ in fields), "no enterprise elements"
                templates[template_id] = fields
                template_records += 1
                position += 4 + 4 * count
            padding = body[position:]
        else:
            assert set_id >= 256, f"data set id {set_id}"
            fields = templates[set_id]  # a data set before its template is an error
            size = sum(length for _, length in fields)
            whole = len(body) // size * size
            for start in range(0, whole, size):
                values, position = {}, start
                for element, field_length in fields:
                    values[element] = body[position:position + field_length]
                    position += field_length
                records.append((set_id, values))
            padding = body[whole:]
        assert len(padding) < alignment and not any(padding), "padding: fewer bytes than the alignment, zeros"
        offset += set_length
    return records, template_records


def number(raw):
    return int.from_bytes(raw, "big")
