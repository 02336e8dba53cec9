-- A Supabase-shaped platform, unlike the sample schema: learners are profiles with the
-- lower-case role 'student', their emails and last sign-in live in auth.users, progress in
-- public.course_progress, staff assignments in public.staff_clients, organisations in
-- public.organizations. Deterministic data: 1,200 students in 4 organisations, five of them
-- sharing each created_at, an admin and a staff member assigned to two organisations.

CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.users (
    id               uuid PRIMARY KEY,
    email            text,
    last_sign_in_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.organizations (
    id     uuid PRIMARY KEY,
    title  text NOT NULL,
    plan   text NOT NULL DEFAULT 'team'
);

CREATE TABLE public.profiles (
    id            uuid PRIMARY KEY REFERENCES auth.users (id),
    role          text NOT NULL CHECK (role IN ('student', 'staff', 'admin')),
    client_id     uuid REFERENCES public.organizations (id),
    display_name  text NOT NULL,
    enrolled_on   date,
    is_active     boolean NOT NULL DEFAULT true,
    tenant        text NOT NULL DEFAULT 'main',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX profiles_students_keyset ON public.profiles (created_at, id)
    WHERE role = 'student';

CREATE TABLE public.course_progress (
    profile_id  uuid NOT NULL REFERENCES public.profiles (id),
    course_id   integer NOT NULL,
    score       numeric(5, 2),
    completed   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (profile_id, course_id)
);

CREATE TABLE public.staff_clients (
    staff_id   uuid NOT NULL REFERENCES public.profiles (id),
    client_id  uuid NOT NULL REFERENCES public.organizations (id),
    PRIMARY KEY (staff_id, client_id)
);

INSERT INTO public.organizations (id, title)
SELECT md5('org/' || o)::uuid, (ARRAY['Northwind, Ltd.', 'Contoso "East"', '=Fabrikam',
                                      'Tailspin ✈'])[o]
  FROM generate_series(1, 4) AS o;

INSERT INTO auth.users (id, email, last_sign_in_at, created_at)
SELECT md5('user/' || i)::uuid,
       CASE WHEN i % 9 = 0 THEN NULL ELSE 'user' || i || '@example.org' END,
       CASE WHEN i % 4 = 0 THEN NULL
            ELSE timestamptz '2025-03-01 00:00:00+00' + i * interval '37 minutes 0.000123 s' END,
       timestamptz '2024-02-01 00:00:00+00' + ((i - 1) / 5) * interval '1 hour'
  FROM generate_series(1, 1202) AS i;

INSERT INTO public.profiles (id, role, client_id, display_name, enrolled_on, is_active,
                             created_at)
SELECT md5('user/' || i)::uuid,
       CASE i WHEN 1201 THEN 'admin' WHEN 1202 THEN 'staff' ELSE 'student' END,
       CASE WHEN i > 1200 THEN NULL ELSE md5('org/' || (1 + i % 4))::uuid END,
       (ARRAY['Ana', 'José, Jr.', '李 雷', E'Line\nBreak', '+Plus'])[1 + i % 5] || ' ' || i,
       CASE WHEN i % 7 = 0 THEN NULL ELSE date '2024-01-01' + (i % 400) END,
       i % 10 <> 0,
       timestamptz '2024-02-01 00:00:00+00' + ((i - 1) / 5) * interval '1 hour'
  FROM generate_series(1, 1202) AS i;

INSERT INTO public.course_progress (profile_id, course_id, score, completed)
SELECT md5('user/' || i)::uuid, c, CASE WHEN (i + c) % 6 = 0 THEN NULL
                                        ELSE ((i * 7 + c * 13) % 10000) / 100.0 END,
       (i + c) % 3 = 0
  FROM generate_series(1, 1200) AS i, generate_series(1, 1 + i % 4) AS c;

INSERT INTO public.staff_clients (staff_id, client_id)
VALUES (md5('user/1202')::uuid, md5('org/1')::uuid), (md5('user/1202')::uuid, md5('org/2')::uuid);

ANALYZE auth.users, public.organizations, public.profiles, public.course_progress;
