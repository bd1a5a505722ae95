//! The delivery engine against the running server: retries with backoff, receipts (pushed,
//! polled, timed out, late), at-most-once hand-over, voice calls and their records.

use std::sync::Arc;

use otpgate::providers::memory::{MemoryProvider, Script};
use otpgate::providers::{CallReport, ProviderError, Receipt};
use otpgate::store::{gateway, job_kind, report};
use serde_json::json;

use crate::harness::*;

const US: &str = "14155552671";

fn retryable(why: &str) -> Script {
    Script::Fail(ProviderError::Retryable(why.into()))
}

fn receipt(delivered: bool, at_ms: i64) -> Receipt {
    Receipt {
        delivered,
        at_ms,
        reason: (!delivered).then(|| "absent subscriber".to_string()),
        mnc: Some(260),
        call: None,
    }
}

fn now_ms(app: &TestApp) -> i64 {
    use otpgate::clock::Clock;
    app.clock.now().timestamp_millis()
}

#[tokio::test]
async fn a_retryable_refusal_is_retried_with_backoff() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    app.provider.push_script(retryable("throttled"));
    app.provider.push_script(retryable("throttled"));
    let vid = app.send_ok(&app_id, tpl, US).await;
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(
        rec["data"]["sms"]["status"], -1,
        "waiting for a retry: {rec}"
    );
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::PENDING);
    assert_eq!(a.reason.as_deref(), Some("throttled"));
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, job_kind::DELIVER);
    assert_eq!(jobs[0].last_error.as_deref(), Some("throttled"));
    assert!(jobs[0].owner.is_none(), "a waiting retry is not claimed");
    // First retry after 2 s, the second 4 s after that.
    assert_eq!(app.advance_and_drain(1).await, 0);
    assert_eq!(app.advance_and_drain(1).await, 1);
    assert_eq!(app.provider.sent().len(), 2);
    assert_eq!(app.advance_and_drain(3).await, 0);
    assert_eq!(app.advance_and_drain(1).await, 1);
    assert_eq!(app.provider.sent().len(), 3);
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    assert!(app.jobs().await.is_empty());
    // One attempt, delivered on its third try; the code works.
    let attempts = app.attempts(&vid).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].gateway_state, gateway::SUCCESS);
    assert_eq!(
        app.verify(&vid, &app.last_code()).await["data"]["matched"],
        0
    );
}

#[tokio::test]
async fn the_attempt_fails_when_retries_run_out() {
    let app = TestApp::spawn_with(|c| c.delivery.max_tries = 2).await;
    let (app_id, tpl) = app.app_and_template().await;
    app.provider.push_script(retryable("route down"));
    app.provider.push_script(retryable("route down"));
    let vid = app.send_ok(&app_id, tpl, US).await;
    app.advance_and_drain(2).await;
    assert_eq!(app.provider.sent().len(), 2);
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
    assert_eq!(rec["data"]["sms"]["reason"], "route down");
    assert_eq!(rec["data"]["sms"]["pay"], "0.000000");
    assert!(app.jobs().await.is_empty());
    assert_eq!(app.advance_and_drain(600).await, 0);
    assert_eq!(app.provider.sent().len(), 2);
}

#[tokio::test]
async fn a_retry_is_not_sent_once_the_session_is_verified() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    app.provider.push_script(retryable("throttled"));
    let vid = app.send_ok(&app_id, tpl, US).await;
    // The user got the code another way (the route did take the first message's text).
    assert_eq!(
        app.verify(&vid, &app.last_code()).await["data"]["matched"],
        0
    );
    app.advance_and_drain(2).await;
    assert_eq!(app.provider.sent().len(), 1, "re-checked before acting");
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::FAIL);
    assert!(
        a.reason.as_deref().unwrap_or_default().contains("ended"),
        "{a:?}"
    );
}

