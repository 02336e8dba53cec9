"""`learner-export db check`: whether a database meets the export contract, in sentences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

from learner_export import db
from learner_export.config import Settings
from learner_export.contract import (
    BY_FUNCTION,
    ROWS_VIEW,
    SCHEMA,
    _problems_of,
    read_functions,
    read_rows_view,
)
from learner_export.db import role
from learner_export.errors import CONNECTION_ERRORS, DATABASE_ERRORS, database_error

# Roles that must never reach the service's functions (Supabase's API roles, and everyone).
FORBIDDEN_GRANTEES = ("PUBLIC", "anon", "authenticated", "service_role", "authenticator")
# The roles a request through Supabase's HTTP API runs as.
API_ROLES = ("anon", "authenticated")


@dataclass(frozen=True, slots=True)
class Finding:
    level: Literal["ok", "warning", "error"]
    text: str

    def line(self) -> str:
        return {"ok": "ok       ", "warning": "WARNING  ", "error": "ERROR    "}[
            self.level
        ] + self.text


async def check(settings: Settings, dsn: str, caller: str | None = None) -> list[Finding]:
    """The findings of `db check`; the data checks read pages as `caller` (a profile id whose
    scope is every learner), and are skipped without one."""
    try:
        conn = await db.connect(settings, dsn)
    except CONNECTION_ERRORS as exc:
        # The same sentence as `export` and serve's warning give (errors.database_error).
        error = database_error(exc, "connecting", dsn=dsn)
        return [Finding("error", str(error.detail if error else exc))]
    try:
        return await _check(conn, caller)
    except DATABASE_ERRORS as exc:
        return [
            Finding("error", f"the check could not finish: {type(exc).__name__}: {str(exc)[:200]}")
        ]
    finally:
        await conn.close()


async def _check(conn: asyncpg.Connection, caller: str | None) -> list[Finding]:
    findings: list[Finding] = []
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", SCHEMA
    ):
        return [
            Finding(
                "error",
                f"the schema {SCHEMA} does not exist: run "
                "`learner-export db migrate --adapter FILE`",
            )
        ]
    service, recorded = await role.in_use(conn)
    findings += await _service_role(conn, service, recorded)
    functions = await read_functions(conn)
    view = await read_rows_view(conn)
    problems, columns, words = _problems_of(functions, view)
    findings += [Finding("error", p) for p in problems]
    if view is not None and not problems:
        findings.append(
            Finding(
                "ok",
                f"the bulk view {SCHEMA}.{ROWS_VIEW} has the page function's columns, reads as "
                "its owner and applies export_scope()",
            )
        )
    elif view is None:
        findings.append(
            Finding(
                "ok",
                f"no bulk view ({SCHEMA}.{ROWS_VIEW}): every page is read through "
                "get_learner_export_batch; the view lets a large export be read in one set-wise "
                "pass (docs/contract.md)",
            )
        )
    if not problems:
        findings.append(
            Finding(
                "ok",
                f"all {len(BY_FUNCTION)} functions of the contract exist "
                "with the contract's parameters, SECURITY DEFINER and search_path = ''",
            )
        )
        findings.append(
            Finding(
                "ok",
                f"{len(columns)} exported columns: "
                + ", ".join(f"{c.name} ({c.pg_type})" for c in columns)
                + f"; keyset ({words.time_column}, learner_id)",
            )
        )
    for name in BY_FUNCTION:
        for info in functions.get(name, []):
            where = f"{SCHEMA}.{name}"
            bad = [g for g in info.executors if g in FORBIDDEN_GRANTEES]
            if bad:
                findings.append(
                    Finding(
                        "error",
                        f"{where} is executable by {', '.join(bad)}: "
                        "anyone with the public API key could call it; run "
                        "`db migrate` again (it revokes these grants)",
                    )
                )
            others = [g for g in info.executors if g not in (*FORBIDDEN_GRANTEES, service)]
            if others:
                findings.append(
                    Finding("warning", f"{where} is also executable by {', '.join(others)}")
                )
            if service not in info.executors:
                findings.append(
                    Finding("error", f"{service} may not execute {where}: run `db migrate` again")
                )
    exposed = await conn.fetch(
        # By oid from pg_roles: SQL does not promise to test a name's existence before
        # has_schema_privilege, which raises for a role that does not exist.
        "SELECT r.rolname FROM pg_roles AS r WHERE r.rolname = ANY ($1::text[])"
        " AND has_schema_privilege(r.oid, $2, 'USAGE')",
        list(FORBIDDEN_GRANTEES),
        SCHEMA,
    )
    if exposed:
        findings.append(
            Finding("error", f"the schema {SCHEMA} is usable by {', '.join(r[0] for r in exposed)}")
        )
    if not any(f.level == "error" for f in findings):
        findings.append(
            Finding(
                "ok",
                f"EXECUTE is held by nobody but the service's role ({service}) and the owner",
            )
        )
    findings += await _definers_exposed(conn)
    findings += await _forced_rls(conn)
    if not problems:
        findings += await _data(conn, caller, words.time_column, service)
    findings += await _login_role(conn, service)
    return findings


async def _service_role(conn: asyncpg.Connection, service: str, recorded: bool) -> list[Finding]:
    """Whether the service's role is this database's own: a role holding privileges or owning
    objects in another database of the server gives a login granted it both."""
    findings: list[Finding] = []
    others = await role.other_databases(conn, service)
    if others:
        database: str = await conn.fetchval("SELECT pg_catalog.current_database()")
        findings.append(Finding("error", role.shared_sentence(service, others, database)))
    else:
        findings.append(
            Finding(
                "ok",
                f"the service's role {service} is this database's own"
                + ("" if recorded else " (not recorded: run `db migrate` again to record it)"),
            )
        )
    return findings


# SECURITY DEFINER functions that an API role may call, in a schema it may use: the way
# Supabase's linter sees them, an RPC that runs with its owner's rights for anyone.
_DEFINERS_EXPOSED = """
SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname) || '('
       || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' AS function,
       n.nspname AS schema,
       string_agg(r.rolname, ', ' ORDER BY r.rolname) AS roles
  FROM pg_catalog.pg_proc AS p
  JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_roles AS r ON r.rolname = ANY ($1::text[])
 WHERE p.prosecdef
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND has_schema_privilege(r.oid, n.oid, 'USAGE')
   AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
 GROUP BY p.oid, n.nspname
 ORDER BY 1
