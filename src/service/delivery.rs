//! Handing attempts to their routes and recording what comes back: the deliver job.
//!
//! Gateway state of an attempt: `create` (only inside the transaction that writes it: an
//! attempt is stored already queued or already claimed) → `pending` (waiting for its route,
//! e.g. between retries) →
//! `sending` (being handed over) → `success` (the route took it) or `fail` (refused, or every
//! retry failed); `unknown` when the process handing it over vanished before the route
//! answered (it is not sent again: at most once per attempt). The report state follows
//! receipts: `pending` → `success` | `fail`, or `fail` with "no delivery report" when the
//! route's receipt timeout passes first.

use anyhow::Context;

use super::Service;
use super::jobs::backoff_ms;
use crate::domain::Channel;
use crate::domain::code::{self, Code};
use crate::domain::phone::PhoneNumber;
use crate::domain::sms::{self, SmsInfo};
use crate::domain::validate::{call_charge, parse_bill_period};
use crate::providers::routing::{Route, RouteChoice};
use crate::providers::{OutboundMessage, ProviderError, Receipt, VoiceParams, spell_for_voice};
use crate::store::{
    Attempt, AttemptGuard, AttemptUpdate, Job, JobNext, JobOutcome, JobRef, NewAttempt, NewJob,
    SendingInfo, Session, StartAttempt, Template, gateway, report,
};

/// Where and how a session's attempts go: everything but the attempt and the code.
#[derive(Clone)]
pub(super) struct DeliveryTarget {
    pub channel: Channel,
    pub phone: PhoneNumber,
    pub sender: Option<String>,
    pub template: Option<Template>,
    /// Index of the route in [`crate::providers::routing::Routing::routes`].
    pub route_index: usize,
}

/// One attempt to hand to its route, under its deliver job's claim.
pub(super) struct Delivery {
    pub job: JobRef,
    pub attempt_id: i64,
    pub verification_id: String,
    pub session_id: String,
    /// `(flow id, node)`: the flow node to schedule once this attempt is handed over.
    pub next_step: Option<(i64, i64)>,
    pub code: Code,
    pub target: DeliveryTarget,
}

/// The SMS text used by sendRule without a template.
pub const DEFAULT_TEXT: &str = "Your verification code is ##code##";

/// The message text (for a call: the words to speak, digits spelled out) and voice settings.
fn render(target: &DeliveryTarget, code: &Code) -> (String, Option<VoiceParams>) {
    let template = target.template.as_ref();
    let text = template.map(|t| t.text.as_str()).unwrap_or(DEFAULT_TEXT);
    match target.channel {
        Channel::Call => (
            code::render(text, &Code::supplied(&spell_for_voice(code.expose()))),
            Some(VoiceParams {
                language: template
                    .map(|t| t.language.clone())
                    .unwrap_or_else(|| "EN".into()),
                speech_rate: template.map(|t| t.speech_rate).unwrap_or(50),
                repeat_cnt: template.map(|t| t.repeat_cnt).unwrap_or(1),
                max_duration: template.map(|t| t.max_duration).unwrap_or(59),
            }),
        ),
        _ => (code::render(text, code), None),
    }
}

/// The sender id of a message on a route: the template's, else the route's.
fn sender_on(template: Option<&Template>, route: &Route) -> Option<String> {
    template
        .and_then(|t| t.sender_id.clone())
        .or_else(|| route.default_sender.clone())
}

/// Encoding, segments and price of a message to `phone` on a route.
fn accounting(channel: Channel, info: &SmsInfo, route: &Route, phone: &PhoneNumber) -> SendingInfo {
    if channel == Channel::Sms {
        let rate = route.sms_price.price(phone);
        SendingInfo {
            encoding: Some(info.encoding.as_str().into()),
            segments: Some(info.segments as i64),
            rate_micros: Some(rate),
            price_micros: Some(rate * info.segments as i64),
            bill_period: None,
        }
    } else {
        SendingInfo {
            rate_micros: Some(route.call_price.price(phone)),
            bill_period: Some(format!("{}+{}", route.bill_period.0, route.bill_period.1)),
            price_micros: Some(0),
            ..SendingInfo::default()
        }
    }
}