#[tokio::test]
async fn a_pushed_receipt_settles_the_report_and_cancels_the_timeout() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    app.provider.push_script(Script::Accept);
    let vid = app.send_ok(&app_id, tpl, US).await;
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], -1, "{rec}");
    assert!(rec["data"]["sms"]["doneTm"].is_null());
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, job_kind::RECEIPT);
    assert_eq!(
        jobs[0].due_ms,
        now_ms(&app) + 600_000,
        "the 10-minute default"
    );

    app.advance(7);
    let attempt_id = app.provider.sent()[0].attempt_id;
    let message_id = MemoryProvider::message_id(attempt_id);
    let applied = app
        .service
        .on_receipt("memory", &message_id, receipt(true, now_ms(&app)))
        .await
        .unwrap();
    assert!(applied);
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    assert_eq!(rec["data"]["sms"]["mnc"], 260);
    assert!(rec["data"]["sms"]["doneTm"].is_string());
    assert!(app.jobs().await.is_empty(), "the timeout is gone");
    // A second receipt for a settled attempt, or one for an unknown message, changes nothing.
    let again = app
        .service
        .on_receipt("memory", &message_id, receipt(false, now_ms(&app)))
        .await
        .unwrap();
    assert!(!again);
    let stranger = app
        .service
        .on_receipt("memory", "no-such-message", receipt(true, 0))
        .await
        .unwrap();
    assert!(!stranger);
    let other_route = app
        .service
        .on_receipt("elsewhere", &message_id, receipt(false, 0))
        .await
        .unwrap();
    assert!(!other_route);
    assert_eq!(
        app.get(&format!("/v3/otp/verification/record/{vid}")).await["data"]["sms"]["status"],
        0
    );
}

#[tokio::test]
async fn no_receipt_in_time_fails_the_report_and_a_late_one_still_counts() {
    let app = TestApp::spawn_with(|c| c.delivery.receipt_timeout_secs = 120).await;
    let (app_id, tpl) = app.app_and_template().await;
    app.provider.push_script(Script::Accept);
    let vid = app.send_ok(&app_id, tpl, US).await;
    app.advance_and_drain(119).await;
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], -1);
    app.advance_and_drain(1).await;
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
    assert_eq!(rec["data"]["sms"]["reason"], "no delivery report");
    // The carrier's receipt arrives after all: it tells the truth.
    let message_id = MemoryProvider::message_id(app.provider.sent()[0].attempt_id);
    assert!(
        app.service
            .on_receipt("memory", &message_id, receipt(true, now_ms(&app)))
            .await
            .unwrap()
    );
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
}

#[tokio::test]
async fn the_sync_job_polls_routes_that_cannot_push_receipts() {
    let app = TestApp::spawn_routes(
        |_| {},
        |clock| vec![Arc::new(MemoryProvider::polling("poller", clock))],
    )
    .await;
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1, "the sync job is written at start: {jobs:?}");
    assert_eq!(jobs[0].kind, job_kind::SYNC);
    let (app_id, tpl) = app.app_and_template().await;
    // The first sync ran at start-up time (due then); this message waits for the next.
    let vid = app.send_ok(&app_id, tpl, US).await;
    let failed = app.send_ok(&app_id, tpl, "919856321412").await;
    let message_id = MemoryProvider::message_id(app.provider.sent()[1].attempt_id);
    app.provider
        .set_receipt(&message_id, receipt(false, now_ms(&app)));
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], -1, "{rec}");
    app.advance_and_drain(30).await;
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "learned by polling: {rec}");
    let rec = app
        .get(&format!("/v3/otp/verification/record/{failed}"))
        .await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
    assert_eq!(rec["data"]["sms"]["reason"], "absent subscriber");
    // The sync job comes back every interval; only it is left.
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].kind, job_kind::SYNC);
    assert_eq!(jobs[0].due_ms, now_ms(&app) + 30_000);
}

