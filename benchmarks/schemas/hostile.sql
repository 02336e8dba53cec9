-- The hostile learners, mixed into a seeded sample dataset (learner_export/sql/sample): text
-- that people type and nobody bounds. 2,000 notes of 10,000 '"' each, one 5 MB note, ten 1 MB
-- notes and ten 1 MB names full of '=', ';', tabs and newlines (about 50 MB of text in all).
-- Their created_at fall among the ordinary learners' (the sample's formula for row
-- p_ordinary * k / 2,021, k a permutation of j), so every page of an export meets every kind.

CREATE FUNCTION pg_temp.hostile_learners(p_ordinary integer, p_clients integer, p_seed integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
BEGIN
    INSERT INTO public.learners (id, client_id, full_name, email, created_at, is_active, notes)
    SELECT md5(p_seed || '/hostile/' || j)::uuid,
           md5(p_seed || '/client/' || (1 + j % p_clients))::uuid,
           CASE WHEN j > 2011 THEN pg_catalog.repeat(E'=A1;\t"x"\n', 104858)
                ELSE 'Hostile ' || j END,
           'hostile' || j || '@example.org',
           timestamptz '2024-01-01 00:00:00+00'
               + ((p_ordinary::bigint * (1 + (j * 1009) % 2021) / 2021 - 1) / 7) * interval '61.000123 seconds',
           true,
           CASE WHEN j <= 2000 THEN pg_catalog.repeat('"', 10000)
                WHEN j = 2001 THEN pg_catalog.repeat(E'5 MB, "quoted"; =cmd|\t\n', 238313)
                WHEN j <= 2011 THEN pg_catalog.repeat(E'=;\t\n', 262144)
                ELSE 'name of 1 MB' END
      FROM generate_series(1, 2021) AS j;
END
$fn$;
