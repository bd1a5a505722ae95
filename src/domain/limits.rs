//! Period send limits: sliding windows over `period × unit`.

use serde::{Deserialize, Serialize};

/// Largest `limit` the vendor allows ("1-100亿").
pub const MAX_LIMIT: i64 = 10_000_000_000;

/// A validated, enabled limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodLimit {
    /// 1 day, 2 hour, 3 minute, 4 second.
    pub unit: i64,
    /// 1–90.
    pub period: i64,
    /// At least 1.
    pub limit: i64,
}

/// Why a limit object was refused; the text names the sub-field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl PeriodLimit {
    /// Validates the Buka limit object. `Ok(None)` when it is disabled.
    pub fn from_parts(
        enabled: bool,
        unit: Option<i64>,
        period: Option<i64>,
        limit: Option<i64>,
    ) -> Result<Option<Self>, LimitError> {
        if !enabled {
            return Ok(None);
        }
        let unit = unit.ok_or(LimitError {
            field: "unit",
            reason: "is required when enabled",
        })?;
        if !(1..=4).contains(&unit) {
            return Err(LimitError {
                field: "unit",
                reason: "must be 1 (day), 2 (hour), 3 (minute) or 4 (second)",
            });
        }
        let period = period.ok_or(LimitError {
            field: "period",
            reason: "is required when enabled",
        })?;
        if !(1..=90).contains(&period) {
            return Err(LimitError {
                field: "period",
                reason: "must be 1-90",
            });
        }
        let limit = limit.ok_or(LimitError {
            field: "limit",
            reason: "is required when enabled",
        })?;
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(LimitError {
                field: "limit",
                reason: "must be 1-10000000000",
            });
        }
        Ok(Some(Self {
            unit,
            period,
            limit,
        }))
    }

    /// The window length in milliseconds.
    pub fn window_ms(&self) -> i64 {
        let unit_ms = match self.unit {
            1 => 86_400_000,
            2 => 3_600_000,
            3 => 60_000,
            _ => 1_000,
        };
        unit_ms * self.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_needs_nothing() {
        assert_eq!(PeriodLimit::from_parts(false, None, None, None), Ok(None));
    }

    #[test]
    fn enabled_is_validated() {
        let ok = PeriodLimit::from_parts(true, Some(3), Some(10), Some(5))
            .unwrap()
            .unwrap();
        assert_eq!(ok.window_ms(), 600_000);
        assert_eq!(
            PeriodLimit::from_parts(true, None, Some(1), Some(1))
                .unwrap_err()
                .field,
            "unit"
        );
        assert_eq!(
            PeriodLimit::from_parts(true, Some(5), Some(1), Some(1))
                .unwrap_err()
                .field,
            "unit"
        );
        assert_eq!(
            PeriodLimit::from_parts(true, Some(1), Some(91), Some(1))
                .unwrap_err()
                .field,
            "period"
        );
        assert_eq!(
            PeriodLimit::from_parts(true, Some(1), Some(0), Some(1))
                .unwrap_err()
                .field,
            "period"
        );
        assert_eq!(
            PeriodLimit::from_parts(true, Some(1), Some(1), Some(0))
                .unwrap_err()
                .field,
            "limit"
        );
        assert_eq!(
            PeriodLimit::from_parts(true, Some(1), Some(1), Some(MAX_LIMIT + 1))
                .unwrap_err()
                .field,
            "limit"
        );
    }

    #[test]
    fn units() {
        let w = |unit| {
            PeriodLimit {
                unit,
                period: 2,
                limit: 1,
            }
            .window_ms()
        };
        assert_eq!(w(1), 172_800_000);
        assert_eq!(w(2), 7_200_000);
        assert_eq!(w(3), 120_000);
        assert_eq!(w(4), 2_000);
    }
}

/// A limit as configured and echoed back: `enabled` plus the three values, which may be absent
/// while the limit is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSetting {
    pub enabled: bool,
    pub unit: Option<i64>,
    pub period: Option<i64>,
    pub limit: Option<i64>,
}

impl LimitSetting {
    /// The enforced limit, when enabled.
    pub fn active(&self) -> Option<PeriodLimit> {
        PeriodLimit::from_parts(self.enabled, self.unit, self.period, self.limit)
            .ok()
            .flatten()
    }
}
