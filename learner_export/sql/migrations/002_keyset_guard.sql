-- The keyset guard (learner_export.contract.guard): every page the service reads is checked in
-- the page query itself, and this function raises when the adapter broke the contract, before
-- the bad row reaches COPY. Called only on a breach (a CASE guards the call), so an export that
-- meets the contract never runs it. It reads nothing: SECURITY INVOKER, no table rights needed.
CREATE OR REPLACE FUNCTION learner_export.keyset_breach(
    p_row        bigint,
    p_page_size  integer,
    p_prev_at    timestamptz,
    p_prev_id    uuid,
    p_at         timestamptz,
    p_id         uuid,
    p_end_at     timestamptz,
    p_end_id     uuid
)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $$
BEGIN
    IF p_row > p_page_size THEN
        RAISE EXCEPTION 'learner_export.get_learner_export_batch returned more rows than the % a page asked for (p_page_size)',
            p_page_size USING ERRCODE = 'LX001';
    ELSIF p_at IS NULL OR p_id IS NULL THEN
        RAISE EXCEPTION 'learner_export.get_learner_export_batch returned a row whose keyset is NULL (row % of a page)',
            p_row USING ERRCODE = 'LX001';
    ELSIF (p_prev_at, p_prev_id) = (p_at, p_id) THEN
        RAISE EXCEPTION 'learner_export.get_learner_export_batch returned the key (%, %) twice: the keyset is not unique (a join that repeats learners?)',
            p_at, p_id USING ERRCODE = 'LX001';
    ELSIF (p_prev_at, p_prev_id) > (p_at, p_id) THEN
        RAISE EXCEPTION 'learner_export.get_learner_export_batch returned the key (%, %) after (%, %): keys must strictly increase, in keyset order and after the cursor',
            p_at, p_id, p_prev_at, p_prev_id USING ERRCODE = 'LX001';
    ELSIF p_row = p_page_size AND (p_end_at, p_end_id) IS DISTINCT FROM (p_at, p_id) THEN
        RAISE EXCEPTION 'learner_export.learner_export_page_ends said a page ends at (%, %) but learner_export.get_learner_export_batch ended it at (%, %): the two functions disagree (filters, scope or keyset)',
            p_end_at, p_end_id, p_at, p_id USING ERRCODE = 'LX001';
    END IF;
    RETURN true;
END
$$;
