-- The SGate dialect. A merchant is a tenant of kind 'sgate' (its API key, enabled flag and
-- IP allow-list live on the tenant row; it has no API secret) with an RSA public key, a
-- sandbox flag, and one app whose templates are its product names' stcpay texts.
ALTER TABLE tenants ADD COLUMN kind TEXT NOT NULL DEFAULT 'buka';  -- buka | sgate

CREATE TABLE merchants (
    tenant_id   INTEGER PRIMARY KEY REFERENCES tenants(id),
    public_key  TEXT    NOT NULL,            -- PEM (PKCS#8 SubjectPublicKeyInfo)
    sandbox     INTEGER NOT NULL,
    app_id      TEXT    NOT NULL REFERENCES apps(app_id),
    products    TEXT    NOT NULL             -- JSON [{"name":…,"templateId":…}], in order
);

-- Request nonces seen per tenant, kept until their timestamp can no longer pass the window.
CREATE TABLE request_nonces (
    tenant_id   INTEGER NOT NULL,
    nonce       TEXT    NOT NULL,
    expires_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, nonce)
) WITHOUT ROWID;
CREATE INDEX request_nonces_expiry ON request_nonces (expires_ms);

-- Keys the server signs with, sealed under the master key.
CREATE TABLE system_keys (
    name         TEXT    PRIMARY KEY,
    private_enc  TEXT    NOT NULL,
    public_pem   TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL
) WITHOUT ROWID;

-- A session's id in a dialect that names sessions its own way (SGate: 32 lowercase hex).
ALTER TABLE sessions ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX sessions_external ON sessions (external_id) WHERE external_id IS NOT NULL;

-- The last send to each sandbox test number (nothing is sent; otpDetail reports it).
CREATE TABLE sandbox_sends (
    tenant_id  INTEGER NOT NULL,
    mobile     TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, mobile)
) WITHOUT ROWID;
