-- How many rows an export with these filters holds after the cursor: for `Prefer: count=exact`
-- and the CLI's progress bar, run in the export's own snapshot. The same predicates as
-- get_learner_export_batch(), answered from the keyset index.

CREATE FUNCTION public.count_learner_export(
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
    SELECT pg_catalog.count(*)
      FROM public.learners AS k
     WHERE (k.created_at, k.id) > (coalesce(p_after_created_at, '-infinity'::timestamptz),
                                   coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid))
       AND k.created_at >= coalesce(p_created_from, '-infinity'::timestamptz)
       AND k.created_at < coalesce(p_created_to, 'infinity'::timestamptz)
       AND (p_client_ids IS NULL OR k.client_id = ANY (p_client_ids))
       AND (p_active IS NULL OR k.is_active = p_active)
$$;

REVOKE ALL ON FUNCTION public.count_learner_export(uuid[], timestamptz, timestamptz, boolean, timestamptz, uuid) FROM PUBLIC;
