-- The deliver job of an attempt handed to its route at once (a send's first attempt, a flow
-- node's attempt) is held on the attempt row instead of a claimed row of `jobs`: who holds it
-- and until when. Both are cleared in the transaction that records the outcome. A claim whose
-- lease lapses (its node died) is moved into `jobs` as an ordinary deliver job by the next
-- claim of due jobs, on any node. The partial index holds only the attempts being handed over
-- right now.
ALTER TABLE attempts ADD COLUMN claim_owner TEXT;
ALTER TABLE attempts ADD COLUMN claim_lease_ms BIGINT;
CREATE INDEX attempts_claim ON attempts (claim_lease_ms) WHERE claim_lease_ms IS NOT NULL;

-- Attempts waiting for a receipt that a route can be asked about: only those with a message id
-- (what `pending_receipts` reads). An attempt is written `pending` before it has one, and one
-- that is settled at once (the console provider) never enters the index at all.
DROP INDEX attempts_report_pending;
CREATE INDEX attempts_receipt_pending ON attempts (route, id)
    WHERE report_state = 'pending' AND provider_message_id IS NOT NULL;
