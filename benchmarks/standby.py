"""python -m benchmarks.standby: exports from a hot standby while the primary takes writes.

An embedded primary (seeded with --rows learners) and a hot standby made from it by
pg_basebackup; the service runs as a real uvicorn process with EXPORT_READ_DATABASE_URL on the
standby (audit and roles on the primary). Three phases:

  writes alone    a few connections commit small INSERT/UPDATE transactions on learners
  export alone    whole exports from the standby through the service, one after the other
  both at once    the same exports while the same writes run on the primary

Reported: export rows/s, the primary's transactions/s, CPU seconds used by the service, the
primary and the standby, the standby's replay lag and its recovery conflicts. Always embedded
(DATABASE_URL is ignored: a standby of it cannot be made from here); every server is stopped at
the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx

from benchmarks import datasets, measure, report, servers
from learner_export.auth import issue_token
from learner_export.demo.embedded import EmbeddedPostgres

DEFAULT_ROWS = 200_000
FORMATS = ("csv", "jsonl", "xlsx")
_TICKS = os.sysconf("SC_CLK_TCK")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected name=value")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.standby",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_ROWS,
        help=f"learners in the dataset (default {DEFAULT_ROWS:,})",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="csv", help="format of the exports (default csv)"
    )
    parser.add_argument(
        "--exports", type=int, default=3, help="exports per phase, one after the other (default 3)"
    )
    parser.add_argument(
        "--writers", type=int, default=4, help="connections writing to the primary (default 4)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="length of the writes-alone phase (default 10)"
    )
    parser.add_argument(
        "--standby-setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a `-c` setting of the standby (repeatable); default "
        "hot_standby_feedback=on, as the README advises",
    )
    return parser


# --- measuring ------------------------------------------------------------------------------


def _process_cpu(pid: int) -> tuple[int, float, float]:
    """(parent pid, own CPU seconds, CPU seconds of its children that ended and were reaped)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name is in parentheses and may hold spaces: split after its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / _TICKS
    return int(fields[1]), own, (int(fields[13]) + int(fields[14])) / _TICKS


def cpu_seconds(root: int) -> float:
    """CPU seconds used so far by a process and its children (a postmaster and its backends),
    those still running and those that have ended (a postmaster reaps its backends)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent, own, ended = _process_cpu(int(entry))
            if int(entry) == root:
                total += own + ended
            elif parent == root:
                total += own
    return total


@dataclass
class Cpu:
    """CPU seconds over one phase: the service process, the primary, the standby, and this
    process (the writers and the client)."""

    service: float
    primary: float
    standby: float
    bench: float


class CpuMeter:
    def __init__(self, service: int | None, primary: int, standby: int) -> None:
        self._pids = (service, primary, standby)
        self._start = self._now()

    def _now(self) -> list[float]:
        return [
            *(0.0 if pid is None else cpu_seconds(pid) for pid in self._pids),
            time.process_time(),
        ]

    def restart(self) -> None:
        self._start = self._now()

    def read(self) -> Cpu:
        end = self._now()
        return Cpu(*(round(e - s, 2) for e, s in zip(end, self._start, strict=True)))


@dataclass
class Writers:
    """Connections committing small transactions on learners until stopped, counting commits."""

    url: str
    count: int
    ids: list[str]
    clients: list[str]
    commits: int = 0
    errors: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _conns: list[asyncpg.Connection] = field(default_factory=list)

    async def connect(self) -> None:
        self._conns = [await asyncpg.connect(self.url) for _ in range(self.count)]

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._write(conn, n)) for n, conn in enumerate(self._conns)
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def close(self) -> None:
        """Stop the writers if they still run (after a failure), and close their connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for conn in self._conns:
            try:
                await conn.close(timeout=5)
            except (asyncpg.InterfaceError, asyncpg.PostgresError, OSError, TimeoutError):
                conn.terminate()

    async def _write(self, conn: asyncpg.Connection, n: int) -> None:
        rng = random.Random(n)
        added: list[str] = []
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                # Of every 8: 6 updates of a learner's login, a new learner, and the removal of
                # one this writer added (so that the exports keep their size).
                if i % 4:
                    await conn.execute(
                        "UPDATE public.learners SET last_login_at = now(),"
                        " job_readiness_stars = $2 WHERE id = $1::uuid",
                        rng.choice(self.ids),
                        rng.randint(0, 5),
                    )
                elif i % 8 or not added:
                    added.append(
                        str(
                            await conn.fetchval(
                                "INSERT INTO public.learners (client_id, full_name, email)"
                                " VALUES ($1::uuid, $2, $3) RETURNING id",
                                rng.choice(self.clients),
                                f"Bench Writer {n}-{i}",
                                f"writer{n}.{i}@example.org",
                            )
                        )
                    )
                else:
                    await conn.execute(
                        "DELETE FROM public.learners WHERE id = $1::uuid", added.pop(0)
                    )
                self.commits += 1
            except asyncpg.PostgresError:
                self.errors += 1


