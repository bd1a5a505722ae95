//! Task flows against the running server, moved by the injected clock (contract decision 12):
//! when nodes fire, what they decide, which channel and route they use, and that they stop.

use otpgate::providers::ProviderError;
use otpgate::providers::memory::Script;
use otpgate::store::{gateway, job_kind};
use serde_json::json;

use crate::harness::*;

const US: &str = "14155552671";

/// The code in a message whose template puts it first.
fn code_of(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn status_1_fires_after_a_failed_receipt_with_the_same_code() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow = app
        .flow(json!([{"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 1}]))
        .await;
    app.provider
        .push_script(Script::FailReceipt("handset unreachable".into()));
    let vid = app.send_with_flow(&app_id, tpl, US, flow).await;
    assert_eq!(app.provider.sent().len(), 1);
    // The node waits its full time after the first attempt was handed over.
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].kind, job_kind::FLOW);
    assert_eq!(app.advance_and_drain(29).await, 0);
    assert_eq!(app.provider.sent().len(), 1, "not before waitingTime");
    assert_eq!(app.advance_and_drain(1).await, 1);
    let sent = app.provider.sent();
    assert_eq!(sent.len(), 2, "the node fired");
    assert_eq!(code_of(&sent[0].text), code_of(&sent[1].text), "same code");
    assert_eq!(sent[1].verification_id, vid);
    // The flow has one node: nothing is left to do.
    assert!(app.jobs().await.is_empty());
    assert_eq!(app.advance_and_drain(120).await, 0);
    assert_eq!(app.provider.sent().len(), 2);
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    // record/{id} shows the latest SMS attempt: the node's, delivered.
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec:#}");
    // The code still verifies.
    assert_eq!(
        app.verify(&vid, &code_of(&sent[1].text)).await["data"]["matched"],
        0
    );
}

#[tokio::test]
async fn status_1_ends_the_flow_when_delivery_was_confirmed() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow = app
        .flow(json!([{"waitingTime": 30, "status": 1, "channel": "call"}]))
        .await;
    app.send_with_flow(&app_id, tpl, US, flow).await;
    app.advance_and_drain(30).await;
    assert_eq!(app.provider.sent().len(), 1, "delivered: no fallback");
    assert!(app.jobs().await.is_empty());
}

#[tokio::test]
async fn status_1_fires_while_the_receipt_is_still_missing_or_the_submit_failed() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow = app
        .flow(json!([
            {"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 1},
            {"waitingTime": 60, "status": 1, "channel": "call"}
        ]))
        .await;
    // First attempt: accepted, no receipt yet. Node 1: refused for good.
    app.provider.push_script(Script::Accept);
    app.provider
        .push_script(Script::Fail(ProviderError::Permanent("barred".into())));
    let vid = app.send_with_flow(&app_id, tpl, US, flow).await;
    app.advance_and_drain(30).await;
    assert_eq!(app.provider.sent().len(), 2);
    // Node 2 is timed from node 1's attempt, not from the send.
    app.advance_and_drain(59).await;
    assert_eq!(app.provider.sent().len(), 2);
    app.advance_and_drain(1).await;
    let sent = app.provider.sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].channel, otpgate::domain::Channel::Call);
    let attempts = app.attempts(&vid).await;
    let states: Vec<_> = attempts.iter().map(|a| a.gateway_state.as_str()).collect();
    assert_eq!(states, [gateway::SUCCESS, gateway::FAIL, gateway::SUCCESS]);
}

#[tokio::test]
async fn status_2_sends_on_the_nodes_channel_until_verified() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow = app
        .flow(json!([
            {"waitingTime": 30, "status": 2, "channel": "call"},
            {"waitingTime": 30, "status": 2, "channel": "sms"}
        ]))
        .await;
    let vid = app.send_with_flow(&app_id, tpl, US, flow).await;
    app.advance_and_drain(30).await;
    let sent = app.provider.sent();
    assert_eq!(sent.len(), 2, "delivered but unverified: the call goes out");
    assert_eq!(sent[1].channel, otpgate::domain::Channel::Call);
    assert!(sent[1].voice.is_some());
    // Verified between nodes: node 2 sends nothing.
    let code = code_of(&sent[0].text);
    assert_eq!(app.verify(&vid, &code).await["data"]["matched"], 0);
    app.advance_and_drain(30).await;
    assert_eq!(app.provider.sent().len(), 2);
    assert!(app.jobs().await.is_empty());
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert!(
        rec["data"]["sms"].is_object() && rec["data"]["call"].is_object(),
        "{rec}"
    );
}

