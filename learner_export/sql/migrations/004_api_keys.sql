-- Keys for scripts (learner_export/keys.py): only a key's SHA-256 is kept, never the key. A key
-- acts as its owner while it is not revoked, not expired, and the owner still has owner_role.
CREATE TABLE IF NOT EXISTS learner_export.api_keys (
    id             uuid PRIMARY KEY,
    name           text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    owner_id       uuid NOT NULL,
    owner_role     text NOT NULL,
    secret_sha256  bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    -- The key's first characters (lex_ and 8 of its 43 random ones), to recognise it in a list.
    prefix         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    last_used_at   timestamptz
);

-- One usable name per owner: `keys revoke nightly` means one key.
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_name_per_owner
    ON learner_export.api_keys (owner_id, name) WHERE revoked_at IS NULL;

-- The key behind an audit row, if a key made the request (its name as it was then).
ALTER TABLE learner_export.export_audit ADD COLUMN IF NOT EXISTS api_key_id uuid;
ALTER TABLE learner_export.export_audit ADD COLUMN IF NOT EXISTS api_key_name text;
