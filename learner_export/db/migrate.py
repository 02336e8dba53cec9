"""`db migrate`: the schema learner_export brought up to date, and nothing outside it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg

from learner_export import sql

SCHEMA = "learner_export"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def migrate(conn: asyncpg.Connection, adapter: Path | None = None) -> list[str]:
    """Bring the schema learner_export up to date; nothing outside it is created or changed.

    The numbered migrations (tables: append-only) not yet recorded run in order, each in its
    own transaction with its record. The adapter (the contract's functions, written once and
    re-applied whenever its text changes) runs when its checksum differs from the one recorded.
    Then the lockdown revokes every grant on the schema and gives the service's role what it
    needs. An advisory lock keeps two migrating processes from racing. Returns what was applied.
    """
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext('learner-export migrations'))")
    try:
        await conn.execute(
            f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};"
            f" REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;"
            f" CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations ("
            " name text PRIMARY KEY, checksum text NOT NULL DEFAULT '',"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["name"]: r["checksum"]
            for r in await conn.fetch(f"SELECT name, checksum FROM {SCHEMA}.schema_migrations")
        }
        for resource in sql.migration_files():
            if resource.name in done:
                continue
            text = sql.read(resource)
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.schema_migrations (name, checksum) VALUES ($1, $2)",
                    resource.name,
                    _checksum(text),
                )
            applied.append(resource.name)
        if adapter is not None:
            text = _read(adapter)
            key = "adapter"
            if done.get(key) != _checksum(text):
                async with conn.transaction():
                    await conn.execute(text)
                    await conn.execute(
                        f"INSERT INTO {SCHEMA}.schema_migrations (name, checksum) VALUES ($1, $2)"
                        " ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum,"
                        " applied_at = now()",
                        key,
                        _checksum(text),
                    )
                applied.append(f"adapter {adapter.name}")
        await conn.execute(sql.read(sql.LOCKDOWN))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('learner-export migrations'))")
    return applied
