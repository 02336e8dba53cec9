"""python -m benchmarks: the service's exports against COPY, a naive endpoint and openpyxl.

Every export runs on a fresh server process, so that its peak RSS is its own; the database is
DATABASE_URL's server (a database per schema and dataset size, reused between runs) or an
embedded PostgreSQL started for the run. Schemas: sample (the service's sample adapter) and
heavy (benchmarks/schemas/heavy.sql, a wide profiles table with three per-learner aggregates
and auth.users); each is compared with COPY of its own set-based reference query. A hostile
dataset (cells of 10,000 quotes, 1-5 MB) measures each format's peak RSS. CPU per million rows
is metered for every transfer: the machine's and the run's own processes' (benchmarks/cpu.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg

from benchmarks import check, cpu, datasets, measure, references, report, servers
from benchmarks.results import (
    NAIVE,
    SERVICE_PATHS,
    ConcurrencyResult,
    RunResult,
    Sample,
    SizeResult,
)
from learner_export.auth import issue_token

DEFAULT_ROWS = "50000,200000,1000000"
# --check: the targets are set at 1M; 50K gives the RSS growth its base. About 20 minutes here.
CHECK_ROWS = "50000,1000000"
QUICK_ROWS = [20_000]
HOSTILE_ROWS = 20_000
# A hostile export moves ~50 MB of text that the formats quote, escape or compress.
HOSTILE_TIMEOUT = 600.0
# The naive path holds every row and the whole CSV at once (~2.6 GB of RSS per million rows,
# ~580 MB at 200K): larger sizes only repeat what 200K shows, and took 3 minutes of a --check.
NAIVE_MAX_ROWS = 200_000
# openpyxl writes ~11K rows/s; larger sizes would only repeat what 200K shows, slowly.
OPENPYXL_MAX_ROWS = 200_000
# Rows per parallel download (limit=), whatever the dataset: 16 x 50K rows, twice, is about a
# minute here, where 16 x 1M rows did not fit a 30-minute run.
CONCURRENCY_ROWS = 50_000


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(v.replace("_", "")) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def _formats(text: str) -> list[str]:
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in SERVICE_PATHS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"formats are {', '.join(SERVICE_PATHS)}")
    return list(dict.fromkeys(names))


def _schemas(text: str) -> list[str]:
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    if not names or any(n not in datasets.SCHEMAS for n in names):
        raise argparse.ArgumentTypeError(f"schemas are {', '.join(datasets.SCHEMAS)}")
    return list(dict.fromkeys(names))


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("EXPORT_"):
        raise argparse.ArgumentTypeError("expected EXPORT_<SETTING>=<value>")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rows",
        type=_sizes,
        default=None,
        help=f"dataset sizes, comma-separated (default {DEFAULT_ROWS}; with --check {CHECK_ROWS})",
    )
    parser.add_argument(
        "--schema",
        type=_schemas,
        default=list(datasets.SCHEMAS),
        help="schemas to measure: sample (every size) and heavy (the largest size);"
        f" default {','.join(datasets.SCHEMAS)}",
    )
    parser.add_argument(
        "--heavy-formats",
        type=_formats,
        default=["csv"],
        help="service formats to measure on the heavy schema (default csv)",
    )
    parser.add_argument(
        "--hostile-rows",
        type=int,
        default=HOSTILE_ROWS,
        help=f"ordinary learners of the hostile dataset (default {HOSTILE_ROWS:,}; 2,021 hostile"
        " ones are mixed in); 0 skips it",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per path and size; medians are reported (default 3)",
    )
    parser.add_argument(
        "--formats",
        type=_formats,
        default=list(SERVICE_PATHS),
        help=f"service formats to measure (default {','.join(SERVICE_PATHS)})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help=f"parallel downloads of {CONCURRENCY_ROWS:,} rows each (default 16)",
    )
    parser.add_argument(
        "--concurrency-rows",
        type=int,
        default=CONCURRENCY_ROWS,
        help=f"rows per download of the concurrency step (default {CONCURRENCY_ROWS:,})",
    )
    parser.add_argument("--skip-naive", action="store_true", help="do not run the naive endpoint")
    parser.add_argument(
        "--skip-concurrency", action="store_true", help="do not run the concurrency comparison"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with benchmarks/targets.toml; exit 1 if one is missed",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: --rows 20000 --repeat 1 (overrides both)"
    )
    parser.add_argument(
        "--server-env",
        type=_setting,
        action="append",
        default=[],
        metavar="EXPORT_X=V",
        help="a setting for the service under test (repeatable), e.g. EXPORT_POOL_MAX_SIZE=20",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.rows is None:
        args.rows = _sizes(CHECK_ROWS if args.check else DEFAULT_ROWS)
    if args.quick:
        args.rows, args.repeat = QUICK_ROWS, 1
        args.hostile_rows = min(args.hostile_rows, QUICK_ROWS[0])
    if args.repeat < 1 or args.concurrency < 1 or args.concurrency_rows < 1:
        build_parser().error("--repeat, --concurrency and --concurrency-rows must be at least 1")
    if args.hostile_rows < 0:
        build_parser().error("--hostile-rows must be 0 or more")
    return args


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _describe(s: Sample) -> str:
    if s.error is not None:
        return f"FAILED after {s.seconds:.2f} s: {s.error}"
    ttfb = "-" if s.ttfb_ms is None else f"{s.ttfb_ms:.1f}"
    rss = "" if s.peak_rss_mb is None else f", peak RSS {s.peak_rss_mb:.1f} MB"
    if s.health_max_ms is not None:
        rss += f", slowest /healthz {s.health_max_ms:,.0f} ms"
    usage = cpu.CpuUsage(s.cpu_machine_s or 0.0, s.cpu_service_s, s.cpu_database_s)
    usage.unresolved_exits = s.cpu_unresolved_exits
    return (
        f"{s.seconds:.3f} s, {s.rows_per_s:,.0f} rows/s, {s.mb_per_s:.1f} MB/s, TTFB {ttfb} ms{rss}"
        f"; {cpu.describe(usage, s.rows)}"
    )


async def _postgres_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT version()"))
    finally:
        await conn.close()


@dataclass
class Bench:
    """One run: the options, a folder for server logs, the database server, what was measured."""

    args: argparse.Namespace
    logs: Path
    server_url: str
    run: RunResult
    prepared: dict[tuple[str, int], datasets.Dataset] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A step of the run, its wall time printed and kept (also when it fails)."""
        _log(f"--- {name}")
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            self.run.steps.append((name, seconds))
            _log(f"--- {name}: {seconds:.1f} s")

    def service_env(self, dataset: datasets.Dataset, secret: str) -> dict[str, str]:
        # The suite downloads as one caller: let it run as many exports as it measures at once.
        limits = {
            "EXPORT_MAX_CONCURRENT": str(max(16, self.args.concurrency)),
            "EXPORT_MAX_CONCURRENT_PER_USER": str(max(16, self.args.concurrency)),
            "EXPORT_POOL_MAX_SIZE": str(max(24, self.args.concurrency + 8)),
        }
        return servers.server_env(
            {
                "DATABASE_URL": dataset.url,
                "EXPORT_JWT_SECRET": secret,
                **limits,
                **dict(self.args.server_env),
            }
        )

    def export_once(
        self,
        dataset: datasets.Dataset,
        path: str,
        timeout: float | None = None,
        health: bool = False,
    ) -> Sample:
        """One export from a fresh server, with that server's peak RSS and the CPU it took."""
        header = dataset.reference.csv_header
        if path == NAIVE:
            env = servers.server_env({"DATABASE_URL": dataset.url})
            with servers.running("naive", servers.naive_command, env, self.logs) as server:
                with cpu.metered(dataset.name, dataset.postmaster, server.process.pid) as meter:
                    sample = measure.run_download(
                        server.url, path, None, dataset.rows, csv_header=header, timeout=timeout
                    )
                measure.record_cpu(sample, meter.usage())
                sample.peak_rss_mb = server.peak_rss_mb()
            return sample
        secret = secrets.token_urlsafe(36)  # 48 characters
        with servers.running(
            "service", servers.service_command, self.service_env(dataset, secret), self.logs
        ) as server:
            token = issue_token(secret, dataset.admin_id)
            cold = measure.run_warm_up(server.url, [path], token)
            with cpu.metered(dataset.name, dataset.postmaster, server.process.pid) as meter:
                sample = measure.run_download(
                    server.url,
                    path,
                    token,
                    dataset.rows,
                    csv_header=header,
                    timeout=timeout,
                    health=health,
                )
            measure.record_cpu(sample, meter.usage())
            sample.peak_rss_mb = server.peak_rss_mb()
            sample.cold_ttfb_ms = cold
            if sample.error is not None:
                _log(server.log_tail())
        return sample

    def prepare(self, rows: int, kind: datasets.Kind) -> datasets.Dataset:
        with self.step(f"{kind.name} {rows:,}: dataset"):
            dataset = asyncio.run(
                asyncio.wait_for(
                    datasets.prepare(self.server_url, rows, kind),
                    datasets.prepare_timeout(rows, kind.name),
                )
            )
        self.prepared[(kind.name, rows)] = dataset
        how = "reused" if dataset.reused else "seeded"
        checked = (
            ""
            if dataset.verify_seconds is None
            else f"; reference checked against the adapter in {dataset.verify_seconds:.1f} s"
        )
        _log(f"{dataset.name}: {how} in {dataset.prepare_seconds:.1f} s{checked}")
        if dataset.postmaster is None:
            self.run.notes.append(
                f"{dataset.name}: PostgreSQL's processes are not visible from here; CPU is "
                "machine-wide only"
            )
        return dataset

    def measure_size(self, rows: int, kind: datasets.Kind = datasets.SAMPLE_KIND) -> SizeResult:
        dataset = self.prepare(rows, kind)
        size = SizeResult(
            dataset.rows, dataset.name, dataset.reused, dataset.prepare_seconds, schema=kind.name
        )
        self.run.sizes.append(size)
        repeat = self.args.repeat
        formats: list[str] = (
            self.args.heavy_formats if kind is datasets.HEAVY_KIND else self.args.formats
        )

        def record(sample: Sample, run: int) -> None:
            size.samples.append(sample)
            _log(
                f"{kind.name:>7} {rows:>10,}  {sample.path:<6} {run}/{repeat}: {_describe(sample)}"
            )

        with self.step(f"{kind.name} {rows:,}: COPY and {', '.join(formats)}"):
            for i in range(1, repeat + 1):
                record(
                    references.run_copy(
                        dataset.url,
                        dataset.rows,
                        measure.download_timeout(rows),
                        dataset.reference,
                        dataset.name,
                        dataset.postmaster,
                    ),
                    i,
                )
            # Runs of each format take turns, so that a slow moment of the machine is spread out.
            for i in range(1, repeat + 1):
                for path in formats:
                    record(self.export_once(dataset, path), i)
        if kind is not datasets.SAMPLE_KIND:
            return size
        if self.args.skip_naive:
            size.notes.append(f"{rows:,} rows: naive skipped (--skip-naive)")
        elif rows > NAIVE_MAX_ROWS:
            size.notes.append(
                f"{rows:,} rows: naive skipped above {NAIVE_MAX_ROWS:,} rows "
                "(it needs ~2.6 GB per million rows); see the largest size it ran"
            )
        else:
            with self.step(f"sample {rows:,}: naive"):
                for i in range(1, repeat + 1):
                    record(self.export_once(dataset, NAIVE), i)
        if rows <= OPENPYXL_MAX_ROWS:
            with self.step(f"sample {rows:,}: openpyxl"):
                size.openpyxl = references.run_openpyxl(dataset.url)
            o = size.openpyxl
            _log(
                f"{rows:>10,}  openpyxl: {o.seconds:.2f} s, {o.rows_per_s:,.0f} rows/s"
                f"{'' if o.lxml else ' (without lxml)'}"
            )
        else:
            size.notes.append(
                f"{rows:,} rows: openpyxl not run above {OPENPYXL_MAX_ROWS:,} "
                "rows (it is slow); see the largest size it ran"
            )
        return size

    def measure_hostile(self) -> None:
        """Every format on the hostile dataset: whether it completes, and its peak RSS."""
        rows = self.args.hostile_rows
        kind = datasets.HOSTILE_KIND
        dataset = self.prepare(rows, kind)
        size = SizeResult(
            dataset.rows, dataset.name, dataset.reused, dataset.prepare_seconds, schema=kind.name
        )
        self.run.sizes.append(size)
        repeat = self.args.repeat
        with self.step(f"hostile {dataset.rows:,}: {', '.join(self.args.formats)}"):
            for i in range(1, repeat + 1):
                for path in self.args.formats:
                    sample = self.export_once(dataset, path, HOSTILE_TIMEOUT, health=True)
                    size.samples.append(sample)
                    _log(
                        f"hostile {dataset.rows:>10,}  {path:<6} {i}/{repeat}: {_describe(sample)}"
                    )

    def measure_keyset(self) -> None:
        rows = max(r for k, r in self.prepared if k == "sample")
        _log(f"{rows:>10,}  keyset pages: first and last, and their plans...")
        try:
            dataset = self.prepared[("sample", rows)]
            with self.step(f"sample {rows:,}: keyset pages"):
                self.run.keyset = references.run_keyset(dataset.url, dataset.admin_id)
        except (RuntimeError, TimeoutError) as exc:
            self.run.notes.append(f"keyset pages not measured: {exc}")

    def measure_concurrency(self) -> None:
        source = max(r for k, r in self.prepared if k == "sample")
        dataset = self.prepared[("sample", source)]
        rows = min(self.args.concurrency_rows, dataset.rows)
        formats: list[str] = self.args.formats
        paths = [formats[i % len(formats)] for i in range(self.args.concurrency)]
        batches = []
        for parallel in (True, False):
            mode = "parallel" if parallel else "sequential"
            _log(f"{rows:>10,}  concurrency: {len(paths)} downloads, {mode}...")
            secret = secrets.token_urlsafe(36)
            with (
                self.step(f"concurrency: {len(paths)} x {rows:,} rows, {mode}"),
                servers.running(
                    "service", servers.service_command, self.service_env(dataset, secret), self.logs
                ) as server,
            ):
                token = issue_token(secret, dataset.admin_id)
                measure.run_warm_up(server.url, formats, token)
                samples, wall = measure.run_batch(server.url, paths, token, rows, parallel)
                batch = measure.batch_result(mode, samples, wall, server.peak_rss_mb())
            for s in samples:
                if s.error is not None:
                    _log(f"  {s.path}: {s.error}")
            _log(f"  {wall:.2f} s, {batch.rows_per_s:,.0f} rows/s, {batch.errors} errors")
            batches.append(batch)
        parallel_batch, sequential_batch = batches
        ratio = (
            parallel_batch.rows_per_s / sequential_batch.rows_per_s
            if sequential_batch.rows_per_s
            else None
        )
        self.run.concurrency = ConcurrencyResult(
            rows, len(paths), formats, parallel_batch, sequential_batch, ratio, source
        )

    def measure_all(self) -> None:
        schemas: list[str] = self.args.schema
        if "sample" in schemas:
            for rows in self.args.rows:
                self.measure_size(rows)
        if "heavy" in schemas:
            self.measure_size(max(self.args.rows), datasets.HEAVY_KIND)
        if self.args.hostile_rows:
            self.measure_hostile()
        if "sample" not in schemas:
            self.run.notes.append("keyset pages and concurrency are measured on the sample schema")
            return
        self.measure_keyset()
        if self.args.skip_concurrency:
            self.run.notes.append("concurrency skipped (--skip-concurrency)")
        else:
            self.measure_concurrency()


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options = {k: v for k, v in vars(args).items() if k != "server_env"}
    options["server_env"] = {
        k: "***" if "SECRET" in k or "PASSWORD" in k else v for k, v in args.server_env
    }
    return options


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into an exception, so that every server is stopped on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    targets = check.load_targets() if args.check else None
    _stop_on_sigterm()
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    status = 0
    with (
        tempfile.TemporaryDirectory(prefix="learner-export-bench-") as logs,
        datasets.database_server() as (server_url, kind),
    ):
        version = asyncio.run(_postgres_version(server_url))
        machine = report.machine_info(version, f"{kind}: {datasets.redact(server_url)}")
        run = RunResult(started_at, _options(args), machine)
        try:
            Bench(args, Path(logs), server_url, run).measure_all()
        except (Exception, KeyboardInterrupt, SystemExit) as exc:
            # Whatever was measured is still reported; the servers were stopped on the way out.
            status = report.early_stop_status(exc)
            run.notes.append(f"the run stopped early: {type(exc).__name__}: {exc}")
        finally:
            run.finished_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            run.machine["load_average_at_end"] = report.load_average()
            if report.code_fingerprint() != run.machine["code_fingerprint"]:
                run.notes.append(
                    "service/ or sql/ changed during the run: its figures may mix "
                    "two versions of the code"
                )
            for size in run.sizes:
                size.summarize()
    if targets is not None:
        run.targets = check.evaluate(run, targets)
    print(report.text_report(run))
    report.write_files(run)
    missed = [t.name for t in run.targets if t.status == "MISS"]
    if missed:
        print(f"missed targets: {', '.join(missed)}", file=sys.stderr)
    if status:
        return status
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
