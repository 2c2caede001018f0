-- Snapshots (images a sandbox boots from) and their name:tag pointers.
CREATE TABLE snapshots (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    tenant_id          TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name               TEXT COLLATE "C" NOT NULL,
    status             TEXT COLLATE "C" NOT NULL,
    status_message     TEXT COLLATE "C",
    docker_image       TEXT COLLATE "C",
    -- Manifest digest of the image record in the layer store.
    image_digest       TEXT COLLATE "C",
    source_sandbox_id  TEXT COLLATE "C",
    fs_capacity_bytes  BIGINT NOT NULL,
    fs_used_bytes      BIGINT,
    run_config         TEXT COLLATE "C",
    registry_id        TEXT COLLATE "C",
    created_at         TEXT COLLATE "C" NOT NULL,
    updated_at         TEXT COLLATE "C" NOT NULL
);

CREATE INDEX snapshots_tenant_name ON snapshots (tenant_id, name);

CREATE TABLE snapshot_tags (
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name         TEXT COLLATE "C" NOT NULL,
    tag          TEXT COLLATE "C" NOT NULL,
    snapshot_id  TEXT COLLATE "C" NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, name, tag)
);

-- Template-era (langsmith 0.7.x) templates and volumes.
CREATE TABLE templates (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name           TEXT COLLATE "C" NOT NULL,
    image          TEXT COLLATE "C" NOT NULL,
    -- Manifest digest once the image has been pulled.
    image_digest   TEXT COLLATE "C",
    resources      TEXT COLLATE "C" NOT NULL,
    volume_mounts  TEXT COLLATE "C" NOT NULL,
    proxy_config   TEXT COLLATE "C",
    created_at     TEXT COLLATE "C" NOT NULL,
    updated_at     TEXT COLLATE "C" NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE volumes (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name        TEXT COLLATE "C" NOT NULL,
    size        TEXT COLLATE "C" NOT NULL,
    size_bytes  BIGINT NOT NULL,
    extra       TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    updated_at  TEXT COLLATE "C" NOT NULL,
    UNIQUE (tenant_id, name)
);