/// What a receipt changes on an attempt. A call's price is its rate times the started
/// billing blocks of its talk time.
pub(super) fn receipt_update(
    r: &Receipt,
    bill_period: Option<&str>,
    rate_micros: Option<i64>,
) -> AttemptUpdate {
    let mut u = AttemptUpdate {
        report_state: Some(
            if r.delivered {
                report::SUCCESS
            } else {
                report::FAIL
            }
            .into(),
        ),
        done_ms: Some(r.at_ms),
        reason: r.reason.clone(),
        mnc: r.mnc,
        ..AttemptUpdate::default()
    };
    if let Some(call) = &r.call {
        let period = bill_period.and_then(parse_bill_period).unwrap_or((60, 60));
        let (charged, blocks) = call_charge(call.duration_secs.max(0) as u32, period);
        u.termination_code = Some(call.termination_code);
        u.ring_ms = call.ringing_ms;
        u.answer_ms = call.answer_ms;
        u.call_duration = Some(call.duration_secs.max(0));
        u.charged_duration = Some(charged as i64);
        u.price_micros = Some(rate_micros.unwrap_or(0) * blocks as i64);
        if u.reason.is_none() {
            u.reason = Some(crate::providers::termination::reason(call.termination_code).into());
        }
    }
    u
}

impl Service {
    /// Chooses the route for `channel` as `choice` asks and describes the attempt: where it
    /// goes, from which sender (the template's, else the route's), and (estimated with `code`)
    /// what it will cost. `None` when no route carries the channel.
    pub(super) fn describe_attempt(
        &self,
        channel: Channel,
        phone: PhoneNumber,
        template: Option<Template>,
        code: &Code,
        flow_step: Option<i64>,
        choice: RouteChoice<'_>,
    ) -> Option<(DeliveryTarget, NewAttempt)> {
        let (route_index, route) = self.routing.choose(channel, &phone, choice)?;
        let sender = sender_on(template.as_ref(), route);
        let target = DeliveryTarget {
            channel,
            phone,
            sender,
            template,
            route_index,
        };
        let attempt = NewAttempt {
            channel: channel.as_str().to_string(),
            route: route.name.clone(),
            provider: route.provider.kind().to_string(),
            sender: target.sender.clone(),
            mcc: target.phone.mcc().map(i64::from),
            flow_step,
            sending: Some(accounting(
                channel,
                &sms::analyze(&render(&target, code).0),
                route,
                &target.phone,
            )),
        };
        Some((target, attempt))
    }

    /// The flow node to schedule after an attempt, if the flow has it.
    async fn flow_follow_up(
        &self,
        session_id: &str,
        attempt_id: i64,
        next_step: Option<(i64, i64)>,
        submitted_ms: i64,
    ) -> Option<NewJob> {
        let (flow_id, step) = next_step?;
        let flow = match self.store.get_flow(flow_id).await {
            Ok(f) => f?,
            Err(e) => {
                tracing::error!(flow.id = flow_id, error = %e, "could not read the flow");
                return None;
            }
        };
        let node = flow.nodes.get(usize::try_from(step).ok()?)?;
        Some(NewJob::flow(
            session_id,
            attempt_id,
            step,
            submitted_ms + node.waiting_time * 1000,
        ))
    }

