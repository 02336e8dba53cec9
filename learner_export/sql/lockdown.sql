-- Who may reach the schema learner_export: applied at the end of every `db migrate`, after the
-- migrations and the adapter, so that it also covers what they just created.
--
-- PostgreSQL grants EXECUTE on every new function to PUBLIC, and Supabase's default privileges
-- grant everything new in public (and, where configured, elsewhere) to anon, authenticated and
-- service_role by name, which REVOKE ... FROM PUBLIC does not undo. So every grant is revoked
-- here, by name, and only learner_export_service gets what the running service needs.
-- Row-level security on the tables is a second wall: a grant made by mistake still shows no row
-- to a role without a policy (owners bypass it; the service role has one).

REVOKE ALL ON SCHEMA learner_export FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA learner_export FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA learner_export FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA learner_export FROM PUBLIC;

DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'service_role',
                                    'authenticator'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = api_role) THEN
            EXECUTE format('REVOKE ALL ON SCHEMA learner_export FROM %I', api_role);
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA learner_export FROM %I', api_role);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA learner_export FROM %I',
                           api_role);
            EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA learner_export FROM %I',
                           api_role);
        END IF;
    END LOOP;
END
$$;

ALTER TABLE learner_export.export_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE learner_export.schema_migrations ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS export_audit_service ON learner_export.export_audit;
CREATE POLICY export_audit_service ON learner_export.export_audit
    TO learner_export_service USING (true) WITH CHECK (true);

GRANT USAGE ON SCHEMA learner_export TO learner_export_service;
GRANT SELECT, INSERT, UPDATE ON learner_export.export_audit TO learner_export_service;

-- The contract's functions, as far as the adapter defines them (`db check` says what is missing),
-- and the keyset guard's (sql/migrations/002).
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc AS p
          JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = 'learner_export'
           AND p.proname IN ('get_learner_export_batch', 'count_learner_export',
                             'learner_export_page_ends', 'export_scope', 'caller_role',
                             'scope_unit', 'keyset_breach')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO learner_export_service', fn);
    END LOOP;
END
$$;

-- Keys for scripts (migration 004, learner_export/keys.py): the service reads a key by its hash
-- and notes when it was last used; creating and revoking keys is the CLI's, as the schema's
-- owner. The revokes at the top of this file already cover the table for every other role.
ALTER TABLE learner_export.api_keys ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS api_keys_service_read ON learner_export.api_keys;
CREATE POLICY api_keys_service_read ON learner_export.api_keys
    FOR SELECT TO learner_export_service USING (true);
DROP POLICY IF EXISTS api_keys_service_used ON learner_export.api_keys;
CREATE POLICY api_keys_service_used ON learner_export.api_keys
    FOR UPDATE TO learner_export_service USING (true) WITH CHECK (true);
GRANT SELECT, UPDATE (last_used_at) ON learner_export.api_keys TO learner_export_service;

-- Audit rows are append-only to the service (migration 003, docs/audit.md): it inserts rows
-- and completes its own 'started' ones through finish_export(), never UPDATE or DELETE.
REVOKE UPDATE, DELETE, TRUNCATE ON learner_export.export_audit FROM learner_export_service;
GRANT EXECUTE ON FUNCTION learner_export.finish_export(uuid, text, bigint, bigint, integer,
    uuid[], text) TO learner_export_service;
