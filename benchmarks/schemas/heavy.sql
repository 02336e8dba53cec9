-- The heavy benchmark schema: a platform shaped like a Supabase project, heavier than the sample.
-- Learners are rows of a wide public.profiles table (28 columns, a role column, an organisation);
-- their email, phone and last sign-in live in auth.users; three child tables hold several rows
-- per learner (module completions, tags, assessment attempts). Made in a database of its own by
-- `python -m benchmarks --schema heavy`, never by the service.

CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.users (
    id                  uuid PRIMARY KEY,
    email               text,
    phone               text,
    email_confirmed_at  timestamptz,
    last_sign_in_at     timestamptz,
    created_at          timestamptz NOT NULL
);

CREATE TABLE public.organisations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    country     text NOT NULL,
    plan        text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE public.profiles (
    id                   uuid PRIMARY KEY REFERENCES auth.users (id),
    role                 text NOT NULL
                         CHECK (role IN ('learner', 'instructor', 'org_admin', 'super_admin')),
    organisation_id      uuid REFERENCES public.organisations (id),
    first_name           text NOT NULL,
    last_name            text NOT NULL,
    preferred_name       text,
    pronouns             text,
    date_of_birth        date,
    locale               text NOT NULL,
    time_zone            text NOT NULL,
    country_code         text,
    city                 text,
    postcode             text,
    address_line         text,
    job_title            text,
    department           text,
    employee_number      text,
    cohort               text,
    enrolled_on          date,
    expected_completion  date,
    status               text NOT NULL
                         CHECK (status IN ('active', 'paused', 'withdrawn', 'graduated')),
    is_active            boolean NOT NULL,
    marketing_opt_in     boolean NOT NULL,
    accessibility_needs  text,
    linkedin_url         text,
    bio                  text,
    notes                text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);

-- The export's keyset: learners only, (created_at, id) unique because id is.
CREATE INDEX profiles_learner_keyset ON public.profiles (created_at, id) WHERE role = 'learner';

CREATE TABLE public.module_completions (
    profile_id    uuid NOT NULL REFERENCES public.profiles (id),
    module_id     integer NOT NULL,
    started_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    score         numeric(5, 2),
    attempts      smallint NOT NULL,
    PRIMARY KEY (profile_id, module_id)
);

CREATE TABLE public.profile_tags (
    profile_id  uuid NOT NULL REFERENCES public.profiles (id),
    tag         text NOT NULL,
    PRIMARY KEY (profile_id, tag)
);

CREATE TABLE public.assessment_attempts (
    profile_id     uuid NOT NULL REFERENCES public.profiles (id),
    attempt        integer NOT NULL,
    assessment_id  integer NOT NULL,
    score          numeric(5, 2) NOT NULL,
    taken_at       timestamptz NOT NULL,
    PRIMARY KEY (profile_id, attempt)
);

CREATE TABLE public.instructor_organisations (
    instructor_id    uuid NOT NULL REFERENCES public.profiles (id),
    organisation_id  uuid NOT NULL REFERENCES public.organisations (id),
    PRIMARY KEY (instructor_id, organisation_id)
);

