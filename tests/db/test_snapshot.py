"""An export is one snapshot: changes committed while it streams do not show in it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson

from learner_export import db
from learner_export.formats import FORMATS
from learner_export.pages import CopiedPage
from tests.conftest import make_settings, run, snapshot_pages


async def _snapshot_scenario(url: str, admin: str) -> dict[str, Any]:
    settings = make_settings(url, page_size=50, first_page_size=50)
    other = await asyncpg.connect(url)
    client_id = str(uuid.uuid4())
    keep, gone, new = (str(uuid.uuid4()) for _ in range(3))
    await other.execute("INSERT INTO public.clients (id, name) VALUES ($1, 'snapshot')", client_id)
    # Late in key order, so that they are read after the changes below.
    await other.execute(
        "INSERT INTO public.learners (id, client_id, full_name, created_at) VALUES"
        " ($1, $3, 'before', '2032-01-01'), ($2, $3, 'to delete', '2032-01-02')",
        keep,
        gone,
        client_id,
    )
    before = [
        r["id"]
        for r in await other.fetch("SELECT id::text FROM public.learners ORDER BY created_at, id")
    ]

    conn = await db.connect(settings, url)
    export, params = await snapshot_pages(conn, url, settings, admin, format="jsonl")
    framer = FORMATS["jsonl"].framer(params.columns, params.render_options(settings))

    def jsonl_rows(page: CopiedPage) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in bytes(framer.page(page.data)).splitlines()]

    try:
        await export.open()
        batches = export.pages()
        rows = jsonl_rows(await anext(batches))
        fetched_at_change = export.rows_fetched
        await other.execute(
            "INSERT INTO public.learners (id, client_id, full_name, created_at)"
            " VALUES ($1, $2, 'inserted', '2032-01-03')",
            new,
            client_id,
        )
        await other.execute("UPDATE public.learners SET full_name = 'after' WHERE id = $1", keep)
        await other.execute("DELETE FROM public.learners WHERE id = $1", gone)
        async for batch in batches:
            rows.extend(jsonl_rows(batch))
    finally:
        await export.close()
        await conn.close()
        await other.execute("DELETE FROM public.learners WHERE client_id = $1", client_id)
        await other.execute("DELETE FROM public.clients WHERE id = $1", client_id)
        await other.close()
    names = {r["learner_id"]: r["full_name"] for r in rows}
    return {
        "ids": [r["learner_id"] for r in rows],
        "before": before,
        "names": names,
        "keep": keep,
        "gone": gone,
        "new": new,
        "fetched_at_change": fetched_at_change,
    }


def test_changes_during_an_export_do_not_show(database_url: str, seeded: str) -> None:
    result = run(_snapshot_scenario(database_url, seeded))
    assert result["fetched_at_change"] < len(result["before"])  # the changes came mid-export
    assert result["ids"] == result["before"]  # every row that existed, and nothing else
    assert result["names"][result["keep"]] == "before"
    assert result["gone"] in result["names"]
    assert result["new"] not in result["names"]


async def _transaction_kind(url: str, admin: str) -> list[str]:
    settings = make_settings(url)
    conn = await db.connect(settings, url)
    export, _ = await snapshot_pages(conn, url, settings, admin, limit=1)
    try:
        await export.open()
        return [
            await conn.fetchval(f"SHOW {name}")
            for name in (
                "transaction_isolation",
                "transaction_read_only",
                "max_parallel_workers_per_gather",
            )
        ]
    finally:
        await export.close()
        await conn.close()


def test_export_reads_in_a_read_only_repeatable_read_transaction(
    database_url: str, seeded: str
) -> None:
    assert run(_transaction_kind(database_url, seeded)) == ["repeatable read", "on", "0"]
