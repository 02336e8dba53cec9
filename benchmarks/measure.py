"""Downloads timed from the client: total seconds, first byte, bytes, and a cheap check of each.

The body is never kept: the client counts bytes (and newlines), and keeps only the first and last
few bytes to check that the file starts and ends as its format requires. A transfer cut short
(a chunked response without its last chunk) raises in httpx and is recorded as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from benchmarks import cpu
from benchmarks.queries import SAMPLE
from benchmarks.results import NAIVE, BatchResult, Sample, percentile

EXPORT_PATH = "/v1/exports/learners"
_EDGE = 256
# The longest wait for the next bytes; a whole download is bounded by download_timeout().
READ_TIMEOUT = 60.0
WARM_UP_TIMEOUT = 30.0
HEALTH_EVERY = 0.1
CSV_HEADER = SAMPLE.csv_header
ZIP_LOCAL_HEADER = b"PK\x03\x04"
ZIP_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"
PARQUET_MAGIC = b"PAR1"
# Fewer bytes per row than any of the formats can write for a seeded learner (Parquet's columns
# are compressed: ~40 bytes a learner).
MIN_BYTES_PER_ROW = {"csv": 60, "jsonl": 200, "xlsx": 20, "parquet": 10, NAIVE: 60}


@dataclass(slots=True)
class Transfer:
    status: int
    size: int
    seconds: float
    ttfb_ms: float | None
    newlines: int
    head: bytes
    tail: bytes
    content_encoding: str | None = None


def download_timeout(rows: int) -> float:
    """Generous for any path measured here (the slowest, the naive one, runs at ~65K rows/s)."""
    return 60.0 + rows / 5_000


async def fetch(url: str, token: str | None) -> Transfer:
    """GET url to the end; time from sending the request to the first body chunk and to the end."""
    # Uncompressed, as COPY's bytes are: httpx would otherwise offer gzip (and zstd, br).
    headers = {"Accept-Encoding": "identity"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # No proxy from the environment: the servers are on loopback.
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(READ_TIMEOUT, connect=5.0), trust_env=False
    ) as client:
        started = time.perf_counter()
        first: float | None = None
        size = newlines = 0
        head = tail = b""
        async with client.stream("GET", url, headers=headers) as response:
            async for chunk in response.aiter_raw():
                if not chunk:
                    continue
                if first is None:
                    first = time.perf_counter()
                if len(head) < _EDGE:
                    head += chunk[: _EDGE - len(head)]
                tail = chunk[-_EDGE:] if len(chunk) >= _EDGE else (tail + chunk)[-_EDGE:]
                size += len(chunk)
                newlines += chunk.count(b"\n")
            ended = time.perf_counter()
    ttfb = None if first is None else (first - started) * 1000
    return Transfer(
        response.status_code,
        size,
        ended - started,
        ttfb,
        newlines,
        head,
        tail,
        response.headers.get("content-encoding"),
    )


def problem(path: str, transfer: Transfer, rows: int, csv_header: bytes = CSV_HEADER) -> str | None:
    """Why this transfer is not a complete export of `rows` learners, or None."""
    if transfer.status != 200:
        return f"HTTP {transfer.status}: {transfer.head[:200].decode(errors='replace')}"
    if transfer.content_encoding not in (None, "identity"):
        return f"sent with Content-Encoding {transfer.content_encoding} though not asked for"
    if transfer.size < rows * MIN_BYTES_PER_ROW[path]:
        return f"only {transfer.size:,} bytes for {rows:,} rows"
    if path == "jsonl":
        # orjson escapes newlines inside strings: one line per learner, exactly.
        if transfer.newlines != rows:
            return f"{transfer.newlines:,} lines, expected {rows:,}"
        if not transfer.head.startswith(b'{"learner_id":'):
            return "does not start with a JSON object"
    elif path == "xlsx":
        if not transfer.head.startswith(ZIP_LOCAL_HEADER):
            return "does not start as a zip file"
        if ZIP_END_OF_CENTRAL_DIRECTORY not in transfer.tail:
            return "the zip file has no end record"
    elif path == "parquet":
        # A Parquet file starts and ends with its magic; the footer before the last one is
        # written only when every row group is.
        if not transfer.head.startswith(PARQUET_MAGIC):
            return "does not start as a Parquet file"
        if not transfer.tail.endswith(PARQUET_MAGIC):
            return "the Parquet file has no footer"
    else:
        # The client keeps the first _EDGE bytes; a wide header may be longer.
        if not transfer.head.startswith(csv_header[:_EDGE]):
            return "the CSV header is not the export's"
        if not transfer.tail.endswith(b"\r\n"):
            return "the CSV does not end with a complete line"
    return None


async def download(
    base_url: str,
    path: str,
    token: str | None,
    rows: int,
    *,
    csv_header: bytes = CSV_HEADER,
    limit: int | None = None,
    seconds: float | None = None,
    health: bool = False,
) -> Sample:
    """One export downloaded and checked (within `seconds`, by default download_timeout());
    a failure becomes the sample's error. With `health`, /healthz is probed meanwhile.

    With `limit`, the export asks for that many rows (`limit=`) and `rows` must equal it.
    """
    query = "" if path == NAIVE else f"?format={path}"
    if limit is not None:
        query += f"&limit={limit}"
    started = time.perf_counter()
    latencies: list[float] = []
    probe = asyncio.ensure_future(probe_health(base_url, latencies)) if health else None
    try:
        async with asyncio.timeout(seconds or download_timeout(rows)):
            transfer = await fetch(f"{base_url}{EXPORT_PATH}{query}", token)
    except (httpx.HTTPError, TimeoutError) as exc:
        return Sample(
            path, rows, 0, time.perf_counter() - started, None, error=f"{type(exc).__name__}: {exc}"
        )
    finally:
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
    sample = Sample(
        path,
        rows,
        transfer.size,
        transfer.seconds,
        transfer.ttfb_ms,
        error=problem(path, transfer, rows, csv_header),
    )
    if probe is not None:
        sample.health_max_ms = max(latencies, default=None)
    return sample


async def probe_health(base_url: str, latencies: list[float]) -> None:
    """GET /healthz every HEALTH_EVERY seconds until cancelled, appending each answer's time
    (ms): an export that does work on the event loop in proportion to its data delays them."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT), trust_env=False) as client:
        while True:
            started = time.perf_counter()
            # A refused or cut probe counts as slow as it took.
            with contextlib.suppress(httpx.HTTPError):
                await client.get(f"{base_url}/healthz")
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(HEALTH_EVERY)