"""


async def _definers_exposed(conn: asyncpg.Connection) -> list[Finding]:
    rows = await conn.fetch(_DEFINERS_EXPOSED, list(API_ROLES))
    return [
        Finding(
            "warning",
            f"{r['function']} is SECURITY DEFINER, in the schema {r['schema']}, which "
            f"{r['roles']} may use, and {r['roles']} may execute it: anyone with the public "
            "API key can call it with its owner's rights. Move it out of the exposed schema "
            f"or REVOKE EXECUTE from {r['roles']} (and PUBLIC)",
        )
        for r in rows[:20]
    ]


# Tables with FORCE ROW LEVEL SECURITY whose owner owns the contract's functions, is no
# superuser, cannot bypass RLS and has no policy: the functions read none of their rows.
_FORCED_RLS = """
SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS table_name,
       o.rolname AS owner
  FROM pg_catalog.pg_class AS c
  JOIN pg_catalog.pg_roles AS o ON o.oid = c.relowner
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND c.relforcerowsecurity
   AND NOT o.rolsuper AND NOT o.rolbypassrls
   AND c.relowner IN (SELECT p.proowner FROM pg_catalog.pg_proc AS p
                        JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
                       WHERE n.nspname = $1 AND p.proname = ANY ($2::text[]))
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy AS pol
                    WHERE pol.polrelid = c.oid AND pol.polpermissive
                      AND (pol.polroles = '{0}' OR c.relowner = ANY (pol.polroles)))
 ORDER BY 1
