-- The name of the service's role in this database (docs/security.md): a role is the whole
-- server's, so each database of a server names its own, chosen at `db migrate
-- --service-role NAME` and read back by later migrates, `db check` and the service. One row;
-- `db migrate` writes it (learner_export/db/role.py) and the lockdown grants SELECT on it.
CREATE TABLE IF NOT EXISTS learner_export.service_role (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    name     text NOT NULL CHECK (name <> '' AND octet_length(name) <= 63)
);
