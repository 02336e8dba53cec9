-- The caller's scope as a value computed once per page, not a table joined to every row.
--
-- 005 put the scope in a MATERIALIZED CTE joined to learners, so every learner row of a page
-- went through a nested loop over that one-row CTE. As an initplan (a scalar subquery) the scope
-- is computed once and each row sees a plain filter: ~5% less time a page (16.5 against 17.3 ms
-- for 2,500 rows, medians of 6 alternating runs on 1M learners, PostgreSQL 15). Same signature,
-- rows and order as 005, and the same refusals (42501) whenever a row would be returned: the
-- scope is computed before the first row passes the filter. A refused caller asking past the
-- last row gets no rows rather than the error (learner_export_scope(), which the service calls
-- first, and learner_export_page_ends() still refuse).

CREATE OR REPLACE FUNCTION public.get_learner_export_batch(
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
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
SET plan_cache_mode = force_generic_plan
AS $$
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
               AND ((SELECT public.learner_export_scope(p_caller, p_client_ids)) IS NULL
                    OR k.client_id = ANY ((SELECT public.learner_export_scope(p_caller, p_client_ids))::uuid[]))
               AND (p_active IS NULL OR k.is_active = p_active)
             ORDER BY k.created_at, k.id
             LIMIT p_page_size) AS l
      JOIN public.clients AS c ON c.id = l.client_id
      CROSS JOIN LATERAL (
            SELECT pg_catalog.count(*)::integer AS total,
                   pg_catalog.count(m.completed_at)::integer AS completed
              FROM public.learner_module_progress AS m
             WHERE m.learner_id = l.id) AS p
     ORDER BY l.created_at, l.id
$$;