@dataclass
class Export:
    seconds: float
    rows: int
    bytes: int
    ttfb_ms: float | None
    error: str | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


async def _audited_rows(primary: str, export_id: str) -> tuple[str, int]:
    """(outcome, rows_sent) of the export's audit row on the primary, once it has ended."""
    conn = await asyncpg.connect(primary)
    try:
        deadline = time.monotonic() + 10
        while True:
            row = await conn.fetchrow(
                "SELECT outcome, rows_sent FROM learner_export.export_audit WHERE id = $1::uuid",
                export_id,
            )
            if row is not None and (row["outcome"] != "started" or time.monotonic() > deadline):
                return str(row["outcome"]), int(row["rows_sent"])
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def export_once(base_url: str, token: str, fmt: str, primary: str, rows: int) -> Export:
    """One whole export, read to the end; its rows are what the audit trail recorded."""
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    started = time.perf_counter()
    first: float | None = None
    size = 0
    try:
        async with (
            asyncio.timeout(measure.download_timeout(rows)),
            httpx.AsyncClient(
                timeout=httpx.Timeout(measure.READ_TIMEOUT, connect=5.0), trust_env=False
            ) as client,
            client.stream(
                "GET", f"{base_url}{measure.EXPORT_PATH}?format={fmt}", headers=headers
            ) as response,
        ):
            if response.status_code != 200:
                await response.aread()
                return Export(
                    time.perf_counter() - started,
                    0,
                    0,
                    None,
                    f"HTTP {response.status_code}: {response.text[:200]}",
                )
            export_id = response.headers["x-export-id"]
            async for chunk in response.aiter_raw():
                if first is None:
                    first = time.perf_counter()
                size += len(chunk)
        seconds = time.perf_counter() - started
    except (httpx.HTTPError, TimeoutError) as exc:
        return Export(time.perf_counter() - started, 0, size, None, f"{type(exc).__name__}: {exc}")
    outcome, sent = await _audited_rows(primary, export_id)
    ttfb = None if first is None else (first - started) * 1000
    return Export(seconds, sent, size, ttfb, None if outcome == "completed" else outcome)


# --- the run --------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float
    commits: int = 0
    write_errors: int = 0
    exports: list[Export] = field(default_factory=list)
    cpu: Cpu | None = None
    max_lag_bytes: int | None = None
    max_replay_lag_ms: float | None = None

    @property
    def tps(self) -> float | None:
        return self.commits / self.seconds if self.commits and self.seconds > 0 else None

    @property
    def export_rows_per_s(self) -> float | None:
        """Median over the exports of the phase."""
        ok = [e.rows_per_s for e in self.exports if e.error is None]
        return statistics.median(ok) if ok else None

    def summary(self) -> dict[str, Any]:
        ok = [e for e in self.exports if e.error is None]
        return {
            "phase": self.name,
            "seconds": round(self.seconds, 2),
            "export_rows_per_s": self.export_rows_per_s,
            "export_seconds": statistics.median([e.seconds for e in ok]) if ok else None,
            "export_mb_per_s": (
                statistics.median([e.bytes / e.seconds / 1e6 for e in ok]) if ok else None
            ),
            "export_ttfb_ms": (
                statistics.median([e.ttfb_ms for e in ok if e.ttfb_ms is not None]) if ok else None
            ),
            "export_errors": len(self.exports) - len(ok),
            "write_tps": self.tps,
            "write_errors": self.write_errors,
            "cpu": asdict(self.cpu) if self.cpu else None,
            "max_lag_bytes": self.max_lag_bytes,
            "max_replay_lag_ms": self.max_replay_lag_ms,
        }


