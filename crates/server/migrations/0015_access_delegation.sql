-- access_delegation: the grant of a sandbox whose code may call the API as
-- its creator. The creating key is recorded so that every delegated request
-- can check it is still live (revoking the key ends the delegation), and
-- the permissions are the ceiling each request is checked against.
CREATE TABLE sandbox_delegations (
    sandbox_id   TEXT PRIMARY KEY REFERENCES sandboxes(id) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    permissions  TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
