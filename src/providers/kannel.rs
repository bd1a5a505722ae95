//! Kannel routes: `sendsms` with a dlr-url pointing at this route's hook.
//!
//! Kannel's sendsms answers `202 0: Accepted for delivery` (or `3: Queued for later delivery`)
//! without an id of its own, so the dlr-url carries ours: `?ref=<attempt id>`. Kannel calls it
//! with GET, filling in `%d` (report type: 1 delivered, 2 failed, 4 buffered, 8 SMSC ack,
//! 16 SMSC reject), `%F` (the SMSC's message id), `%A` (the raw receipt text,
//! `id:… stat:DELIVRD err:000 …`) and `%T` (the report's time, UNIX seconds).
//!
//! With `hook_token` set, the dlr-url also carries `&token=…` and the hook refuses calls
//! without it (compared in constant time). Without it the hook believes anyone who can reach
//! it and guess an attempt id: it is then only as safe as the network between Kannel and
//! otpgate (keep it private, or set a token).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::http_util::{self, ct_eq};
use super::{
    HookError, HookReply, HookRequest, OutboundMessage, Provider, ProviderContext, ProviderError,
    Receipt, ReceiptKey, Submitted,
};
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::domain::Channel;
use crate::domain::sms::{Encoding, analyze};

/// `[routes.kannel]`: a Kannel smsbox's sendsms interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KannelConfig {
    /// e.g. `http://127.0.0.1:13013/cgi-bin/sendsms`.
    pub url: String,
    /// A `sendsms-user` of the smsbox.
    pub username: String,
    /// That user's password (`env:NAME` reads it from the environment).
    pub password: Secret,
    /// Kannel `smsc` to force, if any.
    pub smsc: Option<String>,
    /// A shared secret Kannel's dlr-url carries back (`&token=`), checked by the hook.
    pub hook_token: Option<Secret>,
    /// Which delivery reports Kannel should send (`dlr-mask`): 31 (default) asks for all of
    /// delivered (1), failed (2), buffered (4), SMSC ack (8) and SMSC reject (16).
    #[serde(default = "default_dlr_mask")]
    pub dlr_mask: u8,
    /// How long one sendsms request may take in all, seconds (default 15).
    #[serde(default = "http_util::default_timeout")]
    pub timeout_secs: u64,
}

fn default_dlr_mask() -> u8 {
    31
}

const SECTION: &str = "kannel";

impl KannelConfig {
    /// What is wrong with this section, each problem naming `routes.<route>.kannel.<field>`.
    pub fn problems(&self, route: &str) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(http_util::url_problem(route, SECTION, "url", &self.url));
        p.extend(http_util::required_problem(
            route,
            SECTION,
            "username",
            &self.username,
        ));
        p.extend(http_util::secret_problem(
            route,
            SECTION,
            "password",
            &self.password,
        ));
        if let Some(t) = &self.hook_token {
            p.extend(http_util::secret_problem(route, SECTION, "hook_token", t));
        }
        if self.dlr_mask == 0 || self.dlr_mask > 31 {
            p.push(format!(
                "routes.{route}.kannel.dlr_mask = {} must be between 1 and 31 (31: every report)",
                self.dlr_mask
            ));
        } else if self.dlr_mask & 3 != 3 {
            p.push(format!(
                "routes.{route}.kannel.dlr_mask = {} must include 1 (delivered) and 2 (failed)",
                self.dlr_mask
            ));
        }
        if let Some(smsc) = &self.smsc
            && smsc.trim().is_empty()
        {
            p.push(format!(
                "routes.{route}.kannel.smsc is empty: remove it or name an smsc-id"
            ));
        }
        p
    }
}

pub fn build(cfg: &KannelConfig, ctx: ProviderContext) -> anyhow::Result<Arc<dyn Provider>> {
    let password = http_util::resolve(&cfg.password, &ctx.route, SECTION, "password")?;
    let hook_token = match &cfg.hook_token {
        Some(t) => Some(http_util::resolve(t, &ctx.route, SECTION, "hook_token")?),
        None => None,
    };
    Ok(Arc::new(KannelProvider {
        route: ctx.route,
        url: cfg.url.clone(),
        username: cfg.username.clone(),
        password,
        smsc: cfg.smsc.clone(),
        hook_token,
        dlr_mask: cfg.dlr_mask,
        hook_url: ctx.hook_url,
        clock: ctx.clock,
        http: ctx.http,
        timeout: std::time::Duration::from_secs(cfg.timeout_secs.max(1)),
    }))
}

