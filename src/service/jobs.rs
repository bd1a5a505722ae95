//! The job runtime: workers that claim due jobs with leases, the in-process hand-off of fresh
//! work, a drain for tests, and a graceful stop.
//!
//! Every job lives in the database (see `migrations/sqlite/0002_jobs.sql`). Work this process
//! creates and can start at once (a send's first attempt, a flow node's attempt) is written
//! already claimed by this process and started in a task right after the commit; if the
//! process dies first, the claim lapses and any worker picks it up. Everything else (retries,
//! flow timers, receipt timeouts, the receipt sync) waits in the queue until it is due.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};

use super::Service;
use crate::config::DeliveryConfig;
use crate::store::{Job, JobNext, JobOutcome, JobRef, NewClaim, NewJob, StoreResult, job_kind};

/// Longest idle wait between two looks at the queue: bounds how late a job written by another
/// process (or whose claim lapsed) is noticed.
const IDLE_POLL_MS: i64 = 500;
/// Most jobs claimed in one go.
const CLAIM_BATCH: usize = 256;

pub struct JobRuntime {
    /// This process's name on its claims.
    pub owner: String,
    pub cfg: DeliveryConfig,
    running: AtomicUsize,
    idle: Notify,
    slots: Arc<Semaphore>,
}

impl JobRuntime {
    pub fn new(cfg: DeliveryConfig) -> Self {
        let owner = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            crate::domain::ids::random_alnum(6)
        );
        Self {
            owner,
            slots: Arc::new(Semaphore::new(cfg.workers)),
            cfg,
            running: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    /// Tasks running now (fresh deliveries and claimed jobs).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "otpgate".into())
}

/// Counts a task as running until dropped.
struct Running(Arc<JobRuntime>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Delay before retry number `tries` (1 = the first retry): the base, doubling, at most 300 s.
pub fn backoff_ms(base_secs: i64, tries: i64) -> i64 {
    let exp = (tries - 1).clamp(0, 16) as u32;
    (base_secs * 1000).saturating_mul(1 << exp).min(300_000)
}

impl Service {
    /// A claim for work this process starts right away.
    pub(super) fn new_claim(&self, now_ms: i64) -> NewClaim {
        NewClaim {
            owner: self.jobs.owner.clone(),
            lease_until_ms: now_ms + self.jobs.cfg.lease_secs * 1000,
        }
    }

    /// One of the delivery slots, if one is free: work started at once holds one, so what runs
    /// in this process stays within `delivery.workers`.
    pub(super) fn delivery_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.jobs.slots.clone().try_acquire_owned().ok()
    }

    /// Runs `work` in its own task, counted until it ends, so shutdown and [`Self::drain`]
    /// can wait for it and a caller that goes away cannot cancel it half-way.
    pub(super) fn spawn_tracked(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.jobs.running.fetch_add(1, Ordering::AcqRel);
        let guard = Running(self.jobs.clone());
        // Boxed once here: a delivery's state machine is large, and tokio would otherwise copy
        // it twice into the task.
        let work = Box::pin(work);
        tokio::spawn(async move {
            let _guard = guard;
            work.await;
        });
    }

    /// Resolves once no task is running.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.jobs.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.jobs.running() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Records a job's outcome; a lost claim (someone else took the job) is logged, not an
    /// error: the other holder records it.
    pub(super) async fn finish(&self, outcome: JobOutcome) {
        let id = outcome.job.id;
        match self.store.finish_job(&outcome).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                job.id = %id,
                "job claim lapsed before its outcome was recorded"
            ),
            Err(e) => tracing::error!(job.id = %id, error = %e, "could not record a job outcome"),
        }
    }

    /// A job's outcome that only removes it (plus follow-ups).
    pub(super) fn done(&self, job: JobRef, follow_ups: Vec<NewJob>) -> JobOutcome {
        JobOutcome {
            job,
            now_ms: self.now_ms(),
            attempt: None,
            follow_ups,
            next: JobNext::Delete,
            outbox: None,
        }
    }

    /// Runs one claimed job to its end.
    pub(super) async fn run_job(&self, job: Job) {
        let lag = (self.now_ms() - job.due_ms) as f64 / 1000.0;
        let kind = job.kind.clone();
        let result = match job.kind.as_str() {
            job_kind::DELIVER => self.deliver_job(job).await,
            job_kind::FLOW => self.flow_job(job).await,
            job_kind::RECEIPT => self.receipt_timeout_job(job).await,
            job_kind::SYNC => self.sync_job(job).await,
            other => {
                tracing::error!(
                    job.id = job.id,
                    job.kind = other,
                    "unknown job kind; dropped"
                );
                let done = self.done(job.claim(), Vec::new());
                self.finish(done).await;
                Ok(())
            }
        };
        let label = match &result {
            Ok(()) => "ok",
            Err(e) => {
                tracing::error!(job.kind = %kind, error = %e, "job failed; it runs again when its claim lapses");
                "error"
            }
        };
        self.metrics.job(&kind, label, lag);
    }

    /// Claims every job due now and runs them one after another, to completion. Returns how
    /// many ran.
    pub async fn run_due_jobs(&self) -> StoreResult<usize> {
        let mut ran = 0;
        loop {
            let now = self.now_ms();
            let claim = self.new_claim(now);
            let jobs = self
                .store
                .claim_jobs(&claim.owner, now, claim.lease_until_ms, CLAIM_BATCH as i64)
                .await?;
            if jobs.is_empty() {
                return Ok(ran);
            }
            ran += jobs.len();
            for job in jobs {
                self.run_job(job).await;
            }
        }
    }

    /// Until nothing runs and nothing is due: finishes fresh deliveries, then runs due jobs,
    /// again and again. Tests call it instead of sleeping; the clock decides what is due.
    pub async fn drain(&self) -> StoreResult<usize> {
        let mut ran = 0;
        loop {
            self.wait_idle().await;
            let n = self.run_due_jobs().await?;
            ran += n;
            if n == 0 && self.jobs.running() == 0 {
                return Ok(ran);
            }
        }
    }

    /// Prepares the queue when `serve` starts: frees the claims left by a previous run of this
    /// database's server and writes the receipt sync job when a route needs polling.
    pub async fn start_jobs(&self) -> StoreResult<()> {
        let now = self.now_ms();
        let recovered = self.store.recover_claims(now).await?;
        if recovered > 0 {
            tracing::warn!(
                jobs = recovered,
                "claims left by a stopped server were freed"
            );
        }
        if self
            .routing
            .routes()
            .iter()
            .any(|r| r.provider.polls_receipts())
        {
            self.store.ensure_jobs(&[NewJob::sync(now)], now).await?;
        }
        Ok(())
    }

    /// The worker loop: claims due jobs while slots are free and runs each in its own task,
    /// until `stop` turns true.
    pub async fn run_workers(self, mut stop: watch::Receiver<bool>) {
        let slots = self.jobs.slots.clone();
        let wake = self.store.job_wakeups();
        loop {
            if *stop.borrow() {
                return;
            }
            let free = slots.available_permits().min(CLAIM_BATCH);
            if free == 0 {
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    _ = stop.changed() => {}
                }
                continue;
            }
            let now = self.now_ms();
            let claim = self.new_claim(now);
            match self
                .store
                .claim_jobs(&claim.owner, now, claim.lease_until_ms, free as i64)
                .await
            {
                Ok(jobs) => {
                    let full = jobs.len() == free;
                    for job in jobs {
                        // Requests take slots too (a send delivers at once when one is free),
                        // so a slot counted free above may be gone: wait for the next one
                        // rather than leave a claimed job to its lease.
                        let permit = match slots.clone().try_acquire_owned() {
                            Ok(p) => p,
                            Err(_) => match slots.clone().acquire_owned().await {
                                Ok(p) => p,
                                Err(_) => break,
                            },
                        };
                        let svc = self.clone();
                        self.spawn_tracked(async move {
                            svc.run_job(job).await;
                            drop(permit);
                        });
                    }
                    if full {
                        continue;
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not claim jobs"),
            }
            let wait_ms = match self.store.next_due_ms().await {
                Ok(Some(due)) => (due - self.now_ms()).clamp(5, IDLE_POLL_MS),
                _ => IDLE_POLL_MS,
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                // Another node (or this one) made a job claimable.
                _ = async {
                    match &wake {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// After the workers stopped: gives running jobs the grace period, then frees whatever
    /// this process still holds so another worker (or the next start) takes it.
    pub async fn stop_jobs(&self) {
        let grace = Duration::from_secs(self.jobs.cfg.shutdown_grace_secs.max(0) as u64);
        let finished = tokio::time::timeout(grace, self.wait_idle()).await.is_ok();
        match self.store.release_claims(&self.jobs.owner).await {
            Ok(n) if n > 0 || !finished => tracing::warn!(
                released = n,
                still_running = self.jobs.running(),
                "stopping: unfinished jobs released for the next worker"
            ),
            Ok(_) => tracing::info!("stopping: every running job finished"),
            Err(e) => tracing::error!(error = %e, "stopping: could not release claims"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_ms(2, 1), 2_000);
        assert_eq!(backoff_ms(2, 2), 4_000);
        assert_eq!(backoff_ms(2, 4), 16_000);
        assert_eq!(backoff_ms(2, 40), 300_000);
    }
}