    /// Submits one attempt and records the outcome with the jobs that follow from it, in one
    /// store call. Failures are recorded on the attempt (and surface in the record), never
    /// returned: the send was accepted already.
    pub(super) async fn deliver(&self, d: Delivery) {
        let Some(route) = self.routing.routes().get(d.target.route_index) else {
            tracing::error!(attempt.id = d.attempt_id, "route vanished before delivery");
            return;
        };
        let (text, voice) = render(&d.target, &d.code);
        let info = sms::analyze(&text);
        let acct = accounting(d.target.channel, &info, route, &d.target.phone);
        let msg = OutboundMessage {
            attempt_id: d.attempt_id,
            verification_id: d.verification_id.clone(),
            channel: d.target.channel,
            to: d.target.phone.digits().to_string(),
            sender: d.target.sender.clone(),
            text,
            voice,
        };
        let submitted_ms = self.now_ms();
        let started = std::time::Instant::now();
        let limit = std::time::Duration::from_secs(self.jobs.cfg.submit_timeout_secs as u64);
        // The route's window and throughput cap count against the submit timeout.
        let submit = async {
            let _pass = route.gate.enter().await;
            route.provider.submit(&msg).await
        };
        let result = match tokio::time::timeout(limit, submit).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Retryable(format!(
                "the route did not answer within {} s",
                limit.as_secs()
            ))),
        };
        let elapsed = started.elapsed();
        // Permanent refusals are about the message (number, content), not the route's health.
        if !matches!(result, Err(ProviderError::Permanent(_))) {
            self.routing.record(d.target.route_index, result.is_ok());
        }
        self.metrics
            .submit(&route.name, result.is_ok(), elapsed.as_secs_f64());
        let now = self.now_ms();
        let channel = d.target.channel.as_str();
        // The exact accounting of the text actually sent.
        let mut update = AttemptUpdate {
            encoding: acct.encoding,
            segments: acct.segments,
            rate_micros: acct.rate_micros,
            price_micros: acct.price_micros,
            bill_period: acct.bill_period.clone(),
            ..AttemptUpdate::default()
        };
        let mut follow_ups = Vec::new();
        let mut next = JobNext::Delete;
        let mut outbox = None;
        let tries = d.job.tries;
        match result {
            Ok(sub) => {
                outbox = sub.outbox;
                update.gateway_state = Some(gateway::SUCCESS.into());
                update.provider_message_id = Some(sub.message_id);
                match &sub.receipt {
                    Some(r) => {
                        let u = receipt_update(r, acct.bill_period.as_deref(), acct.rate_micros);
                        update = merge(update, u);
                        self.metrics.receipt(
                            channel,
                            if r.delivered {
                                report::SUCCESS
                            } else {
                                report::FAIL
                            },
                        );
                    }
                    None => follow_ups.push(NewJob::receipt_timeout(
                        d.attempt_id,
                        now + route.receipt_timeout_ms,
                    )),
                }
                self.metrics.attempt(channel, gateway::SUCCESS);
                tracing::info!(
                    attempt.id = d.attempt_id,
                    verification.id = %d.verification_id,
                    route.name = %route.name,
                    channel,
                    provider.latency_ms = elapsed.as_millis() as u64,
                    sms.segments = info.segments,
                    "attempt submitted"
                );
            }
            Err(ProviderError::Retryable(reason)) if tries < self.jobs.cfg.max_tries => {
                // Another route takes it at once; the only route takes it after a backoff.
                let other = self
                    .routing
                    .failover(d.target.channel, &d.target.phone, &route.name);
                let wait = match other {
                    Some(_) => 0,
                    None => backoff_ms(self.jobs.cfg.retry_backoff_secs, tries),
                };
                update = AttemptUpdate {
                    gateway_state: Some(gateway::PENDING.into()),
                    reason: Some(reason.clone()),
                    ..AttemptUpdate::default()
                };
                if let Some((_, next_route)) = other {
                    let moved = accounting(d.target.channel, &info, next_route, &d.target.phone);
                    update.route = Some(next_route.name.clone());
                    update.provider = Some(next_route.provider.kind().to_string());
                    update.sender = sender_on(d.target.template.as_ref(), next_route);
                    update.rate_micros = moved.rate_micros;
                    update.price_micros = moved.price_micros;
                    update.bill_period = moved.bill_period;
                    tracing::warn!(
                        attempt.id = d.attempt_id,
                        route.name = %route.name,
                        route.next = %next_route.name,
                        error = %reason,
                        "route refused for now; moving the attempt to the next route"
                    );
                }
                next = JobNext::Retry {
                    due_ms: now + wait,
                    error: reason.clone(),
                };
                self.metrics.attempt(channel, gateway::PENDING);
                if other.is_none() {
                    tracing::warn!(
                        attempt.id = d.attempt_id,
                        route.name = %route.name,
                        job.tries = tries,
                        retry.in_ms = wait,
                        error = %reason,
                        "route refused for now; retrying"
                    );
                }
            }
            Err(e) => {
                let reason = match &e {
                    ProviderError::Retryable(r) | ProviderError::Permanent(r) => r.clone(),
                };
                update.gateway_state = Some(gateway::FAIL.into());
                update.report_state = Some(report::FAIL.into());
                update.reason = Some(reason);
                update.done_ms = Some(now);
                update.price_micros = Some(0);
                self.metrics.attempt(channel, gateway::FAIL);
                tracing::warn!(
                    attempt.id = d.attempt_id,
                    verification.id = %d.verification_id,
                    route.name = %route.name,
                    job.tries = tries,
                    error = %e,
                    "attempt failed"
                );
            }
        }
        if next == JobNext::Delete
            && let Some(j) = self
                .flow_follow_up(&d.session_id, d.attempt_id, d.next_step, submitted_ms)
                .await
        {
            follow_ups.push(j);
        }
        self.finish(JobOutcome {
            job: d.job,
            now_ms: now,
            attempt: Some((
                d.attempt_id,
                AttemptGuard::Gateway(&[gateway::SENDING]),
                update,
            )),
            follow_ups,
            next,
            outbox,
        })
        .await;
    }

    /// The code of a session, unsealed.
    pub(super) fn session_code(&self, session: &Session) -> anyhow::Result<Option<Code>> {
        session
            .code_enc
            .as_deref()
            .map(|sealed| self.open_code(sealed, &session.id))
            .transpose()
    }

    /// A session's sealed code, unsealed.
    pub(super) fn open_code(&self, sealed: &str, session_id: &str) -> anyhow::Result<Code> {
        let code = self
            .keys
            .open(sealed, &super::verification::code_context(session_id))
            .context("unsealing the session code")?;
        Ok(Code::supplied(&code))
    }

    /// Where a stored attempt goes, rebuilt from what was stored.
    async fn stored_target(
        &self,
        attempt: &Attempt,
        session: &Session,
    ) -> anyhow::Result<Result<DeliveryTarget, String>> {
        let Some((route_index, _)) = self.routing.by_name(&attempt.route) else {
            return Ok(Err(format!(
                "route {} is no longer configured",
                attempt.route
            )));
        };
        let channel = Channel::parse(&attempt.channel)
            .with_context(|| format!("attempt {} has channel {:?}", attempt.id, attempt.channel))?;
        let phone = PhoneNumber::parse_international(&session.phone)
            .map_err(|e| anyhow::anyhow!("stored number unreadable: {e}"))?;
        let template = match session.template_id {
            Some(id) => self.store.get_template(id).await?,
            None => None,
        };
        Ok(Ok(DeliveryTarget {
            channel,
            phone,
            sender: attempt.sender.clone(),
            template,
            route_index,
        }))
    }

    /// A deliver job taken from the queue: a retry, or work whose first worker vanished.
    pub(super) async fn deliver_job(&self, job: Job) -> anyhow::Result<()> {
        let claim = job.claim();
        let Some(attempt_id) = job.attempt_id else {
            self.finish(self.done(claim, Vec::new())).await;
            return Ok(());
        };
        let now = self.now_ms();
        match self.store.start_attempt(attempt_id, now).await? {
            StartAttempt::Ready { attempt, session } => {
                self.metrics.attempt(&attempt.channel, gateway::SENDING);
                let next_step = session.flow_id.zip(attempt.flow_step);
                let code = self.session_code(&session)?;
                let target = self.stored_target(&attempt, &session).await?;
                match (code, target) {
                    (Some(code), Ok(target)) => {
                        self.deliver(Delivery {
                            job: claim,
                            attempt_id,
                            verification_id: attempt.verification_id,
                            session_id: session.id,
                            next_step,
                            code,
                            target,
                        })
                        .await;
                    }
                    (None, _) => {
                        self.fail_unsent(claim, &attempt, "not sent: the verification ended first")
                            .await
                    }
                    (_, Err(why)) => self.fail_unsent(claim, &attempt, &why).await,
                }
            }
            StartAttempt::Closed { attempt } => {
                self.fail_unsent(claim, &attempt, "not sent: the verification ended first")
                    .await
            }
            StartAttempt::Interrupted { attempt, session } => {
                // The route may or may not have it: never send it twice. The flow goes on, and
                // the receipt timeout settles the report if no receipt can come.
                tracing::warn!(
                    attempt.id = attempt.id,
                    verification.id = %attempt.verification_id,
                    route.name = %attempt.route,
                    "attempt was being handed over when its worker stopped; state unknown"
                );
                self.metrics.attempt(&attempt.channel, gateway::UNKNOWN);
                let sent_ms = attempt.send_ms.unwrap_or(attempt.created_ms);
                let timeout_ms = self
                    .routing
                    .by_name(&attempt.route)
                    .map_or(600_000, |(_, r)| r.receipt_timeout_ms);
                let mut follow_ups = vec![NewJob::receipt_timeout(
                    attempt.id,
                    (sent_ms + timeout_ms).max(now),
                )];
                if let Some(j) = self
                    .flow_follow_up(
                        &session.id,
                        attempt.id,
                        session.flow_id.zip(attempt.flow_step),
                        sent_ms,
                    )
                    .await
                {
                    follow_ups.push(j);
                }
                self.finish(JobOutcome {
                    attempt: Some((
                        attempt.id,
                        AttemptGuard::Gateway(&[gateway::SENDING]),
                        AttemptUpdate {
                            gateway_state: Some(gateway::UNKNOWN.into()),
                            reason: Some(
                                "the gateway stopped while handing it to the route".into(),
                            ),
                            ..AttemptUpdate::default()
                        },
                    )),
                    ..self.done(claim, follow_ups)
                })
                .await;
            }
            StartAttempt::Settled => self.finish(self.done(claim, Vec::new())).await,
        }
        Ok(())
    }

    /// Fails an attempt that never reached its route.
    async fn fail_unsent(&self, claim: JobRef, attempt: &Attempt, why: &str) {
        self.metrics.attempt(&attempt.channel, gateway::FAIL);
        tracing::info!(attempt.id = attempt.id, reason = why, "attempt not sent");
        self.finish(JobOutcome {
            attempt: Some((
                attempt.id,
                AttemptGuard::Gateway(&[gateway::CREATE, gateway::PENDING, gateway::SENDING]),
                AttemptUpdate {
                    gateway_state: Some(gateway::FAIL.into()),
                    report_state: Some(report::FAIL.into()),
                    reason: Some(why.to_string()),
                    done_ms: Some(self.now_ms()),
                    price_micros: Some(0),
                    ..AttemptUpdate::default()
                },
            )),
            ..self.done(claim, Vec::new())
        })
        .await;
    }
}

