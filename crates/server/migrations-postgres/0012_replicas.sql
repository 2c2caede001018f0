-- PostgreSQL twin of migrations/0012_replicas.sql.

CREATE TABLE nodes (
    name            TEXT COLLATE "C" PRIMARY KEY,
    url             TEXT COLLATE "C" NOT NULL,
    runs_sandboxes  INTEGER NOT NULL,
    heartbeat_ms    BIGINT NOT NULL
);

CREATE TABLE sandbox_nodes (
    sandbox_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES sandboxes(id) ON DELETE CASCADE,
    node        TEXT COLLATE "C" NOT NULL
);

CREATE TABLE cluster_keys (
    name     TEXT COLLATE "C" PRIMARY KEY,
    sealed   TEXT COLLATE "C" NOT NULL,
    version  BIGINT NOT NULL
);

CREATE TABLE token_epochs (
    sandbox_id  TEXT COLLATE "C" PRIMARY KEY,
    epoch       BIGINT NOT NULL,
    bumped_at   BIGINT NOT NULL
);

CREATE TABLE terminal_tickets (
    ticket_hash  TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    key_id       TEXT COLLATE "C" NOT NULL,
    is_admin     INTEGER NOT NULL,
    sandbox_id   TEXT COLLATE "C" NOT NULL,
    expires_ms   BIGINT NOT NULL
);
