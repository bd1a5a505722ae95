-- otpgate schema, SQLite. Times are Unix milliseconds (INTEGER); money is micro-units.
-- Tables keyed by text are WITHOUT ROWID: one B-tree each instead of a table and an index.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    api_key     TEXT    NOT NULL UNIQUE,
    secret_enc  TEXT    NOT NULL,            -- API secret, sealed under the master key
    enabled     INTEGER NOT NULL DEFAULT 1,
    allow_ips   TEXT    NOT NULL DEFAULT '', -- comma-separated addresses / CIDRs; empty = any
    created_ms  INTEGER NOT NULL
);

CREATE TABLE apps (
    app_id       TEXT    PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id),
    name         TEXT    NOT NULL,
    code_expiry  INTEGER NOT NULL,           -- minutes
    total_limit  TEXT    NOT NULL,           -- JSON limit object
    phone_limit  TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    CONSTRAINT apps_tenant_name UNIQUE (tenant_id, name)
);

CREATE TABLE templates (
    template_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id),
    app_id       TEXT    NOT NULL REFERENCES apps(app_id),
    name         TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    code_type    INTEGER NOT NULL,
    code_length  INTEGER NOT NULL,
    speech_rate  INTEGER NOT NULL,
    language     TEXT    NOT NULL,
    max_duration INTEGER NOT NULL,
    repeat_cnt   INTEGER NOT NULL,
    sender_id    TEXT,
    created_ms   INTEGER NOT NULL,
    CONSTRAINT templates_app_name UNIQUE (app_id, name)
);
CREATE INDEX templates_tenant ON templates (tenant_id, template_id);

CREATE TABLE flows (
    flow_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    name        TEXT    NOT NULL,
    nodes       TEXT    NOT NULL,            -- JSON array of flow nodes
    created_ms  INTEGER NOT NULL,
    CONSTRAINT flows_tenant_name UNIQUE (tenant_id, name)
);

-- One code sent to one number. Its id is the first verification id.
CREATE TABLE sessions (
    id               TEXT    PRIMARY KEY,
    tenant_id        INTEGER NOT NULL REFERENCES tenants(id),
    app_id           TEXT    NOT NULL REFERENCES apps(app_id),
    template_id      INTEGER,
    flow_id          INTEGER,
    phone            TEXT    NOT NULL,       -- E.164 digits
    region           TEXT,
    channel          TEXT    NOT NULL,       -- channel of the first send
    code_hash        TEXT    NOT NULL,       -- HMAC-SHA-256(session id, code)
    code_enc         TEXT,                   -- sealed code for resends and flow steps; erased when the session ends
    code_type        INTEGER NOT NULL,
    code_length      INTEGER NOT NULL,
    case_insensitive INTEGER NOT NULL,
    status           TEXT    NOT NULL,       -- pending | verified | locked
    wrong_attempts   INTEGER NOT NULL DEFAULT 0,
    submitted        INTEGER NOT NULL DEFAULT 0,
    expires_ms       INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    verified_ms      INTEGER,
    order_id         TEXT
) WITHOUT ROWID;

CREATE TABLE verifications (
    verification_id TEXT    PRIMARY KEY,
    session_id      TEXT    NOT NULL REFERENCES sessions(id),
    tenant_id       INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,        -- send | sendRule | resend
    created_ms      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX verifications_session ON verifications (session_id);

CREATE TABLE orders (
    tenant_id       INTEGER NOT NULL,
    order_id        TEXT    NOT NULL,
    verification_id TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
) WITHOUT ROWID;

CREATE TABLE attempts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id          TEXT    NOT NULL REFERENCES sessions(id),
    verification_id     TEXT    NOT NULL,
    tenant_id           INTEGER NOT NULL,
    channel             TEXT    NOT NULL,
    route               TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    sender              TEXT,
    gateway_state       TEXT    NOT NULL,    -- create | pending | sending | success | fail | unknown
    report_state        TEXT    NOT NULL,    -- unknown | pending | success | fail
    reason              TEXT,
    provider_message_id TEXT,
    encoding            TEXT,
    segments            INTEGER,
    mcc                 INTEGER,
    mnc                 INTEGER,
    price_micros        INTEGER,
    rate_micros         INTEGER,
    bill_period         TEXT,
    call_duration       INTEGER,
    charged_duration    INTEGER,
    created_ms          INTEGER NOT NULL,
    send_ms             INTEGER,
    done_ms             INTEGER
);
CREATE INDEX attempts_session ON attempts (session_id, id);

-- Every send of an app with an active period limit, for the sliding windows (a limit counts
-- the sends made while it is enabled).
CREATE TABLE send_log (
    app_id  TEXT    NOT NULL,
    phone   TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX send_log_app ON send_log (app_id, at_ms);
CREATE INDEX send_log_phone ON send_log (app_id, phone, at_ms);

CREATE TABLE backfill_rates (
    tenant_id        INTEGER NOT NULL,
    app_id           TEXT    NOT NULL,
    mcc              INTEGER NOT NULL,
    backfill_number  INTEGER,
    backfill_base    INTEGER,
    rate_bp          INTEGER NOT NULL,       -- percent × 100
    callback_ms      INTEGER NOT NULL,
    received_ms      INTEGER NOT NULL,
    PRIMARY KEY (app_id, mcc)
);

CREATE TABLE postbacks (
    verification_id TEXT    PRIMARY KEY,
    tenant_id       INTEGER NOT NULL,
    app_id          TEXT    NOT NULL,
    number          TEXT,
    backfill_ms     INTEGER NOT NULL,
    received_ms     INTEGER NOT NULL
) WITHOUT ROWID;

-- The console provider's messages (development only; production refuses the console provider).
CREATE TABLE console_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms           INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    to_number       TEXT    NOT NULL,
    sender          TEXT,
    text            TEXT    NOT NULL,
    verification_id TEXT    NOT NULL
);
