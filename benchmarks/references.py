"""The references a service export is compared with, and the cost of one keyset page.

- COPY: PostgreSQL writing the whole export as CSV, read to the end by a client. The limit.
- openpyxl in write-only mode: what writing the same rows to XLSX costs the usual way.
- Keyset pages: the first and the last page of learner_export.get_learner_export_batch(), and
  their plans.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import cpu
from benchmarks.queries import (
    EXPORT_COLUMNS,
    EXPORT_SQL,
    SAMPLE,
    TEXT_COLUMNS,
    TIMESTAMP_COLUMNS,
    Reference,
)
from benchmarks.results import COPY, KeysetResult, OpenpyxlResult, PlanSummary, Sample
from learner_export import db
from learner_export.config import Settings

COPY_HEADER = SAMPLE.copy_header
KEYSET_INDEX = "learners_export_keyset"
EXPORT_FUNCTION = "get_learner_export_batch"
# One keyset page of the sample adapter, called as the service calls it (its 8 parameters).
PAGE_SQL = f"SELECT * FROM learner_export.{EXPORT_FUNCTION}($1, $2, $3, $4, $5, $6, $7, $8)"
# Text that a spreadsheet would take for a formula; the reference writes it with a leading '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What LearnerExport.open() sets for its transaction; pages are timed under the same settings.
EXPORT_TRANSACTION_SETTINGS = (
    "SELECT set_config('max_parallel_workers_per_gather', '0', true),"
    " set_config('jit', 'off', true)"
)


# --- COPY -----------------------------------------------------------------------------------


async def copy_sample(
    url: str,
    rows: int,
    reference: Reference = SAMPLE,
    database: str | None = None,
    postmaster: int | None = None,
) -> Sample:
    """COPY (<reference query>) TO STDOUT as CSV with a header, counted by an output callback;
    with `database`, the CPU of that database's backends (and the machine's) is metered."""
    conn = await asyncpg.connect(url)
    header = reference.copy_header
    size = 0
    first: float | None = None
    head = b""

    async def output(chunk: bytes) -> None:
        nonlocal size, first, head
        if first is None:
            first = time.perf_counter()
        if len(head) < len(header):
            head += bytes(chunk[: len(header) - len(head)])
        size += len(chunk)

    meter = cpu.Meter(database or "", postmaster if database else None)
    try:
        meter.start()
        try:
            started = time.perf_counter()
            await conn.copy_from_query(reference.sql, output=output, format="csv", header=True)
            seconds = time.perf_counter() - started
        finally:
            meter.stop()
    finally:
        await conn.close()
    ttfb = None if first is None else (first - started) * 1000
    error = None if head == header else f"unexpected COPY header {head!r}"
    sample = Sample(COPY, rows, size, seconds, ttfb, error=error)
    usage = meter.usage()
    sample.cpu_machine_s = usage.machine_s
    sample.cpu_database_s = usage.database_s
    sample.cpu_unresolved_exits = usage.unresolved_exits
    return sample


def run_copy(
    url: str,
    rows: int,
    timeout: float,
    reference: Reference = SAMPLE,
    database: str | None = None,
    postmaster: int | None = None,
) -> Sample:
    return asyncio.run(
        asyncio.wait_for(copy_sample(url, rows, reference, database, postmaster), timeout)
    )


# --- openpyxl -------------------------------------------------------------------------------


def _openpyxl_cells() -> list[Callable[[Any], Any]]:
    """Per column, what openpyxl needs: naive UTC datetimes, XML-legal text, formulas as text."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    def text(value: Any) -> Any:
        if value is None:
            return None
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
        return "'" + value if value.startswith(FORMULA_STARTS) else value

    def timestamp(value: Any) -> Any:
        return None if value is None else value.astimezone(UTC).replace(tzinfo=None)

    def same(value: Any) -> Any:
        return value

    return [
        text if c in TEXT_COLUMNS else timestamp if c in TIMESTAMP_COLUMNS else same
        for c in EXPORT_COLUMNS
    ]


