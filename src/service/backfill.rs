//! Conversion feedback from the customer: per app and country, and per verification.

use chrono::DateTime;

use super::{Service, ServiceError, ServiceResult};
use crate::store::{BackfillRate, Postback};

#[derive(Debug, Clone, Default)]
pub struct BackfillRateInput {
    pub app_id: Option<String>,
    pub mcc: Option<String>,
    pub backfill_number: Option<String>,
    pub backfill_cardinal_number: Option<String>,
    pub backfill_now: Option<String>,
    pub callback_time: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PostbackInput {
    pub app_id: Option<String>,
    pub verification_id: Option<String>,
    pub number: Option<String>,
    pub time: Option<String>,
}

fn required<'a>(v: &'a Option<String>, field: &str) -> ServiceResult<&'a str> {
    match v.as_deref() {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ServiceError::invalid(field, "is required")),
    }
}

fn count(v: &Option<String>, field: &str) -> ServiceResult<Option<i64>> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| ServiceError::invalid(field, "must be a whole number ≥ 0")),
    }
}

/// A percentage 0–100 with at most two decimals, as hundredths.
fn percent_bp(s: &str) -> Option<i64> {
    let (w, f) = s.split_once('.').unwrap_or((s, ""));
    if w.is_empty()
        || w.len() > 3
        || f.len() > 2
        || !w.bytes().all(|b| b.is_ascii_digit())
        || !f.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let bp = w.parse::<i64>().ok()? * 100 + format!("{f:0<2}").parse::<i64>().ok()?;
    (bp <= 10_000).then_some(bp)
}

/// Unix seconds (10 digits) or milliseconds (13 digits).
fn unix_time_ms(s: &str) -> Option<i64> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = s.parse().ok()?;
    match s.len() {
        9 | 10 => Some(n * 1000),
        12 | 13 => Some(n),
        _ => None,
    }
}

impl Service {
    pub async fn backfill_rate(
        &self,
        tenant_id: i64,
        input: BackfillRateInput,
    ) -> ServiceResult<()> {
        let app_id = required(&input.app_id, "appId")?;
        let mcc_raw = required(&input.mcc, "mcc")?;
        let mcc = mcc_raw
            .parse::<i64>()
            .ok()
            .filter(|m| (200..=999).contains(m) && mcc_raw.len() == 3)
            .ok_or_else(|| {
                ServiceError::invalid("mcc", "must be a 3-digit mobile country code (200-999)")
            })?;
        let now = required(&input.backfill_now, "backfillNow")?;
        let rate_bp = percent_bp(now).ok_or_else(|| {
            ServiceError::invalid(
                "backfillNow",
                "must be a percentage 0-100 with at most 2 decimals",
            )
        })?;
        let cb = required(&input.callback_time, "callbackTime")?;
        let callback_ms = DateTime::parse_from_rfc3339(cb)
            .map_err(|_| {
                ServiceError::invalid(
                    "callbackTime",
                    "must be ISO-8601 with an offset, e.g. 2023-02-01T00:00:00+08:00",
                )
            })?
            .timestamp_millis();
        let backfill_number = count(&input.backfill_number, "backfillNumber")?;
        let backfill_base = count(&input.backfill_cardinal_number, "backfillCardinalNumber")?;
        if let (Some(n), Some(b)) = (backfill_number, backfill_base)
            && n > b
        {
            return Err(ServiceError::invalid(
                "backfillNumber",
                "must not exceed backfillCardinalNumber",
            ));
        }
        let app = self.app(tenant_id, app_id).await?;
        self.store
            .upsert_backfill_rate(&BackfillRate {
                tenant_id,
                app_id: app.app_id,
                mcc,
                backfill_number,
                backfill_base,
                rate_bp,
                callback_ms,
                received_ms: self.now_ms(),
            })
            .await?;
        Ok(())
    }

    pub async fn postback(&self, tenant_id: i64, input: PostbackInput) -> ServiceResult<()> {
        let app_id = required(&input.app_id, "appId")?;
        let vid = required(&input.verification_id, "verificationId")?;
        let time = required(&input.time, "time")?;
        let backfill_ms = unix_time_ms(time)
            .or_else(|| {
                DateTime::parse_from_rfc3339(time)
                    .ok()
                    .map(|d| d.timestamp_millis())
            })
            .ok_or_else(|| {
                ServiceError::invalid(
                    "time",
                    "must be a Unix time in seconds or milliseconds, or ISO-8601",
                )
            })?;
        let number = match input.number.as_deref() {
            None | Some("") => None,
            Some(n) => {
                let digits = n.strip_prefix('+').unwrap_or(n);
                if !(6..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(ServiceError::invalid(
                        "number",
                        "must be the number with its country code, digits only",
                    ));
                }
                Some(digits.to_string())
            }
        };
        let app = self.app(tenant_id, app_id).await?;
        let (_, session) = self.session_of(tenant_id, vid).await?;
        if session.app_id != app.app_id {
            return Err(ServiceError::NotFound("verification"));
        }
        self.store
            .record_postback(&Postback {
                verification_id: vid.to_string(),
                tenant_id,
                app_id: app.app_id,
                number,
                backfill_ms,
                received_ms: self.now_ms(),
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(percent_bp("10"), Some(1000));
        assert_eq!(percent_bp("99.5"), Some(9950));
        assert_eq!(percent_bp("100"), Some(10000));
        assert_eq!(percent_bp("100.01"), None);
        assert_eq!(percent_bp("1.234"), None);
        assert_eq!(percent_bp("-1"), None);
    }

    #[test]
    fn unix_times() {
        assert_eq!(unix_time_ms("1681184764000"), Some(1_681_184_764_000));
        assert_eq!(unix_time_ms("1681184764"), Some(1_681_184_764_000));
        assert_eq!(unix_time_ms("12"), None);
    }
}
