//! Delivery back doors: one trait, several implementations.
//!
//! A provider takes one rendered message and answers with its message id, or a classified
//! error (a retry may help, or it will not). Providers that learn the delivery outcome at once
//! (console) return the receipt with the submission. Others deliver it later: pushed as an
//! event into [`crate::service::Service::on_receipt`], or, for providers that can only be
//! asked, fetched by the sync job through [`Provider::poll_receipts`].

pub mod console;
pub mod memory;
pub mod routing;

use async_trait::async_trait;

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
