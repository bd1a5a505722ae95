//! Objects as the Buka wire shows them.

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};

use crate::domain::limits::LimitSetting;
use crate::domain::session::record_matched;
use crate::domain::validate::format_micros;
use crate::service::RecordView;
use crate::store::{App, Attempt, Flow, Template, report};

/// ISO-8601 with the configured display offset: `2022-01-01T00:00:00+08:00`.
pub fn time(ms: i64, offset: &FixedOffset) -> Value {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => Value::String(
            t.with_timezone(offset)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
        ),
        None => Value::Null,
    }
}

fn opt_time(ms: Option<i64>, offset: &FixedOffset) -> Value {
    ms.map_or(Value::Null, |m| time(m, offset))
}

fn limit(l: &LimitSetting) -> Value {
    json!({"enabled": l.enabled, "unit": l.unit, "period": l.period, "limit": l.limit})
}

pub fn app(a: &App, offset: &FixedOffset) -> Value {
    json!({
        "appId": a.app_id,
        "name": a.name,
        "codeExpiry": a.code_expiry,
        "createTime": time(a.created_ms, offset),
        "periodTotalSendLimit": limit(&a.total_limit),
        "periodPhoneSendLimit": limit(&a.phone_limit),
    })
}

pub fn template(t: &Template) -> Value {
    json!({
        "templateId": t.template_id,
        "appId": t.app_id,
        "name": t.name,
        "text": t.text,
        "codeType": t.code_type,
        "codeLength": t.code_length,
        "speechRate": t.speech_rate,
        "language": t.language,
        "maxDuration": t.max_duration,
        "repeatCnt": t.repeat_cnt,
        "senderId": t.sender_id,
    })
}

pub fn flow(f: &Flow) -> Value {
    json!({"flowId": f.flow_id, "name": f.name, "flow": f.nodes})
}

/// Buka `sms.status`: -1 while the report is pending, 0 delivered, 1 failed.
fn sms_status(a: &Attempt) -> i64 {
    match a.report_state.as_str() {
        report::SUCCESS => 0,
        report::FAIL => 1,
        _ if a.gateway_state == crate::store::gateway::FAIL => 1,
        _ => -1,
    }
}

fn money(m: Option<i64>) -> Value {
    Value::String(format_micros(m.unwrap_or(0)))
}

pub fn sms(a: &Attempt, offset: &FixedOffset) -> Value {
    json!({
        "submitTm": time(a.created_ms, offset),
        "sendTm": opt_time(a.send_ms, offset),
        "doneTm": opt_time(a.done_ms, offset),
        "mcc": a.mcc,
        "mnc": a.mnc,
        "sender": a.sender,
        "chargeCnt": a.segments.unwrap_or(0),
        "pay": money(a.price_micros),
        "status": sms_status(a),
        "reason": a.reason.clone().unwrap_or_default(),
    })
}

/// The call's termination code: the provider's, or derived from the report; -1 while the call
/// is still in progress.
fn termination_code(a: &Attempt) -> i64 {
    use crate::providers::termination;
    match (a.termination_code, a.report_state.as_str()) {
        (Some(c), _) => c,
        (None, report::SUCCESS) => termination::ANSWERED,
        (None, report::FAIL) => termination::FAILED,
        _ if a.gateway_state == crate::store::gateway::FAIL => termination::FAILED,
        _ => -1,
    }
}

pub fn call(a: &Attempt, offset: &FixedOffset) -> Value {
    let code = termination_code(a);
    let reason = match (&a.reason, code) {
        (Some(r), _) => r.clone(),
        (None, -1) => "in progress".into(),
        (None, c) => crate::providers::termination::reason(c).into(),
    };
    let cost = money(a.price_micros);
    json!({
        "terminationCode": code,
        "terminationReason": reason,
        "submitTime": time(a.created_ms, offset),
        "callTime": opt_time(a.send_ms, offset),
        "ringingTime": opt_time(a.ring_ms, offset),
        "answerTime": opt_time(a.answer_ms, offset),
        "hangupTime": if code == -1 { Value::Null } else { opt_time(a.done_ms, offset) },
        "callDuration": a.call_duration.unwrap_or(0),
        "chargedDuration": a.charged_duration.unwrap_or(0),
        "displayNum": a.sender,
        "billPeriodstring": a.bill_period,
        "code": a.route,
        "rate": money(a.rate_micros),
        "cost": cost,
        "costEur": cost,
    })
}

fn verifications(v: &RecordView, channel: &str, offset: &FixedOffset, with_order: bool) -> Value {
    let s = &v.session;
    let mut out = json!({
        "matched": record_matched(&s.state()),
        "verifiedDate": opt_time(s.verified_ms, offset),
        "oriReceiver": s.phone,
        "channel": channel,
    });
    if with_order {
        out["orderId"] = json!(s.order_id);
    }
    out
}

/// `record/{verificationId}`: the latest attempt of each channel as a single object.
pub fn record(v: &RecordView, offset: &FixedOffset) -> Value {
    let mut out = json!({
        "verificationId": v.verification_id,
        "verifications": verifications(v, &v.channel, offset, true),
        "sna": [],
    });
    if let Some(a) = v.attempts.iter().rev().find(|a| a.channel == "sms") {
        out["sms"] = sms(a, offset);
    }
    if let Some(a) = v.attempts.iter().rev().find(|a| a.channel == "call") {
        out["call"] = call(a, offset);
    }
    out
}

/// `orderId/record`: every attempt, as arrays.
pub fn order_record(v: &RecordView, offset: &FixedOffset) -> Value {
    let of = |ch: &'static str| v.attempts.iter().filter(move |a| a.channel == ch);
    json!({
        "orderId": v.session.order_id,
        "flowId": v.flow_id,
        "verifications": verifications(v, &v.session.channel, offset, false),
        "sms": of("sms").map(|a| sms(a, offset)).collect::<Vec<_>>(),
        "call": of("call").map(|a| call(a, offset)).collect::<Vec<_>>(),
        "sna": [],
    })
}
