"""--check: the run's figures against benchmarks/targets.toml."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.references import plan_facts
from benchmarks.results import SERVICE_PATHS, RunResult, SizeResult, TargetResult

TARGETS_PATH = Path(__file__).with_name("targets.toml")
BASE_ROWS = 50_000

Measured = tuple[float | None, str]


def load_targets(path: Path = TARGETS_PATH) -> dict[str, dict[str, Any]]:
    with open(path, "rb") as f:
        targets = tomllib.load(f)
    for name, target in targets.items():
        if not isinstance(target, dict) or ("min" in target) == ("max" in target):
            raise ValueError(f"{path}: target {name} needs exactly one of min and max")
    return targets


def _largest(run: RunResult, schema: str = "sample") -> SizeResult | None:
    return max(run.of_schema(schema), key=lambda s: s.rows, default=None)


def _base(run: RunResult) -> SizeResult | None:
    return run.size(BASE_ROWS) or min(run.of_schema("sample"), key=lambda s: s.rows, default=None)


def _vs_copy(path: str, schema: str = "sample") -> Callable[[RunResult], Measured]:
    def measure(run: RunResult) -> Measured:
        size = _largest(run, schema)
        summary = size.summaries.get(path) if size else None
        if size is None or summary is None or summary.vs_copy is None:
            return None, f"{path} or COPY not measured ({schema})"
        return summary.vs_copy, f"{schema}, {size.rows:,} rows"

    return measure


def _cpu_vs_copy(path: str, schema: str = "sample") -> Callable[[RunResult], Measured]:
    """Attributed CPU per row ÷ COPY's; the machine-wide ratio is given in the note."""

    def measure(run: RunResult) -> Measured:
        size = _largest(run, schema)
        summary = size.summaries.get(path) if size else None
        if size is None or summary is None or summary.cpu_vs_copy is None:
            return None, f"{path} or COPY CPU not measured ({schema})"
        machine = summary.machine_cpu_vs_copy
        return summary.cpu_vs_copy, (
            f"{schema}, {size.rows:,} rows; machine-wide "
            f"{'-' if machine is None else f'{machine:.2f}'}"
        )

    return measure


def _xlsx_vs_openpyxl(run: RunResult) -> Measured:
    size = _largest(run)
    xlsx = size.summaries.get("xlsx") if size else None
    ran = [s for s in run.sizes if s.openpyxl is not None]
    if size is None or xlsx is None or xlsx.rows_per_s is None or not ran:
        return None, "xlsx or openpyxl not measured"
    ref = max(ran, key=lambda s: s.rows)
    assert ref.openpyxl is not None
    return (
        xlsx.rows_per_s / ref.openpyxl.rows_per_s,
        f"xlsx at {size.rows:,} rows, openpyxl at {ref.rows:,}",
    )


def _ttfb_max(run: RunResult) -> Measured:
    found = [
        (s.summaries[p].ttfb_ms, p, s.rows)
        for s in run.of_schema("sample")
        for p in SERVICE_PATHS
        if p in s.summaries and s.summaries[p].ttfb_ms is not None
    ]
    if not found:
        return None, "no format measured"
    value, path, rows = max(found, key=lambda t: t[0] or 0.0)
    return value, f"{path} at {rows:,} rows"


def _rss_max(paths: tuple[str, ...], schema: str = "sample") -> Callable[[RunResult], Measured]:
    def measure(run: RunResult) -> Measured:
        size = _largest(run, schema)
        found = [
            (size.summaries[p].peak_rss_mb, p)
            for p in paths
            if size and p in size.summaries and size.summaries[p].peak_rss_mb is not None
        ]
        if size is None or not found:
            return None, "no format measured"
        value, path = max(found, key=lambda t: t[0] or 0.0)
        return value, f"{path}, {schema}, {size.rows:,} rows"

    return measure


def _rss_growth(run: RunResult) -> Measured:
    big, base = _largest(run), _base(run)
    if big is None or base is None or big.rows == base.rows:
        return None, "needs two sizes"
    found: list[tuple[float, str]] = []
    for p in SERVICE_PATHS:
        a, b = base.summaries.get(p), big.summaries.get(p)
        if a and b and a.peak_rss_mb is not None and b.peak_rss_mb is not None:
            found.append((b.peak_rss_mb - a.peak_rss_mb, p))
    if not found:
        return None, "no format measured at both sizes"
    value, path = max(found)
    return value, f"{path}, {base.rows:,} → {big.rows:,} rows"


