//! The console provider: for development. It prints each message to the server's terminal,
//! keeps it in the outbox (`otpgate outbox`; the row is written with the attempt's outcome),
//! and reports it delivered at once.
//! Production mode refuses it.

use async_trait::async_trait;

use super::{
    CallReport, OutboundMessage, Provider, ProviderError, Receipt, Submitted, termination,
};
use crate::clock::SharedClock;
use crate::domain::Channel;
use crate::store::OutboxEntry;

pub struct ConsoleProvider {
    clock: SharedClock,
    /// Print to stdout (off in tests, which read the outbox instead).
    print: bool,
}

impl ConsoleProvider {
    pub fn new(clock: SharedClock, print: bool) -> Self {
        Self { clock, print }
    }
}

#[async_trait]
impl Provider for ConsoleProvider {
    fn kind(&self) -> &'static str {
        "console"
    }

    fn supports(&self, channel: Channel) -> bool {
        matches!(channel, Channel::Sms | Channel::Call)
    }

    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        let now = self.clock.now();
        if self.print {
            let what = match (&msg.channel, &msg.voice) {
                (Channel::Call, Some(v)) => format!(
                    "call to +{} (language {}, rate {}, repeat {}×, max {} s) would say",
                    msg.to, v.language, v.speech_rate, v.repeat_cnt, v.max_duration
                ),
                _ => format!(
                    "{} to +{} from {}",
                    msg.channel,
                    msg.to,
                    msg.sender.as_deref().unwrap_or("-")
                ),
            };
            // One write for the three lines: stdout flushes at every newline otherwise.
            let block = format!(
                "[console] {} {what}:\n[console]   {}\n[console]   (verificationId {})\n",
                now.format("%H:%M:%S"),
                msg.text,
                msg.verification_id
            );
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), block.as_bytes());
        }
        Ok(Submitted {
            message_id: format!("console-{}", msg.attempt_id),
            receipt: Some(Receipt {
                delivered: true,
                at_ms: now.timestamp_millis(),
                reason: None,
                mnc: None,
                call: msg.voice.as_ref().map(|v| {
                    let talk = spoken_secs(&msg.text, v.repeat_cnt, v.max_duration);
                    CallReport {
                        termination_code: termination::ANSWERED,
                        ringing_ms: Some(now.timestamp_millis()),
                        answer_ms: Some(now.timestamp_millis()),
                        duration_secs: talk,
                    }
                }),
            }),
            // Written with the attempt's outcome, in the same transaction.
            outbox: Some(OutboxEntry {
                id: 0,
                at_ms: now.timestamp_millis(),
                channel: msg.channel.as_str().to_string(),
                to: msg.to.clone(),
                sender: msg.sender.clone(),
                text: msg.text.clone(),
                verification_id: msg.verification_id.clone(),
                attempt_id: Some(msg.attempt_id),
            }),
        })
    }
}

/// How long speaking `text` `repeat` times takes, roughly (15 characters a second), within
/// the call's `max_duration`: the console's stand-in for a real call's talk time.
fn spoken_secs(text: &str, repeat: i64, max_duration: i64) -> i64 {
    let chars = text.chars().count() as i64 * repeat.max(1);
    ((chars + 14) / 15).clamp(1, max_duration.max(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn spoken_time_is_bounded_by_the_maximum() {
        assert_eq!(super::spoken_secs("1, 2, 3, 4", 1, 59), 1);
        assert_eq!(super::spoken_secs(&"x".repeat(150), 2, 59), 20);
        assert_eq!(super::spoken_secs(&"x".repeat(1500), 3, 59), 59);
    }
}
