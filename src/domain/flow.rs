//! Task flows: the fallback chain a send follows after its first attempt.

use serde::{Deserialize, Serialize};

use super::Channel;
use super::session::{SessionState, SessionStatus};

/// One step of a flow, as stored and echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowNode {
    /// Seconds after the previous attempt was submitted, 30–120.
    pub waiting_time: i64,
    /// 1 = the previous attempt failed / is not confirmed delivered, 2 = not yet verified.
    pub status: i64,
    pub channel: FlowChannel,
    /// 0 = use a different route, 1 = the same route.
    pub channel_cut: i64,
}

/// Flows step on SMS or voice only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowChannel {
    Sms,
    Call,
}

impl From<FlowChannel> for Channel {
    fn from(c: FlowChannel) -> Self {
        match c {
            FlowChannel::Sms => Channel::Sms,
            FlowChannel::Call => Channel::Call,
        }
    }
}

/// Most nodes one flow may have.
pub const MAX_NODES: usize = 10;

/// A node field that broke a rule: `(field, reason)`.
pub type NodeError = (&'static str, &'static str);

/// Builds a node from wire values, checking each rule.
pub fn node_from_parts(
    waiting_time: Option<i64>,
    status: Option<i64>,
    channel: Option<&str>,
    channel_cut: Option<i64>,
) -> Result<FlowNode, NodeError> {
    let waiting_time = waiting_time.ok_or(("waitingTime", "is required"))?;
    if !(30..=120).contains(&waiting_time) {
        return Err(("waitingTime", "must be 30-120 seconds"));
    }
    let status = status.ok_or(("status", "is required"))?;
    if !(1..=2).contains(&status) {
        return Err(("status", "must be 1 (send failure) or 2 (not verified)"));
    }
    let channel = match channel.ok_or(("channel", "is required"))? {
        "sms" => FlowChannel::Sms,
        "call" => FlowChannel::Call,
        _ => return Err(("channel", "must be sms or call")),
    };
    let channel_cut = channel_cut.unwrap_or(0);
    if !(0..=1).contains(&channel_cut) {
        return Err(("channelCut", "must be 0 (switch route) or 1 (same route)"));
    }
    Ok(FlowNode {
        waiting_time,
        status,
        channel,
        channel_cut,
    })
}

/// What a flow node does when its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDecision {
    /// Send the session's code again on the node's channel.
    Send,
    /// The flow is over; nothing is sent.
    End(StepEnd),
}

/// Why a flow ended at a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    Verified,
    Locked,
    Expired,
    /// `status` 1 and the previous attempt was confirmed delivered.
    Delivered,
}

impl StepEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            StepEnd::Verified => "verified",
            StepEnd::Locked => "locked",
            StepEnd::Expired => "expired",
            StepEnd::Delivered => "delivered",
        }
    }
}

/// Decides a node when it fires (contract decision 12): a verified, locked or expired session
/// ends the flow; `status` 1 sends again unless the previous attempt is confirmed delivered;
/// `status` 2 sends again while the session is unverified.
pub fn decide_step(
    node: &FlowNode,
    session: &SessionState,
    now_ms: i64,
    previous_delivered: bool,
) -> StepDecision {
    match session.status {
        SessionStatus::Verified => return StepDecision::End(StepEnd::Verified),
        SessionStatus::Locked => return StepDecision::End(StepEnd::Locked),
        SessionStatus::Pending => {}
    }
    if now_ms >= session.expires_at_ms {
        return StepDecision::End(StepEnd::Expired);
    }
    match node.status {
        1 if previous_delivered => StepDecision::End(StepEnd::Delivered),
        _ => StepDecision::Send,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(status: SessionStatus) -> SessionState {
        SessionState {
            status,
            wrong_attempts: 0,
            expires_at_ms: 1_000,
            submitted: true,
        }
    }

    #[test]
    fn step_decisions_follow_the_contract() {
        let s1 = node_from_parts(Some(30), Some(1), Some("sms"), None).unwrap();
        let s2 = node_from_parts(Some(30), Some(2), Some("call"), None).unwrap();
        let open = session(SessionStatus::Pending);
        assert_eq!(decide_step(&s1, &open, 0, false), StepDecision::Send);
        assert_eq!(
            decide_step(&s1, &open, 0, true),
            StepDecision::End(StepEnd::Delivered)
        );
        // status 2 ignores delivery: only verification stops it.
        assert_eq!(decide_step(&s2, &open, 0, true), StepDecision::Send);
        for (status, end) in [
            (SessionStatus::Verified, StepEnd::Verified),
            (SessionStatus::Locked, StepEnd::Locked),
        ] {
            for n in [&s1, &s2] {
                assert_eq!(
                    decide_step(n, &session(status), 0, false),
                    StepDecision::End(end)
                );
            }
        }
        assert_eq!(
            decide_step(&s2, &open, 1_000, false),
            StepDecision::End(StepEnd::Expired)
        );
    }

    #[test]
    fn valid_node() {
        let n = node_from_parts(Some(30), Some(1), Some("sms"), None).unwrap();
        assert_eq!(n.channel_cut, 0);
        assert_eq!(Channel::from(n.channel), Channel::Sms);
    }

    #[test]
    fn each_rule() {
        assert_eq!(
            node_from_parts(None, Some(1), Some("sms"), None)
                .unwrap_err()
                .0,
            "waitingTime"
        );
        assert_eq!(
            node_from_parts(Some(29), Some(1), Some("sms"), None)
                .unwrap_err()
                .0,
            "waitingTime"
        );
        assert_eq!(
            node_from_parts(Some(121), Some(1), Some("sms"), None)
                .unwrap_err()
                .0,
            "waitingTime"
        );
        assert_eq!(
            node_from_parts(Some(30), Some(3), Some("sms"), None)
                .unwrap_err()
                .0,
            "status"
        );
        assert_eq!(
            node_from_parts(Some(30), Some(1), Some("sna"), None)
                .unwrap_err()
                .0,
            "channel"
        );
        assert_eq!(
            node_from_parts(Some(30), Some(1), Some("sms"), Some(2))
                .unwrap_err()
                .0,
            "channelCut"
        );
    }

    #[test]
    fn serializes_in_wire_case() {
        let n = node_from_parts(Some(60), Some(2), Some("call"), Some(1)).unwrap();
        let v = serde_json::to_value(n).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"waitingTime":60,"status":2,"channel":"call","channelCut":1})
        );
    }
}
