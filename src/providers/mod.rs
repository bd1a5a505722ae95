//! Delivery back doors: one trait, several implementations.
//!
//! A provider takes one rendered message and answers with its message id, or a classified
//! error (a retry may help, or it will not). Providers that learn the delivery outcome at once
//! (console) return the receipt with the submission. Others deliver it later: pushed as an
//! event into [`crate::service::Service::on_receipt`], or, for providers that can only be
//! asked, fetched by the sync job through [`Provider::poll_receipts`].

pub mod console;
pub mod http_util;
pub mod kannel;
pub mod memory;
pub mod routing;
pub mod smpp;
pub mod twilio;
pub mod vonage;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::HeaderMap;

use crate::clock::SharedClock;
use crate::domain::Channel;

/// Voice settings from the template, handed to call-capable providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceParams {
    pub language: String,
    pub speech_rate: i64,
    pub repeat_cnt: i64,
    pub max_duration: i64,
}

/// One message for one attempt.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub attempt_id: i64,
    pub verification_id: String,
    pub channel: Channel,
    /// E.164 digits without '+'.
    pub to: String,
    pub sender: Option<String>,
    /// The SMS text, or for a call the words to speak (digits spelled out).
    pub text: String,
    pub voice: Option<VoiceParams>,
}

impl std::fmt::Debug for OutboundMessage {
    /// Never prints the text (it holds the code) nor the full number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("attempt_id", &self.attempt_id)
            .field("verification_id", &self.verification_id)
            .field("channel", &self.channel)
            .field("to", &crate::domain::phone::mask_digits(&self.to))
            .finish_non_exhaustive()
    }
}

/// The carrier's verdict on a message. For a call, `delivered` means answered and `at_ms` is
/// the hang-up time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub delivered: bool,
    pub at_ms: i64,
    pub reason: Option<String>,
    pub mnc: Option<i64>,
    pub call: Option<CallReport>,
}

/// How a call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport {
    /// 0 answered; anything else a failure (see [`termination`]).
    pub termination_code: i64,
    pub ringing_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    /// Talk time, seconds.
    pub duration_secs: i64,
}

/// Termination codes of calls, as the call record shows them.
pub mod termination {
    pub const ANSWERED: i64 = 0;
    pub const NO_ANSWER: i64 = 1;
    pub const BUSY: i64 = 2;
    pub const FAILED: i64 = 3;

    /// The record's text for a code.
    pub fn reason(code: i64) -> &'static str {
        match code {
            ANSWERED => "answered",
            NO_ANSWER => "no answer",
            BUSY => "busy",
            _ => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub message_id: String,
    pub receipt: Option<Receipt>,
    /// A console outbox row, written in the same transaction as the attempt's outcome.
    pub outbox: Option<crate::store::OutboxEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The route may take it later (throttled, timed out, unreachable).
    #[error("retryable: {0}")]
    Retryable(String),
    /// The route refused it for good (bad number, rejected content, auth).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Which attempt a receipt is about: the provider's message id (SMPP, Twilio SIDs), or the
/// attempt id otpgate put into the callback itself (Kannel's dlr-url, Vonage's client-ref).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReceiptKey {
    Message(String),
    Attempt(i64),
}

/// A receipt pushed by a route's connection or hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptEvent {
    pub route: String,
    pub key: ReceiptKey,
    pub receipt: Receipt,
}

/// Where providers push receipts that arrive on their own connections (SMPP `deliver_sm`).
/// The server applies them in order; a receipt for a message whose submit has not been
/// recorded yet (it arrived before the `submit_sm_resp`) is held and applied once it has.
#[derive(Clone)]
pub struct ReceiptSink(tokio::sync::mpsc::UnboundedSender<ReceiptEvent>);

impl ReceiptSink {
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<ReceiptEvent>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Hands a receipt over. Returns false only when the server is gone.
    pub fn push(&self, event: ReceiptEvent) -> bool {
        self.0.send(event).is_ok()
    }
}

/// What a route's provider is built with besides its own configuration.
#[derive(Clone)]
pub struct ProviderContext {
    /// The route's name (receipts are keyed by it).
    pub route: String,
    pub clock: SharedClock,
    pub receipts: ReceiptSink,
    /// The absolute URL of this route's hook as the upstream must call it, e.g.
    /// `https://otp.example.com/hooks/twilio-eu` (from `public_url`). Providers append their
    /// own query (an attempt reference) to it.
    pub hook_url: String,
    /// A shared HTTP client (connection pools, TLS).
    pub http: reqwest::Client,
}

/// A callback from an upstream to `/hooks/{route}` (any method, any sub-path).
#[derive(Debug, Clone)]
pub struct HookRequest {
    pub method: String,
    /// The URL the upstream called, rebuilt from `public_url` + path + query: the exact
    /// string signatures such as `X-Twilio-Signature` are computed over.
    pub url: String,
    /// The path below `/hooks/{route}`, e.g. `` or `/voice`.
    pub subpath: String,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HookRequest {
    /// The first query parameter with this name.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer to a hook: what to reply to the upstream, and the receipts it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub receipts: Vec<(ReceiptKey, Receipt)>,
}

impl HookReply {
    /// `200 OK` (plain text) with these receipts.
    pub fn ok(receipts: Vec<(ReceiptKey, Receipt)>) -> Self {
        Self {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: "OK".into(),
            receipts,
        }
    }
}

/// Why a hook call was refused; the HTTP layer answers 401/403 or 400 with the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// Missing or wrong signature / credentials: 403.
    #[error("{0}")]
    Forbidden(String),
    /// Unreadable or incomplete callback: 400.
    #[error("{0}")]
    BadRequest(String),
    /// This route takes no callbacks: 404.
    #[error("this route takes no callbacks")]
    NotFound,
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for logs and records, e.g. `console`.
    fn kind(&self) -> &'static str;
    fn supports(&self, channel: Channel) -> bool;
    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError>;

    /// Whether receipts must be asked for (the sync job polls this route) rather than pushed.
    fn polls_receipts(&self) -> bool {
        false
    }

    /// The receipts now known for these message ids; ids without news are left out.
    async fn poll_receipts(
        &self,
        _message_ids: &[String],
    ) -> Result<Vec<(String, Receipt)>, ProviderError> {
        Ok(Vec::new())
    }

    /// A callback to this route's hook (delivery reports, call status). Checks the caller
    /// (signature or credentials) before believing anything in it.
    async fn hook(&self, _req: &HookRequest) -> Result<HookReply, HookError> {
        Err(HookError::NotFound)
    }

    /// Whether the route is up (e.g. an SMPP bind is established). Routing prefers healthy
    /// routes; `/readyz` and metrics show it.
    fn is_up(&self) -> bool {
        true
    }

    /// Stops background connections (SMPP binds: unbind) at shutdown.
    async fn close(&self) {}
}

/// Spells a code out for speech: `4821` → `4, 8, 2, 1`.
pub fn spell_for_voice(code: &str) -> String {
    code.chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_digits() {
        assert_eq!(spell_for_voice("0482"), "0, 4, 8, 2");
    }

    #[test]
    fn debug_hides_text_and_number() {
        let m = OutboundMessage {
            attempt_id: 1,
            verification_id: "v".into(),
            channel: Channel::Sms,
            to: "919856321412".into(),
            sender: None,
            text: "1234 is your code".into(),
            voice: None,
        };
        let d = format!("{m:?}");
        assert!(!d.contains("1234 is"));
        assert!(!d.contains("919856321412"));
    }
}
