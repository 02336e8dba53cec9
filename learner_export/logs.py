"""Logs: one JSON object per line for machines, or one key=value line for people, each carrying
the request id of the request at hand.

JSON when stderr is not a terminal (piped to a collector) or EXPORT_LOG_FORMAT=json; text when it
is a terminal or EXPORT_LOG_FORMAT=text, coloured only on a terminal. Log records never carry
tokens or learner data: only ids, counts, timings and outcomes.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# uvicorn puts an ANSI-coloured copy of some messages in `color_message`; the plain one suffices.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's own fields (the `extra` of the call) and the request id, in that order."""
    found = {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }
    rid = request_id.get()
    if rid is not None:
        found.setdefault("request_id", rid)
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


_BARE = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")
_LEVEL_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


def text_value(value: Any) -> str:
    """A field's value as it reads in a key=value line: bare when unambiguous, else JSON."""
    if isinstance(value, str) and _BARE.fullmatch(value):
        return value
    return orjson.dumps(value, default=str).decode()


class TextFormatter(logging.Formatter):
    """`2026-01-02 10:11:12.345 INFO  learner_export.http request method=GET status=200 ...`,
    every field kept; the level coloured when `colour`."""

    def __init__(self, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).astimezone()
        level = f"{record.levelname:<7}"
        if self.colour:
            level = f"\x1b[{_LEVEL_COLOURS.get(record.levelname, '0')}m{level}\x1b[0m"
        parts = [
            stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}",
            level,
            record.name,
            record.getMessage(),
        ]
        parts += [f"{key}={text_value(value)}" for key, value in fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter_for(log_format: str, stream: TextIO) -> logging.Formatter:
    """The formatter EXPORT_LOG_FORMAT (auto, json or text) asks for on this stream."""
    terminal = stream.isatty()
    if log_format == "json" or (log_format == "auto" and not terminal):
        return JsonFormatter()
    return TextFormatter(colour=terminal)


def configure(level: str = "info", log_format: str = "auto", stream: TextIO | None = None) -> None:
    """Send every log record (uvicorn's included) to stream (stderr) in the chosen format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(log_format, stream))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
