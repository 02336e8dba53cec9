"""Log lines as formatted: text and JSON keep every field, colour only when asked, and the
format follows the stream."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import orjson
import pytest

from learner_export import logs
from tests.e2e.test_logs import ANSI


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(message: str = "request", **extra: Any) -> logging.LogRecord:
    entry = logging.LogRecord("learner_export.http", logging.INFO, __file__, 1, message, (), None)
    entry.__dict__.update(extra)
    return entry


FIELDS = {
    "method": "GET",
    "path": "/v1/exports/learners",
    "status": 200,
    "duration_ms": 12.5,
    "outcome": "client went away",
    "rows": 0,
    "client_ids": ["a", "b"],
    "note": "",
    "quoted": 'say "hi"',
    "empty": None,
    "flag": True,
}


def test_text_keeps_every_field() -> None:
    token = logs.request_id.set("req-1")
    try:
        line = logs.TextFormatter().format(record(**FIELDS, color_message="\x1b[1mx\x1b[0m"))
    finally:
        logs.request_id.reset(token)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO    learner_export\.http "
        r"request .*",
        line,
    ), line
    assert line.endswith(
        ' method=GET path=/v1/exports/learners status=200 duration_ms=12.5 outcome="client went '
        'away" rows=0 client_ids=["a","b"] note="" quoted="say \\"hi\\"" empty=null flag=true '
        "request_id=req-1"
    )
    assert "\x1b" not in line  # uvicorn's coloured copy of a message is not a field


def test_text_is_coloured_only_when_asked() -> None:
    plain = logs.TextFormatter().format(record(level="x"))
    coloured = logs.TextFormatter(colour=True).format(record(level="x"))
    assert ANSI.search(coloured) and not ANSI.search(plain)
    # Same line but for the colour.
    assert ANSI.sub("", coloured)[23:] == plain[23:]


def test_json_keeps_every_field() -> None:
    entry = orjson.loads(logs.JsonFormatter().format(record(**FIELDS, color_message="x")))
    assert {k: entry[k] for k in FIELDS} == FIELDS
    assert entry["level"] == "info" and entry["message"] == "request"
    assert "color_message" not in entry


@pytest.mark.parametrize(
    ("setting", "terminal", "kind", "colour"),
    [
        ("auto", False, logs.JsonFormatter, False),
        ("auto", True, logs.TextFormatter, True),
        ("json", True, logs.JsonFormatter, False),
        ("text", False, logs.TextFormatter, False),
        ("text", True, logs.TextFormatter, True),
    ],
)
def test_the_format_follows_the_stream(
    setting: str, terminal: bool, kind: type[logging.Formatter], colour: bool
) -> None:
    stream = Terminal() if terminal else io.StringIO()
    formatter = logs.formatter_for(setting, stream)
    assert type(formatter) is kind
    assert getattr(formatter, "colour", False) is colour