/// `base` with every field `over` sets.
fn merge(base: AttemptUpdate, over: AttemptUpdate) -> AttemptUpdate {
    AttemptUpdate {
        gateway_state: over.gateway_state.or(base.gateway_state),
        report_state: over.report_state.or(base.report_state),
        reason: over.reason.or(base.reason),
        provider_message_id: over.provider_message_id.or(base.provider_message_id),
        encoding: over.encoding.or(base.encoding),
        segments: over.segments.or(base.segments),
        mnc: over.mnc.or(base.mnc),
        price_micros: over.price_micros.or(base.price_micros),
        rate_micros: over.rate_micros.or(base.rate_micros),
        bill_period: over.bill_period.or(base.bill_period),
        call_duration: over.call_duration.or(base.call_duration),
        charged_duration: over.charged_duration.or(base.charged_duration),
        send_ms: over.send_ms.or(base.send_ms),
        done_ms: over.done_ms.or(base.done_ms),
        ring_ms: over.ring_ms.or(base.ring_ms),
        answer_ms: over.answer_ms.or(base.answer_ms),
        termination_code: over.termination_code.or(base.termination_code),
        route: over.route.or(base.route),
        provider: over.provider.or(base.provider),
        sender: over.sender.or(base.sender),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::CallReport;

    #[test]
    fn a_call_receipt_bills_started_blocks() {
        let r = Receipt {
            delivered: true,
            at_ms: 10_000,
            reason: None,
            mnc: None,
            call: Some(CallReport {
                termination_code: 0,
                ringing_ms: Some(1_000),
                answer_ms: Some(3_000),
                duration_secs: 41,
            }),
        };
        let u = receipt_update(&r, Some("20+20"), Some(15_000));
        assert_eq!(u.charged_duration, Some(60));
        assert_eq!(u.price_micros, Some(45_000));
        assert_eq!(u.reason.as_deref(), Some("answered"));
        assert_eq!(u.report_state.as_deref(), Some(report::SUCCESS));
    }
}