"""


async def _forced_rls(conn: asyncpg.Connection) -> list[Finding]:
    rows = await conn.fetch(_FORCED_RLS, SCHEMA, list(BY_FUNCTION))
    return [
        Finding(
            "error",
            f"{r['table_name']} has FORCE ROW LEVEL SECURITY and no policy for its owner "
            f"{r['owner']}, who owns the contract's functions: they read none of its rows "
            "(exports of zeros or of nothing). Add a policy for the owner, or own the "
            "functions by a role that bypasses RLS (docs/contract.md)",
        )
        for r in rows
    ]


# The data checks: pages of this size, this many, from the start of the export.
SAMPLE_PAGE = 1000
SAMPLE_PAGES = 10
# The index check: the rows a page of each size reads, after the sample.
SMALL_PAGE, LARGE_PAGE = 100, 400

_ARGS = "$1::uuid, NULL, NULL, NULL, NULL, $2::timestamptz, $3::uuid"

Key = tuple[object, object]


async def _data(
    conn: asyncpg.Connection, caller: str | None, time_column: str, service: str
) -> list[Finding]:
    """The contract's promises about rows, on the live data as the caller sees it: keys unique
    and in order, pages no longer than asked, page ends that are rows of the pages, a count
    that agrees with the pages; then whether a page reads in proportion to its size."""
    if caller is None:
        return [
            Finding(
                "warning",
                "the rows were not checked (unique keyset, page ends, count, index): give "
                "`db check --as <profile id>`, a caller whose scope is every learner",
            )
        ]
    can = await conn.fetchval(
        "SELECT bool_and(has_function_privilege(p.oid, 'EXECUTE'))"
        " FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = $1 AND p.proname = ANY ($2::text[])",
        SCHEMA,
        list(BY_FUNCTION),
    )
    if not can:
        return [
            Finding(
                "warning",
                "the rows were not checked: this role may not execute the contract's functions;"
                f" run `db check` as the service's login role (holding {service}) or as"
                " the owner",
            )
        ]
    time_ = '"' + time_column.replace('"', '""') + '"'
    findings: list[Finding] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        try:
            await conn.fetchval(f"SELECT {SCHEMA}.export_scope($1::uuid, NULL)", caller, timeout=60)
        except asyncpg.InsufficientPrivilegeError as exc:
            return [
                Finding(
                    "warning",
                    f"the rows were not checked: export_scope refused the caller {caller}: "
                    f"{exc.args[0] if exc.args else exc}",
                )
            ]
        said_ends = [
            (r[0], r[1])
            for r in await conn.fetch(
                f"SELECT * FROM {SCHEMA}.learner_export_page_ends({_ARGS}, $4, $5)",
                caller,
                None,
                None,
                SAMPLE_PAGE,
                SAMPLE_PAGES,
            )
        ]
        seen = 0
        previous: Key | None = None
        repeated: Key | None = None
        disordered: tuple[Key, Key] | None = None
        too_long: int | None = None
        ends: list[Key] = []
        after: Key = (None, None)
        complete = False
        for _ in range(SAMPLE_PAGES):
            rows = await conn.fetch(
                f"SELECT r.{time_}, r.learner_id FROM"
                f" {SCHEMA}.get_learner_export_batch({_ARGS}, $4) AS r",
                caller,
                *after,
                SAMPLE_PAGE,
            )
            if len(rows) > SAMPLE_PAGE and too_long is None:
                too_long = len(rows)
            for row in rows:
                key = (row[0], row[1])
                if previous is not None and repeated is None and key == previous:
                    repeated = key
                elif previous is not None and disordered is None and _before(key, previous):
                    disordered = (previous, key)
                previous = key
            seen += len(rows)
            if len(rows) < SAMPLE_PAGE:
                complete = True
                break
            ends.append((rows[SAMPLE_PAGE - 1][0], rows[SAMPLE_PAGE - 1][1]))
            after = (rows[-1][0], rows[-1][1])
        view_differs = await _view_differs(conn, caller, time_)
        total = await conn.fetchval(
            f"SELECT {SCHEMA}.count_learner_export({_ARGS})", caller, None, None
        )
        rest = (
            0
            if complete
            else await conn.fetchval(
                f"SELECT {SCHEMA}.count_learner_export({_ARGS})", caller, *after
            )
        )
    batch = f"{SCHEMA}.get_learner_export_batch"
    if repeated is not None:
        findings.append(
            Finding(
                "error",
                f"the keyset is not unique: {batch} returned the key ({repeated[0]}, "
                f"{repeated[1]}) more than once in its first {seen:,} rows. Each learner must "
                "be one row: a join to a child table (one row per child) must be aggregated. "
                "Exports are cut at such a row",
            )
        )
    if disordered is not None:
        findings.append(
            Finding(
                "error",
                f"{batch} returned ({disordered[1][0]}, {disordered[1][1]}) after "
                f"({disordered[0][0]}, {disordered[0][1]}): pages must be in ({time_column}, "
                "learner_id) order and start after the cursor",
            )
        )
    if too_long is not None:
        findings.append(
            Finding(
                "error",
                f"{batch} returned {too_long:,} rows for a page of {SAMPLE_PAGE:,}: it must "
                "return at most p_page_size rows",
            )
        )
    if said_ends[: len(ends)] != ends or (complete and len(said_ends) > len(ends)):
        findings.append(
            Finding(
                "error",
                f"{SCHEMA}.learner_export_page_ends disagrees with {batch}: it says the first "
                f"pages of {SAMPLE_PAGE:,} end at {_keys(said_ends)}, the pages end at "
                f"{_keys(ends)}. The two must read the same rows with the same scope and filters",
            )
        )
    if view_differs is not None:
        findings.append(Finding("error", view_differs))
    if total - rest != seen:
        findings.append(
            Finding(
                "error",
                f"{SCHEMA}.count_learner_export counts {total - rest:,} rows where the first "
                f"pages of {batch} hold {seen:,}: the two must read the same rows"
                + (" (the keyset repeats: see above)" if repeated is not None else ""),
            )
        )
    if not findings:
        findings.append(
            Finding(
                "ok",
                f"the first {seen:,} rows (of {total:,}) as {caller}: keys unique and in order, "
                "page ends and the count agree with the pages",
            )
        )
        findings.append(await _index(conn, caller, after if not complete else (None, None), total))
    return findings


async def _view_differs(conn: asyncpg.Connection, caller: str, time_: str) -> str | None:
    """Whether the bulk view, read as an export reads it (its settings set for the caller, no
    filter), disagrees with the page function on the first page's rows: a sentence, or None
    (also when there is no view, or this role may not read it)."""
    readable = await conn.fetchval(
        "SELECT has_table_privilege(c.oid, 'SELECT') FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = $1"
        " AND c.relname = $2",
        SCHEMA,
        ROWS_VIEW,
    )
    if not readable:
        return None
    await conn.execute(
        "SELECT set_config('learner_export.caller', $1::uuid::text, true),"
        " set_config('learner_export.client_ids', '', true),"
        " set_config('learner_export.created_from', '', true),"
        " set_config('learner_export.created_to', '', true),"
        " set_config('learner_export.active', '', true)",
        caller,
    )
    pages = await conn.fetch(
        f"SELECT * FROM {SCHEMA}.get_learner_export_batch({_ARGS}, $4) AS r",
        caller,
        None,
        None,
        SAMPLE_PAGE,
    )
    rows = await conn.fetch(
        f"SELECT * FROM {SCHEMA}.{ROWS_VIEW} AS r ORDER BY r.{time_}, r.learner_id LIMIT $1",
        SAMPLE_PAGE,
        timeout=300,
    )
    for i, (page, row) in enumerate(zip(pages, rows, strict=False)):
        if tuple(page) != tuple(row):
            differ = [k for k, v in page.items() if v != row[k]]
            return (
                f"the bulk view {SCHEMA}.{ROWS_VIEW} disagrees with get_learner_export_batch at "
                f"row {i + 1:,} (learner {page['learner_id']}): {', '.join(differ)}. It must "
                "hold the same rows (same scope, filters and values), set-wise"
            )
    if len(pages) != len(rows):
        return (
            f"the bulk view {SCHEMA}.{ROWS_VIEW} holds {len(rows):,} rows where the first page "
            f"of get_learner_export_batch holds {len(pages):,}: it must hold the same rows"
        )
    return None


def _before(key: Key, previous: Key) -> bool:
    try:
        return key < previous
    except TypeError:
        return False


def _keys(keys: list[Key]) -> str:
    shown = ", ".join(f"({k[0]}, {k[1]})" for k in keys[:2])
    return f"[{shown}{', ...' if len(keys) > 2 else ''}]" if keys else "nothing"


async def _index(conn: asyncpg.Connection, caller: str, after: Key, total: int) -> Finding:
    """Whether a page reads in proportion to its size (a walk of an index) or to the rows
    around it (a scan and a sort): a page four times larger must read about four times as many
    rows (three at least). Whatever the data's size, and whatever tables the adapter reads."""
    if total < 4 * LARGE_PAGE:
        return Finding(
            "ok", f"the index was not measured: {total:,} rows are too few for it to matter"
        )
    try:
        small = await _rows_read(conn, caller, after, SMALL_PAGE)
        large = await _rows_read(conn, caller, after, LARGE_PAGE)
    except DATABASE_ERRORS as exc:
        return Finding("error", f"reading pages failed: {type(exc).__name__}: {exc}")
    if large < 3 * small:
        return Finding(
            "error",
            f"pages are not read through an index: a page of {SMALL_PAGE} rows read "
            f"{small:,} table rows and one of {LARGE_PAGE} read {large:,}, so every page reads "
            f"the rows around it (of {total:,}), not its own. Index the learners' table on the "
            "keyset (time column, id), or check with EXPLAIN that the page query uses it",
        )
    return Finding(
        "ok",
        f"pages are read through an index: a page of {SMALL_PAGE} rows read {small:,} table "
        f"rows, one of {LARGE_PAGE} read {large:,} (of {total:,})",
    )


