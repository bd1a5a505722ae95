//! Routing against the running server: destination rules and priorities, prices by country
//! and prefix, failover to the next route on a retryable refusal, circuits, route metrics,
//! hooks of unknown routes, and `config check` explaining bad routes.

use std::sync::Arc;

use otpgate::config::Config;
use otpgate::providers::ProviderError;
use otpgate::providers::memory::{MemoryProvider, Script};
use otpgate::providers::routing::RouteConfig;
use otpgate::store::gateway;
use serde_json::{Value, json};

use crate::harness::*;

const NL: &str = "31612345678";
const NL_FIXED: &str = "31201234567";
const BE: &str = "32470123456";

fn route(v: Value) -> RouteConfig {
    serde_json::from_value(v).expect("route configuration")
}

/// Servers whose `[[routes]]` are `routes` (all `provider = "console"`, carried by in-memory
/// providers of the same names).
async fn spawn(routes: Vec<Value>) -> TestApp {
    let configs: Vec<RouteConfig> = routes.into_iter().map(route).collect();
    let names: Vec<String> = configs.iter().map(|r| r.name.clone()).collect();
    TestApp::spawn_routes(
        move |cfg: &mut Config| cfg.routes = configs,
        move |clock| {
            names
                .iter()
                .map(|n| Arc::new(MemoryProvider::named(n, clock.clone())))
                .collect()
        },
    )
    .await
}

fn retryable(why: &str) -> Script {
    Script::Fail(ProviderError::Retryable(why.into()))
}

#[tokio::test]
async fn destinations_and_priorities_choose_the_route() {
    let app = spawn(vec![
        json!({"name": "catch-all", "provider": "console"}),
        json!({"name": "nl-direct", "provider": "console", "countries": ["NL"], "priority": 10}),
        json!({"name": "be-mobile", "provider": "console", "prefixes": ["32470"], "priority": 20}),
    ])
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    for (to, expected) in [
        (NL, "nl-direct"),
        (BE, "be-mobile"),
        ("14155552671", "catch-all"),
    ] {
        let vid = app.send_ok(&app_id, tpl, to).await;
        let a = &app.attempts(&vid).await[0];
        assert_eq!(a.route, expected, "{to}");
        assert_eq!(a.gateway_state, gateway::SUCCESS);
    }
    assert_eq!(app.providers[1].sent().len(), 1);
    assert_eq!(app.providers[2].sent().len(), 1);
}

#[tokio::test]
async fn a_number_no_route_serves_is_refused_in_the_callers_dialect() {
    let app = spawn(vec![
        json!({"name": "nl-only", "provider": "console", "countries": ["NL"]}),
    ])
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let v = app.send(&app_id, tpl, BE).await;
    assert_error(&v, "-22", "no SMS route on this gateway serves this number");
    app.send_ok(&app_id, tpl, NL).await;
}

#[tokio::test]
async fn prices_follow_the_destination() {
    let app = spawn(vec![json!({
        "name": "priced",
        "provider": "console",
        "sms_price": {"default": "0.05", "NL": "0.07", "3161": "0.081"},
    })])
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    for (to, rate) in [(NL, "0.081000"), (NL_FIXED, "0.070000"), (BE, "0.050000")] {
        let vid = app.send_ok(&app_id, tpl, to).await;
        let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
        let sms = &rec["data"]["sms"];
        assert_eq!(sms["chargeCnt"], 1, "{rec}");
        assert_eq!(sms["pay"], rate, "one segment costs the rate: {to}: {rec}");
    }
    // Two segments cost twice the rate.
    let long_tpl = app
        .template(
            &app_id,
            json!({"text": format!("{} ##code##", "x".repeat(170))}),
        )
        .await;
    let vid = app.send_ok(&app_id, long_tpl, NL).await;
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["chargeCnt"], 2, "{rec}");
    assert_eq!(rec["data"]["sms"]["pay"], "0.162000", "{rec}");
}

#[tokio::test]
async fn a_retryable_refusal_moves_the_attempt_to_the_next_route_at_once() {
    let app = spawn(vec![
        json!({"name": "primary", "provider": "console", "priority": 1, "sms_price": {"default": "0.01"}}),
        json!({"name": "backup", "provider": "console", "priority": 2, "sms_price": {"default": "0.02"}, "sender": "BACKUP"}),
    ])
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    app.providers[0].push_script(retryable("ESME_RTHROTTLED"));
    let vid = app.send_ok(&app_id, tpl, NL).await;
    // No backoff: the retry is due now and the drain after the request ran it.
    let attempts = app.attempts(&vid).await;
    assert_eq!(attempts.len(), 1, "the same attempt moved");
    let a = &attempts[0];
    assert_eq!(a.route, "backup");
    assert_eq!(a.gateway_state, gateway::SUCCESS);
    assert_eq!(a.sender.as_deref(), Some("BACKUP"));
    assert_eq!(
        a.rate_micros,
        Some(20_000),
        "priced by the route that carried it"
    );
    assert_eq!(app.providers[0].sent().len(), 1);
    assert_eq!(app.providers[1].sent().len(), 1);
    // A permanent refusal does not move: the message itself was refused.
    app.providers[0].push_script(Script::Fail(ProviderError::Permanent(
        "invalid destination".into(),
    )));
    let vid = app.send_ok(&app_id, tpl, NL).await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.route, "primary");
    assert_eq!(a.gateway_state, gateway::FAIL);
    assert_eq!(app.providers[1].sent().len(), 1);
}

