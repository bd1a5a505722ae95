//! `/metrics`: Prometheus text with the engine's counters and the queue read at scrape time.

use otpgate::providers::ProviderError;
use otpgate::providers::memory::Script;
use serde_json::json;

use crate::harness::*;

const US: &str = "14155552671";

async fn scrape(app: &TestApp) -> String {
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    resp.text().await.unwrap()
}

/// The value of one sample line, e.g. `otpgate_sends_total{kind="send"}`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_sends_attempts_receipts_verifies_and_the_queue() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow = app
        .flow(json!([{"waitingTime": 30, "status": 2, "channel": "sms"}]))
        .await;
    let vid = app.send_with_flow(&app_id, tpl, US, flow).await;
    app.verify(&vid, "000000").await;
    app.verify(&vid, &app.last_code()).await;
    app.provider
        .push_script(Script::Fail(ProviderError::Permanent("barred".into())));
    app.send_ok(&app_id, tpl, US).await;
    app.advance(45);

    let text = scrape(&app).await;
    let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));
    assert_eq!(v(r#"otpgate_sends_total{kind="send"}"#), 2.0);
    assert_eq!(
        v(r#"otpgate_attempts_total{channel="sms",state="sending"}"#),
        2.0
    );
    assert_eq!(
        v(r#"otpgate_attempts_total{channel="sms",state="success"}"#),
        1.0
    );
    assert_eq!(
        v(r#"otpgate_attempts_total{channel="sms",state="fail"}"#),
        1.0
    );
    assert_eq!(
        v(r#"otpgate_receipts_total{channel="sms",state="success"}"#),
        1.0
    );
    assert_eq!(v(r#"otpgate_verify_total{outcome="wrong"}"#), 1.0);
    assert_eq!(v(r#"otpgate_verify_total{outcome="matched"}"#), 1.0);
    // The flow timer waits (due 15 s ago, since the clock moved past it).
    assert_eq!(v("otpgate_jobs_queued"), 1.0);
    assert_eq!(v("otpgate_jobs_due"), 1.0);
    let lag = v("otpgate_jobs_oldest_due_lag_seconds");
    assert!((14.0..=16.0).contains(&lag), "lag {lag}");
    assert!(
        text.contains(r#"otpgate_provider_submit_seconds_bucket{route="memory",result="ok""#),
        "{text}"
    );
    assert!(text.contains("# HELP otpgate_sends_total"));

    // The node runs (and ends: the session is verified); the queue empties.
    app.drain().await;
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "otpgate_jobs_queued"), Some(0.0));
    assert_eq!(
        sample(&text, "otpgate_jobs_oldest_due_lag_seconds"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"otpgate_flow_steps_total{result="verified"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"otpgate_jobs_total{kind="flow",result="ok"}"#),
        Some(1.0)
    );
}
