"""A one-line progress display for a terminal: rows, bytes, rate and time left."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

REDRAW_SECONDS = 0.1
BAR_WIDTH = 16
DEFAULT_COLUMNS = 80


def stderr_if_terminal() -> TextIO | None:
    """stderr when it is a terminal; otherwise None, so that pipes and logs get no progress."""
    return sys.stderr if sys.stderr.isatty() else None


def duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(
    rows: int | None,
    total: int | None,
    nbytes: int,
    elapsed: float,
    new_rows: int | None = None,
    bar: bool = True,
) -> str:
    """The progress line. rows None: rows cannot be counted (XLSX), so bytes are the measure.

    new_rows is what this run added (a resumed download starts with rows already done); the rate
    and the time left are computed from it. The time left is shown while it can be estimated,
    the time taken otherwise.
    """
    parts: list[str] = []
    fresh = rows if new_rows is None else new_rows
    eta = None
    if rows is not None and total is not None:
        share = min(rows / total, 1.0) if total else 1.0
        percent = f"{share * 100:.1f}%"
        if bar:
            filled = int(share * BAR_WIDTH)
            percent = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent}"
        parts.append(percent)
        parts.append(f"{rows:,}/{total:,} rows")
    elif rows is not None:
        parts.append(f"{rows:,} rows")
    parts.append(f"{nbytes / 1e6:,.1f} MB")
    if elapsed > 0 and fresh is not None:
        rate = fresh / elapsed
        parts.append(f"{rate:,.0f} rows/s")
        if rows is not None and total is not None and rate > 0 and rows < total:
            eta = (total - rows) / rate
    elif elapsed > 0:
        parts.append(f"{nbytes / 1e6 / elapsed:,.1f} MB/s")
    parts.append(f"ETA {duration(eta)}" if eta is not None else duration(elapsed))
    return "  ".join(parts)


class Progress:
    """Redraws one line on `stream` with `\\r`, at most every REDRAW_SECONDS; inert when None.

    A terminal line that wraps cannot be redrawn with `\\r`, so the line is cut to the width of
    the terminal, and padded with spaces to wipe a longer line drawn before it.
    """

    def __init__(
        self,
        stream: TextIO | None,
        *,
        total: int | None = None,
        count_rows: bool = True,
        rows: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total = total
        self.rows = rows
        self.bytes = 0
        self._count_rows = count_rows
        self._start_rows = rows
        self._clock = clock
        self._started = clock()
        self._next_draw = self._started
        self._drawn = 0

    def advance(self, rows: int = 0, nbytes: int = 0) -> None:
        self.rows += rows
        self.bytes += nbytes
        if self.stream is None:
            return
        now = self._clock()
        if now >= self._next_draw:
            self._next_draw = now + REDRAW_SECONDS
            self._draw(now)

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.stream is None:
            return
        self._draw(self._clock())
        self.stream.write("\n")
        self.stream.flush()
        self._drawn = 0

    def abandon(self) -> None:
        """End a drawn line, so that an error message that follows starts on a line of its own."""
        if self.stream is not None and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0

    def _draw(self, now: float) -> None:
        assert self.stream is not None
        rows = self.rows if self._count_rows else None
        new_rows = self.rows - self._start_rows if self._count_rows else None
        width = self._columns() - 1
        line = render(rows, self.total, self.bytes, now - self._started, new_rows)
        if len(line) > width:
            line = render(rows, self.total, self.bytes, now - self._started, new_rows, bar=False)
        line = line[:width]
        self.stream.write("\r" + line.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(line)

    def _columns(self) -> int:
        assert self.stream is not None
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        # A fresh pseudo-terminal reports 0 columns.
        return columns if columns > 1 else DEFAULT_COLUMNS
