-- otpgate schema, PostgreSQL: the same tables as migrations/sqlite (0001–0003) in one step.
-- Times are Unix milliseconds (BIGINT); money is micro-units; flags are BOOLEAN.

CREATE TABLE tenants (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL,
    api_key     TEXT    NOT NULL UNIQUE,
    secret_enc  TEXT    NOT NULL,             -- API secret, sealed under the master key ('' for merchants)
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    allow_ips   TEXT    NOT NULL DEFAULT '',  -- comma-separated addresses / CIDRs; empty = any
    created_ms  BIGINT  NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'buka'  -- buka | sgate
);

CREATE TABLE apps (
    app_id       TEXT    PRIMARY KEY,
    tenant_id    BIGINT  NOT NULL REFERENCES tenants(id),
    name         TEXT    NOT NULL,
    code_expiry  BIGINT  NOT NULL,            -- minutes
    total_limit  TEXT    NOT NULL,            -- JSON limit object
    phone_limit  TEXT    NOT NULL,
    created_ms   BIGINT  NOT NULL,
    CONSTRAINT apps_tenant_name UNIQUE (tenant_id, name)
);

CREATE TABLE templates (
    template_id  BIGSERIAL PRIMARY KEY,
    tenant_id    BIGINT  NOT NULL REFERENCES tenants(id),
    app_id       TEXT    NOT NULL REFERENCES apps(app_id),
    name         TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    code_type    BIGINT  NOT NULL,
    code_length  BIGINT  NOT NULL,
    speech_rate  BIGINT  NOT NULL,
    language     TEXT    NOT NULL,
    max_duration BIGINT  NOT NULL,
    repeat_cnt   BIGINT  NOT NULL,
    sender_id    TEXT,
    created_ms   BIGINT  NOT NULL,
    CONSTRAINT templates_app_name UNIQUE (app_id, name)
);
CREATE INDEX templates_tenant ON templates (tenant_id, template_id);

CREATE TABLE flows (
    flow_id     BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT  NOT NULL REFERENCES tenants(id),
    name        TEXT    NOT NULL,
    nodes       TEXT    NOT NULL,             -- JSON array of flow nodes
    created_ms  BIGINT  NOT NULL,
    CONSTRAINT flows_tenant_name UNIQUE (tenant_id, name)
);

