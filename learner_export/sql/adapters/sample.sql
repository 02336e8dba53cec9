-- The adapter for the sample schema (sql/sample/schema.sql): the export contract's five
-- functions, which are the service's only link to the platform's tables. docs/contract.md says
-- what each must do. To adapt the service to your own tables, copy this file, change what the
-- comments marked CHANGE say, and apply it with `learner-export db migrate --adapter FILE`
-- (re-applied whenever its text changes); `learner-export db check` then says whether the
-- contract is met. Keep every function SECURITY DEFINER with `SET search_path = ''` and every
-- name schema-qualified. Grants are not this file's business: `db migrate` revokes every grant
-- on the schema learner_export and gives EXECUTE to the service's role alone (docs/contract.md).

-- The caller's role as a label for the audit trail, or NULL when the id is no one's.
-- CHANGE: where your roles live.
CREATE OR REPLACE FUNCTION learner_export.caller_role(p_caller uuid)
RETURNS text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT p.role FROM public.profiles AS p WHERE p.id = p_caller
$$;

-- The client ids the caller may export with this filter (NULL: every client), or an error with
-- SQLSTATE 42501 (insufficient_privilege) whose message says why not; the message reaches the
-- caller as the 403's detail.
-- CHANGE: who may export (here Admin: everything; Staff: the clients assigned to them).
CREATE OR REPLACE FUNCTION learner_export.export_scope(p_caller uuid, p_client_ids uuid[])
RETURNS uuid[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    caller_role text;
    assigned uuid[];
    refused uuid[];
BEGIN
    SELECT p.role INTO caller_role FROM public.profiles AS p WHERE p.id = p_caller;
    IF caller_role = 'Admin' THEN
        RETURN p_client_ids;
    ELSIF caller_role = 'Staff' THEN
        SELECT coalesce(array_agg(a.client_id ORDER BY a.client_id), '{}') INTO assigned
          FROM public.staff_client_assignments AS a
         WHERE a.staff_id = p_caller;
        IF cardinality(assigned) = 0 THEN
            RAISE EXCEPTION 'no clients are assigned to this staff member'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF p_client_ids IS NULL THEN
            RETURN assigned;
        END IF;
        SELECT array_agg(c ORDER BY c) INTO refused
          FROM unnest(p_client_ids) AS c
         WHERE c <> ALL (assigned);
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION 'clients not assigned to this staff member: %',
                array_to_string(refused[1:5], ', ')
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN p_client_ids;
    ELSIF caller_role IS NULL THEN
        RAISE EXCEPTION 'no profile for this caller' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION 'role % may not export learners', caller_role
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- One keyset page: at most p_page_size rows after (p_after_created_at, p_after_id), in
-- (created_at, learner_id) order, of the learners the caller may see that pass the filters.
-- Fixed: the parameters, and the output columns created_at (timestamptz) and learner_id (uuid),
-- unique together. Free (CHANGE): every other output column (any number, any names, of the types
-- docs/contract.md lists); the service learns them when it starts.
--
-- PL/pgSQL keeps the plan of RETURN QUERY for the connection (generic, as the SET clause asks),
-- where a LANGUAGE sql function that cannot be inlined (SECURITY DEFINER and SET both prevent
-- it) plans its body at every call before PostgreSQL 18: 6-10% less time a page. The caller's
-- scope is an initplan, computed once a page. `variable_conflict use_column`: the OUT columns
-- are variables in PL/pgSQL; every column name is qualified anyway.
CREATE OR REPLACE FUNCTION learner_export.get_learner_export_batch(
    p_caller            uuid,
    p_client_ids        uuid[]      DEFAULT NULL,
    p_created_from      timestamptz DEFAULT NULL,
    p_created_to        timestamptz DEFAULT NULL,
    p_active            boolean     DEFAULT NULL,
    p_after_created_at  timestamptz DEFAULT NULL,
    p_after_id          uuid        DEFAULT NULL,
    p_page_size         integer     DEFAULT 5000
)
RETURNS TABLE (
    learner_id           uuid,
    full_name            text,
    email                text,
    phone                text,
    client_id            uuid,
    client_name          text,
    created_at           timestamptz,
    last_login_at        timestamptz,
    is_active            boolean,
    job_readiness_tier   text,
    job_readiness_stars  smallint,
    modules_total        integer,
    modules_completed    integer,
    progress_percent     double precision,
    notes                text
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT l.id,
               l.full_name,
               l.email,
               l.phone,
               l.client_id,
               c.name,
               l.created_at,
               l.last_login_at,
               l.is_active,
               l.job_readiness_tier,
               l.job_readiness_stars,
               p.total,
               p.completed,
               round(100.0 * p.completed / nullif(p.total, 0), 1)::double precision,
               l.notes
          FROM (SELECT k.*
                  FROM public.learners AS k
                 WHERE (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                               coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
                   AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
                   AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
                   AND ((SELECT learner_export.export_scope(p_caller, p_client_ids)) IS NULL
                        OR k.client_id = ANY ((SELECT learner_export.export_scope(p_caller, p_client_ids))::uuid[]))
                   AND (p_active IS NULL OR k.is_active = p_active)
                 ORDER BY k.created_at, k.id
                 LIMIT p_page_size) AS l
          JOIN public.clients AS c ON c.id = l.client_id
          CROSS JOIN LATERAL (
                SELECT pg_catalog.count(*)::integer AS total,
                       pg_catalog.count(m.completed_at)::integer AS completed
                  FROM public.learner_module_progress AS m
                 WHERE m.learner_id = l.id) AS p
         ORDER BY l.created_at, l.id;
END
$$;

-- How many rows the export holds after the cursor (for `Prefer: count=exact`, the CLI's
-- progress bar and the split of a large export into key ranges), in the export's own snapshot:
-- the same predicates as the page function.
-- CHANGE: the same tables and filters as get_learner_export_batch.
CREATE OR REPLACE FUNCTION learner_export.count_learner_export(
    p_caller            uuid,
    p_client_ids        uuid[]      DEFAULT NULL,
    p_created_from      timestamptz DEFAULT NULL,
    p_created_to        timestamptz DEFAULT NULL,
    p_active            boolean     DEFAULT NULL,
    p_after_created_at  timestamptz DEFAULT NULL,
    p_after_id          uuid        DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    client_ids uuid[] := learner_export.export_scope(p_caller, p_client_ids);
    after_created_at timestamptz := coalesce(p_after_created_at, '-infinity'::timestamptz);
    after_id uuid := coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid);
BEGIN
    IF client_ids IS NULL AND p_active IS NULL THEN
        -- No filter but the keyset and created_at: an index-only scan (1M rows in ~0.13 s
        -- against ~0.25-0.37 s through the heap). A large export waits for this count before
        -- it splits into key ranges.
        RETURN (SELECT pg_catalog.count(*)
                  FROM public.learners AS k
                 WHERE (k.created_at, k.id) > (after_created_at, after_id)
                   AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
                   AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz));
    END IF;
    RETURN (SELECT pg_catalog.count(*)
              FROM public.learners AS k
             WHERE (k.created_at, k.id) > (after_created_at, after_id)
               AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
               AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
               AND (client_ids IS NULL OR k.client_id = ANY (client_ids))
               AND (p_active IS NULL OR k.is_active = p_active));
END
$$;

-- Where the next p_pages full pages of p_page_size rows end: the key of each one's last row
-- (fewer when the rows run out), so that an export can hand page k's start to one connection
-- while another still reads page k-1. A walk of the keyset index with the page function's
-- scope and filters, bounded by p_page_size * p_pages rows whatever the cursor (no OFFSET).
-- CHANGE: the same tables and filters as get_learner_export_batch.
CREATE OR REPLACE FUNCTION learner_export.learner_export_page_ends(
    p_caller            uuid,
    p_client_ids        uuid[],
    p_created_from      timestamptz,
    p_created_to        timestamptz,
    p_active            boolean,
    p_after_created_at  timestamptz,
    p_after_id          uuid,
    p_page_size         integer,
    p_pages             integer
)
RETURNS TABLE (created_at timestamptz, learner_id uuid)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    client_ids uuid[] := learner_export.export_scope(p_caller, p_client_ids);
    after_created_at timestamptz := coalesce(p_after_created_at, '-infinity'::timestamptz);
    after_id uuid := coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid);
BEGIN
    IF client_ids IS NULL AND p_active IS NULL THEN
        -- No filter but the keyset and created_at: an index-only scan (twice as fast).
        RETURN QUERY
            SELECT e.created_at, e.id
              FROM (SELECT k.created_at, k.id,
                           pg_catalog.row_number() OVER (ORDER BY k.created_at, k.id) AS n
                      FROM public.learners AS k
                     WHERE (k.created_at, k.id) > (after_created_at, after_id)
                       AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
                       AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
                     ORDER BY k.created_at, k.id
                     LIMIT p_page_size::bigint * p_pages) AS e
             WHERE e.n % p_page_size = 0
             ORDER BY e.n;
    ELSE
        RETURN QUERY
            SELECT e.created_at, e.id
              FROM (SELECT k.created_at, k.id,
                           pg_catalog.row_number() OVER (ORDER BY k.created_at, k.id) AS n
                      FROM public.learners AS k
                     WHERE (k.created_at, k.id) > (after_created_at, after_id)
                       AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
                       AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
                       AND (client_ids IS NULL OR k.client_id = ANY (client_ids))
                       AND (p_active IS NULL OR k.is_active = p_active)
                     ORDER BY k.created_at, k.id
                     LIMIT p_page_size::bigint * p_pages) AS e
             WHERE e.n % p_page_size = 0
             ORDER BY e.n;
    END IF;
END
$$;

-- Optional: every row of the export at once, for the bulk pass (docs/contract.md, "The bulk
-- view"). After the first page, the service reads the rest of a large export in one statement
-- from this view, ordered by the keyset, so that PostgreSQL aggregates each child table once
-- (hash aggregates and joins) instead of looking each learner's children up page by page: about
-- a quarter less of the database's CPU per row (docs/engine.md). The same rows as the page function,
-- written set-wise: the same columns in the same order and types, the same scope and filters.
-- A view takes no parameters: it reads the export's from the settings the service sets in the
-- export's transaction (learner_export.caller, client_ids, created_from, created_to, active;
-- '' for none), each inside a scalar subquery so that it is read once, not once per row. The
-- service adds the keyset's order, the cursor and the limit. No ORDER BY here.
-- Its owner reads the tables (a view checks them as its owner, like SECURITY DEFINER); `db
-- migrate` grants SELECT on it to the service's role alone. Leave it out and the service
-- reads every page through get_learner_export_batch.
-- CHANGE: the same tables, joins, filters and scope as get_learner_export_batch.
CREATE OR REPLACE VIEW learner_export.learner_export_rows AS
SELECT l.id AS learner_id,
       l.full_name,
       l.email,
       l.phone,
       l.client_id,
       c.name AS client_name,
       l.created_at,
       l.last_login_at,
       l.is_active,
       l.job_readiness_tier,
       l.job_readiness_stars,
       coalesce(p.total, 0) AS modules_total,
       coalesce(p.completed, 0) AS modules_completed,
       round(100.0 * p.completed / nullif(p.total, 0), 1)::double precision AS progress_percent,
       l.notes
  FROM public.learners AS l
  JOIN public.clients AS c ON c.id = l.client_id
  LEFT JOIN (SELECT m.learner_id,
                    pg_catalog.count(*)::integer AS total,
                    pg_catalog.count(m.completed_at)::integer AS completed
               FROM public.learner_module_progress AS m
              GROUP BY m.learner_id) AS p ON p.learner_id = l.id
 WHERE l.created_at >= (SELECT coalesce(nullif(pg_catalog.current_setting('learner_export.created_from'), '')::timestamptz,
                                        '-infinity'::timestamptz))
   AND l.created_at < (SELECT coalesce(nullif(pg_catalog.current_setting('learner_export.created_to'), '')::timestamptz,
                                       'infinity'::timestamptz))
   AND ((SELECT learner_export.export_scope(pg_catalog.current_setting('learner_export.caller')::uuid,
                                            nullif(pg_catalog.current_setting('learner_export.client_ids'), '')::uuid[])) IS NULL
        OR l.client_id = ANY ((SELECT learner_export.export_scope(pg_catalog.current_setting('learner_export.caller')::uuid,
                                                                  nullif(pg_catalog.current_setting('learner_export.client_ids'), '')::uuid[]))::uuid[]))
   AND ((SELECT nullif(pg_catalog.current_setting('learner_export.active'), '')::boolean) IS NULL
        OR l.is_active = (SELECT nullif(pg_catalog.current_setting('learner_export.active'), '')::boolean));
