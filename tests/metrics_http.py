"""HTTP requests to the agent's metrics endpoint, from inside a test namespace or from this one."""
import contextlib
import http.client

from prometheus_client.parser import text_string_to_metric_families


def request(address, path, method="GET", ns=None, headers=None):
    """(status, {header: value}, body) of one request to HOST:PORT; in `ns` (a socket stays in the
    namespace it was made in) when given."""
    host, port = address.rsplit(":", 1)
    with ns.entered() if ns is not None else contextlib.nullcontext():
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def samples(text):
    """{(sample name, frozenset(labels)): value} of an exposition text."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
