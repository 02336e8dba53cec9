"""`learner-export db check`: whether a database meets the export contract, in sentences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

from learner_export import db
from learner_export.config import Settings
from learner_export.contract import (
    BY_FUNCTION,
    SCHEMA,
    SERVICE_ROLE,
    _problems_of,
    read_functions,
)
from learner_export.errors import CONNECTION_ERRORS, DATABASE_ERRORS, database_error

# Roles that must never reach the service's functions (Supabase's API roles, and everyone).
FORBIDDEN_GRANTEES = ("PUBLIC", "anon", "authenticated", "service_role", "authenticator")


@dataclass(frozen=True, slots=True)
class Finding:
    level: Literal["ok", "warning", "error"]
    text: str

    def line(self) -> str:
        return {"ok": "ok       ", "warning": "WARNING  ", "error": "ERROR    "}[
            self.level
        ] + self.text


async def check(settings: Settings, dsn: str) -> list[Finding]:
    try:
        conn = await db.connect(settings, dsn)
    except CONNECTION_ERRORS as exc:
        # The same sentence as `export` and serve's warning give (errors.database_error).
        error = database_error(exc, "connecting", dsn=dsn)
        return [Finding("error", str(error.detail if error else exc))]
    try:
        return await _check(conn)
    except DATABASE_ERRORS as exc:
        return [
            Finding("error", f"the check could not finish: {type(exc).__name__}: {str(exc)[:200]}")
        ]
    finally:
        await conn.close()


async def _check(conn: asyncpg.Connection) -> list[Finding]:
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
    functions = await read_functions(conn)
    problems, columns = _problems_of(functions)
    findings += [Finding("error", p) for p in problems]
    if not problems:
        findings.append(
            Finding(
                "ok",
                f"all {len(BY_FUNCTION)} functions of the contract exist "
                "with the contract's parameters",
            )
        )
        findings.append(
            Finding(
                "ok",
                f"{len(columns)} exported columns: "
                + ", ".join(f"{c.name} ({c.pg_type})" for c in columns),
            )
        )
    for name in BY_FUNCTION:
        for info in functions.get(name, []):
            where = f"{SCHEMA}.{name}"
            if not info.security_definer:
                findings.append(
                    Finding(
                        "error",
                        f"{where} is not SECURITY DEFINER: the service's "
                        "role would need rights on your tables",
                    )
                )
            if not any(c in ("search_path=", 'search_path=""') for c in info.config):
                findings.append(
                    Finding(
                        "error",
                        f"{where} lacks SET search_path = '' (a "
                        "SECURITY DEFINER function must not trust the caller's "
                        "search_path)",
                    )
                )
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
            others = [g for g in info.executors if g not in (*FORBIDDEN_GRANTEES, SERVICE_ROLE)]
            if others:
                findings.append(
                    Finding("warning", f"{where} is also executable by {', '.join(others)}")
                )
            if SERVICE_ROLE not in info.executors:
                findings.append(
                    Finding(
                        "error", f"{SERVICE_ROLE} may not execute {where}: run `db migrate` again"
                    )
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
    if not problems:
        findings += await _keyset(conn)
    findings += await _login_role(conn)
    if not any(f.level == "error" for f in findings):
        findings.append(
            Finding(
                "ok",
                f"EXECUTE is held by nobody but the service's role ({SERVICE_ROLE}) and the owner",
            )
        )
    return findings


async def _late_key(
    conn: asyncpg.Connection, admin_scope_caller: str | None, total: int, page: int
) -> tuple[object, object] | None:
    ends = await conn.fetch(
        f"SELECT created_at, learner_id FROM {SCHEMA}.learner_export_page_ends($1, NULL, NULL,"
        " NULL, NULL, NULL, NULL, $2, 1)",
        admin_scope_caller,
        max(1, total - page),
    )
    return (ends[0][0], ends[0][1]) if ends else None


async def _keyset(conn: asyncpg.Connection) -> list[Finding]:
    """The plans of a first and a late page: a late page must read about as many rows as the
    first (an index walk), not every row before or after it (a scan and a sort)."""
    caller = (
        await conn.fetchval(
            "SELECT p.id FROM public.profiles AS p WHERE "
            f"{SCHEMA}.caller_role(p.id) IN ('Admin', 'admin') LIMIT 1"
        )
        if await conn.fetchval("SELECT to_regclass('public.profiles') IS NOT NULL")
        else None
    )
    if caller is None:
        return [
            Finding(
                "warning",
                "keyset not checked: no admin caller found to read pages as "
                "(public.profiles with role Admin/admin)",
            )
        ]
    page = 2500
    try:
        total = await conn.fetchval(f"SELECT {SCHEMA}.count_learner_export($1)", caller)
        if total < 10 * page:
            return [
                Finding(
                    "warning",
                    f"keyset not checked: {total} rows are too few to tell an "
                    "index walk from a scan",
                )
            ]
        late = await _late_key(conn, caller, total, page)
        read_first = await _rows_read(conn, caller, None, page)
        read_late = await _rows_read(conn, caller, late, page)
    except DATABASE_ERRORS as exc:
        return [Finding("error", f"reading pages failed: {type(exc).__name__}: {exc}")]
    if read_late > 3 * read_first + 10 * page or read_first > total:
        return [
            Finding(
                "error",
                f"the keyset is not index-backed: a first page read {read_first:,}"
                f" rows and a late one {read_late:,} (of {total:,}); index "
                "(created_at, id) of the learners' table",
            )
        ]
    return [
        Finding(
            "ok",
            f"keyset index-backed: a first page of {page:,} read {read_first:,} "
            f"rows, a late one {read_late:,} (of {total:,})",
        )
    ]


async def _rows_read(conn: asyncpg.Connection, caller: object, after: object, page: int) -> int:
    """Rows PostgreSQL read (sequentially or through indexes) for one page, from the
    statistics views."""
    stats = (
        "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::bigint"
        " FROM pg_stat_user_tables"
    )
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    before = await conn.fetchval(stats)
    key = after if isinstance(after, tuple) else (None, None)
    await conn.fetch(
        f"SELECT count(*) FROM {SCHEMA}.get_learner_export_batch($1, NULL, NULL,"
        " NULL, NULL, $2, $3, $4)",
        caller,
        key[0],
        key[1],
        page,
    )
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    after_count: int = await conn.fetchval(stats)
    return after_count - int(before)


async def _login_role(conn: asyncpg.Connection) -> list[Finding]:
    row = await conn.fetchrow(
        "SELECT r.rolsuper, pg_has_role(current_user, $1, 'MEMBER') AS service,"
        " EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "          WHERE c.relowner = r.oid AND n.nspname NOT IN ('pg_catalog',"
        "          'information_schema', $2)) AS owns_tables"
        " FROM pg_roles AS r WHERE r.rolname = current_user",
        SERVICE_ROLE,
        SCHEMA,
    )
    findings: list[Finding] = []
    if row["rolsuper"]:
        findings.append(
            Finding(
                "warning",
                "this role is a superuser: run `serve` and `export` as "
                f"a login role holding only {SERVICE_ROLE} (docs/contract.md)",
            )
        )
    elif row["owns_tables"]:
        findings.append(
            Finding(
                "warning",
                "this role owns platform tables: run `serve` as a "
                f"login role holding only {SERVICE_ROLE}",
            )
        )
    elif row["service"]:
        findings.append(Finding("ok", f"this role holds {SERVICE_ROLE}"))
    else:
        findings.append(
            Finding(
                "warning",
                f"this role does not hold {SERVICE_ROLE}: "
                f"GRANT {SERVICE_ROLE} TO <the service's login role>",
            )
        )
    return findings
