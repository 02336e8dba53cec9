-- Keyset pages always take the generic plan: an index scan of learners_export_keyset in key
-- order. With a custom plan for the actual cursor, PostgreSQL 18 (which caches SQL function
-- plans) chose a bitmap scan and a sort of every learner after the cursor for the last pages.
-- The function already has a SET clause, so this costs no inlining.

ALTER FUNCTION public.get_learner_export_batch(uuid[], timestamptz, timestamptz, boolean,
                                               timestamptz, uuid, integer)
    SET plan_cache_mode = force_generic_plan;