-- Deterministic learners, every value derived from hashes of (seed, row number), so the same
-- arguments give the same rows whatever the plan. Children: 0-15 module rows (7.5 on average),
-- 0-6 tags (3), 0-8 assessment attempts (4) per learner. Text mixes separators, quotes,
-- newlines, formulas and other scripts, as people type it. Called once per dataset.
CREATE FUNCTION pg_temp.heavy_seed(p_learners integer, p_organisations integer, p_seed integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
DECLARE
    first_names constant text[] := ARRAY[
        'Ana', 'José', 'Zoë', '李', 'Мария', 'محمد', 'Ngozi', 'Jean-Luc', 'Émilie "Em"',
        'O''Brien', '=HYPERLINK("x")', '+Tom', 'Søren', 'Aiyana', '🚀 Rocket', 'Kofi'];
    last_names constant text[] := ARRAY[
        'Smith', 'García, Jr.', '山田', 'Nguyễn', 'Ó Briain', 'Okafor', 'Kowalski', 'Müller',
        'Haddad', 'Patel', 'Ivanova', 'Tanaka'];
    cities constant text[] := ARRAY[
        'Melbourne', 'São Paulo', 'Zürich', 'Lagos', '東京', 'Kraków', 'Montréal, QC', 'Perth'];
    departments constant text[] := ARRAY[
        'Operations', 'Sales; Inside', 'R&D', 'Customer "Success"', 'Finance', 'People'];
    titles constant text[] := ARRAY[
        'Analyst', 'Senior Engineer', 'Team Lead, Support', 'Apprentice', '-', 'Coordinator'];
    statuses constant text[] := ARRAY['active', 'active', 'active', 'paused', 'withdrawn',
                                      'graduated'];
    tags constant text[] := ARRAY[
        'mentor', 'needs-support', 'scholarship', 'remote', 'night-shift', 'priority',
        'alumni', 'esl', 'veteran', 'fast-track', '=tag', 'part time'];
    notes constant text[] := ARRAY[
        'Needs follow-up, "urgent"', E'Line one\nline two', '=SUM(A1:A9)', 'Plain note',
        E'tabbed\tnote; with semicolon', 'Очень хорошо', '進捗は良好です', '@channel'];
BEGIN
    INSERT INTO public.organisations (id, name, country, plan, created_at)
    SELECT md5(p_seed || '/org/' || o)::uuid,
           (ARRAY['Northwind, Ltd.', 'Contoso "East"', '=Fabrikam', 'Tailspin ✈',
                  'Wide World Importers'])[1 + (o - 1) % 5] || ' #' || o,
           (ARRAY['AU', 'NZ', 'GB', 'US', 'BR'])[1 + o % 5],
           (ARRAY['team', 'business', 'enterprise'])[1 + o % 3],
           timestamptz '2022-01-01 00:00:00+00' + o * interval '3 days'
      FROM generate_series(1, p_organisations) AS o;

    INSERT INTO auth.users (id, email, phone, email_confirmed_at, last_sign_in_at, created_at)
    SELECT md5(p_seed || '/user/' || i)::uuid,
           CASE WHEN abs(h % 13) = 0 THEN NULL ELSE 'user' || i || '@example.org' END,
           CASE WHEN abs((h >> 4) % 5) = 0 THEN NULL
                ELSE '+61 4' || lpad(abs((h >> 12) % 100000000)::text, 8, '0') END,
           CASE WHEN abs((h >> 8) % 7) = 0 THEN NULL
                ELSE timestamptz '2024-01-02 00:00:00+00' + (i / 5) * interval '61 seconds' END,
           CASE WHEN abs((h >> 16) % 4) = 0 THEN NULL
                ELSE timestamptz '2025-06-01 00:00:00+00' + abs((h >> 20) % 31536000) * interval '1 second' END,
           timestamptz '2024-01-01 00:00:00+00' + ((i - 1) / 5) * interval '61.000123 seconds'
      FROM generate_series(1, p_learners) AS i,
           LATERAL (SELECT hashint8extended(i, p_seed) AS h) AS x;

    INSERT INTO public.profiles (
        id, role, organisation_id, first_name, last_name, preferred_name, pronouns, date_of_birth,
        locale, time_zone, country_code, city, postcode, address_line, job_title, department,
        employee_number, cohort, enrolled_on, expected_completion, status, is_active,
        marketing_opt_in, accessibility_needs, linkedin_url, bio, notes, created_at, updated_at)
    SELECT md5(p_seed || '/user/' || i)::uuid,
           'learner',
           md5(p_seed || '/org/' || (1 + abs(h % p_organisations)))::uuid,
           first_names[1 + abs((h >> 8) % 16)],
           last_names[1 + abs((h >> 16) % 12)],
           CASE WHEN abs((h >> 3) % 4) = 0 THEN first_names[1 + abs((h >> 9) % 16)] END,
           CASE WHEN abs((h >> 5) % 3) = 0 THEN NULL
                ELSE (ARRAY['she/her', 'he/him', 'they/them'])[1 + abs((h >> 6) % 3)] END,
           CASE WHEN abs((h >> 7) % 9) = 0 THEN NULL
                ELSE date '1965-01-01' + abs((h >> 24) % 14000)::integer END,
           (ARRAY['en-AU', 'en-GB', 'pt-BR', 'ja-JP', 'de-CH'])[1 + abs((h >> 10) % 5)],
           (ARRAY['Australia/Melbourne', 'Europe/London', 'America/Sao_Paulo', 'Asia/Tokyo'])
               [1 + abs((h >> 11) % 4)],
           (ARRAY['AU', 'GB', 'BR', 'JP', 'CH', NULL])[1 + abs((h >> 13) % 6)],
           cities[1 + abs((h >> 14) % 8)],
           CASE WHEN abs((h >> 15) % 6) = 0 THEN NULL ELSE lpad(abs((h >> 17) % 10000)::text, 4, '0') END,
           CASE WHEN abs((h >> 18) % 3) = 0 THEN NULL
                ELSE abs((h >> 19) % 400)::text || ' ' || last_names[1 + abs((h >> 21) % 12)] || ' St, Unit '
                     || abs((h >> 22) % 40)::text END,
           titles[1 + abs((h >> 23) % 6)],
           departments[1 + abs((h >> 25) % 6)],
           'E' || lpad(i::text, 8, '0'),
           '20' || (23 + abs((h >> 26) % 3))::text || '-' || (ARRAY['A', 'B', 'C'])[1 + abs((h >> 27) % 3)],
           date '2023-01-01' + abs((h >> 28) % 900)::integer,
           CASE WHEN abs((h >> 29) % 5) = 0 THEN NULL
                ELSE date '2025-01-01' + abs((h >> 30) % 700)::integer END,
           statuses[1 + abs((h >> 31) % 6)],
           abs((h >> 32) % 10) <> 0,
           abs((h >> 33) % 2) = 0,
           CASE WHEN abs((h >> 34) % 12) = 0 THEN 'Screen reader; captions, please' END,
           CASE WHEN abs((h >> 35) % 3) = 0 THEN NULL
                ELSE 'https://www.linkedin.com/in/learner-' || i END,
           CASE WHEN abs((h >> 36) % 4) = 0 THEN NULL
                ELSE 'Interested in ' || tags[1 + abs((h >> 37) % 12)] || ', "data" and more.' END,
           CASE WHEN abs((h >> 38) % 10) < 3 THEN notes[1 + abs((h >> 39) % 8)] END,
           timestamptz '2024-01-01 00:00:00+00' + ((i - 1) / 5) * interval '61.000123 seconds',
           timestamptz '2025-01-01 00:00:00+00' + abs((h >> 40) % 31536000) * interval '1 second'
      FROM generate_series(1, p_learners) AS i,
           LATERAL (SELECT hashint8extended(i, p_seed) AS h) AS x;

    -- In key order, the indexes fill from left to right: twice as fast as random inserts.
    INSERT INTO public.module_completions (profile_id, module_id, started_at, completed_at, score,
                                           attempts)
    SELECT md5(p_seed || '/user/' || i)::uuid,
           m,
           timestamptz '2025-01-01 00:00:00+00' + m * interval '1 week',
           CASE WHEN (h >> (8 + m)) & 1 = 1
                THEN timestamptz '2025-01-01 00:00:00+00' + m * interval '9 days' END,
           CASE WHEN (h >> (8 + m)) & 1 = 1 THEN (abs((h >> m) % 10001) / 100.0)::numeric(5, 2) END,
           (1 + abs((h >> (m + 2)) % 3))::smallint
      FROM generate_series(1, p_learners) AS i,
           LATERAL (SELECT hashint8extended(i, p_seed) AS h) AS x,
           LATERAL generate_series(1, abs((h >> 2) % 16)::integer) AS m
     ORDER BY 1, 2;

    INSERT INTO public.profile_tags (profile_id, tag)
    SELECT DISTINCT md5(p_seed || '/user/' || i)::uuid, tags[1 + abs((h >> (3 * t)) % 12)]
      FROM generate_series(1, p_learners) AS i,
           LATERAL (SELECT hashint8extended(i, p_seed + 1) AS h) AS x,
           LATERAL generate_series(1, abs(h % 7)::integer) AS t
     ORDER BY 1, 2;

    INSERT INTO public.assessment_attempts (profile_id, attempt, assessment_id, score, taken_at)
    SELECT md5(p_seed || '/user/' || i)::uuid,
           a,
           1 + abs((h >> a) % 20)::integer,
           (abs((h >> (a + 5)) % 10001) / 100.0)::numeric(5, 2),
           timestamptz '2025-02-01 00:00:00+00' + (a * 11 + abs((h >> a) % 240)) * interval '1 hour'
      FROM generate_series(1, p_learners) AS i,
           LATERAL (SELECT hashint8extended(i, p_seed + 2) AS h) AS x,
           LATERAL generate_series(1, abs(h % 9)::integer) AS a
     ORDER BY 1, 2;
END
$fn$;
