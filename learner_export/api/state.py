"""What the routes share from the application: the contract learned from the database, and the
services an export needs."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from learner_export.contract import Contract, learn
from learner_export.errors import DATABASE_ERRORS, ContractNotMet, database_error
from learner_export.lifecycle import Services

log = logging.getLogger("learner_export.contract")


async def load(app: FastAPI) -> tuple[Contract, frozenset[str]]:
    """Read the contract (and the time zones PostgreSQL knows) where the exports read."""
    settings = app.state.settings
    try:
        async with app.state.read_pool.acquire(timeout=settings.acquire_timeout_seconds) as conn:
            contract, zones = await learn(conn)
    except DATABASE_ERRORS as exc:
        log.warning("could not read the contract: %s: %s", type(exc).__name__, exc)
        error = database_error(exc, "reading the contract")
        if error is None:
            raise
        raise error from exc
    log.info("contract", extra={"columns": [c.name for c in contract.columns]})
    return contract, zones


async def contract_of(app: FastAPI) -> tuple[Contract, frozenset[str]]:
    """The contract, read once: at start-up, or on first need when the database was down."""
    learned: tuple[Contract, frozenset[str]] | None = app.state.contract
    if learned is not None:
        return learned
    lock: asyncio.Lock = app.state.contract_lock
    async with lock:
        if app.state.contract is None:
            try:
                app.state.contract = await load(app)
            except ContractNotMet:
                log.error("the database does not offer the export contract; see db check")
                raise
    result: tuple[Contract, frozenset[str]] = app.state.contract
    return result


def services_of(app: FastAPI) -> Services:
    state = app.state
    return Services(state.settings, state.pool, state.audit, state.roles, state.metrics)
