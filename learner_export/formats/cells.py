"""SQL renderings that several formats share: timestamps, floats, the resume cursor."""

from __future__ import annotations

from collections.abc import Sequence

from learner_export.contract.columns import KEY_AT, KEY_ID_AT, Column, Kind
from learner_export.errors import CELL_TOO_LARGE_MARK

# COPY's CSV quote and delimiter for formats whose lines are written whole: characters that JSON
# escapes and XML forbids, so they never occur in a line and COPY never quotes one.
WHOLE_LINES = {"quote": "\x01", "delimiter": "\x02"}

_DATE = "YYYY-MM-DD"
_TIME = "HH24:MI:SS.US"


def timestamp_text(ref: str, kind: Kind, tz: str) -> str:
    """ISO 8601 with microseconds always; an instant with its offset in the export's time zone
    (the session's TimeZone), a timestamp without time zone without one, a date as a date."""
    if kind is Kind.DATE:
        return f"to_char({ref}, '{_DATE}')"
    if kind is Kind.TIMESTAMP:
        return f"to_char({ref}, '{_DATE}\"T\"{_TIME}')"
    # A literal offset is cheaper than TZH:TZM, and in UTC always right.
    offset = '"+00:00"' if tz == "UTC" else "TZH:TZM"
    return f"to_char({ref}, '{_DATE}\"T\"{_TIME}{offset}')"


def python_float(ref: str) -> str:
    """A float8 as Python's repr() writes it: PostgreSQL's shortest digits (the export sets
    extra_float_digits = 1), and ".0" when whole and written without an exponent (50.0, 33.3;
    PostgreSQL writes 1e+15 and larger that way, a valid JSON number as it is)."""
    return (
        f"CASE WHEN {ref} = trunc({ref}) AND abs({ref}) < 1e15 THEN {ref}::text || '.0'"
        f" ELSE {ref}::text END"
    )


def cursor(tz: str) -> str:
    """The opaque resume cursor of row `r`: base64url, unpadded, of "<created_at>|<learner id>"
    (learner_export.cursor decodes it); encode() breaks base64 into lines of 76, which go too."""
    # The keyset as the guarded page query names it, whatever the adapter calls its columns; in
    # UTC whatever the export's zone: TZH:TZM drop an offset's seconds (Africa/Monrovia before
    # 1972 was -00:44:30), and a resume would then skip or repeat rows.
    stamp = timestamp_text(f"r.{KEY_AT} AT TIME ZONE 'UTC'", Kind.TIMESTAMP, "UTC")
    stamp = f"{stamp} || '+00:00'"
    return (
        f"rtrim(translate(encode(convert_to({stamp} || '|' || r.{KEY_ID_AT}, 'UTF8'),"
        " 'base64'), E'+/\\n', '-_'), '=')"
    )


def literal(text: str) -> str:
    """An SQL string literal (standard_conforming_strings, PostgreSQL's default since 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def chars(text: str, pattern: str = "{}") -> str:
    """A string literal of these characters as escapes (optionally inside a pattern)."""
    return "E'" + pattern.format("".join(f"\\u{ord(c):04X}" for c in text)) + "'"


def is_time(column: Column) -> bool:
    return column.kind in (Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ)


def cell_bound(columns: Sequence[Column], max_bytes: int) -> str:
    """A condition on row `r` that is true, or fails the COPY when a text cell holds more than
    `max_bytes` bytes, naming the learner and the column. SQL has no RAISE: a cast of the message
    to integer fails with it, and CASE evaluates the cast only for such a cell. octet_length()
    reads a stored value's size from its header, without decompressing it."""
    texts = [c for c in columns if c.kind is Kind.TEXT]
    if not texts:
        return ""
    mark = literal(CELL_TOO_LARGE_MARK + "learner ")
    arms = " ".join(
        f"WHEN octet_length({c.sql}) > {max_bytes} THEN ({mark}"
        f' || r."learner_id" || {literal(" column " + c.name + ": ")}'
        f" || octet_length({c.sql}) || ' bytes')::integer IS NULL"
        for c in texts
    )
    return f"CASE {arms} ELSE true END"
