-- PostgreSQL twin of migrations/0001_initial.sql (same version, same
-- tables). Every text column uses the "C" collation, so ORDER BY and
-- comparisons are by byte, as on SQLite, whatever the database's locale.
-- Timestamps are RFC 3339 UTC text with millisecond precision, so text order
-- is time order on both databases.

CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  TEXT COLLATE "C" NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    key_hash    TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix      TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    is_admin    INTEGER NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    revoked_at  TEXT COLLATE "C"
);

CREATE TABLE sandboxes (
    id                         TEXT COLLATE "C" PRIMARY KEY,
    tenant_id                  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name                       TEXT COLLATE "C" NOT NULL,
    status                     TEXT COLLATE "C" NOT NULL,
    status_message             TEXT COLLATE "C",
    image                      TEXT COLLATE "C" NOT NULL,
    snapshot_id                TEXT COLLATE "C",
    template_name              TEXT COLLATE "C",
    vcpus                      BIGINT NOT NULL,
    mem_bytes                  BIGINT NOT NULL,
    fs_capacity_bytes          BIGINT NOT NULL,
    idle_ttl_seconds           BIGINT NOT NULL,
    delete_after_stop_seconds  BIGINT NOT NULL,
    ttl_seconds                BIGINT,
    persistent                 INTEGER NOT NULL,
    proxy_config               TEXT COLLATE "C",
    run_config                 TEXT COLLATE "C",
    labels                     TEXT COLLATE "C" NOT NULL,
    extra                      TEXT COLLATE "C" NOT NULL,
    net_slot                   BIGINT,
    pid                        BIGINT,
    pid_start_time             BIGINT,
    created_by                 TEXT COLLATE "C",
    created_at                 TEXT COLLATE "C" NOT NULL,
    updated_at                 TEXT COLLATE "C" NOT NULL,
    stopped_at                 TEXT COLLATE "C",
    last_activity_at           TEXT COLLATE "C" NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE INDEX sandboxes_tenant_created ON sandboxes (tenant_id, created_at);
CREATE INDEX sandboxes_status ON sandboxes (status);