/// Sends to `US` with the provider holding the hand-over, without the harness's drain (which
/// would wait for it); returns the verification id.
async fn send_held(app: &TestApp, app_id: &str, tpl: i64) -> String {
    app.provider.push_script(Script::Hold);
    let v = app
        .post_undrained(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US}),
        )
        .await;
    v["data"]["verificationId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_attempt_interrupted_mid_hand_over_is_never_sent_twice() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = send_held(&app, &app_id, tpl).await;
    // The worker "vanishes": its claim lapses and another worker picks the job up.
    app.advance(61);
    assert_eq!(app.service.run_due_jobs().await.unwrap(), 1);
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::UNKNOWN, "{a:?}");
    // The stuck hand-over ends; its outcome no longer counts (its claim was lost).
    app.provider.release();
    app.drain().await;
    assert_eq!(app.provider.sent().len(), 1, "sent once");
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::UNKNOWN);
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], -1, "{rec}");
    // No receipt can name it: the receipt timeout settles the report.
    app.advance_and_drain(600).await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.report_state, report::FAIL);
    assert_eq!(a.reason.as_deref(), Some(report::NO_DELIVERY_REPORT));
}

#[tokio::test]
async fn stopping_releases_claims_that_did_not_finish() {
    let app = TestApp::spawn_with(|c| c.delivery.shutdown_grace_secs = 0).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = send_held(&app, &app_id, tpl).await;
    // Being handed over: the deliver job's claim is held on the attempt, not queued.
    let a = &app.attempts(&vid).await[0];
    assert_eq!(
        a.claim_owner.as_deref(),
        Some(app.service.jobs.owner.as_str())
    );
    assert!(app.jobs().await.is_empty());
    app.service.stop_jobs().await;
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].key, format!("deliver:{}", a.id));
    assert!(jobs[0].owner.is_none(), "released: {jobs:?}");
    assert_eq!(app.attempts(&vid).await[0].claim_owner, None);
    app.provider.release();
}

#[tokio::test]
async fn a_voice_call_end_to_end() {
    let app = TestApp::spawn_with(|c| {
        c.console.price_per_call_block = "0.015".into();
        c.console.bill_period = "20+20".into();
        c.console.sender = "12025550100".into();
    })
    .await;
    let app_id = app.app(json!({})).await;
    let tpl = app
        .template(
            &app_id,
            json!({"text": "Your code is ##code##", "language": "DE", "speechRate": 70,
                   "repeatCnt": 2, "maxDuration": 45, "codeLength": 4}),
        )
        .await;
    app.provider.push_script(Script::Answer {
        ring_secs: 4,
        talk_secs: 41,
    });
    let r = app
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US, "channel": "call"}),
        )
        .await;
    assert_eq!(r["data"]["channel"], "call", "{r}");
    let vid = r["data"]["verificationId"].as_str().unwrap().to_string();
    let msg = &app.provider.sent()[0];
    let voice = msg.voice.as_ref().expect("voice settings");
    assert_eq!(
        (
            voice.language.as_str(),
            voice.speech_rate,
            voice.repeat_cnt,
            voice.max_duration
        ),
        ("DE", 70, 2, 45)
    );
    let spoken = msg.text.strip_prefix("Your code is ").unwrap();
    assert_eq!(spoken.len(), 10, "four digits spelled one by one: {spoken}");
    let code: String = spoken.split(", ").collect();
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    let call = &rec["data"]["call"];
    assert_eq!(call["terminationCode"], 0, "{rec}");
    assert_eq!(call["terminationReason"], "answered");
    for f in [
        "submitTime",
        "callTime",
        "ringingTime",
        "answerTime",
        "hangupTime",
    ] {
        assert!(call[f].is_string(), "{f}: {call}");
    }
    assert_eq!(call["callDuration"], 41);
    assert_eq!(call["chargedDuration"], 60);
    assert_eq!(call["billPeriodstring"], "20+20");
    assert_eq!(call["displayNum"], "12025550100");
    assert_eq!(call["code"], "memory");
    assert_eq!(call["rate"], "0.015000");
    assert_eq!(call["cost"], "0.045000");
    assert_eq!(call["costEur"], "0.045000");
    assert!(rec["data"].get("sms").is_none());
    assert_eq!(app.verify(&vid, &code).await["data"]["matched"], 0);

    // Unanswered: a failure with its code and nothing charged.
    app.provider.push_script(Script::NoAnswer);
    let r = app
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US, "channel": "call"}),
        )
        .await;
    let vid = r["data"]["verificationId"].as_str().unwrap();
    let call = &app.get(&format!("/v3/otp/verification/record/{vid}")).await["data"]["call"];
    assert_eq!(call["terminationCode"], 1, "{call}");
    assert_eq!(call["terminationReason"], "no answer");
    assert!(call["answerTime"].is_null());
    assert_eq!(call["chargedDuration"], 0);
    assert_eq!(call["cost"], "0.000000");
}

