-- Portable SQL: runs on SQLite (default) and PostgreSQL.
-- Timestamps are RFC 3339 UTC text with millisecond precision, so text order
-- is time order on both databases.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    name        TEXT NOT NULL,
    is_admin    INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE sandboxes (
    id                         TEXT PRIMARY KEY,
    tenant_id                  TEXT NOT NULL REFERENCES tenants(id),
    name                       TEXT NOT NULL,
    status                     TEXT NOT NULL,
    status_message             TEXT,
    image                      TEXT NOT NULL,
    snapshot_id                TEXT,
    template_name              TEXT,
    vcpus                      BIGINT NOT NULL,
    mem_bytes                  BIGINT NOT NULL,
    fs_capacity_bytes          BIGINT NOT NULL,
    idle_ttl_seconds           BIGINT NOT NULL,
    delete_after_stop_seconds  BIGINT NOT NULL,
    ttl_seconds                BIGINT,
    persistent                 INTEGER NOT NULL,
    proxy_config               TEXT,
    run_config                 TEXT,
    labels                     TEXT NOT NULL,
    extra                      TEXT NOT NULL,
    net_slot                   BIGINT,
    pid                        BIGINT,
    pid_start_time             BIGINT,
    created_by                 TEXT,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL,
    stopped_at                 TEXT,
    last_activity_at           TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE INDEX sandboxes_tenant_created ON sandboxes (tenant_id, created_at);
CREATE INDEX sandboxes_status ON sandboxes (status);
