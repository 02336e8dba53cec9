"""CPU seconds of one measured transfer: the machine's, and those of the processes serving it.

Machine-wide: busy time of every core from /proc/stat between the start and the end of the
transfer (whatever runs on the machine, other people's tests included).

Attributed: the service's process (its pid, read at both ends) plus the PostgreSQL processes
serving the run's database: the client backends whose process title names that database and
the parallel workers whose title names one of those backends as their leader. Other databases'
backends, autovacuum, the checkpointer and the WAL writer are not counted, so load from others
on the same server does not pollute the figure. The postmaster's children are sampled every
SAMPLE_SECONDS from /proc; a child that exits (a parallel worker at the end of its query) takes
its last few milliseconds with it, and those are recovered from the postmaster's cutime/cstime,
which grows by a child's whole lifetime when it is reaped: when every child reaped around that
moment was one of ours, the growth is ours exactly; when another child was reaped at the same
time, the run keeps what it sampled (at most SAMPLE_SECONDS of CPU short per exit) and counts
the exit as unresolved.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.results import per_million

SAMPLE_SECONDS = 0.02
# After the transfer: time for parallel workers to exit and be reaped before the last sample.
SETTLE_SECONDS = 0.1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")

# "postgres: [cluster: ]user database host(port) activity"; a Unix socket shows "[local]".
_BACKEND = re.compile(r"(?:^|: )(\S+) (\S+) (\S+\(\d+\)|\[local\])(?: |$)")
_PARALLEL_WORKER = re.compile(r"parallel worker for PID (\d+)")


@dataclass(frozen=True, slots=True)
class ProcTimes:
    """CPU seconds of one process: its own (utime + stime) and its reaped children's."""

    ppid: int
    start_ticks: int
    cpu: float
    children: float


def parse_pid_stat(text: str) -> ProcTimes:
    """/proc/<pid>/stat; the command name in parentheses may hold spaces and parentheses."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): utime is 14, stime 15, cutime 16, cstime 17,
    # starttime 22.
    ticks = [int(v) for v in fields[11:15]]
    return ProcTimes(
        ppid=int(fields[1]),
        start_ticks=int(fields[19]),
        cpu=(ticks[0] + ticks[1]) / CLOCK_TICKS,
        children=(ticks[2] + ticks[3]) / CLOCK_TICKS,
    )


def parse_machine_busy(text: str) -> float:
    """Busy core-seconds since boot from /proc/stat's first line (idle and iowait excluded;
    guest time is already inside user)."""
    line = text.splitlines()[0].split()
    if line[0] != "cpu":
        raise ValueError("/proc/stat does not start with the cpu line")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def backend_database(title: str) -> str | None:
    """The database a client backend's process title names, else None."""
    found = _BACKEND.search(title)
    return found[2] if found else None


def parallel_leader(title: str) -> int | None:
    found = _PARALLEL_WORKER.search(title)
    return int(found[1]) if found else None


# --- the arithmetic -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Child:
    pid: int
    title: str
    cpu: float


@dataclass(frozen=True, slots=True)
class Tick:
    """One sample: the postmaster's reaped-children time and its living children."""

    reaped: float
    children: tuple[Child, ...]
    service: float | None = None