class LagSampler:
    """The standby's largest distance behind the primary while a phase runs."""

    def __init__(self, primary: asyncpg.Connection) -> None:
        self._conn = primary
        self.max_bytes = 0
        self.max_replay_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            row = await self._conn.fetchrow(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), replay_lsn)::bigint AS b,"
                " extract(epoch FROM replay_lag) * 1000 AS ms FROM pg_stat_replication"
            )
            if row is not None:
                self.max_bytes = max(self.max_bytes, int(row["b"] or 0))
                self.max_replay_ms = max(self.max_replay_ms, float(row["ms"] or 0))
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self.max_bytes, self.max_replay_ms = 0, 0.0
        self._task = asyncio.create_task(self._sample())

    async def stop(self, phase: Phase) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        phase.max_lag_bytes, phase.max_replay_lag_ms = self.max_bytes, self.max_replay_ms


async def _conflicts(standby: str) -> int:
    conn = await asyncpg.connect(standby)
    try:
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(confl_tablespace + confl_lock + confl_snapshot"
                " + confl_bufferpin + confl_deadlock), 0) FROM pg_stat_database_conflicts"
            )
        )
    finally:
        await conn.close()


@dataclass
class Setup:
    args: argparse.Namespace
    primary_url: str
    standby_url: str
    service_url: str
    token: str
    meter: CpuMeter


async def run_phases(s: Setup, phases: list[Phase]) -> int:
    """The three phases, appended to `phases` as they end (a failure keeps those done);
    returns the standby's recovery conflicts during them."""
    # SIGTERM cancels the phases, so that connections close in order on the way out (an
    # exception raised by a signal handler in the middle of asyncpg would garble them).
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await _phases(s, phases)
    except asyncio.CancelledError:
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        _stop_on_sigterm()


async def _phases(s: Setup, phases: list[Phase]) -> int:
    args = s.args
    primary = await asyncpg.connect(s.primary_url)
    try:
        ids = [
            str(r[0])
            for r in await primary.fetch(
                "SELECT id FROM public.learners ORDER BY random() LIMIT 10000"
            )
        ]
        clients = [str(r[0]) for r in await primary.fetch("SELECT id FROM public.clients")]
        writers = Writers(s.primary_url, args.writers, ids, clients)
        await writers.connect()
        lag = LagSampler(primary)
        conflicts_before = await _conflicts(s.standby_url)
        try:
            _log(f"writes alone: {args.writers} connections for {args.seconds:g} s...")
            alone = Phase("writes alone", args.seconds)
            s.meter.restart()
            lag.start()
            writers.start()
            await asyncio.sleep(args.seconds)
            await writers.stop()
            await lag.stop(alone)
            alone.cpu = s.meter.read()
            alone.commits, alone.write_errors = writers.commits, writers.errors
            phases.append(alone)

            _log(f"export alone: {args.exports} x {args.format} from the standby...")
            phases.append(await _exports("export alone", s, lag, None))

            _log(
                f"both at once: {args.exports} x {args.format} while "
                f"{args.writers} connections write..."
            )
            writers.commits = writers.errors = 0
            writers.start()
            await asyncio.sleep(1.0)  # the writers are up to speed before the first export
            phases.append(await _exports("both at once", s, lag, writers))
            await writers.stop()
        finally:
            await writers.close()
        return await _conflicts(s.standby_url) - conflicts_before
    finally:
        await primary.close()


async def _exports(name: str, s: Setup, lag: LagSampler, writers: Writers | None) -> Phase:
    phase = Phase(name, 0.0)
    s.meter.restart()
    lag.start()
    commits_before = writers.commits if writers else 0
    errors_before = writers.errors if writers else 0
    started = time.perf_counter()
    for n in range(1, s.args.exports + 1):
        export = await export_once(
            s.service_url, s.token, s.args.format, s.primary_url, s.args.rows
        )
        phase.exports.append(export)
        _log(
            f"  {n}/{s.args.exports}: "
            + (
                f"{export.rows:,} rows in {export.seconds:.2f} s, {export.rows_per_s:,.0f} rows/s"
                if export.error is None
                else f"FAILED: {export.error}"
            )
        )
    phase.seconds = time.perf_counter() - started
    await lag.stop(phase)
    phase.cpu = s.meter.read()
    if writers:
        phase.commits = writers.commits - commits_before
        phase.write_errors = writers.errors - errors_before
    return phase