struct KannelProvider {
    route: String,
    url: String,
    username: String,
    password: String,
    smsc: Option<String>,
    hook_token: Option<String>,
    dlr_mask: u8,
    hook_url: String,
    clock: SharedClock,
    http: reqwest::Client,
    /// Bound on one request (the shared client has the connect timeout).
    timeout: std::time::Duration,
}

/// The message id otpgate records for a Kannel submit (Kannel returns none of its own).
pub fn message_id(attempt_id: i64) -> String {
    format!("kannel-{attempt_id}")
}

impl KannelProvider {
    /// The dlr-url: the hook with our reference and Kannel's placeholders. The placeholders
    /// stay literal here; reqwest URL-encodes the whole dlr-url as one parameter, and Kannel
    /// decodes it, substitutes (URL-encoding the values) and calls it.
    fn dlr_url(&self, attempt_id: i64) -> String {
        let mut url = format!(
            "{}{}ref={attempt_id}&type=%d&fid=%F&ts=%T&reply=%A",
            self.hook_url,
            http_util::query_sep(&self.hook_url)
        );
        if let Some(t) = &self.hook_token {
            url = http_util::with_query(&url, &[("token", t)]);
        }
        url
    }
}

#[async_trait]
impl Provider for KannelProvider {
    fn kind(&self) -> &'static str {
        "kannel"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Sms
    }

    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        let dlr_url = self.dlr_url(msg.attempt_id);
        let mask = self.dlr_mask.to_string();
        let mut q: Vec<(&str, &str)> = vec![
            ("username", &self.username),
            ("password", &self.password),
            ("to", &msg.to),
            ("text", &msg.text),
            // Kannel converts from this charset to what the SMSC wants.
            ("charset", "UTF-8"),
            ("dlr-mask", &mask),
            ("dlr-url", &dlr_url),
        ];
        if let Some(from) = msg.sender.as_deref() {
            q.push(("from", from));
        }
        if analyze(&msg.text).encoding == Encoding::Ucs2 {
            q.push(("coding", "2"));
        }
        if let Some(smsc) = self.smsc.as_deref() {
            q.push(("smsc", smsc));
        }
        http_util::submit(
            self.http.get(&self.url).query(&q).timeout(self.timeout),
            &self.route,
            msg,
            "kannel",
            |status, body| {
                classify(status, &http_util::snippet(body)).map(|()| message_id(msg.attempt_id))
            },
        )
        .await
    }

    async fn hook(&self, req: &HookRequest) -> Result<HookReply, HookError> {
        if let Some(token) = &self.hook_token {
            let given = req.query_param("token").unwrap_or_default();
            if !ct_eq(given.as_bytes(), token.as_bytes()) {
                tracing::warn!(route.name = %self.route, "kannel report with a wrong or missing token refused");
                return Err(HookError::Forbidden("wrong or missing token".into()));
            }
        }
        let attempt_id: i64 = req
            .query_param("ref")
            .and_then(|r| r.trim().parse().ok())
            .ok_or_else(|| HookError::BadRequest("missing or bad ref".into()))?;
        let dlr_type: u32 = req
            .query_param("type")
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| HookError::BadRequest("missing or bad type".into()))?;
        let reply = req.query_param("reply").unwrap_or_default();
        let at_ms = req
            .query_param("ts")
            .and_then(|t| t.trim().parse::<i64>().ok())
            .filter(|t| *t > 0)
            .map(|t| t * 1000)
            .unwrap_or_else(|| http_util::now_ms(&self.clock));
        tracing::info!(
            route.name = %self.route,
            attempt.id = attempt_id,
            dlr.kind = dlr_type,
            smsc.message_id = req.query_param("fid").unwrap_or_default(),
            "kannel delivery report"
        );
        let receipts = match dlr_outcome(dlr_type, reply) {
            Some((delivered, reason)) => vec![(
                ReceiptKey::Attempt(attempt_id),
                Receipt {
                    delivered,
                    at_ms,
                    reason,
                    mnc: None,
                    call: None,
                },
            )],
            None => Vec::new(),
        };
        Ok(HookReply::ok(receipts))
    }
}

