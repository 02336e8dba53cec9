-- The sample platform schema: what the demo, the tests and the benchmarks export from.
--
-- Not a migration. `learner-export db seed` and `serve --demo` create it; `db migrate` never
-- does, since a real platform database has tables of its own (see docs/contract.md). Every
-- statement is idempotent, so that a database made by the service's first layout (which
-- created these tables in migrations) takes it as it is.

CREATE TABLE IF NOT EXISTS public.clients (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.profiles (
    id          uuid PRIMARY KEY,
    role        text NOT NULL DEFAULT 'Student'
                CHECK (role IN ('Admin', 'Staff', 'Student', 'Client Staff')),
    full_name   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.learners (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id            uuid NOT NULL REFERENCES public.clients (id),
    full_name            text NOT NULL,
    email                text,
    phone                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_login_at        timestamptz,
    job_readiness_tier   text CHECK (job_readiness_tier IN ('Not Ready', 'Developing', 'Ready', 'Placed')),
    job_readiness_stars  smallint CHECK (job_readiness_stars BETWEEN 0 AND 5),
    is_active            boolean NOT NULL DEFAULT true,
    notes                text
);

-- The export's keyset: (created_at, id) is unique because id is.
CREATE INDEX IF NOT EXISTS learners_export_keyset ON public.learners (created_at, id);
CREATE INDEX IF NOT EXISTS learners_client_keyset ON public.learners (client_id, created_at, id);

CREATE TABLE IF NOT EXISTS public.modules (
    id      integer PRIMARY KEY,
    title   text NOT NULL
);

CREATE TABLE IF NOT EXISTS public.learner_module_progress (
    learner_id    uuid NOT NULL REFERENCES public.learners (id) ON DELETE CASCADE,
    module_id     integer NOT NULL REFERENCES public.modules (id),
    started_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (learner_id, module_id)
);

CREATE TABLE IF NOT EXISTS public.staff_client_assignments (
    staff_id   uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
    client_id  uuid NOT NULL REFERENCES public.clients (id) ON DELETE CASCADE,
    PRIMARY KEY (staff_id, client_id)
);

-- The page function counts each learner's modules and completions: with completed_at in the
-- index those counts are an index-only scan (no heap visit per progress row; docs/engine.md).
CREATE INDEX IF NOT EXISTS learner_module_progress_export
    ON public.learner_module_progress (learner_id) INCLUDE (completed_at);

-- Nothing here is for an API role. On a database with Supabase's roles and default privileges,
-- every new table in public is granted to anon and authenticated by name: revoked here, by
-- name, and row-level security (with no policy) as a second wall. The adapter's functions read
-- these tables as their owner, whom RLS does not restrict (ENABLE, not FORCE: docs/contract.md).
ALTER TABLE public.clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.learners ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.modules ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.learner_module_progress ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.staff_client_assignments ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'service_role', 'authenticator'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = api_role) THEN
            EXECUTE format('REVOKE ALL ON public.clients, public.profiles, public.learners,'
                           ' public.modules, public.learner_module_progress,'
                           ' public.staff_client_assignments FROM %I', api_role);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON public.clients, public.profiles, public.learners, public.modules,
    public.learner_module_progress, public.staff_client_assignments FROM PUBLIC;
