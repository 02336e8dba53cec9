"""Export slots: at most so many exports at once, and for one caller: in this process (a quick
refusal before any database work) and across every replica (advisory locks in the database)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from learner_export.errors import TooManyExports


@dataclass
class Slot:
    slots: ExportSlots
    caller: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.slots._release(self.caller)


class ExportSlots:
    """At most `total` exports at once in this process, and `per_caller` for one caller.

    Beyond that an export is refused at once (429), rather than queued behind the pool.
    """

    RETRY_AFTER_SECONDS = 5

    def __init__(self, total: int, per_caller: int) -> None:
        self._total = total
        self._per_caller = per_caller
        self._running = 0
        self._by_caller: dict[str, int] = {}

    def take(self, caller: str) -> Slot:
        if self._running >= self._total:
            raise TooManyExports(
                f"{self._total} exports are running; retry shortly",
                self.RETRY_AFTER_SECONDS,
                by_others=True,
            )
        if self._by_caller.get(caller, 0) >= self._per_caller:
            raise TooManyExports(
                f"you have {self._per_caller} exports running; wait for one",
                self.RETRY_AFTER_SECONDS,
                by_others=False,
            )
        self._running += 1
        self._by_caller[caller] = self._by_caller.get(caller, 0) + 1
        return Slot(self, caller)

    def _release(self, caller: str) -> None:
        self._running -= 1
        left = self._by_caller[caller] - 1
        if left:
            self._by_caller[caller] = left
        else:
            del self._by_caller[caller]


# One statement takes a caller's slot, then a global one, as transaction-level advisory locks
# on the export's own connection, inside its snapshot's transaction: every replica on the same
# database sees them, and they vanish when the transaction ends or the connection dies (a
# killed replica's slots come back as soon as PostgreSQL notices its connections are gone).
# Each lock is keyed by a 64-bit hash of a name; a try-lock never waits. With LIMIT 1 the scan
# stops at the first slot taken.
_TAKE_SLOTS = """
SELECT (SELECT i FROM generate_series(0, $2 - 1) AS i
         WHERE pg_try_advisory_xact_lock(hashtextextended('learner-export:caller:' || $1
                                                          || ':' || i, 0))
         LIMIT 1) AS mine,
       (SELECT i FROM generate_series(0, $3 - 1) AS i
         WHERE pg_try_advisory_xact_lock(hashtextextended('learner-export:all:' || i, 0))
         LIMIT 1) AS total
"""


async def take_database_slots(
    conn: asyncpg.Connection, caller: str, per_caller: int, total: int
) -> None:
    """Hold one of the caller's `per_caller` and one of the `total` export slots shared by
    every replica, until the connection's transaction ends; TooManyExports (429) when either
    is full. Call inside the export's transaction (a refusal rolls it back, freeing both)."""
    row = await conn.fetchrow(_TAKE_SLOTS, caller, per_caller, total)
    if row is None or row["mine"] is None:
        raise TooManyExports(
            f"you have {per_caller} exports running; wait for one",
            ExportSlots.RETRY_AFTER_SECONDS,
            by_others=False,
        )
    if row["total"] is None:
        raise TooManyExports(
            f"{total} exports are running; retry shortly",
            ExportSlots.RETRY_AFTER_SECONDS,
            by_others=True,
        )