@dataclass(slots=True)
class Attribution:
    """Folds ticks into the CPU of the run's backends; pure, so that it can be tested.

    read_tick() lists the children, reads each one's times, then the postmaster's: a child
    reaped during a tick shows its cutime growth in that tick or the one before it vanishes
    from the list, never after. Growth that no exit follows within a tick was a child never
    seen (born and gone between two samples): nobody's, and dropped.
    """

    database: str
    first: Tick | None = None
    last: Tick | None = None
    baseline: dict[int, float] = field(default_factory=dict)
    seen: dict[int, float] = field(default_factory=dict)
    ours: set[int] = field(default_factory=set)
    exited: float = 0.0
    recovered: float = 0.0
    unresolved: int = 0
    _carried: float = 0.0

    def _is_ours(self, child: Child) -> bool:
        if backend_database(child.title) == self.database:
            return True
        leader = parallel_leader(child.title)
        return leader is not None and leader in self.ours

    def observe(self, tick: Tick) -> None:
        at_start = {c.pid: c.cpu for c in (self.first or tick).children}
        # Backends first, so that a parallel worker seen in the same tick finds its leader.
        for child in sorted(tick.children, key=lambda c: parallel_leader(c.title) is not None):
            if child.pid in self.ours or self._is_ours(child):
                self.ours.add(child.pid)
                # Alive at the first tick: only what follows counts. Born later: all of it.
                self.baseline.setdefault(child.pid, at_start.get(child.pid, 0.0))
                self.seen[child.pid] = child.cpu
        if self.last is not None:
            alive = {c.pid for c in tick.children}
            gone = [c.pid for c in self.last.children if c.pid not in alive]
            self._settle(gone, tick.reaped - self.last.reaped)
        if self.first is None:
            self.first = tick
        self.last = tick

    def _settle(self, gone: list[int], growth: float) -> None:
        if not gone:
            # Growth before its exit shows (kept one tick), or a child never seen (dropped).
            self._carried = growth
            return
        reaped = self._carried + growth
        self._carried = 0.0
        mine = [p for p in gone if p in self.ours]
        if not mine:
            return
        if len(mine) < len(gone):
            # Another child was reaped with ours: the growth cannot be split between them.
            self.unresolved += len(mine)
            return
        extra = reaped - sum(self.seen[p] for p in mine)
        if extra < -1e-9:
            self.unresolved += len(mine)
            return
        self.recovered += max(extra, 0.0)
        self.exited += max(extra, 0.0)

    @property
    def database_seconds(self) -> float:
        return sum(self.seen[p] - self.baseline[p] for p in self.ours) + self.exited

    @property
    def service_seconds(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        if self.first.service is None or self.last.service is None:
            return None
        return self.last.service - self.first.service


# --- reading /proc --------------------------------------------------------------------------


@dataclass(slots=True)
class CpuUsage:
    """CPU seconds of one transfer; attributed is None when the server's processes are not
    visible from here (PostgreSQL on another machine or in a container)."""

    machine_s: float
    service_s: float | None
    database_s: float | None
    unresolved_exits: int = 0
    recovered_s: float = 0.0

    @property
    def attributed_s(self) -> float | None:
        if self.database_s is None:
            return None
        return self.database_s + (self.service_s or 0.0)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def pid_times(pid: int) -> ProcTimes | None:
    text = _read(PROC / str(pid) / "stat")
    return None if text is None else parse_pid_stat(text)


def machine_busy() -> float:
    return parse_machine_busy((PROC / "stat").read_text())


def postmaster_of(backend_pid: int) -> int | None:
    """The postmaster of a backend (its parent), when that process is visible here."""
    times = pid_times(backend_pid)
    if times is None or pid_times(times.ppid) is None:
        return None
    return times.ppid


def _children(postmaster: int) -> Iterable[int]:
    listed = _read(PROC / str(postmaster) / "task" / str(postmaster) / "children")
    if listed is not None:
        return [int(p) for p in listed.split()]
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            times = pid_times(int(entry.name))
            if times is not None and times.ppid == postmaster:
                found.append(int(entry.name))
    return found


class _Titles:
    """Process titles by pid; a title is read again only for pids not known to be ours or a
    parallel worker (a backend's title changes with its activity, its database does not)."""

    def __init__(self) -> None:
        self.known: dict[tuple[int, int], str] = {}

    def title(self, pid: int, start_ticks: int) -> str | None:
        key = (pid, start_ticks)
        if key in self.known:
            return self.known[key]
        raw = _read(PROC / str(pid) / "cmdline")
        if raw is None:
            return None
        text = raw.replace("\0", " ").strip()
        if backend_database(text) is not None or parallel_leader(text) is not None:
            self.known[key] = text
        return text


def read_tick(postmaster: int, service_pid: int | None, titles: _Titles) -> Tick | None:
    pids = _children(postmaster)
    children = []
    for pid in pids:
        times = pid_times(pid)
        if times is None or times.ppid != postmaster:
            continue  # reaped after the list was read: gone from this tick, as is its growth
        title = titles.title(pid, times.start_ticks)
        if title is not None:
            children.append(Child(pid, title, times.cpu))
    # Read after the children: a reap shows in cutime no later than the child leaves the list.
    parent = pid_times(postmaster)
    if parent is None:
        return None
    service = None
    if service_pid is not None and (own := pid_times(service_pid)) is not None:
        service = own.cpu + own.children
    return Tick(parent.children, tuple(children), service)


@dataclass(slots=True)
class Meter:
    """Samples in a thread from start() to stop(); usage() is the result."""

    database: str
    postmaster: int | None
    service_pid: int | None = None
    interval: float = SAMPLE_SECONDS
    attribution: Attribution = field(init=False)
    _machine_start: float = 0.0
    _machine_end: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _titles: _Titles = field(default_factory=_Titles)
    _failed: str | None = None

    def __post_init__(self) -> None:
        self.attribution = Attribution(self.database)

    def _sample(self) -> None:
        if self.postmaster is None:
            return
        tick = read_tick(self.postmaster, self.service_pid, self._titles)
        if tick is not None:
            self.attribution.observe(tick)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._sample()
        except Exception as exc:  # a reading error must not hang the run; it is reported
            self._failed = f"{type(exc).__name__}: {exc}"

    def start(self) -> None:
        self._sample()
        self._machine_start = machine_busy()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._machine_end = machine_busy()
        time.sleep(SETTLE_SECONDS)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def usage(self) -> CpuUsage:
        a = self.attribution
        visible = self.postmaster is not None and self._failed is None
        return CpuUsage(
            machine_s=self._machine_end - self._machine_start,
            service_s=a.service_seconds,
            database_s=a.database_seconds if visible else None,
            unresolved_exits=a.unresolved,
            recovered_s=a.recovered,
        )


@contextlib.contextmanager
def metered(
    database: str, postmaster: int | None, service_pid: int | None = None
) -> Iterator[Meter]:
    """CPU of the block: start() before, stop() after (also when it raises)."""
    meter = Meter(database, postmaster, service_pid)
    meter.start()
    try:
        yield meter
    finally:
        meter.stop()


def describe(usage: CpuUsage, rows: int) -> str:
    """A short line for the log: attributed and machine CPU per million rows."""
    attributed = per_million(usage.attributed_s, rows)
    machine = per_million(usage.machine_s, rows)
    parts = [f"CPU/M rows {'-' if attributed is None else f'{attributed:.2f}'} s attributed"]
    if usage.service_s is not None and usage.database_s is not None:
        parts.append(f"(db {usage.database_s:.2f} + service {usage.service_s:.2f} s)")
    parts.append(f"{'-' if machine is None else f'{machine:.2f}'} s machine")
    if usage.unresolved_exits:
        parts.append(f"{usage.unresolved_exits} exits unresolved")
    return " ".join(parts)