/// Kannel's sendsms answer: accepted, or why not (retryable or not).
fn classify(status: u16, answer: &str) -> Result<(), ProviderError> {
    let lower = answer.to_ascii_lowercase();
    let text = if answer.is_empty() {
        format!("kannel answered HTTP {status}")
    } else {
        format!("kannel: {answer} (HTTP {status})")
    };
    if (200..300).contains(&status) {
        if lower.contains("accepted") || lower.contains("queued") {
            return Ok(());
        }
        // It may have been sent: no retry (at most once), but no success either.
        return Err(ProviderError::Permanent(format!(
            "unexpected answer, {text}"
        )));
    }
    if http_util::status_is_retryable(status) || lower.contains("queue full") {
        Err(ProviderError::Retryable(text))
    } else {
        Err(ProviderError::Permanent(text))
    }
}

/// What a report of this type says: `Some((delivered, reason))` when final, `None` for the
/// intermediate ones (buffered, SMSC ack) and types otpgate does not know.
pub fn dlr_outcome(dlr_type: u32, reply: &str) -> Option<(bool, Option<String>)> {
    match dlr_type {
        1 => Some((true, None)),
        2 => Some((false, Some(failure_reason(reply, "delivery failed")))),
        16 => Some((false, Some(failure_reason(reply, "SMSC reject")))),
        _ => None,
    }
}

/// `stat:UNDELIV err:001` from a receipt text, or `fallback` when it has neither.
fn failure_reason(reply: &str, fallback: &str) -> String {
    let field = |name: &str| {
        reply
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    match (field("stat:"), field("err:")) {
        (Some(s), Some(e)) => format!("{fallback}: {s} err:{e}"),
        (Some(s), None) => format!("{fallback}: {s}"),
        (None, Some(e)) => format!("{fallback}: err:{e}"),
        (None, None) => fallback.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_types_map_to_outcomes() {
        assert_eq!(
            dlr_outcome(1, "id:1 stat:DELIVRD err:000"),
            Some((true, None))
        );
        assert_eq!(
            dlr_outcome(
                2,
                "id:1 sub:001 dlvrd:000 submit date:2401010000 done date:2401010000 stat:UNDELIV err:001 text:x"
            ),
            Some((false, Some("delivery failed: UNDELIV err:001".into())))
        );
        assert_eq!(
            dlr_outcome(2, ""),
            Some((false, Some("delivery failed".into())))
        );
        assert_eq!(
            dlr_outcome(16, "NACK/0x0000000b/Invalid Destination Address"),
            Some((false, Some("SMSC reject".into())))
        );
        assert_eq!(dlr_outcome(4, ""), None);
        assert_eq!(dlr_outcome(8, "ACK/"), None);
    }

    #[test]
    fn sendsms_answers_are_classified() {
        assert!(classify(202, "0: Accepted for delivery").is_ok());
        assert!(classify(202, "3: Queued for later delivery").is_ok());
        assert!(matches!(
            classify(403, "Authorization failed for sendsms"),
            Err(ProviderError::Permanent(t)) if t.contains("Authorization failed")
        ));
        assert!(matches!(
            classify(503, "Sendsms is disabled"),
            Err(ProviderError::Retryable(_))
        ));
        assert!(matches!(
            classify(400, "4: Message queue full"),
            Err(ProviderError::Retryable(_))
        ));
        assert!(matches!(
            classify(200, "something else"),
            Err(ProviderError::Permanent(_))
        ));
    }

    #[test]
    fn problems_name_the_fields() {
        let cfg: KannelConfig = serde_json::from_value(serde_json::json!({
            "url": "ftp://x", "username": "", "password": "env:OTPGATE_SURELY_UNSET_KANNEL",
            "dlr_mask": 4
        }))
        .unwrap();
        let p = cfg.problems("k1").join("\n");
        assert!(p.contains("routes.k1.kannel.url"), "{p}");
        assert!(p.contains("routes.k1.kannel.username"), "{p}");
        assert!(p.contains("routes.k1.kannel.password"), "{p}");
        assert!(p.contains("routes.k1.kannel.dlr_mask"), "{p}");
        let ok: KannelConfig = serde_json::from_value(serde_json::json!({
            "url": "http://127.0.0.1:13013/cgi-bin/sendsms", "username": "u", "password": "p"
        }))
        .unwrap();
        assert!(ok.problems("k1").is_empty());
        assert_eq!(ok.dlr_mask, 31);
    }
}
