"""Log formatting in-process: the fields and the traceback reach both formats."""

from __future__ import annotations

import logging
import sys

import orjson

from tallow.observability.logs import ConsoleFormatter, JsonFormatter


def _record(fields: dict[str, object] | None = None) -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("tallow.test", logging.ERROR, __file__, 1, "failed", (), exc_info)
    if fields is not None:
        record.fields = fields
    return record


def test_console_line_carries_fields_and_traceback() -> None:
    line = ConsoleFormatter().format(_record({"room": "r1"}))
    first, _, rest = line.partition("\n")
    assert first.endswith("ERROR   tallow.test: failed  room=r1")
    assert "ValueError: boom" in rest


def test_console_line_without_fields() -> None:
    assert ConsoleFormatter().format(_record()).partition("\n")[0].endswith("tallow.test: failed")


def test_json_entry_carries_fields_and_traceback() -> None:
    entry = orjson.loads(JsonFormatter("node-1").format(_record({"room": "r1"})))
    assert (entry["msg"], entry["node"], entry["room"]) == ("failed", "node-1", "r1")
    assert "ValueError: boom" in entry["exc"]