async def fetch_all(url: str) -> list[asyncpg.Record]:
    conn = await db.connect(Settings(), url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(EXPORT_SQL)
        return rows
    finally:
        await conn.close()


def openpyxl_write(rows: Sequence[Sequence[Any]]) -> OpenpyxlResult:
    """Time writing rows already in memory to an XLSX file with openpyxl's write-only mode."""
    from openpyxl import Workbook

    cells = _openpyxl_cells()
    with tempfile.TemporaryDirectory(prefix="learner-export-bench-") as tmp:
        path = Path(tmp) / "learners.xlsx"
        started = time.perf_counter()
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("Learners")
        sheet.append(list(EXPORT_COLUMNS))
        for row in rows:
            sheet.append([f(v) for f, v in zip(cells, row, strict=True)])
        workbook.save(path)
        seconds = time.perf_counter() - started
        size = path.stat().st_size
    return OpenpyxlResult(
        rows=len(rows),
        seconds=seconds,
        rows_per_s=len(rows) / seconds,
        bytes=size,
        lxml=importlib.util.find_spec("lxml") is not None,
    )


def run_openpyxl(url: str) -> OpenpyxlResult:
    """Fetch every row first (not timed), then time openpyxl writing them."""
    return openpyxl_write(asyncio.run(fetch_all(url)))


# --- keyset pages ---------------------------------------------------------------------------


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found += _walk(child)
    return found


def _label(node: dict[str, Any]) -> str:
    text = str(node.get("Node Type", "?"))
    if "Index Name" in node:
        text += f" using {node['Index Name']}"
    if "Relation Name" in node:
        text += f" on {node['Relation Name']}"
    if "Function Name" in node:
        text += f" on {node['Function Name']}()"
    return text


def _reads_learners(node: dict[str, Any], *, through_limit: bool) -> bool:
    """Whether learners is scanned below node (only on paths without a Limit, unless through)."""
    if node.get("Relation Name") == "learners":
        return True
    if not through_limit and node.get("Node Type") == "Limit":
        return False
    return any(_reads_learners(c, through_limit=through_limit) for c in node.get("Plans", []))


def summarize_plan(source: str, explained: dict[str, Any]) -> PlanSummary:
    """The facts the benchmark asks of a plan: sorts over learners, the keyset index, inlining.

    A Sort between learners and the page's Limit sorts every learner after the cursor, so its
    cost grows with what remains to export: that is a sort on learners. A Sort above the Limit
    (re-ordering the page's rows after a join) costs the same on every page: a page sort.
    """
    root = explained["Plan"]
    nodes = _walk(root)
    sorts = [n for n in nodes if n.get("Node Type") in ("Sort", "Incremental Sort")]
    return PlanSummary(
        source=source,
        nodes=[_label(n) for n in nodes],
        function_scan=any(
            n.get("Node Type") == "Function Scan" and n.get("Function Name") == EXPORT_FUNCTION
            for n in nodes
        ),
        sort_on_learners=any(_reads_learners(s, through_limit=False) for s in sorts),
        page_sort=any(
            _reads_learners(s, through_limit=True) and not _reads_learners(s, through_limit=False)
            for s in sorts
        ),
        keyset_index_used=any(n.get("Index Name") == KEYSET_INDEX for n in nodes),
        execution_ms=explained.get("Execution Time"),
        plan=explained,
    )


def _auto_explain_plans(messages: Sequence[str]) -> list[dict[str, Any]]:
    plans: list[dict[str, Any]] = []
    for message in messages:
        start = message.find("{")
        if "plan:" in message and start >= 0:
            plans.append(json.loads(message[start:]))
    return plans


async def _nested_plans(url: str, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    """The plans of the statements inside the function, from auto_explain (needs a superuser).

    A function that PostgreSQL does not inline (SECURITY DEFINER, or a SET clause) shows up in
    EXPLAIN as one Function Scan; the plan of its query is only visible from inside.
    """
    conn = await db.connect(Settings(), url)
    messages: list[str] = []
    conn.add_log_listener(lambda _conn, msg: messages.append(str(msg.message)))
    try:
        await conn.execute("LOAD 'auto_explain'")
        await conn.execute(
            "SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;"
            " SET auto_explain.log_verbose = on; SET auto_explain.log_nested_statements = on;"
            " SET auto_explain.log_format = json; SET client_min_messages = log"
        )
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(EXPORT_TRANSACTION_SETTINGS)
            messages.clear()
            await conn.fetch(sql, *args)
        for _ in range(3):  # let the listener's callbacks run
            await asyncio.sleep(0)
    finally:
        await conn.close()
    return [
        p
        for p in _auto_explain_plans(messages)
        if any(n.get("Relation Name") == "learners" for n in _walk(p["Plan"]))
    ]


async def keyset_cost(url: str, caller: str, page_size: int = 5000, runs: int = 5) -> KeysetResult:
    """Median time of the first and of the last page, and what their plans show."""
    conn = await db.connect(Settings(), url)
    notes: list[str] = []
    try:
        total = int(await conn.fetchval("SELECT count(*) FROM public.learners"))
        cursor = await conn.fetchrow(
            "SELECT created_at, id FROM public.learners"
            " ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
            page_size,
        )
        if cursor is None:
            raise RuntimeError(f"{total} learners: too few for a last page of {page_size}")
        first_args: tuple[Any, ...] = (caller, None, None, None, None, None, None, page_size)
        last_args: tuple[Any, ...] = (
            caller,
            None,
            None,
            None,
            None,
            cursor["created_at"],
            cursor["id"],
            page_size,
        )

        async def timed(args: tuple[Any, ...]) -> float:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(EXPORT_TRANSACTION_SETTINGS)
                started = time.perf_counter()
                rows = await conn.fetch(PAGE_SQL, *args)
                elapsed = (time.perf_counter() - started) * 1000
            if len(rows) != page_size:
                raise RuntimeError(f"a page of {len(rows)} rows, expected {page_size}")
            return elapsed

        await timed(first_args)  # warm-up: caches and the prepared statement
        await timed(last_args)
        first_ms: list[float] = []
        last_ms: list[float] = []
        for _ in range(runs):
            first_ms.append(await timed(first_args))
            last_ms.append(await timed(last_args))

        plans: list[PlanSummary] = []
        for name, args in (("first page", first_args), ("last page", last_args)):
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(EXPORT_TRANSACTION_SETTINGS)
                text = await conn.fetchval(
                    "EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) " + PAGE_SQL, *args
                )
            plans.append(summarize_plan(f"EXPLAIN, {name}", json.loads(text)[0]))
    finally:
        await conn.close()

    if any(p.function_scan for p in plans):
        notes.append(
            f"{EXPORT_FUNCTION}() is not inlined: EXPLAIN shows a Function Scan "
            "(SECURITY DEFINER or a SET clause prevents inlining)"
        )
        for name, args in (("first page", first_args), ("last page", last_args)):
            try:
                nested = await _nested_plans(url, PAGE_SQL, args)
            except asyncpg.PostgresError as exc:
                notes.append(f"no plan from inside the function ({name}): {exc}")
                continue
            plans += [
                summarize_plan(f"auto_explain inside the function, {name}", p) for p in nested
            ]

    first = statistics.median(first_ms)
    last = statistics.median(last_ms)
    return KeysetResult(
        rows=total,
        page_size=page_size,
        runs=runs,
        first_ms=first_ms,
        last_ms=last_ms,
        first_median_ms=first,
        last_median_ms=last,
        ratio=last / first,
        plans=plans,
        notes=notes,
    )


def plan_facts(result: KeysetResult) -> tuple[bool | None, bool | None]:
    """(a Sort over learners, the keyset index used) in the plans that show learners."""
    showing = [p for p in result.plans if any(n.endswith(" on learners") for n in p.nodes)]
    if not showing:
        return None, None
    return (any(p.sort_on_learners for p in showing), all(p.keyset_index_used for p in showing))


def run_keyset(url: str, caller: str, timeout: float = 300.0) -> KeysetResult:
    return asyncio.run(asyncio.wait_for(keyset_cost(url, caller), timeout))
