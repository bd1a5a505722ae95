//! Delivery receipts: pushed by routes, polled by the sync job, or settled by the receipt
//! timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::{Semaphore, watch};

use super::delivery::receipt_update;
use super::{Service, ServiceResult};
use crate::providers::{Receipt, ReceiptEvent, ReceiptKey};
use crate::store::{AttemptGuard, AttemptUpdate, Job, JobNext, JobOutcome, report};

/// Most pending receipts one sync asks one route about.
const SYNC_BATCH: i64 = 500;

/// Most receipts held for messages whose submit is not recorded yet.
const MAX_HELD: usize = 100_000;

/// Receipts being applied at once.
const RECEIPTS_IN_FLIGHT: usize = 64;

/// How often held receipts are tried again.
const HELD_RETRY: Duration = Duration::from_millis(100);

/// What became of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// It changed its attempt.
    Applied,
    /// Its attempt had a receipt already (or is not waiting for one).
    Settled,
    /// No attempt of that route has this message id (yet).
    Unknown,
}

impl Service {
    /// A receipt for the message `message_id` of `route`. Returns whether it changed an
    /// attempt: unknown messages and attempts already settled by a receipt are left alone (a
    /// late receipt still overrides the receipt timeout's "no delivery report").
    pub async fn on_receipt(
        &self,
        route: &str,
        message_id: &str,
        receipt: Receipt,
    ) -> ServiceResult<bool> {
        let key = ReceiptKey::Message(message_id.to_string());
        Ok(self.apply_receipt(route, &key, receipt).await? == ReceiptOutcome::Applied)
    }

    /// A receipt for the attempt `key` names on `route` (by the provider's message id, or by
    /// the attempt id a callback carried).
    pub async fn apply_receipt(
        &self,
        route: &str,
        key: &ReceiptKey,
        receipt: Receipt,
    ) -> ServiceResult<ReceiptOutcome> {
        let found = match key {
            ReceiptKey::Message(id) => self.store.attempt_by_message(route, id).await?,
            ReceiptKey::Attempt(id) => self.store.attempt_on_route(route, *id).await?,
        };
        let Some(attempt) = found else {
            return Ok(ReceiptOutcome::Unknown);
        };
        let update = receipt_update(
            &receipt,
            attempt.bill_period.as_deref(),
            attempt.rate_micros,
        );
        let applied = self
            .store
            .apply_receipt(attempt.id, AttemptGuard::Unconfirmed, &update)
            .await?;
        if applied {
            let state = if receipt.delivered {
                report::SUCCESS
            } else {
                report::FAIL
            };
            self.metrics.receipt(&attempt.channel, state);
            tracing::info!(
                attempt.id = attempt.id,
                verification.id = %attempt.verification_id,
                route.name = route,
                receipt.state = state,
                "receipt"
            );
            Ok(ReceiptOutcome::Applied)
        } else {
            Ok(ReceiptOutcome::Settled)
        }
    }

