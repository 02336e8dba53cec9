-- The keyset guard of the bulk pass (learner_export.contract.guard.bulk_query): the rest of an
-- export read in one statement from the adapter's optional view learner_export.learner_export_rows,
-- ordered by the keyset. Raises when two rows share a key or a key is NULL, before the bad row
-- reaches COPY; called only on a breach. Reads nothing: SECURITY INVOKER, no table rights needed.
CREATE OR REPLACE FUNCTION learner_export.rows_breach(
    p_row        bigint,
    p_prev_at    timestamptz,
    p_prev_id    uuid,
    p_at         timestamptz,
    p_id         uuid
)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $$
BEGIN
    IF p_at IS NULL OR p_id IS NULL THEN
        RAISE EXCEPTION 'learner_export.learner_export_rows returned a row whose keyset is NULL (row % of the bulk pass)',
            p_row USING ERRCODE = 'LX001';
    ELSIF (p_prev_at, p_prev_id) = (p_at, p_id) THEN
        RAISE EXCEPTION 'learner_export.learner_export_rows returned the key (%, %) twice: the keyset is not unique (a join that repeats learners?)',
            p_at, p_id USING ERRCODE = 'LX001';
    ELSIF (p_prev_at, p_prev_id) > (p_at, p_id) THEN
        RAISE EXCEPTION 'learner_export.learner_export_rows returned the key (%, %) after (%, %): the bulk pass starts after the first page',
            p_at, p_id, p_prev_at, p_prev_id USING ERRCODE = 'LX001';
    END IF;
    RETURN true;
END
$$;