async def warm_up(base_url: str, paths: Sequence[str], token: str) -> float | None:
    """A 1-row export per format: the measured export then does not pay for the process's first
    request (lazy imports, a new connection's catalog caches, preparing the page query).

    Returns the first one's time to first byte. Its rows add about 1 MB to the peak RSS.
    """
    cold: float | None = None
    for path in paths:
        async with asyncio.timeout(WARM_UP_TIMEOUT):
            transfer = await fetch(f"{base_url}{EXPORT_PATH}?format={path}&limit=1", token)
        if transfer.status != 200:
            raise RuntimeError(
                f"warm-up export ({path}) failed: HTTP {transfer.status}: "
                f"{transfer.head[:200].decode(errors='replace')}"
            )
        if cold is None:
            cold = transfer.ttfb_ms
    return cold


def run_warm_up(base_url: str, paths: Sequence[str], token: str) -> float | None:
    return asyncio.run(warm_up(base_url, paths, token))


async def _batch(
    base_url: str, paths: Sequence[str], token: str, rows: int, parallel: bool
) -> tuple[list[Sample], float]:
    """Each download asks for `rows` rows (limit=) of a dataset at least that large."""
    started = time.perf_counter()
    if parallel:
        samples = list(
            await asyncio.gather(*(download(base_url, p, token, rows, limit=rows) for p in paths))
        )
    else:
        samples = [await download(base_url, p, token, rows, limit=rows) for p in paths]
    return samples, time.perf_counter() - started


def batch_result(
    mode: str, samples: list[Sample], wall: float, peak_rss: float | None
) -> BatchResult:
    ok = [s for s in samples if s.error is None]
    ttfbs = [s.ttfb_ms for s in ok if s.ttfb_ms is not None]
    done = sum(s.rows for s in ok)
    return BatchResult(
        mode=mode,
        wall_seconds=wall,
        rows=done,
        rows_per_s=done / wall if wall > 0 else 0.0,
        ttfb_p50_ms=percentile(ttfbs, 50),
        ttfb_p99_ms=percentile(ttfbs, 99),
        peak_rss_mb=peak_rss,
        errors=len(samples) - len(ok),
        samples=samples,
    )


def run_batch(
    base_url: str, paths: Sequence[str], token: str, rows: int, parallel: bool
) -> tuple[list[Sample], float]:
    return asyncio.run(_batch(base_url, paths, token, rows, parallel))


def run_download(
    base_url: str,
    path: str,
    token: str | None,
    rows: int,
    *,
    csv_header: bytes = CSV_HEADER,
    timeout: float | None = None,
    health: bool = False,
) -> Sample:
    return asyncio.run(
        download(base_url, path, token, rows, csv_header=csv_header, seconds=timeout, health=health)
    )


def record_cpu(sample: Sample, usage: cpu.CpuUsage) -> None:
    sample.cpu_machine_s = usage.machine_s
    sample.cpu_service_s = usage.service_s
    sample.cpu_database_s = usage.database_s
    sample.cpu_unresolved_exits = usage.unresolved_exits
