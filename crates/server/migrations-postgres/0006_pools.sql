-- Warm pools. A pool's warm sandboxes are ordinary rows in `sandboxes`
-- named `_warm-<pool id>-<suffix>` (a name no request may use); claiming one
-- renames it, so membership changes atomically with the row.
CREATE TABLE pools (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name           TEXT COLLATE "C" NOT NULL,
    template_name  TEXT COLLATE "C" NOT NULL,
    replicas       BIGINT NOT NULL,
    created_at     TEXT COLLATE "C" NOT NULL,
    updated_at     TEXT COLLATE "C" NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE INDEX pools_template ON pools (tenant_id, template_name);
