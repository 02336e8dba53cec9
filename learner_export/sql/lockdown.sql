-- Who may reach the schema learner_export: applied at the end of every `db migrate`, after the
-- migrations and the adapter, so that it also covers what they just created.
--
-- PostgreSQL grants EXECUTE on every new function to PUBLIC, and Supabase's default privileges
-- grant everything new in public (and, where configured, elsewhere) to anon, authenticated and
-- service_role by name, which REVOKE ... FROM PUBLIC does not undo. So every grant is revoked
-- here, by name, and only the service's role gets what the running service needs.
--
-- The service's role is this database's own (migration 005, learner_export/db/role.py): its
-- name comes in the setting learner_export.service_role, set for the transaction by `db
-- migrate`, and is quoted with format('%I') wherever it is used. When the name changed,
-- learner_export.old_service_role names the role that held it, and loses everything here.
--
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

DO $$
DECLARE
    old_role text := nullif(current_setting('learner_export.old_service_role', true), '');
BEGIN
    IF old_role IS NOT NULL
       AND old_role <> current_setting('learner_export.service_role')
       AND EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = old_role) THEN
        EXECUTE format('REVOKE ALL ON SCHEMA learner_export FROM %I', old_role);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA learner_export FROM %I', old_role);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA learner_export FROM %I', old_role);
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA learner_export FROM %I', old_role);
    END IF;
END
$$;

ALTER TABLE learner_export.export_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE learner_export.schema_migrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE learner_export.api_keys ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    service text := current_setting('learner_export.service_role');
    fn regprocedure;
BEGIN
    DROP POLICY IF EXISTS export_audit_service ON learner_export.export_audit;
    EXECUTE format('CREATE POLICY export_audit_service ON learner_export.export_audit'
                   ' TO %I USING (true) WITH CHECK (true)', service);

    EXECUTE format('GRANT USAGE ON SCHEMA learner_export TO %I', service);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON learner_export.export_audit TO %I', service);
    -- Its own name, for `db check` run as the service's login.
    EXECUTE format('GRANT SELECT ON learner_export.service_role TO %I', service);

    -- The contract's functions, as far as the adapter defines them (`db check` says what is
    -- missing), and the keyset guard's (sql/migrations/002).
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc AS p
          JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = 'learner_export'
           AND p.proname IN ('get_learner_export_batch', 'count_learner_export',
                             'learner_export_page_ends', 'export_scope', 'caller_role',
                             'scope_unit', 'keyset_breach', 'rows_breach')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, service);
    END LOOP;

    -- The adapter's optional bulk view (docs/contract.md): read by the service alone (the
    -- revokes above took it from every other role); its owner reads the tables for it.
    IF pg_catalog.to_regclass('learner_export.learner_export_rows') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON learner_export.learner_export_rows TO %I', service);
    END IF;

    -- Keys for scripts (migration 004, learner_export/keys.py): the service reads a key by its
    -- hash and notes when it was last used; creating and revoking keys is the CLI's, as the
    -- schema's owner. The revokes above already cover the table for every other role.
    DROP POLICY IF EXISTS api_keys_service_read ON learner_export.api_keys;
    EXECUTE format('CREATE POLICY api_keys_service_read ON learner_export.api_keys'
                   ' FOR SELECT TO %I USING (true)', service);
    DROP POLICY IF EXISTS api_keys_service_used ON learner_export.api_keys;
    EXECUTE format('CREATE POLICY api_keys_service_used ON learner_export.api_keys'
                   ' FOR UPDATE TO %I USING (true) WITH CHECK (true)', service);
    EXECUTE format('GRANT SELECT, UPDATE (last_used_at) ON learner_export.api_keys TO %I',
                   service);

    -- Audit rows are append-only to the service (migration 003, docs/audit.md): it inserts
    -- rows and completes its own 'started' ones through finish_export(), never UPDATE or DELETE.
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON learner_export.export_audit FROM %I',
                   service);
    EXECUTE format('GRANT EXECUTE ON FUNCTION learner_export.finish_export(uuid, text, bigint,'
                   ' bigint, integer, uuid[], text) TO %I', service);
END
$$;
