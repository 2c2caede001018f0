-- Private image registries, per tenant (`/api/v2/sandboxes/registries`).
-- `sealed_password` is sealed like workspace secrets (ChaCha20-Poly1305 under
-- the data dir's secrets key, associated data "tenant_id/registry:id") and is
-- never returned by the API.
CREATE TABLE registries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name            TEXT COLLATE "C" NOT NULL,
    url             TEXT COLLATE "C" NOT NULL,
    auth_type       TEXT COLLATE "C" NOT NULL,
    username        TEXT COLLATE "C",
    sealed_password TEXT COLLATE "C",
    created_by      TEXT COLLATE "C",
    updated_by      TEXT COLLATE "C",
    created_at      TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    UNIQUE (tenant_id, name)
);
