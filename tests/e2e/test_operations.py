"""Compression, metrics and logs: what operators and scripts rely on."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import pytest
import zstandard

from tests.conftest import JWT_SECRET, Database, LiveServer, _free_port


def raw_download(server: LiveServer, encoding: str, **params: Any) -> httpx.Response:
    with server.client() as client:
        response = client.get(
            "/v1/exports/learners", params=params, headers={"Accept-Encoding": encoding}
        )
        assert response.status_code == 200, response.text
        return response


def zstd_decode(data: bytes) -> bytes:
    if shutil.which("zstd"):  # the reference implementation, independent of our library
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_compressed_export_decodes_to_the_plain_one(
    live: LiveServer, fmt: str, encoding: str
) -> None:
    plain = raw_download(live, "identity", format=fmt).content
    with (
        live.client() as client,
        client.stream(
            "GET",
            "/v1/exports/learners",
            params={"format": fmt},
            headers={"Accept-Encoding": encoding},
        ) as response,
    ):
        assert response.headers["content-encoding"] == encoding
        assert "Accept-Encoding" in response.headers["vary"]
        packed = b"".join(response.iter_raw())
    assert len(packed) < len(plain) / 2
    decoded = gzip.decompress(packed) if encoding == "gzip" else zstd_decode(packed)
    assert decoded == plain
    # Cut short, the stream is detectably incomplete.
    cut = packed[: len(packed) // 2]
    if encoding == "gzip":
        with pytest.raises(EOFError):
            gzip.decompress(cut)
    else:
        stream = zstandard.ZstdDecompressor().decompressobj()
        stream.decompress(cut)
        assert not stream.eof


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip, deflate", "gzip"),
        ("zstd;q=0.1, gzip;q=0.9", "zstd"),
        ("*", "zstd"),
        ("zstd;q=0, gzip", "gzip"),
        ("br", None),
        ("gzip;q=0, zstd;q=0", None),
        ("identity", None),
    ],
)
def test_accept_encoding_negotiation(live: LiveServer, accept: str, chosen: str | None) -> None:
    with (
        live.client() as client,
        client.stream(
            "GET",
            "/v1/exports/learners",
            params={"limit": "5"},
            headers={"Accept-Encoding": accept},
        ) as response,
    ):
        assert response.headers.get("content-encoding") == chosen


def test_xlsx_is_never_compressed_again(live: LiveServer) -> None:
    response = raw_download(live, "zstd, gzip", format="xlsx", limit="10")
    assert "content-encoding" not in response.headers
    assert response.content[:2] == b"PK"


def metric_values(server: LiveServer) -> dict[str, float]:
    with httpx.Client(base_url=server.url) as client:
        text = client.get("/metrics").text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_move_by_the_rows_and_bytes_sent(live: LiveServer) -> None:
    before = metric_values(live)
    response = raw_download(live, "identity", format="jsonl", limit="123")
    after = metric_values(live)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('learner_export_rows_total{format="jsonl"}') == 123
    assert delta('learner_export_bytes_total{format="jsonl"}') == len(response.content)
    assert delta('learner_export_exports_total{format="jsonl",outcome="completed"}') == 1
    assert delta('learner_export_duration_seconds_count{format="jsonl"}') == 1
    assert delta('learner_export_first_byte_seconds_count{format="jsonl"}') == 1
    assert after['learner_export_exports_in_flight{format="jsonl"}'] == 0
    assert 'learner_export_pool_connections{state="max"}' in after


def test_metrics_count_disconnects(
    live: LiveServer, big_database: Database, start_server: Any
) -> None:
    big: LiveServer = start_server(big_database)
    before = metric_values(big)
    with big.client() as client, client.stream("GET", "/v1/exports/learners") as response:
        next(response.iter_raw())
    deadline = time.monotonic() + 10
    key = 'learner_export_exports_total{format="csv",outcome="client_disconnected"}'
    while metric_values(big).get(key, 0) == before.get(key, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric_values(big)[key] == before.get(key, 0) + 1


def test_logs_are_json_lines_with_request_ids_and_no_secrets(database: Database) -> None:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database.url, "EXPORT_JWT_SECRET": JWT_SECRET}
    server = subprocess.Popen(
        [sys.executable, "-m", "learner_export.cli.main", "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=True,
    )
    from learner_export.auth import issue_token

    token = issue_token(JWT_SECRET, database.admin_id)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            ok = client.get(
                "/v1/exports/learners",
                params={"format": "jsonl", "limit": "50"},
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": "trace-42"},
            )
            denied = client.get(
                "/v1/exports/learners", headers={"Authorization": f"Bearer {token}x"}
            )
        assert ok.status_code == 200 and denied.status_code == 401
        emails = re.findall(rb'"email":"([^"]+)"', ok.content)
        assert emails
    finally:
        os.killpg(server.pid, signal.SIGINT)
        _, err = server.communicate(timeout=30)
    entries = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    assert entries, err
    export = [e for e in entries if e.get("message") == "export"]
    assert export and export[0]["request_id"] == "trace-42"
    assert export[0]["rows"] == 50 and export[0]["outcome"] == "completed"
    requests = [e for e in entries if e.get("message") == "request"]
    assert {r["status"] for r in requests} >= {200, 401}
    assert token not in err and token[:40] not in err
    assert not any(e.decode() in err for e in emails)


def test_openapi_describes_every_parameter_and_error(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        spec = client.get("/openapi.json").json()
        assert "swagger" in client.get("/docs").text.lower()
    export = spec["paths"]["/v1/exports/learners"]["get"]
    names = {p["name"].lower() for p in export["parameters"]}
    assert names >= {
        "format",
        "client_id",
        "created_from",
        "created_to",
        "active",
        "columns",
        "limit",
        "tz",
        "bom",
        "escape_formulas",
        "cursor",
        "after",
        "prefer",
        "accept-encoding",
    }
    types = {p["name"]: p["schema"] for p in export["parameters"]}
    assert types["format"]["enum"] == ["csv", "jsonl", "xlsx", "parquet"]
    assert types["client_id"] == {
        "type": "array",
        "items": {"type": "string", "format": "uuid"},
        "maxItems": 1000,
    }
    assert types["limit"]["type"] == "integer" and types["active"]["type"] == "boolean"
    assert types["created_from"]["format"] == "date-time"
    assert export["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert all(p.get("description") for p in export["parameters"])
    # 500: contract_breached, the adapter returned rows that break the contract.
    assert set(export["responses"]) == {"200", "400", "401", "403", "429", "500", "503"}
    assert "`learner_id`" in next(
        p["description"] for p in export["parameters"] if p["name"] == "columns"
    )
    assert "text/csv; charset=utf-8" in export["responses"]["200"]["content"]
    error = export["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/InvalidParameterBody")
    assert "410" in spec["paths"]["/v1/exports/learners/download"]["get"]["responses"]
    assert "/v1/exports/learners/links" in spec["paths"]
