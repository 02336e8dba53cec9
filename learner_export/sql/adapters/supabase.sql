-- The adapter for a Supabase-shaped platform (docs/contract.md, "Next to a Supabase project"):
-- learners are public.profiles rows with the lower-case role 'student', their e-mail and last
-- sign-in live in auth.users, their organisation in public.organizations, course progress in
-- public.course_progress, and public.staff_clients says which staff member sees which
-- organisations. tests/schemas/supabase_like.sql is such a schema.
--
-- It speaks the platform's words: the keyset's time column is joined_at (when the profile was
-- created, not auth.users.created_at, which is when the login was), a scope unit is an
-- organization, and the exported columns say organization_id and organization_name. The HTTP
-- parameters client_id, created_from and created_to keep working; organization_id,
-- joined_from and joined_to are their aliases here.
--
-- CHANGE what the comments marked CHANGE say; apply with
-- `learner-export db migrate --adapter learner_export/sql/adapters/supabase.sql` as postgres
-- (the owner of the functions must be able to read auth.users and public), then
-- `learner-export db check --as <an admin's profile id>`.

-- What a scope unit is called (optional; "client" when absent). CHANGE: your word.
CREATE OR REPLACE FUNCTION learner_export.scope_unit()
RETURNS TABLE (singular text, plural text)
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
    SELECT 'organization', 'organizations'
$$;

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

