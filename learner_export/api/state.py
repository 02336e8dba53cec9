"""What the routes share from the application: the contract learned from the database, and the
services an export needs.

The contract is followed live: before each export the version the database offers (the oids of
its functions, a read of pg_proc) is compared with the one learned, and a different one is
learned again, so every replica follows `db migrate` with nothing but the database. The export
then checks the version again inside its snapshot (learner_export.contract.guard's lock).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from learner_export.contract import Contract, current_version, learn
from learner_export.errors import (
    DATABASE_ERRORS,
    ContractNotMet,
    DatabaseUnavailable,
    database_error,
)
from learner_export.lifecycle import Services

log = logging.getLogger("learner_export.contract")


async def load(app: FastAPI) -> tuple[Contract, frozenset[str]]:
    """Read the contract (and the time zones PostgreSQL knows) where the exports read."""
    settings = app.state.settings
    try:
        async with app.state.read_pool.acquire(timeout=settings.acquire_timeout_seconds) as conn:
            contract, zones = await learn(conn)
    except TimeoutError:
        raise DatabaseUnavailable("every database connection is busy; retry shortly") from None
    except ContractNotMet as exc:
        problems = exc.detail if isinstance(exc.detail, list) else [exc.detail]
        log.error(
            "the database does not offer the export contract (see `learner-export db check`): %s",
            "; ".join(str(p) for p in problems),
        )
        raise
    except DATABASE_ERRORS as exc:
        log.warning("could not read the contract: %s: %s", type(exc).__name__, exc)
        error = database_error(exc, "reading the contract")
        if error is None:
            raise
        raise error from exc
    log.info(
        "contract",
        extra={
            "columns": [c.name for c in contract.columns],
            "keyset": contract.words.time_column,
            "scope_unit": contract.words.unit,
            "version": contract.version,
        },
    )
    return contract, zones


async def _version(app: FastAPI) -> str:
    settings = app.state.settings
    try:
        async with app.state.read_pool.acquire(timeout=settings.acquire_timeout_seconds) as conn:
            return await current_version(conn)
    except TimeoutError:
        raise DatabaseUnavailable("every database connection is busy; retry shortly") from None
    except DATABASE_ERRORS as exc:
        log.warning("could not read the contract's version: %s: %s", type(exc).__name__, exc)
        raise DatabaseUnavailable("database unreachable") from exc


async def contract_of(app: FastAPI) -> tuple[Contract, frozenset[str]]:
    """The contract as the database offers it now: learned again when its version changed."""
    learned: tuple[Contract, frozenset[str]] | None = app.state.contract
    version = await _version(app)
    if learned is not None and learned[0].version == version:
        return learned
    lock: asyncio.Lock = app.state.contract_lock
    async with lock:
        current: tuple[Contract, frozenset[str]] | None = app.state.contract
        if current is None or current[0].version != version:
            if current is not None:
                log.info("the adapter changed (db migrate): learning the contract again")
            try:
                app.state.contract = await load(app)
            except ContractNotMet:
                app.state.contract = None
                raise
            # The OpenAPI document names the columns: built again on next request.
            app.openapi_schema = None
    result: tuple[Contract, frozenset[str]] = app.state.contract
    return result


def services_of(app: FastAPI) -> Services:
    state = app.state
    return Services(
        state.settings, state.pool, state.audit, state.roles, state.metrics, state.slots
    )
