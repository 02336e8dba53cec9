-- Who may export what, enforced in the database so that no code path can forget it.
--
-- Admin: every learner. Staff: the learners of the clients assigned to them in
-- staff_client_assignments; an export without a client filter covers exactly those clients, and
-- asking for any other client is refused. Every other role, or no profile: refused.
-- The export functions take the caller's profile id first and apply this scope to every page;
-- their former signatures, without a caller, are dropped.

CREATE TABLE public.staff_client_assignments (
    staff_id   uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
    client_id  uuid NOT NULL REFERENCES public.clients (id) ON DELETE CASCADE,
    PRIMARY KEY (staff_id, client_id)
);

-- The client ids the caller may export with this filter (NULL: every client), or an error with
-- SQLSTATE 42501 (insufficient_privilege) saying why not.
CREATE FUNCTION public.learner_export_scope(p_caller uuid, p_client_ids uuid[])
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

DROP FUNCTION public.get_learner_export_batch(uuid[], timestamptz, timestamptz, boolean,
                                              timestamptz, uuid, integer);
DROP FUNCTION public.count_learner_export(uuid[], timestamptz, timestamptz, boolean,
                                          timestamptz, uuid);

-- As in 002, with the caller's scope applied (computed once per page, then a plain filter).
CREATE FUNCTION public.get_learner_export_batch(
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
    WITH scope AS MATERIALIZED (
        SELECT public.learner_export_scope(p_caller, p_client_ids) AS client_ids
    )
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
              FROM public.learners AS k, scope AS s
             WHERE (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                           coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
               AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
               AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
               AND (s.client_ids IS NULL OR k.client_id = ANY (s.client_ids))
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

CREATE FUNCTION public.count_learner_export(
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
        SELECT public.learner_export_scope(p_caller, p_client_ids) AS client_ids
    )
    SELECT pg_catalog.count(*)
      FROM public.learners AS k, scope AS s
     WHERE (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                   coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
       AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
       AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
       AND (s.client_ids IS NULL OR k.client_id = ANY (s.client_ids))
       AND (p_active IS NULL OR k.is_active = p_active)
$$;

REVOKE ALL ON FUNCTION public.learner_export_scope(uuid, uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.get_learner_export_batch(uuid, uuid[], timestamptz, timestamptz,
                                                       boolean, timestamptz, uuid, integer)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION public.count_learner_export(uuid, uuid[], timestamptz, timestamptz,
                                                   boolean, timestamptz, uuid) FROM PUBLIC;
