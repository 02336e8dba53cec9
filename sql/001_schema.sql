-- Core schema of the learning platform: clients, profiles (roles), learners, module progress.

CREATE TABLE public.clients (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.profiles (
    id          uuid PRIMARY KEY,
    role        text NOT NULL DEFAULT 'Student'
                CHECK (role IN ('Admin', 'Staff', 'Student', 'Client Staff')),
    full_name   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.learners (
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
CREATE INDEX learners_export_keyset ON public.learners (created_at, id);
CREATE INDEX learners_client_keyset ON public.learners (client_id, created_at, id);

CREATE TABLE public.modules (
    id      integer PRIMARY KEY,
    title   text NOT NULL
);

CREATE TABLE public.learner_module_progress (
    learner_id    uuid NOT NULL REFERENCES public.learners (id) ON DELETE CASCADE,
    module_id     integer NOT NULL REFERENCES public.modules (id),
    started_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (learner_id, module_id)
);
