"""Export parameters, declared once (PARAMS): that one table drives the HTTP route's parsing and
its OpenAPI types, the signed link's JSON body, and the CLI's options.

Everything is checked here, before anything reaches the database or the audit trail: integers
within what PostgreSQL and JSON carry, instants within PostgreSQL's range after their offset.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from learner_export.config import Settings
from learner_export.contract import Contract, Words
from learner_export.contract.columns import Column
from learner_export.cursor import decode_cursor
from learner_export.errors import InvalidParameter
from learner_export.formats import FORMATS, RenderOptions, render

MAX_CLIENT_IDS = 1000
MAX_VALUE_LENGTH = 4096
# The largest whole number JavaScript holds exactly (so /docs and a browser's JSON show it as it
# is, where 2**63 - 1 read 9223372036854776000), well within PostgreSQL's bigint.
MAX_LIMIT = 2**53 - 1
# PostgreSQL's timestamptz reaches further, but Python's datetime (and so the cursor) does not.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    text: str  # the description, with {time}, {unit} and {units} for the operator's words
    schema: dict[str, Any]  # OpenAPI schema of one value
    repeatable: bool = False
    cli_metavar: str | None = None  # None: not a CLI option
    # CLI switches for booleans: "--name" sets true, "--no-name" sets false.
    cli_switch: str | None = None
    # The switch's help when it says the opposite of the parameter (a "--no-name" switch).
    cli_help: str | None = None

    def describe(self, words: Words | None = None) -> str:
        """The description in the operator's words (the service's own when none are given)."""
        w = words or Words()
        text = self.text.format(time=w.time_column, unit=w.unit, units=w.units)
        also = [a for a, name in aliases(w).items() if name == self.name]
        return text + "".join(f"; also `{a}`" for a in also)

    @property
    def description(self) -> str:
        return self.describe()


def _format_schema() -> dict[str, Any]:
    return {"type": "string", "enum": list(FORMATS), "default": "csv"}


PARAMS: tuple[Param, ...] = (
    Param(
        "format",
        "Output format: " + "; ".join(f"`{f.name}`: {f.description}" for f in FORMATS.values()),
        _format_schema(),
        cli_metavar="FORMAT",
    ),
    Param(
        "client_id",
        "Only the learners of these {units} (ids; repeat the parameter; at most "
        f"{MAX_CLIENT_IDS})",
        {"type": "string", "format": "uuid"},
        repeatable=True,
        cli_metavar="UUID",
    ),
    Param(
        "created_from",
        "{time} on or after this ISO 8601 date or date-time (UTC when no offset is given)",
        {"type": "string", "format": "date-time"},
        cli_metavar="DATE",
    ),
    Param(
        "created_to",
        "{time} before this ISO 8601 date or date-time (exclusive)",
        {"type": "string", "format": "date-time"},
        cli_metavar="DATE",
    ),
    Param(
        "active",
        "Only active (`true`) or inactive (`false`) learners",
        {"type": "boolean"},
        cli_metavar="true|false",
    ),
    Param(
        "columns",
        "Comma-separated column names, in the order wanted (default: all)",
        {"type": "string"},
        cli_metavar="A,B,...",
    ),
    Param(
        "limit",
        "At most this many rows",
        {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
        cli_metavar="N",
    ),
    Param(
        "tz",
        "IANA time zone that date-times are shown in (default UTC): CSV and JSON Lines "
        "carry its offset, XLSX shows its wall-clock time, Parquet records it",
        {"type": "string", "default": "UTC"},
        cli_metavar="ZONE",
    ),
    Param(
        "bom",
        "CSV: start with a UTF-8 byte-order mark (for Excel)",
        {"type": "boolean"},
        cli_switch="--bom",
    ),
    Param(
        "escape_formulas",
        "CSV/XLSX: neutralise cells a spreadsheet would run as formulas (default true)",
        {"type": "boolean", "default": True},
        cli_switch="--no-escape-formulas",
        cli_help="write cells that start with = + - @ (or a tab or carriage return) as they "
        "are, without the ' that stops a spreadsheet running them as formulas: for data tools "
        "(DuckDB, pandas, polars), never for files a person opens in a spreadsheet",
    ),
    Param(
        "cursor",
        "CSV/JSON Lines: add a `_cursor` column, to resume after any row with `after`",
        {"type": "boolean"},
    ),
    Param(
        "after", "Resume after the row whose `_cursor` this is (a new snapshot)", {"type": "string"}
    ),
)
BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
# The formats whose text a byte-order mark can start (binary formats and JSON Lines cannot).
BOM_FORMATS = ("csv",)

_NOT_NAME = re.compile(r"[^a-z0-9]+")


def aliases(words: Words) -> dict[str, str]:
    """HTTP parameters in the operator's words, accepted beside the stable names: `<unit>_id`
    for client_id, `<time>_from`/`<time>_to` for created_from/created_to (the time column
    without its `_at`), e.g. organisation_id, joined_from, joined_to."""
    found: dict[str, str] = {}
    unit = _NOT_NAME.sub("_", words.unit.lower()).strip("_")
    if unit:
        found[f"{unit}_id"] = "client_id"
    stem = _NOT_NAME.sub("_", words.time_column.lower()).strip("_").removesuffix("_at")
    if stem:
        found[f"{stem}_from"] = "created_from"
        found[f"{stem}_to"] = "created_to"
    return {a: n for a, n in found.items() if a not in BY_NAME}


@dataclass(frozen=True, slots=True)
class ExportParams:
    """What to export and how: the whole input of one export, validated."""

    columns: tuple[Column, ...]
    format: str = "csv"
    client_ids: tuple[str, ...] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    active: bool | None = None
    limit: int | None = None
    tz: str = "UTC"
    bom: bool = False
    escape_formulas: bool = True
    cursor: bool = False
    after: tuple[datetime, str] | None = None
    # The operator's words and the contract's version the parameters were checked against.
    words: Words = field(default=Words(), compare=False)
    contract_version: str = field(default="", compare=False)
    # Whether the adapter offers the bulk view (the rest of an export read in one pass).
    bulk: bool = field(default=False, compare=False)
    # The query pairs as given (after validation), for signed links.
    query: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def render_options(self, settings: Settings) -> RenderOptions:
        return RenderOptions(
            escape_formulas=self.escape_formulas,
            bom=self.bom,
            cursor=self.cursor,
            tz=self.tz,
            sheet_rows=settings.xlsx_sheet_rows,
            native=settings.render == "service" and render.AVAILABLE,
        )

    @property
    def time_column(self) -> str:
        """The keyset's time column, as the adapter names it."""
        return self.words.time_column

    def filters(self) -> dict[str, Any]:
        """The filters and options as validated, for the audit trail (no learner data), with
        the operator's words for the scope unit and the keyset's time column."""
        return {
            "scope_unit": self.words.unit,
            "keyset": self.words.time_column,
            "client_id": list(self.client_ids) if self.client_ids is not None else None,
            "created_from": self.created_from.isoformat() if self.created_from else None,
            "created_to": self.created_to.isoformat() if self.created_to else None,
            "active": self.active,
            "columns": [c.name for c in self.columns],
            "limit": self.limit,
            "tz": self.tz,
            "after": bool(self.after),
        }


