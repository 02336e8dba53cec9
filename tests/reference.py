"""The export's expected rows, computed by a query of its own (not get_learner_export_batch)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from learner_export.contract.columns import Kind
from learner_export.formats.formula import neutralise

# The sample adapter's columns (sql/adapters/sample.sql), written out here as the oracle's own.
KINDS: dict[str, Kind] = {
    "learner_id": Kind.UUID,
    "full_name": Kind.TEXT,
    "email": Kind.TEXT,
    "phone": Kind.TEXT,
    "client_id": Kind.UUID,
    "client_name": Kind.TEXT,
    "created_at": Kind.TIMESTAMPTZ,
    "last_login_at": Kind.TIMESTAMPTZ,
    "is_active": Kind.BOOL,
    "job_readiness_tier": Kind.TEXT,
    "job_readiness_stars": Kind.INT,
    "modules_total": Kind.INT,
    "modules_completed": Kind.INT,
    "progress_percent": Kind.FLOAT,
    "notes": Kind.TEXT,
}
NAMES = list(KINDS)

REFERENCE_SQL = """
SELECT l.id AS learner_id, l.full_name, l.email, l.phone, l.client_id, c.name AS client_name,
       l.created_at, l.last_login_at, l.is_active, l.job_readiness_tier, l.job_readiness_stars,
       p.total AS modules_total, p.completed AS modules_completed,
       CASE WHEN p.total > 0 THEN round(100.0 * p.completed / p.total, 1)::float8 END
           AS progress_percent,
       l.notes
  FROM public.learners l
  JOIN public.clients c ON c.id = l.client_id
  LEFT JOIN LATERAL (SELECT count(*)::int AS total, count(completed_at)::int AS completed
                       FROM public.learner_module_progress WHERE learner_id = l.id) p ON true
 {where}
 ORDER BY l.created_at, l.id
"""

XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def reference_rows(sql: Any, where: str = "", *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in sql(REFERENCE_SQL.format(where=where), *args)]


def as_csv_cell(name: str, value: Any, escape: bool = True) -> str:
    kind = KINDS[name]
    if value is None:
        return ""
    if kind is Kind.TIMESTAMPTZ:
        return str(value.astimezone(UTC).isoformat(timespec="microseconds"))
    if kind is Kind.FLOAT:
        # As PostgreSQL writes a float8: 50 rather than 50.0.
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if kind is Kind.BOOL:
        return "true" if value else "false"
    if kind is Kind.TEXT and escape:
        return neutralise(value)
    return str(value)


def as_excel(name: str, value: Any) -> Any:
    kind = KINDS[name]
    if value is None:
        return None
    if kind is Kind.TIMESTAMPTZ:
        return value.astimezone(UTC).replace(tzinfo=None)
    if kind is Kind.TEXT:
        return XML_ILLEGAL.sub("", value)
    return value


def same_instant(a: datetime, b: datetime) -> bool:
    """Excel keeps milliseconds: the workbook's time is within a millisecond of the database's."""
    return abs((a - b).total_seconds()) < 0.001
