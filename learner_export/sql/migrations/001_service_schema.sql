-- The service's own objects, all in the schema learner_export (created with its bookkeeping
-- table by `db migrate` before this file runs). Nothing outside that schema is created,
-- changed or dropped, except the service's own objects of its first layout, which kept them in
-- public: they move here (the audit trail) or go (the export functions, the old bookkeeping).

-- The service's role, whose name each database chooses (migration 005), is created by
-- `db migrate` itself (learner_export/db/role.py) before the lockdown grants it what it needs.

DO $$
DECLARE
    legacy text[];
BEGIN
    IF to_regclass('public.schema_migrations') IS NULL THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT array_agg(name) FROM public.schema_migrations' INTO legacy;
    IF '006_export_audit.sql' = ANY (legacy) THEN
        ALTER TABLE public.export_audit SET SCHEMA learner_export;
    END IF;
    IF '001_schema.sql' = ANY (legacy) THEN
        DROP FUNCTION IF EXISTS public.get_learner_export_batch(uuid, uuid[], timestamptz,
            timestamptz, boolean, timestamptz, uuid, integer);
        DROP FUNCTION IF EXISTS public.count_learner_export(uuid, uuid[], timestamptz,
            timestamptz, boolean, timestamptz, uuid);
        DROP FUNCTION IF EXISTS public.learner_export_page_ends(uuid, uuid[], timestamptz,
            timestamptz, boolean, timestamptz, uuid, integer, integer);
        DROP FUNCTION IF EXISTS public.learner_export_scope(uuid, uuid[]);
        DROP TABLE public.schema_migrations;
    END IF;
END
$$;

-- Every export attempt: written when it starts (or is refused), completed when it ends, from a
-- connection of its own (the export's snapshot is read-only). The outcomes are
-- service.lifecycle.Outcome's values (a test holds the two equal).
CREATE TABLE IF NOT EXISTS learner_export.export_audit (
    id            uuid PRIMARY KEY,
    caller_id     uuid,
    caller_role   text,
    request_id    text NOT NULL,
    via_link      boolean NOT NULL DEFAULT false,
    format        text,
    filters       jsonb NOT NULL DEFAULT '{}',
    client_scope  uuid[],
    outcome       text NOT NULL DEFAULT 'started'
                  CHECK (outcome IN ('started', 'completed', 'client_disconnected', 'failed',
                                     'denied', 'timed_out', 'cancelled')),
    detail        text,
    rows_sent     bigint NOT NULL DEFAULT 0,
    bytes_sent    bigint NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    duration_ms   integer
);

CREATE INDEX IF NOT EXISTS export_audit_by_caller
    ON learner_export.export_audit (caller_id, started_at);
CREATE INDEX IF NOT EXISTS export_audit_by_time ON learner_export.export_audit (started_at);