_Bad = Callable[[str, str], None]


def parse_export_params(
    query: Sequence[tuple[str, str]],
    contract: Contract,
    *,
    time_zones: frozenset[str],
    max_limit: int | None = None,
) -> ExportParams:
    """Validate a query string's (name, value) pairs; raise InvalidParameter naming each
    problem. Unknown and repeated parameters are problems too."""
    problems: list[dict[str, str]] = []
    single: dict[str, str] = {}
    client_values: list[str] = []
    alias = aliases(contract.words)

    def bad(name: str, message: str) -> None:
        problems.append({"parameter": name[:64], "message": message})

    for given, value in query:
        name = alias.get(given, given)
        param = BY_NAME.get(name)
        if len(value) > MAX_VALUE_LENGTH:
            bad(name, f"value longer than {MAX_VALUE_LENGTH} characters")
        elif param is None:
            bad(name, "unknown parameter")
        elif param.repeatable:
            client_values.append(value)
        elif name in single:
            bad(name, "given more than once")
        else:
            single[name] = value

    fmt = single.get("format", "csv")
    if fmt not in FORMATS:
        bad("format", f"must be one of {', '.join(FORMATS)}")
    columns = _parse_columns(single.get("columns"), contract, bad)
    client_ids = _parse_client_ids(client_values, bad)
    created_from = _parse_instant("created_from", single.get("created_from"), bad)
    created_to = _parse_instant("created_to", single.get("created_to"), bad)
    if created_from and created_to and created_from > created_to:
        bad("created_from", "is after created_to")
    active = _parse_bool("active", single.get("active"), bad)
    limit = _parse_limit(single.get("limit"), max_limit, bad)
    tz = single.get("tz", "UTC")
    if tz not in time_zones:
        bad(
            "tz",
            f"unknown time zone {tz[:64]!r}; use an IANA name such as UTC, "
            "Australia/Sydney or Europe/Berlin",
        )
    bom = _parse_bool("bom", single.get("bom"), bad)
    escape = _parse_bool("escape_formulas", single.get("escape_formulas"), bad)
    cursor = _parse_bool("cursor", single.get("cursor"), bad)
    if bom and fmt in FORMATS and fmt not in BOM_FORMATS:
        # Refused, as cursor is, rather than silently ignored: the caller expects it in the file.
        bad("bom", "only " + " and ".join(BOM_FORMATS) + " exports start with a byte-order mark")
    if cursor and fmt in FORMATS and not FORMATS[fmt].resumable:
        bad(
            "cursor",
            "only "
            + " and ".join(f for f, v in FORMATS.items() if v.resumable)
            + " exports carry a resume cursor",
        )
    after = None
    if "after" in single:
        try:
            after = decode_cursor(single["after"])
        except ValueError:
            bad("after", "not a cursor from a previous export")
        else:
            if not EARLIEST <= after[0] <= LATEST:
                bad("after", "not a cursor from a previous export: its instant is out of range")
                after = None
    if problems:
        raise InvalidParameter(problems)
    return ExportParams(
        columns=columns,
        format=fmt,
        client_ids=client_ids,
        created_from=created_from,
        created_to=created_to,
        active=active,
        limit=limit,
        tz=tz,
        bom=bool(bom),
        escape_formulas=escape is not False,
        cursor=bool(cursor),
        after=after,
        words=contract.words,
        contract_version=contract.version,
        bulk=contract.bulk,
        query=tuple(query),
    )


