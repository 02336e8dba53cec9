-- Every export attempt: written when it starts (or is refused), completed when it ends, from a
-- connection of its own (the export's snapshot is read-only).

CREATE TABLE public.export_audit (
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

CREATE INDEX export_audit_by_caller ON public.export_audit (caller_id, started_at);
CREATE INDEX export_audit_by_time ON public.export_audit (started_at);