#[tokio::test]
async fn the_flow_ends_when_the_session_is_locked_or_expired() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({"codeExpiry": 1})).await;
    let tpl = app.template(&app_id, json!({})).await;
    let flow = app
        .flow(json!([{"waitingTime": 30, "status": 2, "channel": "sms"}, {"waitingTime": 60, "status": 2, "channel": "sms"}]))
        .await;
    // Locked by five wrong codes.
    let locked = app.send_with_flow(&app_id, tpl, US, flow).await;
    for _ in 0..5 {
        app.verify(&locked, "000000000").await;
    }
    // Expired: codeExpiry is one minute; node 2 would fire 90 s after the send.
    let expiring = app.send_with_flow(&app_id, tpl, "919856321412", flow).await;
    app.advance_and_drain(30).await;
    let sent = app.provider.sent();
    assert_eq!(
        sent.len(),
        3,
        "only the unlocked session's node 1 fired: {sent:?}"
    );
    assert_eq!(sent[2].verification_id, expiring);
    app.advance_and_drain(60).await;
    assert_eq!(app.provider.sent().len(), 3, "expired: the flow ended");
    assert!(app.jobs().await.is_empty());
}

#[tokio::test]
async fn channel_cut_0_moves_to_the_other_route_and_1_keeps_it() {
    let app = TestApp::spawn_two_routes().await;
    let (a, b) = (&app.providers[0], &app.providers[1]);
    let (app_id, tpl) = app.app_and_template().await;
    let cut = app
        .flow(json!([
            {"waitingTime": 30, "status": 2, "channel": "sms", "channelCut": 0},
            {"waitingTime": 30, "status": 2, "channel": "sms", "channelCut": 0}
        ]))
        .await;
    let vid = app.send_with_flow(&app_id, tpl, US, cut).await;
    assert_eq!((a.sent().len(), b.sent().len()), (1, 0));
    app.advance_and_drain(30).await;
    assert_eq!(
        (a.sent().len(), b.sent().len()),
        (1, 1),
        "switched to route-b"
    );
    app.advance_and_drain(30).await;
    assert_eq!(
        (a.sent().len(), b.sent().len()),
        (2, 1),
        "and back to route-a"
    );
    let routes: Vec<_> = app
        .attempts(&vid)
        .await
        .into_iter()
        .map(|a| a.route)
        .collect();
    assert_eq!(routes, ["route-a", "route-b", "route-a"]);

    let keep = app
        .flow(json!([
            {"waitingTime": 30, "status": 2, "channel": "sms", "channelCut": 1},
            {"waitingTime": 30, "status": 2, "channel": "call", "channelCut": 0}
        ]))
        .await;
    let vid = app.send_with_flow(&app_id, tpl, US, keep).await;
    app.advance_and_drain(30).await;
    app.advance_and_drain(30).await;
    let routes: Vec<_> = app
        .attempts(&vid)
        .await
        .into_iter()
        .map(|a| (a.channel, a.route))
        .collect();
    // channelCut 1 keeps route-a; the call is the first on its channel, so it takes the first
    // call route even with channelCut 0.
    assert_eq!(
        routes,
        [
            ("sms".to_string(), "route-a".to_string()),
            ("sms".into(), "route-a".into()),
            ("call".into(), "route-a".into())
        ]
    );
}

#[tokio::test]
async fn resend_does_not_start_another_flow() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow = app
        .flow(json!([{"waitingTime": 30, "status": 2, "channel": "sms"}]))
        .await;
    let vid = app.send_with_flow(&app_id, tpl, US, flow).await;
    let r = app
        .post(
            "/v3/otp/verification/resend",
            json!({"verificationId": vid}),
        )
        .await;
    assert_eq!(r["status"], "0", "{r}");
    assert_eq!(app.jobs().await.len(), 1, "one flow timer");
    app.advance_and_drain(30).await;
    assert_eq!(app.provider.sent().len(), 3);
    assert!(app.jobs().await.is_empty());
}
