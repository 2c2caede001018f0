-- Workspace secrets, per tenant. `sealed` is base64(nonce || ciphertext+tag),
-- ChaCha20-Poly1305 under a key kept in the data dir (never in the
-- database), with "tenant_id/name" as associated data so a row cannot be
-- moved to another tenant or name.
CREATE TABLE secrets (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    sealed      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
