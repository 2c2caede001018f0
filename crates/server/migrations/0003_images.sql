-- Snapshots (images a sandbox boots from) and their name:tag pointers.
CREATE TABLE snapshots (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    name               TEXT NOT NULL,
    status             TEXT NOT NULL,
    status_message     TEXT,
    docker_image       TEXT,
    -- Manifest digest of the image record in the layer store.
    image_digest       TEXT,
    source_sandbox_id  TEXT,
    fs_capacity_bytes  BIGINT NOT NULL,
    fs_used_bytes      BIGINT,
    run_config         TEXT,
    registry_id        TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);

CREATE INDEX snapshots_tenant_name ON snapshots (tenant_id, name);

CREATE TABLE snapshot_tags (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    name         TEXT NOT NULL,
    tag          TEXT NOT NULL,
    snapshot_id  TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, name, tag)
);

-- Template-era (langsmith 0.7.x) templates and volumes.
CREATE TABLE templates (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    name           TEXT NOT NULL,
    image          TEXT NOT NULL,
    -- Manifest digest once the image has been pulled.
    image_digest   TEXT,
    resources      TEXT NOT NULL,
    volume_mounts  TEXT NOT NULL,
    proxy_config   TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE volumes (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    size        TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    extra       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