#[tokio::test]
async fn repeated_failures_open_the_circuit_until_the_cool_down() {
    let app = spawn(vec![
        json!({"name": "flaky", "provider": "console", "priority": 1, "circuit_failures": 2, "circuit_cooldown_secs": 60}),
        json!({"name": "steady", "provider": "console", "priority": 2}),
    ])
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    for _ in 0..2 {
        app.providers[0].push_script(retryable("connection refused"));
        let vid = app.send_ok(&app_id, tpl, NL).await;
        assert_eq!(app.attempts(&vid).await[0].route, "steady");
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("otpgate_route_circuit_open{route=\"flaky\"} 1"),
        "{metrics}"
    );
    // While open, new sends go straight to the healthy route.
    let vid = app.send_ok(&app_id, tpl, NL).await;
    assert_eq!(app.attempts(&vid).await[0].route, "steady");
    assert_eq!(
        app.providers[0].sent().len(),
        2,
        "the open route was not tried"
    );
    // After the cool-down the route is tried again, and a success closes it.
    app.advance(61);
    let vid = app.send_ok(&app_id, tpl, NL).await;
    assert_eq!(app.attempts(&vid).await[0].route, "flaky");
    let vid = app.send_ok(&app_id, tpl, NL).await;
    assert_eq!(app.attempts(&vid).await[0].route, "flaky");
}

#[tokio::test]
async fn the_only_route_retries_after_a_backoff() {
    let app = spawn(vec![json!({"name": "solo", "provider": "console"})]).await;
    let (app_id, tpl) = app.app_and_template().await;
    app.providers[0].push_script(retryable("queue full"));
    let vid = app.send_ok(&app_id, tpl, NL).await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.route, "solo");
    assert_eq!(a.gateway_state, gateway::PENDING);
    assert_eq!(app.advance_and_drain(2).await, 1);
    assert_eq!(app.attempts(&vid).await[0].gateway_state, gateway::SUCCESS);
}

#[tokio::test]
async fn hooks_of_unknown_routes_and_routes_without_callbacks_are_404() {
    let app = spawn(vec![json!({"name": "plain", "provider": "console"})]).await;
    for path in ["/hooks/nope", "/hooks/plain", "/hooks/plain/status"] {
        let r = app
            .client
            .post(format!("{}{path}", app.base))
            .body("MessageStatus=delivered")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"otpgate_hooks_total{route="(unknown)",outcome="unknown_route"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"route="nope""#),
        "a caller's path is never a label: {metrics}"
    );
    assert!(
        metrics.contains(r#"otpgate_hooks_total{route="plain",outcome="no_hook"} 2"#),
        "{metrics}"
    );
}

#[test]
fn config_check_explains_bad_routes() {
    let sb = crate::cli::Sandbox::new();
    let path = sb.path().join("routes.toml");
    std::fs::write(
        &path,
        r#"
[[routes]]
name = "eu sms"
provider = "smpp"
countries = ["Europe"]
prefixes = ["+31"]
sms_price = { default = "cheap" }

[[routes]]
name = "twin"
provider = "console"

[[routes]]
name = "twin"
provider = "console"
channels = ["fax"]
"#,
    )
    .unwrap();
    let out = sb
        .cmd(&["--config", path.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "name \"eu sms\"",
        "needs a [routes.smpp] section",
        "countries: \"Europe\"",
        "prefixes: \"+31\"",
        "sms_price.default = \"cheap\"",
        "\"twin\" is used twice",
        "\"fax\" is not a channel",
    ] {
        assert!(err.contains(needle), "{needle} in: {err}");
    }
}

#[test]
fn config_check_lists_the_routes() {
    let sb = crate::cli::Sandbox::new();
    let path = sb.path().join("routes.toml");
    std::fs::write(
        &path,
        r#"
public_url = "https://otp.example.com"

[[routes]]
name = "nl-direct"
provider = "console"
countries = ["NL"]
prefixes = ["32470"]
priority = 10
"#,
    )
    .unwrap();
    let out = sb
        .cmd(&["--config", path.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("https://otp.example.com"), "{text}");
    assert!(text.contains("nl-direct"), "{text}");
    assert!(text.contains("NL +32470"), "{text}");
}

#[tokio::test]
async fn a_receipt_before_the_submit_is_recorded_is_held_then_applied() {
    use otpgate::providers::{Receipt, ReceiptEvent, ReceiptKey};
    let app = spawn(vec![json!({"name": "fast-dlr", "provider": "console"})]).await;
    let (app_id, tpl) = app.app_and_template().await;
    app.providers[0].push_script(Script::HoldAccept);
    let v = app
        .post_undrained(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": NL}),
        )
        .await;
    let vid = v["data"]["verificationId"].as_str().unwrap().to_string();
    let attempt_id = app.attempts(&vid).await[0].id;
    // The SMSC's receipt overtakes its submit_sm_resp: no attempt has this message id yet.
    assert!(app.service.receipts.push(ReceiptEvent {
        route: "fast-dlr".into(),
        key: ReceiptKey::Message(MemoryProvider::message_id(attempt_id)),
        receipt: Receipt {
            delivered: true,
            at_ms: 0,
            reason: None,
            mnc: Some(8),
            call: None,
        },
    }));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.attempts(&vid).await[0].report_state, "pending");
    // The submit answers and is recorded; the held receipt then applies.
    app.providers[0].release();
    app.drain().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = &app.attempts(&vid).await[0];
        if a.report_state == "success" {
            assert_eq!(a.mnc, Some(8));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never applied: {a:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
}
