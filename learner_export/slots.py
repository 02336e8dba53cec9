"""Export slots: at most so many exports at once in this process, and for one caller."""

from __future__ import annotations

from dataclasses import dataclass

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
                f"{self._total} exports are running; retry shortly", self.RETRY_AFTER_SECONDS
            )
        if self._by_caller.get(caller, 0) >= self._per_caller:
            raise TooManyExports(
                f"you have {self._per_caller} exports running; wait for one",
                self.RETRY_AFTER_SECONDS,
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
