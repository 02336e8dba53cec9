"""The benchmark's CPU meter against a real PostgreSQL: what it attributes to a database, and
what it leaves out (another database's backend burning CPU at the same time)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from benchmarks import cpu
from tests.conftest import _admin, _with_database, run

BURN = "SELECT count(*) FROM generate_series(1, 40000000)"
SCAN = "SELECT sum(hashint8(g)) FROM t"
PARALLEL = (
    "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
    " SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2"
)


@pytest.fixture(scope="module")
def two_databases(pg_server: str) -> Iterator[tuple[str, str]]:
    names = [f"learner_export_cpu_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        run(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    ours = _with_database(pg_server, names[0])
    run(_admin(ours, "CREATE TABLE t AS SELECT g FROM generate_series(1, 3000000) AS g; ANALYZE t"))
    try:
        yield ours, _with_database(pg_server, names[1])
    finally:
        for name in names:
            run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def metered_scan(ours: str, other: str, parallel: bool) -> tuple[cpu.CpuUsage, float, float]:
    """(usage, our leader's CPU, the other database's backend's CPU) while both run at once."""
    mine = await asyncpg.connect(ours)
    theirs = await asyncpg.connect(other)
    try:
        if parallel:
            await mine.execute(PARALLEL)
            plan = "\n".join(r[0] for r in await mine.fetch("EXPLAIN ANALYZE " + SCAN))
            if "Workers Launched: 0" in plan or "Workers Launched" not in plan:
                pytest.skip("this server launches no parallel workers")
        else:
            await mine.execute("SET max_parallel_workers_per_gather = 0")
        leader = int(await mine.fetchval("SELECT pg_backend_pid()"))
        burner = int(await theirs.fetchval("SELECT pg_backend_pid()"))
        postmaster = cpu.postmaster_of(leader)
        if postmaster is None:
            pytest.skip("PostgreSQL's processes are not visible from here")
        database = str(await mine.fetchval("SELECT current_database()"))
        before = (cpu.pid_times(leader), cpu.pid_times(burner))
        burn = asyncio.ensure_future(theirs.fetchval(BURN))
        await asyncio.sleep(0.2)
        with cpu.metered(database, postmaster) as meter:
            for _ in range(3):
                # The simple query protocol: asyncpg's extended one may run it without workers.
                await mine.execute(SCAN)
        await burn
        after = (cpu.pid_times(leader), cpu.pid_times(burner))
    finally:
        await mine.close()
        await theirs.close()
    assert before[0] and before[1] and after[0] and after[1]
    return meter.usage(), after[0].cpu - before[0].cpu, after[1].cpu - before[1].cpu


def test_a_backend_alone_is_counted_and_another_databases_load_is_not(
    two_databases: tuple[str, str],
) -> None:
    usage, leader, burner = run(metered_scan(*two_databases, parallel=False))
    assert burner > 0.3  # the other database really was busy meanwhile
    assert usage.database_s is not None
    # The scans' backend, to a clock tick or two (the meter starts after the query began).
    assert leader - 0.05 <= usage.database_s <= leader + 0.03
    assert usage.service_s is None


def test_parallel_workers_count_for_their_leader(two_databases: tuple[str, str]) -> None:
    usage, leader, burner = run(metered_scan(*two_databases, parallel=True))
    assert burner > 0.3
    assert usage.database_s is not None
    # The workers did part of the scans: more than the leader alone, less than everything
    # that ran (the other database's burn included).
    workers = usage.database_s - leader
    assert workers > 0.05
    assert usage.database_s < leader + burner
    assert usage.unresolved_exits == 0
