-- Private image registries, per tenant (`/api/v2/sandboxes/registries`).
-- `sealed_password` is sealed like workspace secrets (ChaCha20-Poly1305 under
-- the data dir's secrets key, associated data "tenant_id/registry:id") and is
-- never returned by the API.
CREATE TABLE registries (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    name            TEXT NOT NULL,
    url             TEXT NOT NULL,
    auth_type       TEXT NOT NULL,
    username        TEXT,
    sealed_password TEXT,
    created_by      TEXT,
    updated_by      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
