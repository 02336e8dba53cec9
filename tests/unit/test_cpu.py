"""CPU accounting of the benchmark: /proc parsing and what is attributed to a run; no database."""

from __future__ import annotations

import os

import pytest

from benchmarks import cpu
from benchmarks.cpu import Attribution, Child, Tick
from benchmarks.results import per_million, ratio

DB = "learner_export_bench_200000"
T = cpu.CLOCK_TICKS


def backend(pid: int, cpu_s: float, database: str = DB, state: str = "COPY") -> Child:
    return Child(pid, f"postgres: 15/main: postgres {database} 127.0.0.1(5{pid}) {state}", cpu_s)


def worker(pid: int, leader: int, cpu_s: float) -> Child:
    return Child(pid, f"postgres: 15/main: parallel worker for PID {leader}", cpu_s)


def test_pid_stat_with_spaces_and_parentheses_in_the_name() -> None:
    # utime 250, stime 50, cutime 1000, cstime 200 ticks; ppid 7; starttime 4242.
    rest = " ".join(["S", "7", *["0"] * 9, "250", "50", "1000", "200", *["0"] * 4, "4242", "0"])
    times = cpu.parse_pid_stat(f"1234 (postgres: a (b) c) {rest}\n")
    assert times.ppid == 7
    assert times.start_ticks == 4242
    assert times.cpu == pytest.approx(300 / T)
    assert times.children == pytest.approx(1200 / T)


def test_machine_busy_leaves_out_idle_and_iowait() -> None:
    text = "cpu  100 20 30 5000 400 6 4 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    assert cpu.parse_machine_busy(text) == pytest.approx(162 / T)
    with pytest.raises(ValueError):
        cpu.parse_machine_busy("intr 1 2 3\n")


def test_this_machine_can_be_read() -> None:
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("no /proc")
    assert cpu.machine_busy() > 0
    own = cpu.pid_times(os.getpid())
    assert own is not None and own.cpu > 0 and own.ppid == os.getppid()


@pytest.mark.parametrize(
    ("title", "database"),
    [
        (f"postgres: 15/main: postgres {DB} 127.0.0.1(52080) idle", DB),
        (f"postgres: app {DB} [local] idle in transaction", DB),
        ("postgres: 15/main: postgres other_db 10.0.0.2(1) SELECT", "other_db"),
        (f"postgres: 15/main: autovacuum worker {DB}", None),
        ("postgres: 15/main: checkpointer", None),
        ("postgres: 15/main: parallel worker for PID 12", None),
    ],
)
def test_backend_database_from_the_process_title(title: str, database: str | None) -> None:
    assert cpu.backend_database(title) == database


def test_parallel_worker_leader() -> None:
    assert cpu.parallel_leader("postgres: 15/main: parallel worker for PID 4321") == 4321
    assert cpu.parallel_leader(f"postgres: u {DB} 127.0.0.1(1) SELECT") is None


def test_only_the_runs_backends_and_their_workers_count_from_the_first_tick() -> None:
    a = Attribution(DB)
    a.observe(Tick(50.0, (backend(10, 2.0), backend(11, 9.0, "someone_else")), service=4.0))
    a.observe(
        Tick(
            50.0,
            (
                backend(10, 3.0),
                backend(11, 19.0, "someone_else"),
                worker(12, 10, 0.5),
                worker(13, 11, 7.0),
                Child(14, "postgres: 15/main: checkpointer", 1.0),
            ),
            service=4.5,
        )
    )
    a.observe(Tick(50.0, (backend(10, 3.5), worker(12, 10, 1.25)), service=5.0))
    # Backend 10: 3.5 - 2.0; worker 12, born after the first tick: all of its 1.25.
    assert a.database_seconds == pytest.approx(2.75)
    assert a.service_seconds == pytest.approx(1.0)
    assert a.ours == {10, 12}


def test_an_exited_worker_is_recovered_from_the_postmasters_cutime() -> None:
    a = Attribution(DB)
    a.observe(Tick(100.0, (backend(10, 1.0),)))
    a.observe(Tick(100.0, (backend(10, 1.5), worker(12, 10, 0.8), worker(13, 10, 0.7))))
    # Both workers exit with 1.0 and 0.9 s; reaped before the next sample.
    a.observe(Tick(101.9, (backend(10, 2.0),)))
    assert a.recovered == pytest.approx(0.4)
    assert a.database_seconds == pytest.approx(1.0 + 1.0 + 0.9)
    assert a.unresolved == 0


def test_a_reap_seen_one_tick_before_the_exit_is_matched() -> None:
    a = Attribution(DB)
    a.observe(Tick(10.0, (backend(10, 1.0), worker(12, 10, 0.2))))
    # Reaped between reading the worker (0.5 s so far) and the postmaster: growth first...
    a.observe(Tick(10.6, (backend(10, 1.1), worker(12, 10, 0.5))))
    # ...then gone from the list.
    a.observe(Tick(10.6, (backend(10, 1.2),)))
    assert a.recovered == pytest.approx(0.1)
    # Backend 0.2; the worker, alive at the first tick with 0.2 s, ended with 0.6 s: 0.4.
    assert a.database_seconds == pytest.approx(0.2 + 0.4)


def test_an_exit_reaped_with_another_databases_child_keeps_what_was_sampled() -> None:
    a = Attribution(DB)
    a.observe(Tick(0.0, (backend(10, 1.0), worker(12, 10, 0.3), backend(20, 5.0, "other"))))
    a.observe(Tick(9.0, (backend(10, 1.0),)))
    assert a.unresolved == 1
    assert a.recovered == 0.0
    # Worker 12 was alive at the first tick: nothing of it after that was sampled.
    assert a.database_seconds == pytest.approx(0.0)


def test_growth_of_a_child_never_seen_is_nobodys() -> None:
    a = Attribution(DB)
    a.observe(Tick(0.0, (backend(10, 1.0),)))
    a.observe(Tick(3.0, (backend(10, 1.0), worker(12, 10, 0.1))))  # someone's quick child
    a.observe(Tick(3.0, (backend(10, 1.0), worker(12, 10, 0.2))))
    a.observe(Tick(3.25, (backend(10, 1.0),)))
    assert a.recovered == pytest.approx(0.05)
    assert a.database_seconds == pytest.approx(0.25)


def test_per_million_and_ratio() -> None:
    assert per_million(2.5, 500_000) == pytest.approx(5.0)
    assert per_million(None, 10) is None
    assert per_million(1.0, 0) is None
    assert ratio(3.0, 2.0) == pytest.approx(1.5)
    assert ratio(3.0, 0.0) is None
    assert ratio(None, 2.0) is None


def test_usage_attributed_is_database_plus_service() -> None:
    usage = cpu.CpuUsage(machine_s=9.0, service_s=1.5, database_s=6.0)
    assert usage.attributed_s == pytest.approx(7.5)
    assert cpu.CpuUsage(9.0, 1.5, None).attributed_s is None
    line = cpu.describe(usage, 1_000_000)
    assert line.startswith("CPU/M rows 7.50 s attributed (db 6.00 + service 1.50 s) 9.00 s")
