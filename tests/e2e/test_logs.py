"""Logs: JSON lines when piped, readable key=value lines on a terminal or when asked, every
field kept in both, colour only on a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import httpx
import orjson

from tests.conftest import JWT_SECRET, Database, _free_port, server_process, wait_for

ANSI = re.compile(r"\x1b\[[0-9;]*m")


# A real server's stderr ----------------------------------------------------------------------


def request_lines(text: str) -> list[str]:
    """The log lines of the request sent with X-Request-Id: trace-me."""
    return [line for line in text.splitlines() if "trace-me" in line]


TRACED = {"X-Request-Id": "trace-me"}


def test_a_piped_server_logs_json(database: Database) -> None:
    with server_process(database) as server:
        httpx.get(server.url + "/healthz", headers=TRACED)
        assert wait_for(lambda: bool(request_lines(server.logs())))
        _, text = server.stop()
    assert "\x1b" not in text
    entries = [orjson.loads(line) for line in text.splitlines()]
    (request,) = [e for e in entries if e.get("request_id") == "trace-me"]
    assert request["method"] == "GET" and request["path"] == "/healthz"
    assert request["status"] == 200 and request["duration_ms"] >= 0
    assert any(e["message"].startswith("Uvicorn running on") for e in entries)


def test_log_format_text_keeps_the_fields_when_piped(database: Database) -> None:
    with server_process(database, EXPORT_LOG_FORMAT="text") as server:
        httpx.get(server.url + "/healthz", headers=TRACED)
        assert wait_for(lambda: bool(request_lines(server.logs())))
        _, text = server.stop()
    assert "\x1b" not in text
    assert not any(line.startswith("{") for line in text.splitlines())
    (line,) = request_lines(text)
    assert " INFO    learner_export.http request method=GET path=/healthz status=200 " in line
    assert re.search(r" duration_ms=[\d.]+ request_id=trace-me$", line), line


def test_a_server_on_a_terminal_logs_readable_coloured_text(database: Database) -> None:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database.url, "EXPORT_JWT_SECRET": JWT_SECRET}
    env.pop("EXPORT_LOG_FORMAT", None)
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "learner_export.cli.main", "serve", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env=env,
        )
    finally:
        os.close(slave)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the server has exited
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.TransportError:
                return False

        assert wait_for(healthy, timeout=30)
        httpx.get(f"http://127.0.0.1:{port}/healthz", headers=TRACED)
        assert wait_for(lambda: b"trace-me" in shown)
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=10)
        os.close(master)
    text = shown.decode()
    assert ANSI.search(text)
    lines = ANSI.sub("", text).splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    assert any("uvicorn.error Uvicorn running on" in line for line in lines)
    (line,) = request_lines("\n".join(lines))
    assert "learner_export.http request method=GET path=/healthz status=200" in line
