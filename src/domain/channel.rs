//! Delivery channels.

use std::fmt;

/// How a code reaches the end user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Call,
    /// Silent network authentication.
    Sna,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Call, Channel::Sna];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Call => "call",
            Channel::Sna => "sna",
        }
    }

    /// Parses the wire value; matching is exact (`sms`, `call`, `sna`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sms" => Some(Channel::Sms),
            "call" => Some(Channel::Call),
            "sna" => Some(Channel::Sna),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for c in [Channel::Sms, Channel::Call, Channel::Sna] {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("SMS"), None);
        assert_eq!(Channel::parse(""), None);
    }
}