    /// Applies the receipts routes push on their own connections, until `stop`. A receipt
    /// whose message is not known yet (it came before the `submit_sm_resp`, or before the
    /// submit's outcome was written) is held and tried again every 100 ms for
    /// `delivery.submit_timeout_secs` + 30 s; then it is dropped with a warning (the receipt
    /// timeout settles the attempt).
    pub async fn run_receipts(
        self,
        mut events: UnboundedReceiver<ReceiptEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        let hold_for = Duration::from_secs(self.jobs.cfg.submit_timeout_secs as u64 + 30);
        let mut held: VecDeque<(Instant, ReceiptEvent)> = VecDeque::new();
        let mut tick = tokio::time::interval(HELD_RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Receipts are applied concurrently (the store groups their writes into shared
        // commits); those that must wait come back here to be held.
        let limit = Arc::new(Semaphore::new(RECEIPTS_IN_FLIGHT));
        let (back, mut returned) = unbounded_channel::<ReceiptEvent>();
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    let Ok(permit) = limit.clone().acquire_owned().await else { break };
                    let (svc, back) = (self.clone(), back.clone());
                    tokio::spawn(async move {
                        if !svc.try_event(&event).await {
                            let _ = back.send(event);
                        }
                        drop(permit);
                    });
                }
                Some(event) = returned.recv() => {
                    if held.len() >= MAX_HELD
                        && let Some((_, dropped)) = held.pop_front()
                    {
                        tracing::warn!(route.name = %dropped.route, "too many early receipts held; dropping the oldest");
                    }
                    held.push_back((Instant::now(), event));
                }
                _ = tick.tick(), if !held.is_empty() => {
                    let mut still = VecDeque::with_capacity(held.len());
                    for (since, event) in held.drain(..) {
                        if self.try_event(&event).await {
                            continue;
                        }
                        if since.elapsed() > hold_for {
                            tracing::warn!(
                                route.name = %event.route,
                                receipt.key = ?event.key,
                                "receipt for an unknown message; dropped"
                            );
                        } else {
                            still.push_back((since, event));
                        }
                    }
                    held = still;
                }
                _ = stop.changed() => break,
            }
        }
    }

    /// Queues a receipt for the consumer, which holds it until its message is known.
    pub fn hold_receipt(&self, event: ReceiptEvent) {
        if !self.receipts.push(event) {
            tracing::warn!("receipt dropped: the server is stopping");
        }
    }

    /// Applies one pushed receipt; false when it must be held (unknown message, or the store
    /// failed).
    async fn try_event(&self, event: &ReceiptEvent) -> bool {
        match self
            .apply_receipt(&event.route, &event.key, event.receipt.clone())
            .await
        {
            Ok(ReceiptOutcome::Unknown) => false,
            Ok(_) => true,
            Err(e) => {
                tracing::error!(route.name = %event.route, error = %e, "could not apply a receipt");
                false
            }
        }
    }

    /// The receipt timeout: an accepted attempt still without a receipt has failed.
    pub(super) async fn receipt_timeout_job(&self, job: Job) -> anyhow::Result<()> {
        let claim = job.claim();
        let now = self.now_ms();
        let attempt = job.attempt_id.map(|id| {
            (
                id,
                AttemptGuard::Unconfirmed,
                AttemptUpdate {
                    report_state: Some(report::FAIL.into()),
                    reason: Some(report::NO_DELIVERY_REPORT.into()),
                    done_ms: Some(now),
                    ..AttemptUpdate::default()
                },
            )
        });
        if let Some(id) = job.attempt_id {
            tracing::info!(attempt.id = id, "no delivery report in time");
        }
        self.finish(JobOutcome {
            attempt,
            ..self.done(claim, Vec::new())
        })
        .await;
        Ok(())
    }

    /// The sync job: asks every route that cannot push receipts about its pending messages,
    /// then comes back after the sync interval.
    pub(super) async fn sync_job(&self, job: Job) -> anyhow::Result<()> {
        let claim = job.claim();
        for route in self.routing.routes() {
            if !route.provider.polls_receipts() {
                continue;
            }
            let pending = self.store.pending_receipts(&route.name, SYNC_BATCH).await?;
            if pending.is_empty() {
                continue;
            }
            let ids: Vec<String> = pending.into_iter().map(|(_, m)| m).collect();
            let limit = std::time::Duration::from_secs(self.jobs.cfg.submit_timeout_secs as u64);
            let polled = match tokio::time::timeout(limit, route.provider.poll_receipts(&ids)).await
            {
                Ok(r) => r,
                Err(_) => Err(crate::providers::ProviderError::Retryable(format!(
                    "no answer within {} s",
                    limit.as_secs()
                ))),
            };
            match polled {
                Ok(receipts) => {
                    for (message_id, receipt) in receipts {
                        self.on_receipt(&route.name, &message_id, receipt).await?;
                    }
                }
                Err(e) => {
                    tracing::warn!(route.name = %route.name, error = %e, "receipt poll failed")
                }
            }
        }
        let due_ms = self.now_ms() + self.jobs.cfg.sync_interval_secs * 1000;
        self.finish(JobOutcome {
            next: JobNext::Reschedule { due_ms },
            ..self.done(claim, Vec::new())
        })
        .await;
        Ok(())
    }
}
