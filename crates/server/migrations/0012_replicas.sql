-- Several server replicas behind one database.

-- Each replica (node) and how its peers reach it; a node whose heartbeat is
-- older than a few intervals is down.
CREATE TABLE nodes (
    name            TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    runs_sandboxes  INTEGER NOT NULL,
    heartbeat_ms    INTEGER NOT NULL
);

-- The node that runs (and keeps the files of) each sandbox.
CREATE TABLE sandbox_nodes (
    sandbox_id  TEXT PRIMARY KEY REFERENCES sandboxes(id) ON DELETE CASCADE,
    node        TEXT NOT NULL
);

-- Keys every replica must share (service-token keys, the secrets key, the
-- egress CA, the admin key), sealed under the shared secret file.
CREATE TABLE cluster_keys (
    name     TEXT PRIMARY KEY,
    sealed   TEXT NOT NULL,
    version  INTEGER NOT NULL
);

-- Service-token revocation epochs (see gateway::tokens).
CREATE TABLE token_epochs (
    sandbox_id  TEXT PRIMARY KEY,
    epoch       INTEGER NOT NULL,
    bumped_at   INTEGER NOT NULL
);

-- Console terminal tickets (SHA-256 of the ticket), redeemed once.
CREATE TABLE terminal_tickets (
    ticket_hash  TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    is_admin     INTEGER NOT NULL,
    sandbox_id   TEXT NOT NULL,
    expires_ms   INTEGER NOT NULL
);
