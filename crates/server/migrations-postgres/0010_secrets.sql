-- Workspace secrets, per tenant. `sealed` is base64(nonce || ciphertext+tag),
-- ChaCha20-Poly1305 under a key kept in the data dir (never in the
-- database), with "tenant_id/name" as associated data so a row cannot be
-- moved to another tenant or name.
CREATE TABLE secrets (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name        TEXT COLLATE "C" NOT NULL,
    sealed      TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
