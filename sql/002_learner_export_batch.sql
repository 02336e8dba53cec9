-- One keyset page of the learner export.
--
-- Pages are ordered by the unique key (created_at, id) and continue after the cursor
-- (p_after_created_at, p_after_id) of the previous page's last row; there is no OFFSET, so the
-- last page of a large export costs what the first does. The cursor comparison is written with
-- coalesce() rather than "IS NULL OR", so that it stays an index condition in a generic plan.
-- The progress aggregate runs only for the learners of the page, through a covering index.
--
-- SECURITY DEFINER with an empty search_path: every name is schema-qualified, and the function is
-- not callable by PUBLIC (in a Supabase-style stack that would expose it to every API role).

CREATE INDEX learner_module_progress_by_learner
    ON public.learner_module_progress (learner_id) INCLUDE (completed_at);

CREATE FUNCTION public.get_learner_export_batch(
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
      FROM (SELECT *
              FROM public.learners AS k
             WHERE (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                           coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
               AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
               AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
               AND (p_client_ids IS NULL OR k.client_id = ANY (p_client_ids))
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

REVOKE ALL ON FUNCTION public.get_learner_export_batch(uuid[], timestamptz, timestamptz, boolean, timestamptz, uuid, integer) FROM PUBLIC;