-- One code sent to one number. Its id is the first verification id.
CREATE TABLE sessions (
    id               TEXT    PRIMARY KEY,
    tenant_id        BIGINT  NOT NULL REFERENCES tenants(id),
    app_id           TEXT    NOT NULL REFERENCES apps(app_id),
    template_id      BIGINT,
    flow_id          BIGINT,
    phone            TEXT    NOT NULL,        -- E.164 digits
    region           TEXT,
    channel          TEXT    NOT NULL,        -- channel of the first send
    code_hash        TEXT    NOT NULL,        -- HMAC-SHA-256(session id, code)
    code_enc         TEXT,                    -- sealed code for resends and flow steps; erased when the session ends
    code_type        BIGINT  NOT NULL,
    code_length      BIGINT  NOT NULL,
    case_insensitive BOOLEAN NOT NULL,
    status           TEXT    NOT NULL,        -- pending | verified | locked
    wrong_attempts   BIGINT  NOT NULL DEFAULT 0,
    submitted        BOOLEAN NOT NULL DEFAULT FALSE,
    expires_ms       BIGINT  NOT NULL,
    created_ms       BIGINT  NOT NULL,
    verified_ms      BIGINT,
    order_id         TEXT,
    external_id      TEXT                     -- SGate's sessionid (32 hex)
);
CREATE UNIQUE INDEX sessions_external ON sessions (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE verifications (
    verification_id TEXT    PRIMARY KEY,
    session_id      TEXT    NOT NULL REFERENCES sessions(id),
    tenant_id       BIGINT  NOT NULL,
    channel         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,         -- send | sendRule | resend | sendOtp
    created_ms      BIGINT  NOT NULL
);
CREATE INDEX verifications_session ON verifications (session_id);

CREATE TABLE orders (
    tenant_id       BIGINT  NOT NULL,
    order_id        TEXT    NOT NULL,
    verification_id TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);

CREATE TABLE attempts (
    id                  BIGSERIAL PRIMARY KEY,
    session_id          TEXT    NOT NULL REFERENCES sessions(id),
    verification_id     TEXT    NOT NULL,
    tenant_id           BIGINT  NOT NULL,
    channel             TEXT    NOT NULL,
    route               TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    sender              TEXT,
    gateway_state       TEXT    NOT NULL,     -- create | pending | sending | success | fail | unknown
    report_state        TEXT    NOT NULL,     -- unknown | pending | success | fail
    reason              TEXT,
    provider_message_id TEXT,
    encoding            TEXT,
    segments            BIGINT,
    mcc                 BIGINT,
    mnc                 BIGINT,
    price_micros        BIGINT,
    rate_micros         BIGINT,
    bill_period         TEXT,
    call_duration       BIGINT,
    charged_duration    BIGINT,
    created_ms          BIGINT  NOT NULL,
    send_ms             BIGINT,
    done_ms             BIGINT,
    flow_step           BIGINT,               -- the flow node to schedule once handed to the route
    ring_ms             BIGINT,
    answer_ms           BIGINT,
    termination_code    BIGINT
);
CREATE INDEX attempts_session ON attempts (session_id, id);
CREATE INDEX attempts_message ON attempts (route, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX attempts_report_pending ON attempts (route, id) WHERE report_state = 'pending';

-- Every send of an app with an active period limit, for the sliding windows.
CREATE TABLE send_log (
    app_id  TEXT    NOT NULL,
    phone   TEXT    NOT NULL,
    at_ms   BIGINT  NOT NULL
);
CREATE INDEX send_log_app ON send_log (app_id, at_ms);
CREATE INDEX send_log_phone ON send_log (app_id, phone, at_ms);

CREATE TABLE backfill_rates (
    tenant_id        BIGINT  NOT NULL,
    app_id           TEXT    NOT NULL,
    mcc              BIGINT  NOT NULL,
    backfill_number  BIGINT,
    backfill_base    BIGINT,
    rate_bp          BIGINT  NOT NULL,        -- percent × 100
    callback_ms      BIGINT  NOT NULL,
    received_ms      BIGINT  NOT NULL,
    PRIMARY KEY (app_id, mcc)
);

CREATE TABLE postbacks (
    verification_id TEXT    PRIMARY KEY,
    tenant_id       BIGINT  NOT NULL,
    app_id          TEXT    NOT NULL,
    number          TEXT,
    backfill_ms     BIGINT  NOT NULL,
    received_ms     BIGINT  NOT NULL
);

-- The console provider's messages (development only).
CREATE TABLE console_outbox (
    id              BIGSERIAL PRIMARY KEY,
    at_ms           BIGINT  NOT NULL,
    channel         TEXT    NOT NULL,
    to_number       TEXT    NOT NULL,
    sender          TEXT,
    text            TEXT    NOT NULL,
    verification_id TEXT    NOT NULL,
    attempt_id      BIGINT
);

-- The delivery engine's durable jobs (see migrations/sqlite/0002_jobs.sql).
CREATE TABLE jobs (
    id          BIGSERIAL PRIMARY KEY,
    key         TEXT    NOT NULL UNIQUE,      -- deliver:<attempt> | flow:<session>:<node> | receipt:<attempt> | sync
    kind        TEXT    NOT NULL,             -- deliver | flow | receipt | sync
    session_id  TEXT,
    attempt_id  BIGINT,
    step        BIGINT,
    due_ms      BIGINT  NOT NULL,
    owner       TEXT,                         -- the worker holding the claim; NULL when free
    lease_ms    BIGINT,                       -- when that claim lapses
    tries       BIGINT  NOT NULL DEFAULT 0,   -- claims so far (also the claim's token)
    last_error  TEXT,
    created_ms  BIGINT  NOT NULL
);
CREATE INDEX jobs_due ON jobs (due_ms, lease_ms);

-- SGate merchants (see migrations/sqlite/0003_sgate.sql).
CREATE TABLE merchants (
    tenant_id   BIGINT  PRIMARY KEY REFERENCES tenants(id),
    public_key  TEXT    NOT NULL,
    sandbox     BOOLEAN NOT NULL,
    app_id      TEXT    NOT NULL REFERENCES apps(app_id),
    products    TEXT    NOT NULL              -- JSON [{"name":…,"templateId":…}], in order
);

CREATE TABLE request_nonces (
    tenant_id   BIGINT  NOT NULL,
    nonce       TEXT    NOT NULL,
    expires_ms  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, nonce)
);
CREATE INDEX request_nonces_expiry ON request_nonces (expires_ms);

CREATE TABLE system_keys (
    name         TEXT    PRIMARY KEY,
    private_enc  TEXT    NOT NULL,
    public_pem   TEXT    NOT NULL,
    created_ms   BIGINT  NOT NULL
);

CREATE TABLE sandbox_sends (
    tenant_id  BIGINT  NOT NULL,
    mobile     TEXT    NOT NULL,
    at_ms      BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, mobile)
);
