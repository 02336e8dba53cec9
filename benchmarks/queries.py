"""Each benchmark schema's whole export as one plain SQL statement: the reference.

COPY of a reference is the benchmark's limit, and the naive endpoint fetches the sample's whole.
Each is written independently of the adapter's page function: no keyset, no paging, every
per-learner aggregate computed for all learners at once (hash or group aggregates of each child
table, joins, one ORDER BY of the keyset), so that PostgreSQL picks the plan a bulk query gets.
`datasets.verify()` checks that it gives exactly the rows of the page function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Reference:
    """A schema's reference statement and what the suite needs to know of its columns."""

    schema: str
    columns: tuple[str, ...]
    text_columns: frozenset[str]
    timestamp_columns: frozenset[str]
    sql: str

    @property
    def csv_header(self) -> bytes:
        """The service's CSV header (CRLF, as RFC 4180 writes it)."""
        return (",".join(self.columns) + "\r\n").encode()

    @property
    def copy_header(self) -> bytes:
        return (",".join(self.columns) + "\n").encode()


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

# PostgreSQL hashes and sorts (at 200K rows, ~350K rows/s, with ~0.3 s before the first row);
# the same statement with the aggregate as a per-learner LATERAL subquery reads in index order,
# starts at once, and is ~1.6 times slower in total. The limit is the faster of the two.
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

SAMPLE = Reference("sample", EXPORT_COLUMNS, TEXT_COLUMNS, TIMESTAMP_COLUMNS, EXPORT_SQL)

# The heavy schema (benchmarks/schemas/heavy.sql) and its adapter (benchmarks/adapters/heavy.sql).
HEAVY_COLUMNS: tuple[str, ...] = (
    "learner_id",
    "first_name",
    "last_name",
    "preferred_name",
    "email",
    "phone",
    "organisation_id",
    "organisation_name",
    "pronouns",
    "date_of_birth",
    "locale",
    "time_zone",
    "country_code",
    "city",
    "job_title",
    "department",
    "employee_number",
    "cohort",
    "status",
    "enrolled_on",
    "expected_completion",
    "created_at",
    "last_sign_in_at",
    "email_confirmed",
    "is_active",
    "marketing_opt_in",
    "modules_started",
    "modules_completed",
    "module_average_score",
    "tags",
    "assessments_taken",
    "best_assessment_score",
    "last_assessment_at",
    "accessibility_needs",
    "notes",
)

HEAVY_SQL = """
SELECT p.id AS learner_id, p.first_name, p.last_name, p.preferred_name, u.email, u.phone,
       p.organisation_id, o.name AS organisation_name, p.pronouns, p.date_of_birth, p.locale,
       p.time_zone, p.country_code, p.city, p.job_title, p.department, p.employee_number,
       p.cohort, p.status, p.enrolled_on, p.expected_completion, p.created_at, u.last_sign_in_at,
       u.email_confirmed_at IS NOT NULL AS email_confirmed, p.is_active, p.marketing_opt_in,
       coalesce(m.started, 0) AS modules_started, coalesce(m.completed, 0) AS modules_completed,
       m.average_score AS module_average_score, t.tags, coalesce(a.taken, 0) AS assessments_taken,
       a.best AS best_assessment_score, a.last_at AS last_assessment_at, p.accessibility_needs,
       p.notes
  FROM public.profiles AS p
  JOIN auth.users AS u ON u.id = p.id
  LEFT JOIN public.organisations AS o ON o.id = p.organisation_id
  LEFT JOIN (SELECT c.profile_id, count(*)::int AS started,
                    count(c.completed_at)::int AS completed,
                    round(avg(c.score), 2) AS average_score
               FROM public.module_completions AS c
              GROUP BY c.profile_id) AS m ON m.profile_id = p.id
  LEFT JOIN (SELECT g.profile_id, string_agg(g.tag, ', ' ORDER BY g.tag) AS tags
               FROM public.profile_tags AS g
              GROUP BY g.profile_id) AS t ON t.profile_id = p.id
  LEFT JOIN (SELECT s.profile_id, count(*)::int AS taken, max(s.score) AS best,
                    max(s.taken_at) AS last_at
               FROM public.assessment_attempts AS s
              GROUP BY s.profile_id) AS a ON a.profile_id = p.id
 WHERE p.role = 'learner'
 ORDER BY p.created_at, p.id
"""

HEAVY = Reference(
    "heavy",
    HEAVY_COLUMNS,
    frozenset(
        {
            "first_name",
            "last_name",
            "preferred_name",
            "email",
            "phone",
            "organisation_name",
            "pronouns",
            "locale",
            "time_zone",
            "country_code",
            "city",
            "job_title",
            "department",
            "employee_number",
            "cohort",
            "status",
            "tags",
            "accessibility_needs",
            "notes",
        }
    ),
    frozenset({"created_at", "last_sign_in_at", "last_assessment_at"}),
    HEAVY_SQL,
)

REFERENCES = {r.schema: r for r in (SAMPLE, HEAVY)}