# --- reporting ------------------------------------------------------------------------------

HEADERS = (
    "phase",
    "length",
    "export rows/s",
    "export s",
    "MB/s",
    "TTFB ms",
    "write tps",
    "CPU s service",
    "CPU s primary",
    "CPU s standby",
    "CPU s bench",
    "max lag KB",
    "errors",
)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(phases: Sequence[Phase]) -> list[list[str]]:
    out = []
    for p in phases:
        d = p.summary()
        cpu = p.cpu or Cpu(0, 0, 0, 0)
        lag = None if p.max_lag_bytes is None else p.max_lag_bytes / 1024
        out.append(
            [
                p.name,
                f"{p.seconds:.1f} s",
                _num(d["export_rows_per_s"]),
                _num(d["export_seconds"], 2),
                _num(d["export_mb_per_s"], 1),
                _num(d["export_ttfb_ms"], 1),
                _num(d["write_tps"]),
                f"{cpu.service:.2f}",
                f"{cpu.primary:.2f}",
                f"{cpu.standby:.2f}",
                f"{cpu.bench:.2f}",
                _num(lag),
                f"{d['export_errors'] + p.write_errors}",
            ]
        )
    return out


def findings(phases: Sequence[Phase], conflicts: int) -> list[str]:
    by = {p.name: p for p in phases}
    lines = []
    alone, both = by.get("writes alone"), by.get("both at once")
    if alone and both and alone.tps and both.tps:
        lines.append(
            f"primary write tps during the exports: {both.tps:,.0f} "
            f"({both.tps / alone.tps:.0%} of {alone.tps:,.0f} without them)"
        )
    export_alone = by.get("export alone")
    if export_alone and both and export_alone.export_rows_per_s and both.export_rows_per_s:
        share = both.export_rows_per_s / export_alone.export_rows_per_s
        lines.append(
            f"export rows/s from the standby while the primary writes: "
            f"{both.export_rows_per_s:,.0f} ({share:.0%} of "
            f"{export_alone.export_rows_per_s:,.0f} alone)"
        )
    if export_alone and export_alone.cpu:
        rows = sum(e.rows for e in export_alone.exports if e.error is None)
        if rows:
            per_m = 1e6 / rows
            c = export_alone.cpu
            lines.append(
                f"CPU per 1M rows exported (export alone): service "
                f"{c.service * per_m:.1f} s, standby {c.standby * per_m:.1f} s, "
                f"primary {c.primary * per_m:.1f} s"
            )
    lines.append(f"recovery conflicts on the standby during the run: {conflicts}")
    return lines


def markdown(run: dict[str, Any], phases: Sequence[Phase], notes: Sequence[str]) -> str:
    m = run["machine"]
    return "\n".join(
        [
            f"# learner-export standby benchmark, {run['started_at']}",
            "",
            f"{m.get('cpu_model')}, {m.get('nproc')} CPUs; Python {m.get('python')}; "
            f"{m.get('postgres')}; commit {str(m.get('git_commit'))[:12]}"
            f"{' (dirty)' if m.get('git_dirty') else ''}.",
            f"Options: {json.dumps(run['options'])}.",
            "",
            "Everything on this one machine: the primary, the standby (hot_standby, made with "
            "pg_basebackup), the service (one uvicorn process reading exports from the standby, "
            "auditing on the primary), the writers and the client. The embedded servers run with "
            "fsync=off and synchronous_commit=off, so write tps are an upper bound of what the "
            "same CPU does with durable commits. export rows/s: median of the phase's exports, "
            "seen by the client; write tps: commits/s over the phase (for 'both at once', while "
            "the exports ran); CPU s: CPU seconds over the phase (service process; postmaster and "
            "backends of each server; bench: this process, the writers and the client; 2 CPUs "
            "give at most 2 s per second of the phase); max lag: insert position minus the "
            "standby's replay position, sampled every 100 ms.",
            "",
            report._md_table(list(HEADERS), table(phases)),
            "",
            *[f"- {n}" for n in notes],
            "",
        ]
    )


