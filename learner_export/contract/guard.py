"""The keyset guard: every page is read through a query that checks what the adapter returned,
so that a broken contract cuts the export before the bad row instead of sending a row twice or
skipping one.

The checks run in PostgreSQL, in the page query that COPY writes, over the rows as the page
function returned them: at most p_page_size rows; keys not NULL; each key strictly after the one
before it, the first strictly after the page's cursor (so across pages too); and, when the
export knows where learner_export_page_ends said the page ends, a full page ending on that row.
A window over the function's rows (no sort: the rows' own order) gives each row its
predecessor; a CASE calls learner_export.keyset_breach() (sql/migrations/002) only on a breach,
and that raises with a sentence naming the adapter function. The select lists of the formats
see the keyset as r._key_at and r._key_id, whatever the adapter calls its time column.

The bulk pass (the rest of a large export read from the adapter's optional bulk view in one
statement) is guarded the same way by bulk_query(), through learner_export.rows_breach()
(sql/migrations/006).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from learner_export.contract import NAMES, SCHEMA, VERSION_SQL
from learner_export.contract.columns import KEY_AT, KEY_ID_AT
from learner_export.errors import ContractBreach, ContractChanged

log = logging.getLogger("learner_export.contract")

# The SQLSTATE learner_export.keyset_breach() raises.
BREACH_SQLSTATE = "LX001"

# The largest uuid: no key sorts after (infinity, it), so it bounds the last range.
_LAST_UUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def page_query(
    select: str,
    time_column: str,
    args: str,
    *,
    after: tuple[str, str],
    page_size: str,
    end: tuple[str, str],
) -> str:
    """The guarded page query: `select` (over `r`) from the page function called with `args`
    (SQL). `after` (the page's cursor), `page_size` and `end` (where learner_export_page_ends
    said the page ends, NULL when not known) are SQL expressions."""
    at = f"r.{_quoted(time_column)}"
    after_at, after_id = after
    end_at, end_id = end
    return (
        f"SELECT {select} FROM ("
        f"SELECT r.*, {at} AS {KEY_AT}, r.learner_id AS {KEY_ID_AT},"
        " pg_catalog.row_number() OVER w AS _n,"
        f" pg_catalog.lag({at}, 1, {after_at}) OVER w AS _prev_at,"
        f" pg_catalog.lag(r.learner_id, 1, {after_id}) OVER w AS _prev_id"
        f" FROM learner_export.get_learner_export_batch({args}) AS r WINDOW w AS ()) AS r"
        f" WHERE CASE WHEN r._n > {page_size} OR r.{KEY_AT} IS NULL OR r.{KEY_ID_AT} IS NULL"
        f" OR (r._prev_at, r._prev_id) >= (r.{KEY_AT}, r.{KEY_ID_AT})"
        f" OR (r._n = {page_size} AND ({end_at}) IS NOT NULL"
        f" AND (({end_at}), ({end_id})) IS DISTINCT FROM (r.{KEY_AT}, r.{KEY_ID_AT}))"
        f" THEN learner_export.keyset_breach(r._n, {page_size}, r._prev_at, r._prev_id,"
        f" r.{KEY_AT}, r.{KEY_ID_AT}, {end_at}, {end_id}) ELSE true END"
    )


def bulk_query(
    items: Sequence[str],
    time_column: str,
    *,
    after: tuple[str, str],
    upto: tuple[str, str],
    limit: str,
    rows_from: str,
    row: str,
    where: str = "",
    ordered: str = "{}",
    render_first: bool = False,
) -> str:
    """The guarded bulk query: `items` (over `r`) from the adapter's bulk view, in keyset
    order, strictly after `after` and up to `upto` included (no bound when its key is NULL), at
    most `limit` rows. The keyset order is the service's ORDER BY, so the guard looks for what
    an order cannot fix: a NULL key (such rows sort last and are let through to it: they belong
    to the range without an upper bound) or a key twice. `row` is SQL for the bulk pass's index
    of the range's first row (the breach names a row by it). `after`, `upto` and `limit` are
    SQL that reads the export's settings; each is a scalar subquery, read once (an initplan),
    not once per row. `rows_from` is the view; `where`, a condition on `r`, may raise to refuse
    a row.

    `ordered` is SQL around each item (`{}`) that must see the rows in order (the CopySpec's).
    The rows are rendered as they leave the sort (a range sent as it is read), or with
    `render_first` before it, sorted rendered, and `ordered` applied in order: a range held back
    while another is sent then does its rendering at once, not when its turn comes."""
    at = f"v.{_quoted(time_column)}"
    after_at, after_id = (f"(SELECT {a})" for a in after)
    last = f"(SELECT {upto[0]}) IS NULL"
    upto_at = f"(SELECT coalesce({upto[0]}, 'infinity'::timestamptz))"
    upto_id = f"(SELECT coalesce({upto[1]}, '{_LAST_UUID}'::uuid))"
    rows = (
        f"SELECT v.*, {at} AS {KEY_AT}, v.learner_id AS {KEY_ID_AT} FROM {rows_from} AS v"
        # Both bounds in one row comparison each, so that an index on the keyset reads the
        # range's rows alone (an `upto IS NULL OR ...` bound is no index condition: a range
        # read every row after its start, and ~0.25 s of 2.7 s went on the rows past its end,
        # measured on 420K of 1M sample rows). A NULL key belongs to the last range.
        f" WHERE ((({at}, v.learner_id) > ({after_at}, {after_id})"
        f" AND ({at}, v.learner_id) <= ({upto_at}, {upto_id}))"
        f" OR (({at} IS NULL OR v.learner_id IS NULL) AND {last}))"
    )
    order = f"ORDER BY r.{KEY_AT}, r.{KEY_ID_AT} LIMIT (SELECT {limit})"
    if not render_first:
        select = ", ".join(ordered.replace("{}", item) for item in items)
        sorted_rows = f"SELECT r.* FROM ({rows}) AS r {order}"
        refused = f" AND ({where})" if where else ""
    else:
        select = ", ".join(ordered.replace("{}", f"r._c{n}") for n in range(len(items)))
        rendered = ", ".join(f"{item} AS _c{n}" for n, item in enumerate(items))
        # OFFSET 0 keeps the rendering below the sort: PostgreSQL would otherwise evaluate a
        # costly select list after a sort with a LIMIT.
        sorted_rows = (
            f"SELECT r.* FROM (SELECT {rendered}, r.{KEY_AT}, r.{KEY_ID_AT} FROM ({rows}) AS r"
            f"{f' WHERE {where}' if where else ''} OFFSET 0) AS r {order}"
        )
        refused = ""
    return (
        f"SELECT {select} FROM ("
        "SELECT r.*, pg_catalog.row_number() OVER w AS _n,"
        f" pg_catalog.lag(r.{KEY_AT}, 1, {after_at}) OVER w AS _prev_at,"
        f" pg_catalog.lag(r.{KEY_ID_AT}, 1, {after_id}) OVER w AS _prev_id"
        f" FROM ({sorted_rows}) AS r WINDOW w AS ()) AS r"
        f" WHERE CASE WHEN r.{KEY_AT} IS NULL OR r.{KEY_ID_AT} IS NULL"
        f" OR (r._prev_at, r._prev_id) >= (r.{KEY_AT}, r.{KEY_ID_AT})"
        f" THEN learner_export.rows_breach(r._n + ({row}), r._prev_at, r._prev_id, r.{KEY_AT},"
        f" r.{KEY_ID_AT}) ELSE true END{refused}"
    )


def breach_of(exc: BaseException) -> ContractBreach | None:
    """The breach a page query raised, logged with the adapter function it names; else None."""
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == BREACH_SQLSTATE:
        message = str(exc.args[0] if exc.args else exc)
        log.error("the adapter broke the export contract; the export is cut: %s", message)
        return ContractBreach(message)
    return None


# Held shared by every export for its snapshot's life, taken exclusively by `db migrate` while
# it re-creates the contract's functions: a running export keeps the columns it began with.
CONTRACT_LOCK = "SELECT pg_catalog.hashtext('learner-export contract')"


async def hold_contract(conn: asyncpg.Connection, version: str) -> None:
    """In an export's transaction: hold the contract for the transaction's life, and refuse
    (ContractChanged) when it is not the version the export's parameters were checked against,
    or when `db migrate` is changing it now. An empty version checks nothing (no contract
    learned: tests that build pages by hand)."""
    if not version:
        return
    held, now = await conn.fetchrow(
        f"SELECT pg_catalog.pg_try_advisory_xact_lock_shared(({CONTRACT_LOCK})), ({VERSION_SQL})",
        SCHEMA,
        list(NAMES),
    )
    if not held:
        raise ContractChanged(
            "the export contract is being changed (db migrate is applying an adapter); "
            "retry in a moment"
        )
    if now != version:
        raise ContractChanged(
            "the export contract changed (db migrate applied an adapter) while this export "
            "started; retry: the next export uses the new columns"
        )
