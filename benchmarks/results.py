"""What a run measured: samples, their medians, and the run as a whole."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MB = 1_000_000  # throughput: MB/s are 10^6 bytes a second; RSS is in MiB (VmHWM / 1024)

SERVICE_PATHS = ("csv", "jsonl", "xlsx", "parquet")
COPY = "COPY"
NAIVE = "naive"
OPENPYXL = "openpyxl"


@dataclass(slots=True)
class Sample:
    """One timed transfer: an HTTP download, or a COPY read by the client."""

    path: str
    rows: int
    bytes: int
    seconds: float
    ttfb_ms: float | None
    peak_rss_mb: float | None = None
    error: str | None = None
    # TTFB of the 1-row export that warmed the fresh server up (its first request).
    cold_ttfb_ms: float | None = None
    # CPU core-seconds during the transfer (benchmarks/cpu.py): the whole machine's, the
    # service process's, and the PostgreSQL processes' serving this dataset's database.
    cpu_machine_s: float | None = None
    cpu_service_s: float | None = None
    cpu_database_s: float | None = None
    cpu_unresolved_exits: int = 0
    # The slowest /healthz answer during the download (probed on the hostile dataset).
    health_max_ms: float | None = None

    @property
    def cpu_attributed_s(self) -> float | None:
        if self.cpu_database_s is None:
            return None
        return self.cpu_database_s + (self.cpu_service_s or 0.0)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds > 0 else 0.0


def per_million(seconds: float | None, rows: int) -> float | None:
    """Core-seconds per million rows."""
    if seconds is None or rows <= 0:
        return None
    return seconds * 1_000_000 / rows


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True)
class Summary:
    """Medians over the successful samples of one path at one size."""

    path: str
    rows: int
    runs: int
    errors: int
    bytes: int | None
    seconds: float | None
    rows_per_s: float | None
    mb_per_s: float | None
    ttfb_ms: float | None
    cold_ttfb_ms: float | None
    peak_rss_mb: float | None
    vs_copy: float | None = None
    # Median core-seconds per million rows: attributed (service + its PostgreSQL processes),
    # its two parts, and the machine's; and the attributed and machine figures ÷ COPY's.
    cpu_per_m: float | None = None
    db_cpu_per_m: float | None = None
    service_cpu_per_m: float | None = None
    machine_cpu_per_m: float | None = None
    cpu_vs_copy: float | None = None
    machine_cpu_vs_copy: float | None = None
    health_max_ms: float | None = None

    @classmethod
    def of(cls, path: str, rows: int, samples: Sequence[Sample]) -> Summary:
        ok = [s for s in samples if s.error is None]
        size = median([s.bytes for s in ok])
        return cls(
            path=path,
            rows=rows,
            runs=len(samples),
            errors=len(samples) - len(ok),
            bytes=None if size is None else int(size),
            seconds=median([s.seconds for s in ok]),
            rows_per_s=median([s.rows_per_s for s in ok]),
            mb_per_s=median([s.mb_per_s for s in ok]),
            ttfb_ms=median([s.ttfb_ms for s in ok]),
            cold_ttfb_ms=median([s.cold_ttfb_ms for s in ok]),
            peak_rss_mb=median([s.peak_rss_mb for s in ok]),
            cpu_per_m=median([per_million(s.cpu_attributed_s, s.rows) for s in ok]),
            db_cpu_per_m=median([per_million(s.cpu_database_s, s.rows) for s in ok]),
            service_cpu_per_m=median([per_million(s.cpu_service_s, s.rows) for s in ok]),
            machine_cpu_per_m=median([per_million(s.cpu_machine_s, s.rows) for s in ok]),
            health_max_ms=median([s.health_max_ms for s in samples]),
        )


@dataclass(slots=True)
class OpenpyxlResult:
    rows: int
    seconds: float
    rows_per_s: float
    bytes: int
    lxml: bool


@dataclass(slots=True)
class SizeResult:
    """Everything measured on one dataset."""

    rows: int
    database: str
    reused: bool
    prepare_seconds: float
    samples: list[Sample] = field(default_factory=list)
    summaries: dict[str, Summary] = field(default_factory=dict)
    openpyxl: OpenpyxlResult | None = None
    notes: list[str] = field(default_factory=list)
    # sample, heavy (benchmarks/schemas/heavy.sql) or hostile (the sample with hostile cells).
    schema: str = "sample"

    def summarize(self) -> None:
        paths = dict.fromkeys(s.path for s in self.samples)
        self.summaries = {
            p: Summary.of(p, self.rows, [s for s in self.samples if s.path == p]) for p in paths
        }
        copy = self.summaries.get(COPY)
        for summary in self.summaries.values():
            if copy is None:
                break
            summary.vs_copy = ratio(summary.rows_per_s, copy.rows_per_s)
            summary.cpu_vs_copy = ratio(summary.cpu_per_m, copy.cpu_per_m)
            summary.machine_cpu_vs_copy = ratio(summary.machine_cpu_per_m, copy.machine_cpu_per_m)


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


@dataclass(slots=True)
class PlanSummary:
    """What an EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) plan shows, in a few facts."""

    source: str
    nodes: list[str]
    function_scan: bool
    sort_on_learners: bool
    page_sort: bool
    keyset_index_used: bool
    execution_ms: float | None
    plan: Any


@dataclass(slots=True)
class KeysetResult:
    rows: int
    page_size: int
    runs: int
    first_ms: list[float]
    last_ms: list[float]
    first_median_ms: float
    last_median_ms: float
    ratio: float
    plans: list[PlanSummary]
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class BatchResult:
    """Several downloads from one server, all at once or one after the other."""

    mode: str
    wall_seconds: float
    rows: int
    rows_per_s: float
    ttfb_p50_ms: float | None
    ttfb_p99_ms: float | None
    peak_rss_mb: float | None
    errors: int
    samples: list[Sample]


@dataclass(slots=True)
class ConcurrencyResult:
    dataset_rows: int
    downloads: int
    formats: list[str]
    parallel: BatchResult
    sequential: BatchResult
    ratio: float | None
    # The dataset the downloads read their first dataset_rows rows from (limit=).
    source_rows: int | None = None


@dataclass(slots=True)
class TargetResult:
    name: str
    what: str
    bound: str
    limit: float
    measured: float | None
    status: str
    note: str = ""


@dataclass(slots=True)
class RunResult:
    started_at: str
    options: dict[str, Any]
    machine: dict[str, Any]
    sizes: list[SizeResult] = field(default_factory=list)
    keyset: KeysetResult | None = None
    concurrency: ConcurrencyResult | None = None
    targets: list[TargetResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    finished_at: str | None = None
    # (step, wall seconds), in the order the steps ran.
    steps: list[tuple[str, float]] = field(default_factory=list)

    def size(self, rows: int, schema: str = "sample") -> SizeResult | None:
        return next((s for s in self.sizes if s.rows == rows and s.schema == schema), None)

    def of_schema(self, schema: str) -> list[SizeResult]:
        return [s for s in self.sizes if s.schema == schema]
