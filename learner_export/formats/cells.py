"""SQL renderings that several formats share: timestamps, floats, the resume cursor."""

from __future__ import annotations

from learner_export.contract.columns import Column, Kind

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
    extra_float_digits = 1), and ".0" when whole (50.0, 33.3)."""
    return f"CASE WHEN {ref} = trunc({ref}) THEN {ref}::text || '.0' ELSE {ref}::text END"


def cursor(tz: str) -> str:
    """The opaque resume cursor of row `r`: base64url, unpadded, of "<created_at>|<learner id>"
    (learner_export.cursor decodes it); encode() breaks base64 into lines of 76, which go too."""
    # In UTC whatever the export's zone: TZH:TZM drop an offset's seconds (Africa/Monrovia
    # before 1972 was -00:44:30), and a resume would then skip or repeat rows.
    stamp = timestamp_text("r.\"created_at\" AT TIME ZONE 'UTC'", Kind.TIMESTAMP, "UTC")
    stamp = f"{stamp} || '+00:00'"
    return (
        f"rtrim(translate(encode(convert_to({stamp} || '|' || r.\"learner_id\", 'UTF8'),"
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
