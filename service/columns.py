"""The export's columns: the allow-list that user input is checked against."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How a column's values look to an encoder (UUIDs arrive as text: hex digits and dashes)."""

    TEXT = "text"
    UUID = "uuid"  # text that needs no quoting, escaping or neutralising
    TIMESTAMP = "timestamp"
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("learner_id", Kind.UUID, "Learner UUID"),
    Column("full_name", Kind.TEXT, "Learner's full name"),
    Column("email", Kind.TEXT, "Email address"),
    Column("phone", Kind.TEXT, "Phone number"),
    Column("client_id", Kind.UUID, "Client UUID"),
    Column("client_name", Kind.TEXT, "Client name"),
    Column("created_at", Kind.TIMESTAMP, "When the learner was created (ISO 8601)"),
    Column("last_login_at", Kind.TIMESTAMP, "Last login (ISO 8601)"),
    Column("is_active", Kind.BOOL, "Whether the learner is active"),
    Column("job_readiness_tier", Kind.TEXT, "Not Ready, Developing, Ready or Placed"),
    Column("job_readiness_stars", Kind.INT, "Job-readiness star rating, 0 to 5"),
    Column("modules_total", Kind.INT, "Modules the learner has started"),
    Column("modules_completed", Kind.INT, "Modules the learner has completed"),
    Column("progress_percent", Kind.FLOAT, "Completed modules as a percentage, one decimal"),
    Column("notes", Kind.TEXT, "Free-text notes"),
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}

# The keyset: unique, and the order of every export.
KEY_COLUMNS: tuple[str, str] = ("created_at", "learner_id")

# Added after the chosen columns with `cursor=true`: where to resume after this row.
CURSOR_COLUMN = Column("_cursor", Kind.TEXT, "Opaque cursor: pass it as `after` to resume")
