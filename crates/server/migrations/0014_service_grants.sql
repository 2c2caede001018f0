-- Login grants of service URLs (`POST /boxes/{name}/service-url` with
-- `access`): port `port` of a sandbox is opened by a browser signed in to the
-- console of the owning tenant instead of by a token. Durable until revoked
-- (`POST /boxes/{name}/service-url/revoke`) or the sandbox is deleted.
-- `embed_origins` is a JSON array of normalized origins; `console_url` is
-- where the sign-in hop sends a browser that has no session yet.
CREATE TABLE service_grants (
    sandbox_id    TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    port          INTEGER NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    tenant_id     TEXT NOT NULL,
    access        TEXT NOT NULL,
    embed_origins TEXT NOT NULL,
    console_url   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, port)
);

-- Sign-in tickets already redeemed (single use on every replica); a row can
-- go once the ticket has expired.
CREATE TABLE service_login_tickets (
    jti        TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
