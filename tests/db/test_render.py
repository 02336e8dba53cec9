"""CSV and JSON Lines rendered on the service's side (formats.render, C) are the bytes the select
lists write in PostgreSQL (`EXPORT_RENDER=database`), which the other tests check against
independent readers: on the hostile dataset, on text made of every character the formula rule
and JSON look at, and on dates and instants of every era in zones with odd offsets."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import orjson
import pytest

from learner_export.contract.columns import Column, Kind
from learner_export.formats import RenderOptions, cells, jsonl, render, xlsx
from learner_export.formats.csv import crlf
from learner_export.formats.formula import sql_neutralised
from tests.conftest import Database, export_bytes, run, sheets
from tests.db.test_hostile import hostile

pytestmark = pytest.mark.skipif(not render.AVAILABLE, reason="built without the C extension")

__all__ = ["hostile"]


@pytest.mark.parametrize(
    "params",
    [
        {"format": "csv"},
        {"format": "csv", "escape_formulas": False, "cursor": True},
        {"format": "jsonl"},
        {"format": "jsonl", "cursor": True},
    ],
    ids=["csv", "csv-plain-cursor", "jsonl", "jsonl-cursor"],
)
def test_hostile_exports_are_the_same_bytes_whoever_renders_them(
    hostile: Database, params: dict[str, Any]
) -> None:
    ours, _ = run(export_bytes(hostile.url, hostile.admin_id, **params))
    theirs, _ = run(export_bytes(hostile.url, hostile.admin_id, render="database", **params))
    assert len(ours) > 40_000_000
    assert ours == theirs


@pytest.mark.parametrize("escape_formulas", [True, False])
def test_hostile_workbooks_hold_the_same_sheets_whoever_renders_them(
    hostile: Database, escape_formulas: bool
) -> None:
    """Sheets of 120 rows (the workbook goes on in new sheets, numbered again from 2); the zip's
    own bytes differ only by its members' times."""
    params = {"format": "xlsx", "escape_formulas": escape_formulas}
    ours, _ = run(export_bytes(hostile.url, hostile.admin_id, sheet_rows=121, **params))
    theirs, _ = run(
        export_bytes(hostile.url, hostile.admin_id, sheet_rows=121, render="database", **params)
    )
    mine, reference = sheets(ours), sheets(theirs)
    assert len(mine) > 3
    assert mine == reference
    assert (b' s="2"><is><t>' in mine["xl/worksheets/sheet1.xml"]) is escape_formulas


