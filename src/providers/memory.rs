//! An in-memory provider for tests: it keeps every message it is given and answers as scripted.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{OutboundMessage, Provider, ProviderError, Receipt, Submitted};
use crate::clock::SharedClock;
use crate::domain::Channel;

/// How the provider answers the next submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Accept and report delivered at once.
    Deliver,
    /// Accept, no receipt yet.
    Accept,
    /// Accept and report the delivery failed.
    FailReceipt(String),
    /// Refuse the submit.
    Fail(ProviderError),
}

pub struct MemoryProvider {
    clock: SharedClock,
    sent: Mutex<Vec<OutboundMessage>>,
    script: Mutex<VecDeque<Script>>,
}

impl MemoryProvider {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            sent: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
        }
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
}

#[async_trait]
impl Provider for MemoryProvider {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn supports(&self, channel: Channel) -> bool {
        matches!(channel, Channel::Sms | Channel::Call)
    }

    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        let next = self
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or(Script::Deliver);
        let now_ms = self.clock.now().timestamp_millis();
        let receipt = |delivered: bool, reason: Option<String>| Receipt {
            delivered,
            at_ms: now_ms,
            reason,
            mnc: None,
            call_duration: None,
        };
        let result = match next {
            Script::Deliver => Ok(Some(receipt(true, None))),
            Script::Accept => Ok(None),
            Script::FailReceipt(reason) => Ok(Some(receipt(false, Some(reason)))),
            Script::Fail(e) => Err(e),
        };
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg.clone());
        result.map(|receipt| Submitted {
            message_id: format!("mem-{}", msg.attempt_id),
            receipt,
        })
    }
}
