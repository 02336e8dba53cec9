"""Formula neutralisation for spreadsheet-bound text: the rule in Python and in SQL.

A spreadsheet may read a cell of the CSV as a formula when, after leading white space, it starts
with `=` or `@`, or with `+` or `-` followed by more than a plain number. It may also read the
file with `;` or a tab as the separator (Excel in many locales), or see a line break inside a
quoted field as the end of a record; then every piece of a cell after a `;`, tab, CR or LF is a
cell of its own. Each piece that would read as a formula gets a `'` before it (right after its
separator, or at the start of the cell). docs/formulas.md gives the reasons and what LibreOffice
does.

One regular expression, written once with `\\uXXXX` escapes that both Python's `re` and
PostgreSQL's advanced regular expressions read the same way, makes both versions.
"""

from __future__ import annotations

import re

# Where a spreadsheet may start a cell inside our cell: `;` and tab (separators of other
# locales) and CR, LF (record ends, when a reading with another separator puts a quoted field's
# opening quote mid-field).
SEPARATORS = ";\t\r\n"

# Characters a spreadsheet may skip before reading the trigger (it trims spaces, or shows
# invisible ones): C0 and C1 controls, Unicode spaces, zero-width and direction marks, the BOM,
# and the double quote (a field's opening quote in a reading where it starts a cell). Ranges
# of code points; the separators are left out, they start a piece of their own.
SKIPPED = (
    (0x00, 0x08),
    (0x0B, 0x0C),
    (0x0E, 0x20),
    (0x22, 0x22),
    (0x7F, 0xA0),
    (0x1680, 0x1680),
    (0x180E, 0x180E),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x206F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
)

# `=` and `@`, and look-alikes (fullwidth and small forms) treated as what they look like.
ALWAYS = "=@\uff1d\ufe66\uff20\ufe6b"
# `+` and `-` and look-alikes (fullwidth, small forms, the minus sign U+2212).
SIGNS = "+-\uff0b\ufe62\uff0d\ufe63\u2212"
# What may follow a sign for the cell to stay as it is: a number or a phone number.
PLAIN = "0123456789 ()./" + SIGNS


def _escape(code: int) -> str:
    return f"\\u{code:04x}"


def _chars(chars: str) -> str:
    return "".join(_escape(ord(c)) for c in chars)


def _ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(_escape(lo) if lo == hi else f"{_escape(lo)}-{_escape(hi)}" for lo, hi in ranges)


_TRIGGER = f"[{_ranges(SKIPPED)}]*(?:[{_chars(ALWAYS)}]|[{_chars(SIGNS)}](?![{_chars(PLAIN)}]*\\Z))"
# A piece that reads as a formula: its start (the cell's or a separator), skipped characters,
# a trigger.
DANGER = f"(?:\\A|[{_chars(SEPARATORS)}]){_TRIGGER}"
# The empty string at the start of each such piece, where the `'` goes.
_INSERT = f"(?:\\A|(?<=[{_chars(SEPARATORS)}]))(?={_TRIGGER})"

_DANGER_RE = re.compile(DANGER)
_INSERT_RE = re.compile(_INSERT)


def needs_neutralising(text: str) -> bool:
    """Whether some reading of this cell (`,`, `;` or tab separated) has a formula in it."""
    return _DANGER_RE.search(text) is not None


def neutralise(text: str) -> str:
    """The cell with a `'` at the start of each piece that would read as a formula."""
    return _INSERT_RE.sub("'", text) if _DANGER_RE.search(text) else text


def _sql_literal(pattern: str) -> str:
    # An E'' literal reads the same whatever standard_conforming_strings says; the pattern
    # holds no quote.
    return "E'" + pattern.replace("\\", "\\\\") + "'"


# The regular expression costs microseconds a cell, more than the rest of the cell's rendering:
# cheaper tests come first. Text that starts with a letter or a digit and holds no separator
# (names, emails, most notes) is not looked at again; a cell of digits, spaces and ()./+- alone
# (phone numbers, numbers) is left as it is; a cell starting with `=` or `@` needs no regular
# expression to be found out. A cell without separators is one piece: a `'` in front of it is
# its neutralisation, without regexp_replace().


def _first_char_suspect() -> str:
    """SQL over `{ref}`: whether the first character may be skipped or be a trigger. Beyond
    ASCII only the code points of SKIPPED, ALWAYS and SIGNS are: text starting with any other
    letter (accented, Cyrillic, CJK, emoji...) goes no further (measured on the benchmark's 1M
    names: 1.15-1.27 s against 1.34-1.38 s with every non-ASCII first letter suspect)."""
    wide = [(max(lo, 0x7F), hi) for lo, hi in SKIPPED if hi >= 0x7F]
    singles = sorted(
        {ord(c) for c in ALWAYS + SIGNS if ord(c) >= 0x7F} | {lo for lo, hi in wide if lo == hi}
    )
    spans = " OR ".join(f"ascii({{ref}}) BETWEEN {lo} AND {hi}" for lo, hi in wide if lo != hi)
    listed = ", ".join(str(c) for c in singles)
    return (
        f"ascii({{ref}}) <= 34 OR ascii({{ref}}) IN (43, 45, 61, 64) OR (ascii({{ref}}) > 126"
        f" AND (ascii({{ref}}) IN ({listed}) OR {spans}))"
    )


_SUSPECT = _first_char_suspect()


def _separated(ref: str) -> str:
    # strpos() a separator is four times cheaper than a bracket expression on 60 characters.
    return " OR ".join(f"strpos({ref}, E'{_escape(ord(c))}') > 0" for c in SEPARATORS)


# A whole cell of PLAIN characters: a sign in front of such a cell starts a number.
_ALL_PLAIN = _sql_literal(f"^[{_chars(PLAIN)}]*$")


def sql_is_formula(ref: str, separators: bool = True) -> str:
    """SQL, true when the text column `ref` needs neutralising.

    What the first character settles needs no regular expression: `=` or `@` always, `+` or
    `-` unless the whole cell is plain (then it holds no separator either). Only what is left
    (a skippable first character, or a separator inside) is matched against DANGER. With
    `separators=False` the caller knows that `ref` holds none (it is one piece), and they are
    not looked for.
    """
    inside = f" OR {_separated(ref)}" if separators else ""
    return (
        f"CASE WHEN ascii({ref}) IN (61, 64) THEN true"
        f" WHEN ascii({ref}) IN (43, 45) THEN {ref} !~ {_ALL_PLAIN}"
        f" WHEN {_SUSPECT.format(ref=ref)}{inside}"
        f" THEN {ref} ~ {_sql_literal(DANGER)} ELSE false END"
    )


def sql_neutralised(ref: str) -> str:
    """SQL giving neutralise() of the text column `ref` (NULL stays NULL)."""
    return (
        f"CASE WHEN {sql_is_formula(ref)} THEN CASE WHEN {_separated(ref)} THEN"
        f" regexp_replace({ref}, {_sql_literal(_INSERT)}, '''', 'g') ELSE '''' || {ref} END"
        f" ELSE {ref} END"
    )
