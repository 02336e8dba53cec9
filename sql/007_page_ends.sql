-- Where keyset pages end, found ahead of reading them.
--
-- learner_export_page_ends() walks the export's keyset after a cursor and returns the key of
-- the last row of each of the next p_pages full pages of p_page_size rows (fewer when the rows
-- run out). It reads only the keyset index and the filters' columns, with the same caller scope
-- and filters as get_learner_export_batch(), so that an export can hand page k's start to one
-- connection while another still reads page k-1 (both in one exported snapshot).
-- No OFFSET: the walk is bounded by p_page_size * p_pages whatever the cursor. Without filters
-- it reads the keyset index only.

CREATE FUNCTION public.learner_export_page_ends(
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
    client_ids uuid[] := public.learner_export_scope(p_caller, p_client_ids);
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

REVOKE ALL ON FUNCTION public.learner_export_page_ends(uuid, uuid[], timestamptz, timestamptz,
                                                       boolean, timestamptz, uuid, integer,
                                                       integer) FROM PUBLIC;
