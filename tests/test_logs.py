"""Logs: one JSON object per line for programs, text for people."""
import io
import json
import logging

from flowcollect.agent import logs


def test_json_lines_with_structured_fields_when_not_interactive():
    stream = io.StringIO()
    logs.setup("info", stream=stream, interactive=False)
    logging.getLogger("flowcollect.test").warning("worker %d died", 3, extra=logs.fields(lost=12))
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "warning" and entry["message"] == "worker 3 died" and entry["lost"] == 12
    assert entry["time"].endswith("Z") and entry["logger"] == "flowcollect.test"


def test_text_for_a_person_and_the_level_applies():
    stream = io.StringIO()
    logs.setup("warning", stream=stream, interactive=True)
    log = logging.getLogger("flowcollect.test")
    log.info("not shown")
    log.error("shown")
    text = stream.getvalue()
    assert "not shown" not in text and "ERROR flowcollect.test: shown" in text