#[tokio::test]
async fn a_call_report_can_arrive_after_the_submit() {
    let app = TestApp::spawn_with(|c| c.console.price_per_call_block = "0.01".into()).await;
    let (app_id, tpl) = app.app_and_template().await;
    app.provider.push_script(Script::Accept);
    let r = app
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US, "channel": "call"}),
        )
        .await;
    let vid = r["data"]["verificationId"].as_str().unwrap();
    let call = &app.get(&format!("/v3/otp/verification/record/{vid}")).await["data"]["call"];
    assert_eq!(call["terminationCode"], -1, "in progress: {call}");
    assert!(call["hangupTime"].is_null());
    let now = now_ms(&app);
    let message_id = MemoryProvider::message_id(app.provider.sent()[0].attempt_id);
    app.service
        .on_receipt(
            "memory",
            &message_id,
            Receipt {
                delivered: true,
                at_ms: now + 30_000,
                reason: None,
                mnc: None,
                call: Some(CallReport {
                    termination_code: 0,
                    ringing_ms: Some(now + 1_000),
                    answer_ms: Some(now + 5_000),
                    duration_secs: 25,
                }),
            },
        )
        .await
        .unwrap();
    let call = &app.get(&format!("/v3/otp/verification/record/{vid}")).await["data"]["call"];
    assert_eq!(call["terminationCode"], 0, "{call}");
    assert_eq!(call["callDuration"], 25);
    // Default increments 60+60: one block.
    assert_eq!(call["chargedDuration"], 60);
    assert_eq!(call["cost"], "0.010000");
}

#[tokio::test]
async fn sends_beyond_the_delivery_slots_wait_in_the_queue() {
    let app = TestApp::spawn_with(|c| c.delivery.workers = 1).await;
    let (app_id, tpl) = app.app_and_template().await;
    app.provider.push_script(Script::Hold);
    let send = |to: &'static str| {
        app.post_undrained(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": to}),
        )
    };
    let first = send(US).await;
    let second = send("919856321412").await;
    assert_eq!(second["status"], "0", "accepted all the same: {second}");
    let second = second["data"]["verificationId"]
        .as_str()
        .unwrap()
        .to_string();
    // The one slot is busy: the second attempt waits, queued and unclaimed.
    let a = &app.attempts(&second).await[0];
    assert_eq!(a.gateway_state, gateway::PENDING);
    assert_eq!(a.claim_owner, None);
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].key, format!("deliver:{}", a.id));
    assert!(jobs[0].owner.is_none());
    // The first is being handed over, its claim held on its attempt.
    let held = &app
        .attempts(first["data"]["verificationId"].as_str().unwrap())
        .await[0];
    assert!(held.claim_owner.is_some(), "{held:?}");
    // Not handed over yet: nothing can be verified.
    // (Asked without the harness's drain, which would wait for the held hand-over.)
    let v = app
        .post_undrained(
            "/v3/otp/verification/verify",
            json!({"verificationId": second, "code": "1234"}),
        )
        .await;
    assert_eq!(v["data"]["matched"], 1, "{v}");
    app.provider.release();
    app.drain().await;
    assert_eq!(app.provider.sent().len(), 2);
    for vid in [first["data"]["verificationId"].as_str().unwrap(), &second] {
        let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
        assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    }
    assert!(app.jobs().await.is_empty());
}
