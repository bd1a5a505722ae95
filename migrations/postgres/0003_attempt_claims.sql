-- The deliver job of an attempt handed to its route at once (a send's first attempt, a flow
-- node's attempt) is held on the attempt row instead of a claimed row of `jobs`: who holds it
-- and until when. Both are cleared in the transaction that records the outcome. A claim whose
-- lease lapses (its node died) is moved into `jobs` as an ordinary deliver job by the next
-- claim of due jobs, on any node. The partial index holds only the attempts being handed over
-- right now.
ALTER TABLE attempts ADD COLUMN claim_owner TEXT;
ALTER TABLE attempts ADD COLUMN claim_lease_ms BIGINT;
CREATE INDEX attempts_claim ON attempts (claim_lease_ms) WHERE claim_lease_ms IS NOT NULL;
