"""The export's columns: learned from the page function's result (learner_export.contract), they are
the allow-list that `columns=` is checked against and what every format renders."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a column holds, as far as a format cares."""

    TEXT = "text"
    UUID = "uuid"  # text that needs no quoting, escaping or neutralising
    INT = "integer"
    NUMERIC = "numeric"
    FLOAT = "double"
    BOOL = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"  # without time zone: wall-clock time as stored
    TIMESTAMPTZ = "timestamptz"  # an instant, shown in the export's time zone


# PostgreSQL's base types (pg_type.typname) that exports support. Enums are text too.
PG_KINDS: dict[str, Kind] = {
    "text": Kind.TEXT,
    "varchar": Kind.TEXT,
    "bpchar": Kind.TEXT,
    "name": Kind.TEXT,
    "citext": Kind.TEXT,
    "uuid": Kind.UUID,
    "int2": Kind.INT,
    "int4": Kind.INT,
    "int8": Kind.INT,
    "numeric": Kind.NUMERIC,
    "float4": Kind.FLOAT,
    "float8": Kind.FLOAT,
    "bool": Kind.BOOL,
    "date": Kind.DATE,
    "timestamp": Kind.TIMESTAMP,
    "timestamptz": Kind.TIMESTAMPTZ,
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    pg_type: str  # as PostgreSQL names it, for messages and the API description

    @property
    def sql(self) -> str:
        """The column of the page function's row `r`, as an SQL expression (quoted: names come
        from the database, and may hold any character)."""
        quoted = '"' + self.name.replace('"', '""') + '"'
        return f"r.{quoted}::text" if self.kind is Kind.TEXT else f"r.{quoted}"


# The keyset is (the adapter's time column, learner_id): unique together, and the order of every
# export. The time column's name is the adapter's (learner_export.contract.Words).
KEY_ID: tuple[str, str] = ("learner_id", "uuid")
# The keyset as the guarded page query exposes it to the select lists, whatever the adapter
# calls its time column (learner_export.contract.guard).
KEY_AT = "_key_at"
KEY_ID_AT = "_key_id"

# Added after the chosen columns with `cursor=true`: where to resume after this row.
CURSOR_COLUMN = Column("_cursor", Kind.TEXT, "text")
