//! An in-memory provider for tests: it keeps every message it is given and answers as
//! scripted, so flows, retries and receipts are tested deterministically.
//!
//! A provider built with [`MemoryProvider::polling`] never pushes receipts: they are set with
//! [`MemoryProvider::set_receipt`] and only learned when the sync job polls.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    CallReport, OutboundMessage, Provider, ProviderError, Receipt, Submitted, termination,
};
use crate::clock::SharedClock;
use crate::domain::Channel;

/// How the provider answers the next submit.
#[derive(Debug, Clone)]
pub enum Script {
    /// Accept and report delivered at once (a call: answered, 5 s of talk).
    Deliver,
    /// Accept, no receipt yet: it comes later (pushed by the test), or never.
    Accept,
    /// Accept and report the delivery failed.
    FailReceipt(String),
    /// Refuse the submit.
    Fail(ProviderError),
    /// A call answered after ringing `ring_secs`, with `talk_secs` of talk.
    Answer { ring_secs: i64, talk_secs: i64 },
    /// A call that rang out unanswered.
    NoAnswer,
    /// Wait inside `submit` until [`MemoryProvider::release`] is called, then deliver.
    Hold,
    /// Wait inside `submit` until [`MemoryProvider::release`], then accept with no receipt
    /// (one may have come in ahead of the answer).
    HoldAccept,
}

pub struct MemoryProvider {
    name: String,
    clock: SharedClock,
    polling: bool,
    sent: Mutex<Vec<OutboundMessage>>,
    script: Mutex<VecDeque<Script>>,
    /// Receipts waiting for a poll, by message id.
    known: Mutex<HashMap<String, Receipt>>,
    held: Arc<Notify>,
}

impl MemoryProvider {
    pub fn new(clock: SharedClock) -> Self {
        Self::named("memory", clock)
    }

    /// A provider whose routes are called `name`.
    pub fn named(name: &str, clock: SharedClock) -> Self {
        Self {
            name: name.to_string(),
            clock,
            polling: false,
            sent: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            known: Mutex::new(HashMap::new()),
            held: Arc::new(Notify::new()),
        }
    }

    /// A provider that cannot push receipts: the sync job must poll it.
    pub fn polling(name: &str, clock: SharedClock) -> Self {
        Self {
            polling: true,
            ..Self::named(name, clock)
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every message submitted so far, oldest first.
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Queues answers for the next submits; when the queue is empty, messages are delivered.
    pub fn push_script(&self, s: Script) {
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(s);
    }

    /// Lets one held submit go on.
    pub fn release(&self) {
        self.held.notify_one();
    }

    /// The message id this provider gave the attempt.
    pub fn message_id(attempt_id: i64) -> String {
        format!("mem-{attempt_id}")
    }

    /// What a poll will report for a message (polling providers).
    pub fn set_receipt(&self, message_id: &str, receipt: Receipt) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(message_id.to_string(), receipt);
    }

    fn receipt(
        &self,
        delivered: bool,
        reason: Option<String>,
        call: Option<CallReport>,
    ) -> Receipt {
        Receipt {
            delivered,
            at_ms: self.clock.now().timestamp_millis(),
            reason,
            mnc: None,
            call,
        }
    }
}

#[async_trait]
impl Provider for MemoryProvider {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn supports(&self, channel: Channel) -> bool {
        matches!(channel, Channel::Sms | Channel::Call)
    }

    fn polls_receipts(&self) -> bool {
        self.polling
    }

    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        let next = self
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or(Script::Deliver);
        if matches!(next, Script::Hold | Script::HoldAccept) {
            self.held.notified().await;
        }
        let now_ms = self.clock.now().timestamp_millis();
        let is_call = msg.channel == Channel::Call;
        let answered = |ring_secs: i64, talk_secs: i64| CallReport {
            termination_code: termination::ANSWERED,
            ringing_ms: Some(now_ms - (ring_secs + talk_secs) * 1000),
            answer_ms: Some(now_ms - talk_secs * 1000),
            duration_secs: talk_secs,
        };
        let result = match next {
            Script::Deliver | Script::Hold => Ok(Some(self.receipt(
                true,
                None,
                is_call.then(|| answered(0, 5)),
            ))),
            Script::Accept | Script::HoldAccept => Ok(None),
            Script::FailReceipt(reason) => Ok(Some(self.receipt(false, Some(reason), None))),
            Script::Fail(e) => Err(e),
            Script::Answer {
                ring_secs,
                talk_secs,
            } => Ok(Some(self.receipt(
                true,
                None,
                Some(answered(ring_secs, talk_secs)),
            ))),
            Script::NoAnswer => Ok(Some(self.receipt(
                false,
                Some(termination::reason(termination::NO_ANSWER).into()),
                Some(CallReport {
                    termination_code: termination::NO_ANSWER,
                    ringing_ms: Some(now_ms),
                    answer_ms: None,
                    duration_secs: 0,
                }),
            ))),
        };
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg.clone());
        // A polling provider only tells what it knows when asked.
        let result = if self.polling {
            result.map(|r| {
                if let Some(r) = r {
                    self.set_receipt(&Self::message_id(msg.attempt_id), r);
                }
                None
            })
        } else {
            result
        };
        result.map(|receipt| Submitted {
            message_id: Self::message_id(msg.attempt_id),
            receipt,
            outbox: None,
        })
    }

    async fn poll_receipts(
        &self,
        message_ids: &[String],
    ) -> Result<Vec<(String, Receipt)>, ProviderError> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        Ok(message_ids
            .iter()
            .filter_map(|id| known.remove(id).map(|r| (id.clone(), r)))
            .collect())
    }
}
