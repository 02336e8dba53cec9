"""The whole export as one SQL statement: the rows and columns of the sample adapter's
learner_export.get_learner_export_batch().

COPY of this statement is the benchmark's limit, and the naive endpoint fetches it whole. It is
written independently of the service's function: no keyset, no paging, and the progress
aggregate computed for all learners at once. PostgreSQL then hashes and sorts (at 200K rows,
~350K rows/s, with ~0.3 s before the first row); the same statement with the aggregate as a
per-learner LATERAL subquery reads in index order, starts at once, and is ~1.6 times slower in
total. The limit is the faster of the two.
"""

from __future__ import annotations

# The columns of the sample adapter's page function (sql/adapters/sample.sql), in its order.
# Written out rather than learned from the database: the suite measures that adapter.
EXPORT_COLUMNS: tuple[str, ...] = (
    "learner_id",
    "full_name",
    "email",
    "phone",
    "client_id",
    "client_name",
    "created_at",
    "last_login_at",
    "is_active",
    "job_readiness_tier",
    "job_readiness_stars",
    "modules_total",
    "modules_completed",
    "progress_percent",
    "notes",
)
# The text columns among them (the rest are uuids, timestamps, booleans and numbers).
TEXT_COLUMNS = frozenset(
    {"full_name", "email", "phone", "client_name", "job_readiness_tier", "notes"}
)
TIMESTAMP_COLUMNS = frozenset({"created_at", "last_login_at"})

EXPORT_SQL = """
SELECT l.id AS learner_id, l.full_name, l.email, l.phone, l.client_id, c.name AS client_name,
       l.created_at, l.last_login_at, l.is_active, l.job_readiness_tier, l.job_readiness_stars,
       coalesce(p.total, 0) AS modules_total, coalesce(p.completed, 0) AS modules_completed,
       round(100.0 * p.completed / nullif(p.total, 0), 1)::float8 AS progress_percent,
       l.notes
  FROM public.learners AS l
  JOIN public.clients AS c ON c.id = l.client_id
  LEFT JOIN (SELECT m.learner_id, count(*)::int AS total, count(m.completed_at)::int AS completed
               FROM public.learner_module_progress AS m
              GROUP BY m.learner_id) AS p ON p.learner_id = l.id
 ORDER BY l.created_at, l.id
"""
