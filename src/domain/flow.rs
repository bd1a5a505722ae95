//! Task flows: the fallback chain a send follows after its first attempt.

use serde::{Deserialize, Serialize};

use super::Channel;

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

#[cfg(test)]
mod tests {
    use super::*;

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
