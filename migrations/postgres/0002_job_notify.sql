-- Wakes idle workers on every node: a job that becomes claimable (inserted or freed without an
-- owner: a queued send, a retry, a released or recovered claim, a timer written by another
-- node) notifies channel `otpgate_jobs`. PostgreSQL delivers the notification at commit and
-- folds repeats within one transaction; jobs written already claimed notify nobody. Workers
-- still poll (every 0.5 s at most), so a notification lost while a listener reconnects only
-- delays a job. The payload is the schema, so deployments (or test runs) sharing a database in
-- different schemas wake only their own workers.
CREATE FUNCTION otpgate_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('otpgate_jobs', current_schema());
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_claimable
    AFTER INSERT OR UPDATE OF owner, due_ms ON jobs
    FOR EACH ROW WHEN (NEW.owner IS NULL)
    EXECUTE FUNCTION otpgate_jobs_notify();
