-- Warm pools. A pool's warm sandboxes are ordinary rows in `sandboxes`
-- named `_warm-<pool id>-<suffix>` (a name no request may use); claiming one
-- renames it, so membership changes atomically with the row.
CREATE TABLE pools (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    name           TEXT NOT NULL,
    template_name  TEXT NOT NULL,
    replicas       BIGINT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE INDEX pools_template ON pools (tenant_id, template_name);
