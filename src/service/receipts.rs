//! Delivery receipts: pushed by routes, polled by the sync job, or settled by the receipt
//! timeout.

use super::delivery::receipt_update;
use super::{Service, ServiceResult};
use crate::providers::Receipt;
use crate::store::{AttemptGuard, AttemptUpdate, Job, JobNext, JobOutcome, report};

/// Most pending receipts one sync asks one route about.
const SYNC_BATCH: i64 = 500;

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
        let Some(attempt) = self.store.attempt_by_message(route, message_id).await? else {
            tracing::info!(
                route.name = route,
                message.id = message_id,
                "receipt for an unknown message"
            );
            return Ok(false);
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
        }
        Ok(applied)
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