def _keyset_ratio(run: RunResult) -> Measured:
    if run.keyset is None:
        return None, "not measured"
    return run.keyset.ratio, f"{run.keyset.rows:,} rows"


def _keyset_sort(run: RunResult) -> Measured:
    if run.keyset is None:
        return None, "not measured"
    sorts, _ = plan_facts(run.keyset)
    return (None, "no plan shows learners") if sorts is None else (float(sorts), "")


def _keyset_index(run: RunResult) -> Measured:
    if run.keyset is None:
        return None, "not measured"
    _, used = plan_facts(run.keyset)
    return (None, "no plan shows learners") if used is None else (float(used), "")


def _concurrency_ratio(run: RunResult) -> Measured:
    c = run.concurrency
    if c is None or c.ratio is None:
        return None, "not measured"
    return c.ratio, f"{c.downloads} downloads of {c.dataset_rows:,} rows"


def _concurrency_errors(run: RunResult) -> Measured:
    c = run.concurrency
    return (None, "not measured") if c is None else (float(c.parallel.errors), "")


def _download_errors(schemas: tuple[str, ...]) -> Callable[[RunResult], Measured]:
    def measure(run: RunResult) -> Measured:
        sizes = [s for s in run.sizes if s.schema in schemas]
        if not sizes:
            return None, "not measured"
        failed = [x for s in sizes for x in s.samples if x.error is not None]
        where = sorted({f"{x.path} ({s.schema})" for s in sizes for x in s.samples if x.error})
        return float(len(failed)), ", ".join(where)

    return measure


NOT_PARQUET = tuple(p for p in SERVICE_PATHS if p != "parquet")


def _health_max(run: RunResult) -> Measured:
    size = _largest(run, "hostile")
    found = [
        (summary.health_max_ms, path)
        for path, summary in (size.summaries.items() if size else [])
        if summary.health_max_ms is not None
    ]
    if size is None or not found:
        return None, "not measured"
    value, path = max(found, key=lambda t: t[0] or 0.0)
    return value, f"during {path}, hostile"


MEASURES: dict[str, Callable[[RunResult], Measured]] = {
    "csv_rows_per_s_vs_copy": _vs_copy("csv"),
    "jsonl_rows_per_s_vs_copy": _vs_copy("jsonl"),
    "xlsx_rows_per_s_vs_copy": _vs_copy("xlsx"),
    "parquet_rows_per_s_vs_copy": _vs_copy("parquet"),
    "heavy_csv_rows_per_s_vs_copy": _vs_copy("csv", "heavy"),
    "csv_cpu_vs_copy": _cpu_vs_copy("csv"),
    "jsonl_cpu_vs_copy": _cpu_vs_copy("jsonl"),
    "xlsx_cpu_vs_copy": _cpu_vs_copy("xlsx"),
    "parquet_cpu_vs_copy": _cpu_vs_copy("parquet"),
    "heavy_csv_cpu_vs_copy": _cpu_vs_copy("csv", "heavy"),
    "xlsx_vs_openpyxl": _xlsx_vs_openpyxl,
    "ttfb_ms_max": _ttfb_max,
    "peak_rss_mb_max": _rss_max(NOT_PARQUET),
    "parquet_peak_rss_mb_max": _rss_max(("parquet",)),
    "hostile_peak_rss_mb_max": _rss_max(NOT_PARQUET, "hostile"),
    "hostile_parquet_peak_rss_mb_max": _rss_max(("parquet",), "hostile"),
    "hostile_healthz_ms_max": _health_max,
    "rss_growth_mb": _rss_growth,
    "keyset_last_vs_first": _keyset_ratio,
    "keyset_sort_on_learners": _keyset_sort,
    "keyset_index_used": _keyset_index,
    "concurrency_vs_sequential": _concurrency_ratio,
    "concurrency_errors": _concurrency_errors,
    "download_errors": _download_errors(("sample", "heavy")),
    "hostile_download_errors": _download_errors(("hostile",)),
}


def evaluate(run: RunResult, targets: dict[str, dict[str, Any]]) -> list[TargetResult]:
    results: list[TargetResult] = []
    for name, target in targets.items():
        if name not in MEASURES:
            raise ValueError(f"{TARGETS_PATH.name}: no measurement is named {name!r}")
        bound = "min" if "min" in target else "max"
        limit = float(target[bound])
        value, note = MEASURES[name](run)
        if value is None:
            status = "SKIP"
        elif (value >= limit) if bound == "min" else (value <= limit):
            status = "PASS"
        else:
            status = "MISS"
        results.append(
            TargetResult(name, str(target.get("what", "")), bound, limit, value, status, note)
        )
    return results
