"""Export parameters: parsed and validated from a query string before anything else happens."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from service.columns import BY_NAME, COLUMNS, Column
from service.cursor import decode_cursor
from service.errors import InvalidParameter

FORMAT_NAMES = ("csv", "jsonl", "xlsx")
MAX_CLIENT_IDS = 1000
MAX_VALUE_LENGTH = 4096
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})

SINGLE_PARAMS = frozenset(
    {"format", "created_from", "created_to", "active", "columns", "limit", "bom",
     "escape_formulas", "after", "cursor"}
)
REPEATABLE_PARAMS = frozenset({"client_id"})

_Bad = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class ExportParams:
    """What to export and how: the whole input of one export, validated."""

    format: str = "csv"
    columns: tuple[Column, ...] = COLUMNS
    client_ids: tuple[str, ...] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    active: bool | None = None
    limit: int | None = None
    bom: bool = False
    escape_formulas: bool = True
    after: tuple[datetime, str] | None = None
    cursor: bool = False


def parse_export_params(query: Sequence[tuple[str, str]], *, max_limit: int | None = None
                        ) -> ExportParams:
    """Validate a query string's (name, value) pairs; raise InvalidParameter naming each problem."""
    problems: list[dict[str, str]] = []
    single: dict[str, str] = {}
    client_values: list[str] = []

    def bad(name: str, message: str) -> None:
        problems.append({"parameter": name, "message": message})

    for name, value in query:
        if len(value) > MAX_VALUE_LENGTH:
            bad(name, f"value longer than {MAX_VALUE_LENGTH} characters")
        elif name in REPEATABLE_PARAMS:
            client_values.append(value)
        elif name in SINGLE_PARAMS:
            if name in single:
                bad(name, "given more than once")
            single[name] = value
        else:
            bad(name, "unknown parameter")

    fmt = single.get("format", "csv").lower()
    if fmt not in FORMAT_NAMES:
        bad("format", f"must be one of {', '.join(FORMAT_NAMES)}")

    columns = _parse_columns(single.get("columns"), bad)
    client_ids = _parse_client_ids(client_values, bad)
    created_from = _parse_timestamp("created_from", single.get("created_from"), bad)
    created_to = _parse_timestamp("created_to", single.get("created_to"), bad)
    if created_from and created_to and created_from > created_to:
        bad("created_from", "is after created_to")
    active = _parse_bool("active", single.get("active"), bad)
    limit = _parse_limit(single.get("limit"), max_limit, bad)
    bom = _parse_bool("bom", single.get("bom"), bad)
    escape = _parse_bool("escape_formulas", single.get("escape_formulas"), bad)
    cursor = _parse_bool("cursor", single.get("cursor"), bad)
    if cursor and fmt == "xlsx":
        bad("cursor", "only CSV and JSON Lines exports carry a resume cursor")
    after = None
    if "after" in single:
        try:
            after = decode_cursor(single["after"])
        except InvalidParameter:
            bad("after", "not a cursor from a previous export")

    if problems:
        raise InvalidParameter(problems)
    return ExportParams(
        format=fmt,
        columns=columns,
        client_ids=client_ids,
        created_from=created_from,
        created_to=created_to,
        active=active,
        limit=limit,
        bom=bool(bom),
        escape_formulas=escape is not False,
        after=after,
        cursor=bool(cursor),
    )


def params_from_mapping(values: Mapping[str, str | list[str] | None], *,
                        max_limit: int | None = None) -> ExportParams:
    """The same validation for keyword-style input (the CLI), where lists mean repetition."""
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((name, item))
    return parse_export_params(pairs, max_limit=max_limit)


def _parse_columns(raw: str | None, bad: _Bad) -> tuple[Column, ...]:
    if raw is None:
        return COLUMNS
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        bad("columns", "names no column")
        return COLUMNS
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        bad("columns", f"unknown column(s) {', '.join(unknown[:10])}; "
                       f"allowed: {', '.join(c.name for c in COLUMNS)}")
        return COLUMNS
    if len(set(names)) != len(names):
        bad("columns", "names a column more than once")
    return tuple(BY_NAME[n] for n in names)


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


def _parse_timestamp(name: str, raw: str | None, bad: _Bad) -> datetime | None:
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
    except ValueError:
        bad(name, f"not an ISO 8601 date or date-time: {raw[:64]!r}")
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_bool(name: str, raw: str | None, bad: _Bad) -> bool | None:
    if raw is None:
        return None
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    bad(name, "must be true or false")
    return None


def _parse_limit(raw: str | None, max_limit: int | None, bad: _Bad) -> int | None:
    if raw is None:
        return max_limit
    try:
        limit = int(raw)
    except ValueError:
        bad("limit", "must be a whole number")
        return None
    if limit < 0:
        bad("limit", "must not be negative")
        return None
    if max_limit is not None and limit > max_limit:
        bad("limit", f"at most {max_limit}")
        return None
    return limit


