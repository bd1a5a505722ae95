//! Rendering an attempt's message, handing it to its route and recording what comes back.

use super::Service;
use crate::domain::Channel;
use crate::domain::code::{self, Code};
use crate::domain::phone::PhoneNumber;
use crate::domain::sms::{self, SmsInfo};
use crate::domain::validate::charged_duration;
use crate::providers::routing::Route;
use crate::providers::{OutboundMessage, ProviderError, VoiceParams, spell_for_voice};
use crate::store::{AttemptUpdate, SendingInfo, Template, gateway, report};

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

/// One attempt to hand to its route.
pub(super) struct Delivery {
    pub attempt_id: i64,
    pub verification_id: String,
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

/// Encoding, segments and price of a message on a route.
fn accounting(channel: Channel, info: &SmsInfo, route: &Route) -> SendingInfo {
    if channel == Channel::Sms {
        SendingInfo {
            encoding: Some(info.encoding.as_str().into()),
            segments: Some(info.segments as i64),
            rate_micros: Some(route.price_per_segment_micros),
            price_micros: Some(route.price_per_segment_micros * info.segments as i64),
            bill_period: None,
        }
    } else {
        SendingInfo {
            rate_micros: Some(route.price_per_call_block_micros),
            bill_period: Some(format!("{}+{}", route.bill_period.0, route.bill_period.1)),
            ..SendingInfo::default()
        }
    }
}

impl Service {
    /// What an attempt will look like on its route, written with the attempt itself.
    pub(super) fn sending_info(&self, target: &DeliveryTarget, code: &Code) -> Option<SendingInfo> {
        let route = self.routing.routes().get(target.route_index)?;
        let (text, _) = render(target, code);
        Some(accounting(target.channel, &sms::analyze(&text), route))
    }

    /// Submits one attempt and records the outcome. Failures are recorded on the attempt (and
    /// surface in the record), never returned to the caller: the send was already accepted.
    ///
    /// The work runs in its own task, so a caller that disconnects after the send was
    /// committed cannot cancel it half-way.
    pub(super) async fn deliver(&self, job: Delivery) {
        let svc = self.clone();
        if let Err(e) = tokio::spawn(async move { svc.deliver_now(job).await }).await {
            tracing::error!(error = %e, "delivery task failed");
        }
    }

    async fn deliver_now(&self, job: Delivery) {
        let Delivery {
            attempt_id,
            verification_id,
            code,
            target,
        } = job;
        let Some(route) = self.routing.routes().get(target.route_index) else {
            tracing::error!(attempt.id = attempt_id, "route vanished before delivery");
            return;
        };
        let (text, voice) = render(&target, &code);
        let info = sms::analyze(&text);
        let acct = accounting(target.channel, &info, route);
        let msg = OutboundMessage {
            attempt_id,
            verification_id: verification_id.clone(),
            channel: target.channel,
            to: target.phone.digits().to_string(),
            sender: target.sender.clone(),
            text,
            voice,
        };
        let started = std::time::Instant::now();
        let result = route.provider.submit(&msg).await;
        // The exact accounting of the text actually sent (a resend may carry another code).
        let mut update = AttemptUpdate {
            encoding: acct.encoding,
            segments: acct.segments,
            rate_micros: acct.rate_micros,
            price_micros: acct.price_micros,
            bill_period: acct.bill_period,
            ..AttemptUpdate::default()
        };
        match result {
            Ok(sub) => {
                update.gateway_state = Some(gateway::SUCCESS.into());
                update.provider_message_id = Some(sub.message_id);
                if let Some(r) = sub.receipt {
                    update.report_state = Some(
                        if r.delivered {
                            report::SUCCESS
                        } else {
                            report::FAIL
                        }
                        .into(),
                    );
                    update.done_ms = Some(r.at_ms);
                    update.reason = r.reason;
                    update.mnc = r.mnc;
                    if let Some(d) = r.call_duration {
                        let charged = charged_duration(d.max(0) as u32, route.bill_period) as i64;
                        let (first, next) = route.bill_period;
                        let blocks = if charged == 0 {
                            0
                        } else {
                            1 + (charged - first as i64) / next as i64
                        };
                        update.call_duration = Some(d);
                        update.charged_duration = Some(charged);
                        update.price_micros = Some(route.price_per_call_block_micros * blocks);
                    }
                }
                tracing::info!(
                    attempt.id = attempt_id,
                    verification.id = %verification_id,
                    route.name = %route.name,
                    provider.latency_ms = started.elapsed().as_millis() as u64,
                    sms.segments = info.segments,
                    "attempt submitted"
                );
            }
            Err(e) => {
                let reason = match &e {
                    ProviderError::Retryable(r) | ProviderError::Permanent(r) => r.clone(),
                };
                update.gateway_state = Some(gateway::FAIL.into());
                update.report_state = Some(report::FAIL.into());
                update.reason = Some(reason);
                update.done_ms = Some(self.now_ms());
                update.price_micros = Some(0);
                tracing::warn!(
                    attempt.id = attempt_id,
                    verification.id = %verification_id,
                    route.name = %route.name,
                    error = %e,
                    "attempt failed"
                );
            }
        }
        if let Err(e) = self.store.update_attempt(attempt_id, &update).await {
            tracing::error!(attempt.id = attempt_id, error = %e, "could not record attempt outcome");
        }
    }
}
