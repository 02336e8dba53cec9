"""Cells a spreadsheet would execute: the rule, in Python (the tests' oracle) and in SQL."""

from __future__ import annotations

# OWASP's list for CSV injection: a spreadsheet treats a cell starting with these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_CODES = ", ".join(str(ord(p)) for p in FORMULA_PREFIXES)


def needs_neutralising(text: str) -> bool:
    return text.startswith(FORMULA_PREFIXES)


def neutralise(text: str) -> str:
    """Prefix a formula-like cell with a single quote, so that spreadsheets show it as text."""
    return "'" + text if needs_neutralising(text) else text


def sql_is_formula(ref: str) -> str:
    """A boolean SQL expression: whether the text `ref` needs neutralising."""
    return f"ascii({ref}) IN ({_CODES})"


def sql_neutralised(ref: str) -> str:
    """An SQL expression: the text `ref` as neutralise() gives it."""
    return f"CASE WHEN {sql_is_formula(ref)} THEN '''' || {ref} ELSE {ref} END"
