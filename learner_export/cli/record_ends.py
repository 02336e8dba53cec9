"""Where records end in the bytes of a CSV or JSON Lines export, fed in pieces of any size.

CSV (as our encoder writes it, RFC 4180): a record ends at CRLF outside double quotes. Every `"`
toggles the quoted state, which is exact because a quote outside a quoted field only ever opens
one, and an escaped `""` inside one toggles twice. JSON Lines: every LF ends a record, since JSON
escapes line breaks inside strings. Both are counted with bytes methods that run in C.
"""

from __future__ import annotations

from typing import Protocol


class RecordEnds(Protocol):
    records: int
    """Complete records seen so far."""
    last_end: int
    """Offset just after the last complete record (0 when none)."""
    previous_end: int
    """Offset just after the record before it: where the last complete record starts."""
    first_end: int
    """Offset just after the first record (0 when none): the CSV header."""

    def feed(self, data: bytes) -> int: ...


class _Ends:
    def __init__(self) -> None:
        self.records = 0
        self.last_end = 0
        self.previous_end = 0
        self.first_end = 0
        self.offset = 0

    def _ended(self, base: int, piece: bytes, separator: bytes, count: int) -> None:
        """Record `count` ends of `separator` inside `piece`, which starts at offset `base`."""
        last = piece.rfind(separator)
        if count >= 2:
            self.previous_end = base + piece.rfind(separator, 0, last) + len(separator)
        else:
            self.previous_end = self.last_end
        if self.records == 0:
            self.first_end = base + piece.find(separator) + len(separator)
        self.last_end = base + last + len(separator)
        self.records += count

    def _ended_at(self, end: int) -> None:
        if self.records == 0:
            self.first_end = end
        self.previous_end, self.last_end = self.last_end, end
        self.records += 1


class CsvRecordEnds(_Ends):
    """Finds CRLF outside quotes."""

    def __init__(self) -> None:
        super().__init__()
        self._quoted = False
        self._cr = False  # the bytes so far end with a CR outside quotes

    def feed(self, data: bytes) -> int:
        if not data:
            return 0
        before = self.records
        base = self.offset
        if self._cr and data[:1] == b"\n":
            self._ended_at(base + 1)
        pieces = data.split(b'"')
        for i, piece in enumerate(pieces):
            if not self._quoted:
                count = piece.count(b"\r\n")
                if count:
                    self._ended(base, piece, b"\r\n", count)
            if i < len(pieces) - 1:
                self._quoted = not self._quoted
                base += len(piece) + 1
        self._cr = not self._quoted and data.endswith(b"\r")
        self.offset += len(data)
        return self.records - before


class JsonlRecordEnds(_Ends):
    """Finds LF."""

    def feed(self, data: bytes) -> int:
        count = data.count(b"\n")
        if count:
            self._ended(self.offset, data, b"\n", count)
        self.offset += len(data)
        return count


def record_ends(fmt: str) -> RecordEnds:
    if fmt == "csv":
        return CsvRecordEnds()
    if fmt == "jsonl":
        return JsonlRecordEnds()
    raise ValueError(f"records of {fmt} cannot be found in its bytes")
