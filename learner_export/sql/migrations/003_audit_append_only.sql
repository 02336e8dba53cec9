-- The audit trail becomes append-only for the running service (docs/audit.md):
-- * `head`: a HEAD request answered with headers only has an outcome of its own;
-- * `repeats`: one row may stand for several identical events of one caller in one minute
--   (repeated refusals, HEAD and limit=0 requests past the per-minute allowance), counted;
-- * learner_export.finish_export() is the only way the service changes a row: it completes a
--   row still 'started', and nothing else. The service's role loses UPDATE on the table
--   (sql/lockdown.sql), so it cannot rewrite or erase what is recorded.

ALTER TABLE learner_export.export_audit
    DROP CONSTRAINT IF EXISTS export_audit_outcome_check;
ALTER TABLE learner_export.export_audit
    ADD CONSTRAINT export_audit_outcome_check
    CHECK (outcome IN ('started', 'completed', 'client_disconnected', 'failed', 'denied',
                       'timed_out', 'cancelled', 'head'));

ALTER TABLE learner_export.export_audit
    ADD COLUMN IF NOT EXISTS repeats integer NOT NULL DEFAULT 1 CHECK (repeats >= 1);

CREATE OR REPLACE FUNCTION learner_export.finish_export(
    p_id uuid, p_outcome text, p_rows bigint, p_bytes bigint, p_duration_ms integer,
    p_client_scope uuid[], p_detail text
) RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH done AS (
        UPDATE learner_export.export_audit
           SET outcome = p_outcome, rows_sent = p_rows, bytes_sent = p_bytes,
               duration_ms = p_duration_ms, client_scope = p_client_scope,
               detail = left(p_detail, 512), ended_at = now()
         WHERE id = p_id AND outcome = 'started' AND p_outcome <> 'started'
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM done);
$$;
