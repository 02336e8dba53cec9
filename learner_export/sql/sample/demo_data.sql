-- Deterministic synthetic learners, made inside PostgreSQL. Not a migration: `learner-export db
-- seed` creates this function in pg_temp for its own session and calls it with bind parameters.
--
-- Every value derives from hashes of (seed, row number), so the same arguments give the same rows
-- whatever the plan. The text is chosen to break naive exporters: separators, quotes, newlines,
-- tabs, non-Latin scripts, emoji, characters XML 1.0 forbids, leading = + - @, NULLs in every
-- nullable column, and groups of learners sharing one created_at.

CREATE FUNCTION pg_temp.learner_export_seed(p_learners integer, p_clients integer, p_seed integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
DECLARE
    client_names constant text[] := ARRAY[
        'Acme, Inc.', 'Globex "North"', 'Initech', 'Umbrella Corp', '東京ラーニング株式会社',
        'Café Élan', '=Evil Client', 'Ünïcödé GmbH', 'Stark & Wayne <Partners>', '+Plus Academy'];
    first_names constant text[] := ARRAY[
        'Ana', 'José', 'Zoë', '李', 'Мария', 'محمد', 'Ngozi', 'Jean-Luc', 'Émilie "Em"',
        'O''Brien', '=cmd|'' /C calc''!A0', '+Tom', '-Dash', '@mention', E'Tab\tName',
        E'Line\nBreak', 'Søren', 'Aiyana', '🚀 Rocket', 'Kofi'];
    last_names constant text[] := ARRAY[
        'Smith', 'García, Jr.', '山田', 'Nguyễn', 'Ó Briain', 'Okafor', 'Kowalski', 'Müller',
        'Haddad', 'Patel', 'Ivanova', 'Tanaka', 'Dubois', 'Rossi', 'Johnson'];
    tiers constant text[] := ARRAY['Not Ready', 'Developing', 'Ready', 'Placed'];
    note_texts constant text[] := ARRAY[
        'Needs follow-up, "urgent"', E'Line one\nline two\r\nline three', '=SUM(A1:A9)',
        '+1 call back', '-', '@channel please review', E'\ttabbed note', E'\rcarriage',
        'Prefers email 📧 — thanks!', 'Очень хорошо', '進捗は良好です', 'Plain note',
        E'bell\u0007 and vertical\u000btab', 'quote "inside" and, comma', '<b>not html</b> & co'];
BEGIN
    INSERT INTO public.modules (id, title)
    SELECT m, 'Module ' || m FROM generate_series(1, 12) AS m
    ON CONFLICT (id) DO NOTHING;

    INSERT INTO public.clients (id, name, created_at)
    SELECT md5(p_seed || '/client/' || c)::uuid,
           client_names[1 + (c - 1) % 10] || ' #' || c,
           timestamptz '2023-01-01 00:00:00+00' + c * interval '1 day'
      FROM generate_series(1, p_clients) AS c;

    INSERT INTO public.learners (id, client_id, full_name, email, phone, created_at, last_login_at,
                                 job_readiness_tier, job_readiness_stars, is_active, notes)
    SELECT md5(p_seed || '/learner/' || i)::uuid,
           md5(p_seed || '/client/' || (1 + abs(h % p_clients)))::uuid,
           first_names[1 + abs((h >> 8) % 20)] || ' ' || last_names[1 + abs((h >> 16) % 15)],
           CASE WHEN abs((h >> 24) % 10) = 0 THEN NULL
                ELSE 'learner' || i || '@example.' || (ARRAY['com', 'org', 'co.uk', 'jp'])[1 + abs((h >> 28) % 4)] END,
           CASE WHEN abs((h >> 32) % 8) = 0 THEN NULL
                ELSE '+61 4' || lpad(abs((h >> 12) % 100000000)::text, 8, '0') END,
           -- Groups of seven learners share one created_at, to exercise ties on the first key column.
           timestamptz '2024-01-01 00:00:00+00' + ((i - 1) / 7) * interval '61.000123 seconds',
           CASE WHEN abs((h >> 40) % 5) = 0 THEN NULL
                ELSE timestamptz '2025-06-01 00:00:00+00' + abs((h >> 20) % 31536000) * interval '1 second' END,
           CASE WHEN abs((h >> 44) % 6) = 0 THEN NULL ELSE tiers[1 + abs((h >> 46) % 4)] END,
           CASE WHEN abs((h >> 48) % 6) = 0 THEN NULL ELSE abs((h >> 50) % 6)::smallint END,
           abs((h >> 52) % 10) <> 0,
           CASE WHEN abs((h >> 54) % 10) < 3 THEN note_texts[1 + abs((h >> 4) % 15)] END
      FROM generate_series(1, p_learners) AS i,
           LATERAL (SELECT hashint8extended(i, p_seed) AS h) AS x;

    INSERT INTO public.learner_module_progress (learner_id, module_id, started_at, completed_at)
    SELECT md5(p_seed || '/learner/' || i)::uuid,
           m,
           timestamptz '2025-01-01 00:00:00+00' + m * interval '1 week',
           CASE WHEN (h >> (8 + m)) & 1 = 1
                THEN timestamptz '2025-01-01 00:00:00+00' + m * interval '9 days' END
      FROM generate_series(1, p_learners) AS i,
           LATERAL (SELECT hashint8extended(i, p_seed) AS h) AS x,
           LATERAL generate_series(1, abs((h >> 2) % 7)::integer) AS m
     -- In key order, the indexes fill from left to right: twice as fast as random inserts.
     ORDER BY 1, 2;
END
$fn$;
