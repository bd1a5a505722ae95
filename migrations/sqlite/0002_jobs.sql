-- The delivery engine: durable jobs, flow positions, call timings, receipts by message id.

-- Work to do, in the same database as the state it acts on. A job is written in the same
-- transaction as what it acts on and deleted in the same transaction as its outcome.
-- A job may run once `due_ms` has passed and no worker holds it (or the holder's lease passed).
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL UNIQUE,   -- deliver:<attempt> | flow:<session>:<node> | receipt:<attempt> | sync
    kind        TEXT    NOT NULL,          -- deliver | flow | receipt | sync
    session_id  TEXT,
    attempt_id  INTEGER,                   -- deliver/receipt: the attempt; flow: the previous attempt
    step        INTEGER,                   -- flow: index of the node
    due_ms      INTEGER NOT NULL,
    owner       TEXT,                      -- the worker holding the claim; NULL when free
    lease_ms    INTEGER,                   -- when that claim lapses
    tries       INTEGER NOT NULL DEFAULT 0,-- claims so far (also the claim's token)
    last_error  TEXT,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (due_ms, lease_ms);  -- covers "due and free" without reading rows

-- The flow node to schedule once this attempt has been handed to its route (NULL: none).
ALTER TABLE attempts ADD COLUMN flow_step INTEGER;
-- Call timings and outcome.
ALTER TABLE attempts ADD COLUMN ring_ms INTEGER;
ALTER TABLE attempts ADD COLUMN answer_ms INTEGER;
ALTER TABLE attempts ADD COLUMN termination_code INTEGER;
-- Receipts name the route's message id.
CREATE INDEX attempts_message ON attempts (route, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- The sync job polls the pending receipts of poll-only routes.
CREATE INDEX attempts_report_pending ON attempts (route, id) WHERE report_state = 'pending';

ALTER TABLE console_outbox ADD COLUMN attempt_id INTEGER;
