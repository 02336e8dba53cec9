"""The benchmark's targets, options and report on runs built by hand; no database."""

from __future__ import annotations

import pytest

from benchmarks import check, report
from benchmarks.__main__ import parse_args
from benchmarks.results import COPY, RunResult, Sample, SizeResult

M = 1_000_000


def size_of(
    schema: str, rows: int, measured: dict[str, tuple[float, float, float | None, float]]
) -> SizeResult:
    """A size with three runs per path: (seconds, attributed CPU s, peak RSS, machine CPU s)."""
    size = SizeResult(rows, f"bench_{schema}_{rows}", True, 0.0, schema=schema)
    for path, (seconds, attributed, rss, machine) in measured.items():
        for k in (0.95, 1.0, 1.05):
            sample = Sample(path, rows, rows * 200, seconds * k, 20.0, rss)
            sample.cpu_database_s = attributed * k * 0.8
            sample.cpu_service_s = None if path == COPY else attributed * k * 0.2
            if path == COPY:
                sample.cpu_database_s = attributed * k
            sample.cpu_machine_s = machine * k
            if schema == "hostile":
                sample.health_max_ms = 1000.0 * seconds * k
            size.samples.append(sample)
    size.summarize()
    return size


def a_run() -> RunResult:
    run = RunResult("20260101T000000Z", {"repeat": 3}, {"nproc": 2})
    run.sizes = [
        size_of(
            "sample",
            M,
            {
                COPY: (5.0, 8.0, None, 9.0),
                "csv": (6.25, 11.2, 80.0, 14.0),  # 0.8x COPY, 1.4x its CPU
                "jsonl": (10.0, 13.6, 90.0, 16.0),  # 0.5x, 1.7x
                "xlsx": (11.0, 19.2, 95.0, 22.0),
                "parquet": (8.0, 12.0, 140.0, 15.0),
            },
        ),
        size_of("heavy", M, {COPY: (10.0, 12.0, None, 13.0), "csv": (20.0, 30.0, 85.0, 33.0)}),
        size_of(
            "hostile",
            22_021,
            {
                "csv": (3.0, 2.0, 700.0, 3.0),
                "jsonl": (1.0, 1.0, 90.0, 1.0),
                "parquet": (1.0, 1.0, 120.0, 1.0),
            },
        ),
    ]
    return run


def results(run: RunResult) -> dict[str, tuple[str, float | None]]:
    return {t.name: (t.status, t.measured) for t in check.evaluate(run, check.load_targets())}


def test_every_target_in_the_file_is_measured_and_the_cpu_ratios_use_attributed_cpu() -> None:
    got = results(a_run())
    assert got["csv_rows_per_s_vs_copy"] == ("PASS", pytest.approx(0.8))
    assert got["jsonl_rows_per_s_vs_copy"] == ("MISS", pytest.approx(0.5))
    assert got["csv_cpu_vs_copy"] == ("PASS", pytest.approx(1.4))
    assert got["jsonl_cpu_vs_copy"] == ("MISS", pytest.approx(1.7))
    assert got["xlsx_cpu_vs_copy"] == ("PASS", pytest.approx(2.4))
    assert got["parquet_cpu_vs_copy"] == ("PASS", pytest.approx(1.5))
    # The heavy schema's CSV against the heavy COPY, not the sample's.
    assert got["heavy_csv_rows_per_s_vs_copy"] == ("MISS", pytest.approx(0.5))
    assert got["peak_rss_mb_max"] == ("PASS", pytest.approx(95.0))
    assert got["parquet_peak_rss_mb_max"] == ("PASS", pytest.approx(140.0))
    assert got["hostile_peak_rss_mb_max"] == ("MISS", pytest.approx(700.0))
    assert got["hostile_parquet_peak_rss_mb_max"] == ("PASS", pytest.approx(120.0))
    assert got["hostile_healthz_ms_max"] == ("MISS", pytest.approx(3000.0))
    # Not measured here: skipped, not passed.
    assert got["keyset_last_vs_first"] == ("SKIP", None)
    assert got["rss_growth_mb"] == ("SKIP", None)


def test_the_machine_wide_ratio_is_shown_beside_the_attributed_one() -> None:
    [csv] = [
        t for t in check.evaluate(a_run(), check.load_targets()) if t.name == "csv_cpu_vs_copy"
    ]
    assert csv.note == "sample, 1,000,000 rows; machine-wide 1.56"


def test_failed_downloads_count_where_they_happened() -> None:
    run = a_run()
    run.sizes[2].samples[0].error = "HTTP 500"
    run.sizes[2].summarize()
    got = results(run)
    assert got["download_errors"] == ("PASS", 0.0)
    assert got["hostile_download_errors"] == ("MISS", 1.0)


def test_the_report_has_a_table_per_schema_with_cpu_and_reads_back() -> None:
    run = a_run()
    run.steps = [("sample 1,000,000: COPY and csv", 100.0), ("concurrency", 50.0)]
    text = report.text_report(run)
    assert "Heavy schema" in text and "Hostile dataset" in text
    assert "all steps: 150.0 s (2.5 min)" in text
    assert "during the hostile exports (median of runs): csv 3,000 ms, jsonl 1,000 ms" in text
    back = report.run_from_markdown(report.markdown_report(run))
    # The first table is the sample schema's; its CPU columns read back.
    assert [s.rows for s in back.sizes] == [M]
    csv = back.sizes[0].summaries["csv"]
    assert (csv.cpu_per_m, csv.cpu_vs_copy, csv.machine_cpu_per_m) == (11.2, 1.4, 14.0)


def test_check_defaults_to_50k_and_1m_and_schemas_are_checked() -> None:
    assert parse_args(["--check"]).rows == [50_000, 1_000_000]
    assert parse_args([]).rows == [50_000, 200_000, 1_000_000]
    assert parse_args(["--check", "--rows", "200000"]).rows == [200_000]
    assert parse_args([]).schema == ["sample", "heavy"]
    assert parse_args(["--schema", "heavy"]).schema == ["heavy"]
    with pytest.raises(SystemExit):
        parse_args(["--schema", "nope"])
    quick = parse_args(["--quick"])
    assert (quick.rows, quick.repeat, quick.hostile_rows) == ([20_000], 1, 20_000)
