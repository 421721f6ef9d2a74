"""A small RFC 7011 reader for tests: messages back into templates and records by element id."""
import struct


def decode_messages(messages, templates=None):
    """[(header dict, [(template id, {element id: bytes})])] for each message; templates carry over."""
    templates = {} if templates is None else templates
    decoded = []
    for message in messages:
        version, length, export_time, sequence, domain = struct.unpack_from("!HHIII", message)
        assert version == 10 and length == len(message), "IPFIX header: version 10, length of the message"
        header = {"export_time": export_time, "sequence": sequence, "domain": domain, "length": length}
        records = []
        offset = 16
        while offset < length:
            set_id, set_length = struct.unpack_from("!HH", message, offset)
            assert set_length >= 4 and offset + set_length <= length, "set within the message"
            body = message[offset + 4:offset + set_length]
            if set_id == 2:
                position = 0
                while position + 4 <= len(body):
                    template_id, count = struct.unpack_from("!HH", body, position)
                    fields = [struct.unpack_from("!HH", body, position + 4 + 4 * i) for i in range(count)]
                    assert all(not (element & 0x8000) for element, _ in fields), "no enterprise elements"
                    templates[template_id] = fields
                    position += 4 + 4 * count
            else:
                assert set_id >= 256, f"data set id {set_id}"
                fields = templates[set_id]  # a data set before its template is an error
                size = sum(length for _, length in fields)
                assert len(body) % size == 0, "no padding: whole records only"
                for start in range(0, len(body), size):
                    values, position = {}, start
                    for element, field_length in fields:
                        values[element] = body[position:position + field_length]
                        position += field_length
                    records.append((set_id, values))
            offset += set_length
        decoded.append((header, records))
    return decoded


def number(raw):
    return int.from_bytes(raw, "big")
