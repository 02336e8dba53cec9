-- The export contract (docs/contract.md) for the heavy benchmark schema
-- (benchmarks/schemas/heavy.sql), written as an operator would from the sample adapter
-- (learner_export/sql/adapters/sample.sql): learners are public.profiles rows with role
-- 'learner'; email, phone and last sign-in come from auth.users; three per-learner aggregates
-- (module completions, tags, assessment attempts). 35 columns.

CREATE OR REPLACE FUNCTION learner_export.caller_role(p_caller uuid)
RETURNS text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT p.role FROM public.profiles AS p WHERE p.id = p_caller
$$;

-- super_admin: every organisation; org_admin: their own; instructor: those assigned to them.
CREATE OR REPLACE FUNCTION learner_export.export_scope(p_caller uuid, p_client_ids uuid[])
RETURNS uuid[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    who text;
    home uuid;
    allowed uuid[];
BEGIN
    SELECT p.role, p.organisation_id INTO who, home FROM public.profiles AS p WHERE p.id = p_caller;
    IF who = 'super_admin' THEN
        RETURN p_client_ids;
    ELSIF who = 'org_admin' AND home IS NOT NULL THEN
        allowed := ARRAY[home];
    ELSIF who = 'instructor' THEN
        SELECT coalesce(array_agg(i.organisation_id ORDER BY i.organisation_id), '{}') INTO allowed
          FROM public.instructor_organisations AS i
         WHERE i.instructor_id = p_caller;
        IF cardinality(allowed) = 0 THEN
            RAISE EXCEPTION 'no organisations are assigned to this instructor'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    ELSIF who IS NULL THEN
        RAISE EXCEPTION 'no profile for this caller' USING ERRCODE = 'insufficient_privilege';
    ELSE
        RAISE EXCEPTION 'role % may not export learners', who
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_client_ids IS NULL THEN
        RETURN allowed;
    END IF;
    IF NOT p_client_ids <@ allowed THEN
        RAISE EXCEPTION 'organisations not open to this caller'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN p_client_ids;
END
$$;

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
    learner_id             uuid,
    first_name             text,
    last_name              text,
    preferred_name         text,
    email                  text,
    phone                  text,
    organisation_id        uuid,
    organisation_name      text,
    pronouns               text,
    date_of_birth          date,
    locale                 text,
    time_zone              text,
    country_code           text,
    city                   text,
    job_title              text,
    department             text,
    employee_number        text,
    cohort                 text,
    status                 text,
    enrolled_on            date,
    expected_completion    date,
    created_at             timestamptz,
    last_sign_in_at        timestamptz,
    email_confirmed        boolean,
    is_active              boolean,
    marketing_opt_in       boolean,
    modules_started        integer,
    modules_completed      integer,
    module_average_score   numeric,
    tags                   text,
    assessments_taken      integer,
    best_assessment_score  numeric,
    last_assessment_at     timestamptz,
    accessibility_needs    text,
    notes                  text
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
        SELECT l.id, l.first_name, l.last_name, l.preferred_name, u.email, u.phone,
               l.organisation_id, o.name, l.pronouns, l.date_of_birth, l.locale, l.time_zone,
               l.country_code, l.city, l.job_title, l.department, l.employee_number, l.cohort,
               l.status, l.enrolled_on, l.expected_completion, l.created_at, u.last_sign_in_at,
               u.email_confirmed_at IS NOT NULL, l.is_active, l.marketing_opt_in,
               m.started, m.completed, m.average_score, t.tags, a.taken, a.best, a.last_at,
               l.accessibility_needs, l.notes
          FROM (SELECT k.*
                  FROM public.profiles AS k
                 WHERE k.role = 'learner'
                   AND (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                               coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
                   AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
                   AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
                   AND ((SELECT learner_export.export_scope(p_caller, p_client_ids)) IS NULL
                        OR k.organisation_id = ANY ((SELECT learner_export.export_scope(p_caller, p_client_ids))::uuid[]))
                   AND (p_active IS NULL OR k.is_active = p_active)
                 ORDER BY k.created_at, k.id
                 LIMIT p_page_size) AS l
          JOIN auth.users AS u ON u.id = l.id
          LEFT JOIN public.organisations AS o ON o.id = l.organisation_id
          CROSS JOIN LATERAL (
                SELECT pg_catalog.count(*)::integer AS started,
                       pg_catalog.count(c.completed_at)::integer AS completed,
                       pg_catalog.round(pg_catalog.avg(c.score), 2) AS average_score
                  FROM public.module_completions AS c
                 WHERE c.profile_id = l.id) AS m
          CROSS JOIN LATERAL (
                SELECT pg_catalog.string_agg(g.tag, ', ' ORDER BY g.tag) AS tags
                  FROM public.profile_tags AS g
                 WHERE g.profile_id = l.id) AS t
          CROSS JOIN LATERAL (
                SELECT pg_catalog.count(*)::integer AS taken,
                       pg_catalog.max(s.score) AS best,
                       pg_catalog.max(s.taken_at) AS last_at
                  FROM public.assessment_attempts AS s
                 WHERE s.profile_id = l.id) AS a
         ORDER BY l.created_at, l.id;
END
$$;

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
     WHERE k.role = 'learner'
       AND (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                   coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
       AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
       AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
       AND (s.client_ids IS NULL OR k.organisation_id = ANY (s.client_ids))
       AND (p_active IS NULL OR k.is_active = p_active)
$$;

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
BEGIN
    RETURN QUERY
        SELECT e.created_at, e.id
          FROM (SELECT k.created_at, k.id,
                       pg_catalog.row_number() OVER (ORDER BY k.created_at, k.id) AS n
                  FROM public.profiles AS k
                 WHERE k.role = 'learner'
                   AND (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                               coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
                   AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
                   AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
                   AND (client_ids IS NULL OR k.organisation_id = ANY (client_ids))
                   AND (p_active IS NULL OR k.is_active = p_active)
                 ORDER BY k.created_at, k.id
                 LIMIT p_page_size::bigint * p_pages) AS e
         WHERE e.n % p_page_size = 0
         ORDER BY e.n;
END
$$;

-- The bulk view (docs/contract.md): the page function's rows, set-wise, each child table
-- aggregated once; its filters read from the export's settings, once each.
CREATE OR REPLACE VIEW learner_export.learner_export_rows AS
SELECT l.id AS learner_id, l.first_name, l.last_name, l.preferred_name, u.email, u.phone,
       l.organisation_id, o.name AS organisation_name, l.pronouns, l.date_of_birth, l.locale,
       l.time_zone, l.country_code, l.city, l.job_title, l.department, l.employee_number,
       l.cohort, l.status, l.enrolled_on, l.expected_completion, l.created_at, u.last_sign_in_at,
       u.email_confirmed_at IS NOT NULL AS email_confirmed, l.is_active, l.marketing_opt_in,
       coalesce(m.started, 0) AS modules_started, coalesce(m.completed, 0) AS modules_completed,
       m.average_score AS module_average_score, t.tags, coalesce(a.taken, 0) AS assessments_taken,
       a.best AS best_assessment_score, a.last_at AS last_assessment_at, l.accessibility_needs,
       l.notes
  FROM public.profiles AS l
  JOIN auth.users AS u ON u.id = l.id
  LEFT JOIN public.organisations AS o ON o.id = l.organisation_id
  LEFT JOIN (SELECT c.profile_id,
                    pg_catalog.count(*)::integer AS started,
                    pg_catalog.count(c.completed_at)::integer AS completed,
                    pg_catalog.round(pg_catalog.avg(c.score), 2) AS average_score
               FROM public.module_completions AS c
              GROUP BY c.profile_id) AS m ON m.profile_id = l.id
  LEFT JOIN (SELECT g.profile_id, pg_catalog.string_agg(g.tag, ', ' ORDER BY g.tag) AS tags
               FROM public.profile_tags AS g
              GROUP BY g.profile_id) AS t ON t.profile_id = l.id
  LEFT JOIN (SELECT s.profile_id,
                    pg_catalog.count(*)::integer AS taken,
                    pg_catalog.max(s.score) AS best,
                    pg_catalog.max(s.taken_at) AS last_at
               FROM public.assessment_attempts AS s
              GROUP BY s.profile_id) AS a ON a.profile_id = l.id
 WHERE l.role = 'learner'
   AND l.created_at >= (SELECT coalesce(nullif(pg_catalog.current_setting('learner_export.created_from'), '')::timestamptz,
                                        '-infinity'::timestamptz))
   AND l.created_at < (SELECT coalesce(nullif(pg_catalog.current_setting('learner_export.created_to'), '')::timestamptz,
                                       'infinity'::timestamptz))
   AND ((SELECT learner_export.export_scope(pg_catalog.current_setting('learner_export.caller')::uuid,
                                            nullif(pg_catalog.current_setting('learner_export.client_ids'), '')::uuid[])) IS NULL
        OR l.organisation_id = ANY ((SELECT learner_export.export_scope(pg_catalog.current_setting('learner_export.caller')::uuid,
                                                                        nullif(pg_catalog.current_setting('learner_export.client_ids'), '')::uuid[]))::uuid[]))
   AND ((SELECT nullif(pg_catalog.current_setting('learner_export.active'), '')::boolean) IS NULL
        OR l.is_active = (SELECT nullif(pg_catalog.current_setting('learner_export.active'), '')::boolean));
