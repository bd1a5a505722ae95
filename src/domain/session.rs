//! The verification session state machine.
//!
//! A session is one code sent to one number; resends add verification ids to it. It is
//! `Pending` until a correct code consumes it (`Verified`) or the wrong-code budget is spent
//! (`Locked`). Expiry is a function of time, not a stored state.

/// Wrong codes a session tolerates; the fifth wrong code locks it.
pub const MAX_WRONG_CODES: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Pending,
    Verified,
    Locked,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Pending => "pending",
            SessionStatus::Verified => "verified",
            SessionStatus::Locked => "locked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(SessionStatus::Pending),
            "verified" => Some(SessionStatus::Verified),
            "locked" => Some(SessionStatus::Locked),
            _ => None,
        }
    }
}

/// What verify needs to know about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub status: SessionStatus,
    pub wrong_attempts: i64,
    pub expires_at_ms: i64,
    /// Whether any attempt of the session has been handed to a route.
    pub submitted: bool,
}

/// The verdict of one verify call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Correct code: the session is consumed now. `matched` 0.
    Matched,
    /// Nothing has been submitted yet, so no code can be known. `matched` 1.
    NotSubmitted,
    /// Wrong code; `locked_now` when this one spent the budget. `matched` 2.
    Wrong { locked_now: bool },
    /// Already consumed. `matched` 4.
    AlreadyVerified,
    /// The code's validity has passed. `matched` 5.
    Expired,
    /// The wrong-code budget was spent before this call.
    Locked,
}

impl VerifyOutcome {
    /// The Buka `matched` value.
    pub fn matched(self) -> i64 {
        match self {
            VerifyOutcome::Matched => 0,
            VerifyOutcome::NotSubmitted => 1,
            VerifyOutcome::Wrong { .. } | VerifyOutcome::Locked => 2,
            VerifyOutcome::AlreadyVerified => 4,
            VerifyOutcome::Expired => 5,
        }
    }
}

/// Decides a verify. `code_matches` is the constant-time comparison of the typed code's hash.
/// Order: locked, verified, expired, not yet submitted, then the code itself.
pub fn decide_verify(state: &SessionState, now_ms: i64, code_matches: bool) -> VerifyOutcome {
    match state.status {
        SessionStatus::Locked => return VerifyOutcome::Locked,
        SessionStatus::Verified => return VerifyOutcome::AlreadyVerified,
        SessionStatus::Pending => {}
    }
    if now_ms >= state.expires_at_ms {
        return VerifyOutcome::Expired;
    }
    if !state.submitted {
        return VerifyOutcome::NotSubmitted;
    }
    if code_matches {
        VerifyOutcome::Matched
    } else {
        VerifyOutcome::Wrong {
            locked_now: state.wrong_attempts + 1 >= MAX_WRONG_CODES,
        }
    }
}

/// The `matched` shown in records: 0 verified, 2 locked (verification failed),
/// 1 nothing submitted yet, -1 not yet verified.
pub fn record_matched(state: &SessionState) -> i64 {
    match state.status {
        SessionStatus::Verified => 0,
        SessionStatus::Locked => 2,
        SessionStatus::Pending if !state.submitted => 1,
        SessionStatus::Pending => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(wrong: i64) -> SessionState {
        SessionState {
            status: SessionStatus::Pending,
            wrong_attempts: wrong,
            expires_at_ms: 1_000,
            submitted: true,
        }
    }

    #[test]
    fn correct_code_matches() {
        assert_eq!(decide_verify(&pending(0), 10, true), VerifyOutcome::Matched);
        assert_eq!(decide_verify(&pending(4), 10, true), VerifyOutcome::Matched);
    }

    #[test]
    fn fifth_wrong_code_locks() {
        for wrong in 0..4 {
            assert_eq!(
                decide_verify(&pending(wrong), 10, false),
                VerifyOutcome::Wrong { locked_now: false }
            );
        }
        assert_eq!(
            decide_verify(&pending(4), 10, false),
            VerifyOutcome::Wrong { locked_now: true }
        );
    }

    #[test]
    fn terminal_states_win_over_the_code() {
        let mut s = pending(5);
        s.status = SessionStatus::Locked;
        assert_eq!(decide_verify(&s, 10, true), VerifyOutcome::Locked);
        s.status = SessionStatus::Verified;
        assert_eq!(decide_verify(&s, 10, true), VerifyOutcome::AlreadyVerified);
        assert_eq!(
            decide_verify(&s, 10_000, true),
            VerifyOutcome::AlreadyVerified
        );
    }

    #[test]
    fn expiry_is_exclusive_of_the_deadline() {
        assert_eq!(
            decide_verify(&pending(0), 999, true),
            VerifyOutcome::Matched
        );
        assert_eq!(
            decide_verify(&pending(0), 1_000, true),
            VerifyOutcome::Expired
        );
    }

    #[test]
    fn unsubmitted_answers_one() {
        let mut s = pending(0);
        s.submitted = false;
        assert_eq!(decide_verify(&s, 10, true).matched(), 1);
        assert_eq!(record_matched(&s), 1);
    }

    #[test]
    fn matched_values() {
        assert_eq!(VerifyOutcome::Matched.matched(), 0);
        assert_eq!(VerifyOutcome::Wrong { locked_now: true }.matched(), 2);
        assert_eq!(VerifyOutcome::Locked.matched(), 2);
        assert_eq!(VerifyOutcome::AlreadyVerified.matched(), 4);
        assert_eq!(VerifyOutcome::Expired.matched(), 5);
        assert_eq!(record_matched(&pending(1)), -1);
    }
}