async def _rows_read(conn: asyncpg.Connection, caller: object, after: Key, page: int) -> int:
    """Rows PostgreSQL read (sequentially or through indexes) for one page, from the
    statistics views."""
    stats = (
        "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::bigint"
        " FROM pg_stat_user_tables"
    )
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    before = await conn.fetchval(stats)
    await conn.fetch(
        f"SELECT count(*) FROM {SCHEMA}.get_learner_export_batch({_ARGS}, $4)",
        caller,
        *after,
        page,
    )
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    after_count: int = await conn.fetchval(stats)
    return after_count - int(before)


async def _login_role(conn: asyncpg.Connection, service: str) -> list[Finding]:
    row = await conn.fetchrow(
        "SELECT r.rolsuper, pg_has_role(current_user, $1, 'MEMBER') AS service,"
        " EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "          WHERE c.relowner = r.oid AND n.nspname NOT IN ('pg_catalog',"
        "          'information_schema', $2)) AS owns_tables"
        " FROM pg_roles AS r WHERE r.rolname = current_user",
        service,
        SCHEMA,
    )
    findings: list[Finding] = []
    if row["rolsuper"]:
        findings.append(
            Finding(
                "warning",
                "this role is a superuser: run `serve` and `export` as "
                f"a login role holding only {service} (docs/contract.md)",
            )
        )
    elif row["owns_tables"]:
        findings.append(
            Finding(
                "warning",
                "this role owns platform tables: run `serve` as a "
                f"login role holding only {service}",
            )
        )
    elif row["service"]:
        findings.append(Finding("ok", f"this role holds {service}"))
    else:
        findings.append(
            Finding(
                "warning",
                f"this role does not hold {service}: GRANT {service} TO <the service's login role>",
            )
        )
    return findings