def pairs_from_values(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Keyword-style input (a link's JSON body, the CLI) as query pairs: lists repeat a
    parameter, booleans are true/false, a column list is joined by commas; None is absent."""
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None:
            continue
        if name == "columns" and isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise InvalidParameter.one("columns", "must be a list of column names")
            pairs.append((name, ",".join(value)))
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                pairs.append((name, "true" if item else "false"))
            elif isinstance(item, int | str):
                pairs.append((name, str(item)))
            else:
                raise InvalidParameter.one(name, "must be a string, a number or a boolean")
    return pairs


def _parse_columns(raw: str | None, contract: Contract, bad: _Bad) -> tuple[Column, ...]:
    if raw is None:
        return contract.columns
    names = [n.strip() for n in raw.split(",") if n.strip()]
    by_name = contract.by_name
    if not names:
        bad("columns", "names no column")
        return contract.columns
    unknown = [n for n in names if n not in by_name]
    if unknown:
        bad(
            "columns",
            f"unknown column(s) {', '.join(n[:64] for n in unknown[:10])}; "
            f"allowed: {', '.join(by_name)}",
        )
        return contract.columns
    if len(set(names)) != len(names):
        bad("columns", "names a column more than once")
    return tuple(by_name[n] for n in names)


def _parse_client_ids(values: list[str], bad: _Bad) -> tuple[str, ...] | None:
    if not values:
        return None
    if len(values) > MAX_CLIENT_IDS:
        bad("client_id", f"at most {MAX_CLIENT_IDS} values")
        return None
    ids: list[str] = []
    for value in values:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            bad("client_id", f"not a UUID: {value[:64]!r}")
    return tuple(dict.fromkeys(ids))


def _parse_instant(name: str, raw: str | None, bad: _Bad) -> datetime | None:
    """ISO 8601 date or date-time; without an offset it is taken as UTC.

    An unencoded `+` in a query string arrives as a space, so `...T10:00:00 02:00` is read as the
    `+02:00` its author typed.
    """
    if raw is None:
        return None
    text = raw.strip()
    if "T" in text and " " in text:
        text = text.replace(" ", "+", 1)
    try:
        value = datetime.fromisoformat(text)
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        instant = value.astimezone(UTC)
    except (ValueError, OverflowError):
        bad(name, f"not an ISO 8601 date or date-time in years 1 to 9999: {raw[:64]!r}")
        return None
    if not EARLIEST <= instant <= LATEST:
        bad(name, "out of range: from 0001-01-02 to 9999-12-30")
        return None
    return instant


def _parse_bool(name: str, raw: str | None, bad: _Bad) -> bool | None:
    if raw is None:
        return None
    if raw == "true":
        return True
    if raw == "false":
        return False
    bad(name, "must be true or false")
    return None


def _parse_limit(raw: str | None, max_limit: int | None, bad: _Bad) -> int | None:
    if raw is None:
        return max_limit
    if raw[:1] == "-" and raw[1:].isascii() and raw[1:].isdigit():
        bad("limit", "must not be negative")
        return None
    if not raw.isascii() or not raw.isdigit():
        bad("limit", "must be a whole number, 0 or more")
        return None
    if len(raw) > 19 or int(raw) > MAX_LIMIT:
        bad("limit", f"at most {MAX_LIMIT}")
        return None
    limit = int(raw)
    if max_limit is not None and limit > max_limit:
        bad("limit", f"at most {max_limit}")
        return None
    return limit