-- The organizations the caller may export (NULL: all), or SQLSTATE 42501 with the reason.
-- CHANGE: who may export (here admin: everything; staff: the organizations assigned to them in
-- public.staff_clients; anyone else, students included: nothing).
CREATE OR REPLACE FUNCTION learner_export.export_scope(p_caller uuid, p_client_ids uuid[])
RETURNS uuid[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    who text;
    assigned uuid[];
BEGIN
    SELECT p.role INTO who FROM public.profiles AS p WHERE p.id = p_caller;
    IF who = 'admin' THEN
        RETURN p_client_ids;
    ELSIF who = 'staff' THEN
        SELECT coalesce(array_agg(s.client_id), '{}') INTO assigned
          FROM public.staff_clients AS s WHERE s.staff_id = p_caller;
        IF p_client_ids IS NULL THEN
            RETURN assigned;
        END IF;
        IF NOT p_client_ids <@ assigned THEN
            RAISE EXCEPTION 'organisation not assigned to this staff member'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN p_client_ids;
    END IF;
    RAISE EXCEPTION 'this profile may not export learners' USING ERRCODE = 'insufficient_privilege';
END
$$;

-- One keyset page in (joined_at, learner_id) order. CHANGE: the columns after the keyset.
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
    learner_id         uuid,
    display_name       text,
    email              text,
    organization_id    uuid,
    organization_name  text,
    joined_at          timestamptz,
    last_sign_in_at    timestamptz,
    enrolled_on        date,
    score              numeric,
    completed_courses  bigint,
    is_active          boolean
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT l.id, l.display_name, u.email, l.client_id, o.title, l.created_at,
               u.last_sign_in_at, l.enrolled_on, g.score, g.completed, l.is_active
          FROM (SELECT k.*
                  FROM public.profiles AS k
                 WHERE k.role = 'student'
                   AND (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                               coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
                   AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
                   AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
                   AND ((SELECT learner_export.export_scope(p_caller, p_client_ids)) IS NULL
                        OR k.client_id = ANY ((SELECT learner_export.export_scope(p_caller, p_client_ids))::uuid[]))
                   AND (p_active IS NULL OR k.is_active = p_active)
                 ORDER BY k.created_at, k.id
                 LIMIT p_page_size) AS l
          JOIN auth.users AS u ON u.id = l.id
          LEFT JOIN public.organizations AS o ON o.id = l.client_id
          CROSS JOIN LATERAL (
                SELECT pg_catalog.avg(c.score) AS score,
                       pg_catalog.count(*) FILTER (WHERE c.completed) AS completed
                  FROM public.course_progress AS c
                 WHERE c.profile_id = l.id) AS g
         ORDER BY l.created_at, l.id;
END
$$;

-- How many rows the same export holds after the cursor: the same tables and filters.
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
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    WITH scope AS MATERIALIZED (
        SELECT learner_export.export_scope(p_caller, p_client_ids) AS client_ids
    )
    SELECT pg_catalog.count(*)
      FROM public.profiles AS k, scope AS s
     WHERE k.role = 'student'
       AND (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                   coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
       AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
       AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
       AND (s.client_ids IS NULL OR k.client_id = ANY (s.client_ids))
       AND (p_active IS NULL OR k.is_active = p_active)
$$;

-- Where the next p_pages full pages end; its first column names the keyset's time column.
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
RETURNS TABLE (joined_at timestamptz, learner_id uuid)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    client_ids uuid[] := learner_export.export_scope(p_caller, p_client_ids);
BEGIN
    RETURN QUERY
        SELECT e.created_at, e.id
          FROM (SELECT k.created_at, k.id,
                       pg_catalog.row_number() OVER (ORDER BY k.created_at, k.id) AS n
                  FROM public.profiles AS k
                 WHERE k.role = 'student'
                   AND (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                               coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
                   AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
                   AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
                   AND (client_ids IS NULL OR k.client_id = ANY (client_ids))
                   AND (p_active IS NULL OR k.is_active = p_active)
                 ORDER BY k.created_at, k.id
                 LIMIT p_page_size::bigint * p_pages) AS e
         WHERE e.n % p_page_size = 0
         ORDER BY e.n;
END
$$;

-- Optional, for large exports: the same rows set-wise, each child table aggregated once (the
-- sample adapter explains the bulk view; docs/contract.md, "The bulk view"). Its filters come
-- from the export's settings, each read once inside a scalar subquery. CHANGE: as the page
-- function.
CREATE OR REPLACE VIEW learner_export.learner_export_rows AS
SELECT l.id AS learner_id, l.display_name, u.email, l.client_id AS organization_id,
       o.title AS organization_name, l.created_at AS joined_at, u.last_sign_in_at,
       l.enrolled_on, g.score, coalesce(g.completed, 0) AS completed_courses, l.is_active
  FROM public.profiles AS l
  JOIN auth.users AS u ON u.id = l.id
  LEFT JOIN public.organizations AS o ON o.id = l.client_id
  LEFT JOIN (SELECT c.profile_id,
                    pg_catalog.avg(c.score) AS score,
                    pg_catalog.count(*) FILTER (WHERE c.completed) AS completed
               FROM public.course_progress AS c
              GROUP BY c.profile_id) AS g ON g.profile_id = l.id
 WHERE l.role = 'student'
   AND l.created_at >= (SELECT coalesce(nullif(pg_catalog.current_setting('learner_export.created_from'), '')::timestamptz,
                                        '-infinity'::timestamptz))
   AND l.created_at < (SELECT coalesce(nullif(pg_catalog.current_setting('learner_export.created_to'), '')::timestamptz,
                                       'infinity'::timestamptz))
   AND ((SELECT learner_export.export_scope(pg_catalog.current_setting('learner_export.caller')::uuid,
                                            nullif(pg_catalog.current_setting('learner_export.client_ids'), '')::uuid[])) IS NULL
        OR l.client_id = ANY ((SELECT learner_export.export_scope(pg_catalog.current_setting('learner_export.caller')::uuid,
                                                                  nullif(pg_catalog.current_setting('learner_export.client_ids'), '')::uuid[]))::uuid[]))
   AND ((SELECT nullif(pg_catalog.current_setting('learner_export.active'), '')::boolean) IS NULL
        OR l.is_active = (SELECT nullif(pg_catalog.current_setting('learner_export.active'), '')::boolean));