def export_failures(log: Path, limit: int = 5) -> list[str]:
    """The service's distinct messages about failed exports (JSON log lines), at most `limit`."""
    messages: dict[str, None] = {}
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if (
                isinstance(entry, dict)
                and entry.get("logger") == "learner_export.exports"
                and entry.get("level") in ("warning", "error")
            ):
                # Row counts differ from one failure to the next: keep one of each kind.
                messages[re.sub(r"\d+ rows", "N rows", str(entry.get("message")))] = None
    return list(messages)[:limit]


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rows < 1 or args.exports < 1 or args.writers < 1 or args.seconds <= 0:
        build_parser().error("--rows, --exports, --writers and --seconds must be positive")
    _stop_on_sigterm()
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    standby_settings = {"hot_standby_feedback": "on", **dict(args.standby_setting)}
    phases: list[Phase] = []
    notes: list[str] = []
    status = 0
    run: dict[str, Any] = {
        "started_at": started_at,
        "options": {
            **{k: v for k, v in vars(args).items() if k != "standby_setting"},
            "standby_settings": standby_settings,
        },
    }
    _log("starting an embedded primary...")
    with (
        tempfile.TemporaryDirectory(prefix="learner-export-bench-") as logs,
        EmbeddedPostgres() as primary,
    ):  # stopping it stops its standby too
        try:
            dataset = asyncio.run(
                asyncio.wait_for(
                    datasets.prepare(primary.url, args.rows), datasets.prepare_timeout(args.rows)
                )
            )
            _log(
                f"{dataset.name}: seeded in {dataset.prepare_seconds:.1f} s; making the standby..."
            )
            # Made after seeding: copying the seeded files is quicker than replaying the seed.
            made = time.perf_counter()
            standby = primary.make_standby(**standby_settings)
            notes.append(
                f"standby made by pg_basebackup in {time.perf_counter() - made:.1f} s"
                f" with {standby_settings}"
            )
            standby_url = datasets.with_database(standby.url, dataset.name)
            version = asyncio.run(_version(standby_url))
            run["machine"] = report.machine_info(version, "embedded primary + hot standby")
            secret = secrets.token_urlsafe(36)
            env = servers.server_env(
                {
                    "DATABASE_URL": dataset.url,
                    "EXPORT_READ_DATABASE_URL": standby_url,
                    "EXPORT_JWT_SECRET": secret,
                }
            )
            with servers.running("service", servers.service_command, env, Path(logs)) as server:
                token = issue_token(secret, dataset.admin_id)
                measure.run_warm_up(server.url, [args.format], token)
                setup = Setup(
                    args,
                    dataset.url,
                    standby_url,
                    server.url,
                    token,
                    CpuMeter(server.process.pid, _pid(primary), _pid(standby)),
                )
                conflicts = asyncio.run(run_phases(setup, phases))
                notes[:0] = findings(phases, conflicts)
                notes += [f"service log: {m}" for m in export_failures(server.log_path)]
        except (Exception, KeyboardInterrupt, SystemExit) as exc:
            status = report.early_stop_status(exc)
            notes.append(f"the run stopped early: {type(exc).__name__}: {exc}")
    run.setdefault("machine", {})["load_average_at_end"] = report.load_average()
    run["phases"] = [p.summary() for p in phases]
    run["exports"] = {p.name: [asdict(e) for e in p.exports] for p in phases}
    run["notes"] = notes
    print(report._text_table(list(HEADERS), table(phases)))
    for note in notes:
        print(f"note: {note}")
    write_files(run, phases, notes)
    return status


async def _version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT version()"))
    finally:
        await conn.close()


def _pid(server: EmbeddedPostgres) -> int:
    if server.pid is None:
        raise RuntimeError("the server is not running")
    return server.pid


def write_files(
    run: dict[str, Any],
    phases: Sequence[Phase],
    notes: Sequence[str],
    directory: Path = report.RESULTS_DIR,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / f"standby-{run['started_at']}"
    base.with_suffix(".json").write_text(json.dumps(run, indent=1, default=str) + "\n")
    base.with_suffix(".md").write_text(markdown(run, phases, notes))
    _log(f"results: {base.with_suffix('.json')}\nsummary: {base.with_suffix('.md')}")


if __name__ == "__main__":
    sys.exit(main())