async def _copies(
    url: str, zone: str, *statements: tuple[str, dict[str, str]], args: tuple[Any, ...]
) -> list[bytes]:
    """COPY (statement) TO STDOUT (FORMAT csv, options) of each, in the zone, as bytes."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "SELECT set_config('TimeZone', $1, false), set_config('DateStyle', 'ISO, YMD', false),"
            " set_config('learner_export.row', '0', false),"
            " set_config('extra_float_digits', '1', false)",
            zone,
        )
        outputs = []
        for sql, options in statements:
            parts: list[bytes] = []

            async def sink(data: bytes, parts: list[bytes] = parts) -> None:
                parts.append(bytes(data))

            await conn.copy_from_query(sql, *args, output=sink, format="csv", **options)
            outputs.append(b"".join(parts))
        return outputs
    finally:
        await conn.close()


# The characters the formula rule and JSON escaping look at, and ordinary ones.
_ALPHABET = [
    *"=+-@;\t\r\n\"',. ()/0123456789aZé\\",
    *"\x01\x08\x1f\x7f\u00a0\u2212\uff0b\uff1d\ufe66\u3000\u200b\ufeff\u2028😀漢",
]


def _texts() -> list[str | None]:
    rng = random.Random(18)
    texts: list[str | None] = [None, "", "=1+2", "+44 20 7946 0958", "+1;x", "a;=b\nc", "-"]
    texts += [" \u3000=1", "+", "@", "\"=cmd|' /C calc'!A0\"", "+\uff0b1", "\u2212 3", '"' * 5]
    texts += ["x;\t\r\n=;+"]
    for _ in range(3000):
        texts.append("".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 12))))
    return texts


_TEXTS = "SELECT t, i FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i)"


@pytest.mark.parametrize("escape_formulas", [True, False])
def test_csv_text_of_every_special_character_is_the_select_lists(
    database_url: str, escape_formulas: bool
) -> None:
    texts = _texts()
    rendered = sql_neutralised("t") if escape_formulas else "t"
    plain, expected = run(
        _copies(
            database_url,
            "UTC",
            (f"SELECT t, i FROM ({_TEXTS}) s ORDER BY i", {}),
            (f"SELECT {rendered}, i FROM ({_TEXTS}) s ORDER BY i", {}),
            args=(texts,),
        )
    )
    kind = render.FORMULA_TEXT if escape_formulas else render.AS_IS
    ours, used, rows = render._render.csv_records(plain, kind + render.AS_IS)
    assert (used, rows) == (len(plain), len(texts))
    assert ours == crlf(expected)
    assert (b"'=1+2" in ours) is escape_formulas


@pytest.mark.parametrize("escape_formulas", [True, False])
def test_sheet_cells_of_every_special_character_are_the_select_lists(
    database_url: str, escape_formulas: bool
) -> None:
    """Inline strings escaped for XML (forbidden characters dropped), `xml:space` where white
    space ends them, the quote-prefix style on formulas, rows numbered in their sheet."""
    texts = _texts()
    column = Column("t", Kind.TEXT, "text")
    options = RenderOptions(escape_formulas=escape_formulas, sheet_rows=1001)
    spec = xlsx.select([column], options)
    plain, expected = run(
        _copies(
            database_url,
            "UTC",
            (f"SELECT t FROM ({_TEXTS}) s ORDER BY i", {}),
            (f"SELECT {spec.select} FROM ({_TEXTS}) r ORDER BY r.i", spec.options),
            args=(texts,),
        )
    )
    kind = render.sheet_kind(column, escape_formulas)
    ours, used, rows = render._render.sheet_rows(plain, kind, (b"A",), 0, 1000)
    assert (used, rows) == (len(plain), len(texts))
    assert ours == expected
    assert ours.count(b'<row r="1001">') == len(texts) // 1000
    assert (b' s="2"><is><t>=1+2<' in ours) is escape_formulas


def test_json_strings_of_every_special_character_are_to_jsons(database_url: str) -> None:
    texts = _texts()
    plain, expected = run(
        _copies(
            database_url,
            "UTC",
            (f"SELECT t FROM ({_TEXTS}) s ORDER BY i", {}),
            (
                f"SELECT '{{\"t\":' || coalesce(to_json(t)::text, 'null') || '}}'"
                f" FROM ({_TEXTS}) s ORDER BY i",
                cells.WHOLE_LINES,
            ),
            args=(texts,),
        )
    )
    ours, used, _ = render._render.json_lines(plain, render.JSON_STRING, (b'{"t":',))
    assert used == len(plain)
    assert ours == expected
    assert ours.count(b"\n") == len(texts)


_MOMENTS = [
    "0044-03-15 12:00:00 BC",
    "0001-01-01 00:00:00",
    "1835-06-01 10:00:00.5",
    "1900-01-01 00:00:00",
    "1968-07-01 12:00:00.000001",
    "1972-01-01 00:00:00.1",
    "2024-03-31 02:30:00.12",
    "2024-10-27 02:30:00.123456",
    "9999-12-31 23:59:59.999999",
    "10000-01-01 00:00:00",
    "294276-12-30 23:59:59.999999",
    "infinity",
    "-infinity",
]
_ZONES = [
    "UTC",
    "Europe/Paris",
    "Asia/Kolkata",
    "Africa/Monrovia",
    "America/St_Johns",
    "Asia/Kathmandu",
]
_COLUMNS = [
    Column("at", Kind.TIMESTAMPTZ, "timestamptz"),
    Column("wall", Kind.TIMESTAMP, "timestamp"),
    Column("day", Kind.DATE, "date"),
]


@pytest.mark.parametrize("zone", _ZONES)
def test_dates_and_instants_render_as_to_char_writes_them(database_url: str, zone: str) -> None:
    """PostgreSQL's ISO output turned into to_char()'s: BC years, years past 9999, offsets with
    minutes and seconds (Monrovia's -00:44:30 before 1972), fractions of every length,
    infinities as NULL; in CSV and as JSON strings."""
    source = (
        "SELECT m::timestamptz AS at, m::timestamp AS wall, m::date AS day, i"
        " FROM unnest($1::text[]) WITH ORDINALITY AS u(m, i)"
    )
    times = [cells.timestamp_text(c.name, c.kind, zone) for c in _COLUMNS]
    members = " || ".join(
        f"'{'{' if i == 0 else ','}\"{c.name}\":' || coalesce(to_json({t}), 'null')"
        for i, (c, t) in enumerate(zip(_COLUMNS, times, strict=True))
    )
    plain, expected, expected_json = run(
        _copies(
            database_url,
            zone,
            (f"SELECT at, wall, day FROM ({source}) s ORDER BY i", {}),
            (f"SELECT {', '.join(times)} FROM ({source}) s ORDER BY i", {}),
            (f"SELECT {members} || '}}' FROM ({source}) s ORDER BY i", cells.WHOLE_LINES),
            args=(_MOMENTS,),
        )
    )
    kinds = b"".join(render.time_kind(c) or b"" for c in _COLUMNS)
    ours, _, _ = render._render.csv_records(plain, kinds)
    assert ours == crlf(expected)
    names = tuple(
        ("{" if i == 0 else ",").encode() + f'"{c.name}":'.encode() for i, c in enumerate(_COLUMNS)
    )
    ours_json, _, _ = render._render.json_lines(plain, kinds, names)
    assert ours_json == expected_json
    assert ours.count(b"\r\n") == len(_MOMENTS)
    if zone == "Africa/Monrovia":
        assert b"1968-07-01T12:00:00.000001-00:44," in ours  # -00:44:30, its seconds dropped


_FLOATS = ["50", "33.3", "NaN", "Infinity", "-Infinity", "1e20", "-0", "0", "1e15", "1e-5"]
_FLOATS += ["999999999999999", "1.0000000000000005e15", "5e-324", "1.7976931348623157e308", None]
_NUMERICS = ["NaN", "1.50", "-0.000", "12345678901234567890.123", "7", None, "2", "3", "4"]
_NUMBERS = (
    'SELECT f::float8 AS "x", n::numeric AS "y", i'
    " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(f, n, i)"
)


def test_numbers_are_the_select_lists_and_every_line_is_json(database_url: str) -> None:
    """Floats as Python's repr() writes them (NaN and infinities null in JSON, no cell in a
    sheet), numerics with NaN null; PostgreSQL's exponent form from 1e15 on stays valid JSON."""
    columns = [Column("x", Kind.FLOAT, "float8"), Column("y", Kind.NUMERIC, "numeric")]
    lines = jsonl.select(columns, RenderOptions())
    sheet = xlsx.select(columns, RenderOptions())
    source = f"SELECT x, y FROM ({_NUMBERS}) r ORDER BY i"
    plain, expected, expected_sheet = run(
        _copies(
            database_url,
            "UTC",
            (source, {}),
            (f"SELECT {lines.select} FROM ({_NUMBERS}) r ORDER BY i", lines.options),
            (f"SELECT {sheet.select} FROM ({_NUMBERS}) r ORDER BY i", sheet.options),
            args=(_FLOATS, _NUMERICS),
        )
    )
    ours, _, _ = render._render.json_lines(plain, b"fm", tuple(jsonl._names(columns, False)))
    assert ours == expected
    values = [orjson.loads(line) for line in ours.splitlines()]
    assert [v["x"] for v in values[:7]] == [50.0, 33.3, None, None, None, 1e20, -0.0]
    assert values[12]["x"] == 5e-324
    assert [v["y"] for v in values[:3]] == [None, 1.5, 0]
    kinds = b"".join(render.sheet_kind(c, True) for c in columns)
    sheet_ours, _, _ = render._render.sheet_rows(plain, kinds, (b"A", b"B"), 0, 1000)
    assert sheet_ours == expected_sheet
    assert b'<row r="4"><c r="B4"><v>NaN' not in sheet_ours
    assert b'<row r="2"><c r="A2"><v>50.0</v></c><c r="B2"/></row>' in sheet_ours


def test_a_record_cut_between_pieces_waits_for_its_end() -> None:
    records = render.Records([render.FORMULA_TEXT, render.AS_IS])
    whole = b'"=a\n;+b",1\n@c,2\n'
    assert records(whole[:5]) == b""
    assert records(whole[5:13]) == b"\"'=a\n;'+b\",1\r\n"
    assert records(whole[13:]) == b"'@c,2\r\n"
    records.end()


def test_output_that_is_not_copys_csv_or_ends_inside_a_record_is_an_error() -> None:
    records = render.Records([render.AS_IS, render.AS_IS])
    with pytest.raises(ValueError, match="not the CSV that COPY writes"):
        records(b"1,2,3\n")
    cut = render.Records([render.AS_IS])
    assert cut(b'"abc') == b""
    with pytest.raises(ValueError, match="ended inside a record"):
        cut.end()
