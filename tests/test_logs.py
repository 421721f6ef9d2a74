"""Logs: one JSON object per line for programs, text for people."""
import io
import json
import logging
import os

import pytest

from flowcollect.agent import logs


@pytest.fixture(autouse=True)
def root_logger_restored():
    """logs.setup() replaces the root logger's handlers: later tests get the ones they had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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


def test_journal_priority_prefixes_when_stderr_is_the_journal_stream(tmp_path, monkeypatch):
    with open(tmp_path / "journal", "w+") as stream:
        status = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        logs.setup("debug", stream=stream, interactive=False)
        log = logging.getLogger("flowcollect.test")
        for level in ("debug", "info", "warning", "error", "critical"):
            getattr(log, level)("at %s", level)
        stream.seek(0)
        lines = stream.read().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert json.loads(lines[2][3:])["message"] == "at warning"
    with open(tmp_path / "elsewhere", "w+") as other:  # stderr redirected away from the journal: no prefix
        logs.setup("info", stream=other, interactive=False)
        log.info("plain")
        other.seek(0)
        assert other.read().startswith("{")
