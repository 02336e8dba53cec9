"""What every spreadsheet-bound format must do to a text cell."""

from __future__ import annotations

from datetime import datetime

# OWASP's list for CSV injection: a spreadsheet treats a cell starting with these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def is_formula_like(text: str) -> bool:
    return text.startswith(FORMULA_PREFIXES)


def iso_timestamp(value: datetime) -> str:
    """A timestamp as exports write it: ISO 8601, microseconds always, as the COPY select list
    writes it with to_char() (service.copy_select)."""
    return value.isoformat(timespec="microseconds")


def pg_float(value: float) -> str:
    """A float as PostgreSQL writes a float8: the shortest digits, no ".0" when whole."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def neutralise(text: str) -> str:
    """Prefix a formula-like cell with a single quote, so that spreadsheets show it as text."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
