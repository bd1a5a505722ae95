//! Peer suites: otpgate's HTTP API against real peers on loopback, started by `ci/peers.sh`
//! (see docs/peers-ci.md):
//!
//! - `peers_kannel_fake_*`: Kannel 1.4.5 (bearerbox + smsbox) with its own fake SMSC
//!   (`smsc = fake` and `/usr/lib/kannel/test/fakesmsc`, whose log shows every message);
//! - `peers_kannel_smpp_*`: Kannel over SMPP (transceiver) to the npm fake SMSC
//!   (`ci/fake_smsc.js` on `smpp@0.5.1`), receipts coming back as Kannel DLR callbacks;
//! - `peers_smpp_*`: otpgate's own SMPP provider against the npm fake SMSC.
//!
//! The npm SMSC refuses binds with the password `bad` (`ESME_RINVPASWD`), throttles
//! destinations ending in 429 (`ESME_RTHROTTLED`), reports `UNDELIV` for those ending in 666
//! and `DELIVRD` otherwise, and writes every bind and `submit_sm` to a JSON-lines file.
//!
//! The peers' addresses come from `OTPGATE_PEER_*` environment variables. Without them the
//! tests return at once (a local `cargo test` needs no peers), except under `CI=true`, where a
//! missing peer is a failure. Receipts arrive over the network: the tests poll (every 50 ms,
//! for at most 20 s), never sleep a fixed time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use otpgate::providers::routing::RouteConfig;
use otpgate::store::{gateway, job_kind};
use serde_json::{Value, json};

use crate::harness::TestApp;

/// How long a peer may take to answer (a receipt, a log line, a bind).
const PATIENCE: Duration = Duration::from_secs(20);

/// Valid Dutch mobile numbers; the npm SMSC acts on the last three digits.
const NL_DELIVERED: &str = "31612345678";
const NL_UNDELIVERED: &str = "31612345666";
const NL_THROTTLED: &str = "31612345429";

const SENDER: &str = "OTPGATE";
const HOOK_TOKEN: &str = "peers0token";

/// Where the peers are, from `ci/peers.sh`.
struct Peers {
    /// Kannel set A (fake smsc): its smsbox's sendsms URL.
    kannel_fake: String,
    /// Kannel set B (SMPP to the npm SMSC): its smsbox's sendsms URL.
    kannel_smpp: String,
    kannel_user: String,
    kannel_password: String,
    /// The log of Kannel's fakesmsc (it logs every message it receives).
    fakesmsc_log: PathBuf,
    /// The npm SMSC's port for otpgate's own SMPP provider.
    smsc_host: String,
    smsc_port: u16,
    /// The npm SMSC's record of binds and submits, one JSON object a line.
    smsc_record: PathBuf,
}

const VARS: &[&str] = &[
    "OTPGATE_PEER_KANNEL_FAKE",
    "OTPGATE_PEER_KANNEL_SMPP",
    "OTPGATE_PEER_KANNEL_USER",
    "OTPGATE_PEER_KANNEL_PASSWORD",
    "OTPGATE_PEER_KANNEL_FAKESMSC_LOG",
    "OTPGATE_PEER_SMSC",
    "OTPGATE_PEER_SMSC_RECORD",
];

/// The peers, or `None` (after saying why) when they are not running. Panics under
/// `CI=true`: CI starts the peers itself, so a missing one is a failure, not a skip.
fn peers(test: &str) -> Option<Peers> {
    let missing: Vec<&str> = VARS
        .iter()
        .copied()
        .filter(|v| std::env::var(v).map_or(true, |s| s.is_empty()))
        .collect();
    if !missing.is_empty() {
        let why = format!(
            "{test}: the peer suites need real peers (Kannel, the npm fake SMSC); run them with \
             `bash ci/peers.sh`, which starts the peers and sets {}",
            missing.join(", ")
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{why} (CI=true: a missing peer is a failure)");
        }
        eprintln!("skipped: {why}");
        return None;
    }
    let var = |v: &str| std::env::var(v).unwrap();
    let smsc = var("OTPGATE_PEER_SMSC");
    let (host, port) = smsc
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("OTPGATE_PEER_SMSC={smsc:?} is not host:port"));
    Some(Peers {
        kannel_fake: var("OTPGATE_PEER_KANNEL_FAKE"),
        kannel_smpp: var("OTPGATE_PEER_KANNEL_SMPP"),
        kannel_user: var("OTPGATE_PEER_KANNEL_USER"),
        kannel_password: var("OTPGATE_PEER_KANNEL_PASSWORD"),
        fakesmsc_log: var("OTPGATE_PEER_KANNEL_FAKESMSC_LOG").into(),
        smsc_host: host.to_string(),
        smsc_port: port.parse().expect("OTPGATE_PEER_SMSC port"),
        smsc_record: var("OTPGATE_PEER_SMSC_RECORD").into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Polls `probe` every 50 ms until it gives a value; fails after [`PATIENCE`].
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {} s waiting for {what}",
            PATIENCE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a peer's log file gained since this value was made.
struct Tail {
    path: PathBuf,
    from: u64,
}

impl Tail {
    fn new(path: &std::path::Path) -> Self {
        let from = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self {
            path: path.to_path_buf(),
            from,
        }
    }

    fn lines(&self) -> Vec<String> {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let from = usize::try_from(self.from).unwrap_or(0).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The new lines that are JSON objects (the npm SMSC's record).
    fn records(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn route(v: Value) -> RouteConfig {
    serde_json::from_value(v).expect("route config")
}

async fn spawn(route_json: Value) -> TestApp {
    let r = route(route_json);
    TestApp::spawn_configured(move |cfg| cfg.routes = vec![r]).await
}

fn kannel_route(p: &Peers, name: &str, url: &str, password: &str, smsc: &str) -> Value {
    json!({
        "name": name,
        "provider": "kannel",
        "sender": SENDER,
        "kannel": {
            "url": url,
            "username": p.kannel_user,
            "password": password,
            "smsc": smsc,
            "hook_token": HOOK_TOKEN,
        },
    })
}

fn smpp_route(p: &Peers, system_id: &str, password: &str) -> Value {
    json!({
        "name": "npm-smsc",
        "provider": "smpp",
        "sender": SENDER,
        "smpp": {
            "host": p.smsc_host,
            "port": p.smsc_port,
            "system_id": system_id,
            "password": password,
            "enquire_link_secs": 5,
            "reconnect_secs": 1,
            "reconnect_max_secs": 2,
        },
    })
}

/// The record once its SMS has a final status (delivered or failed).
async fn settled_record(app: &TestApp, vid: &str) -> Value {
    eventually(
        &format!("a final sms status in the record of {vid}"),
        async || {
            let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
            assert_eq!(rec["status"], "0", "{rec}");
            (rec["data"]["sms"]["status"] != -1).then_some(rec)
        },
    )
    .await
}

/// The only attempt of a verification.
async fn only_attempt(app: &TestApp, vid: &str) -> otpgate::store::Attempt {
    let attempts = app.attempts(vid).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    attempts.into_iter().next().unwrap()
}

/// Verifies `code` through the API and asserts it is accepted.
async fn verify_ok(app: &TestApp, vid: &str, code: &str) {
    let v = app.verify(vid, code).await;
    assert_eq!(v["status"], "0", "the code the peer received verifies: {v}");
}

/// The first run of 4-10 digits in `text` (the code).
fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| (4..=10).contains(&w.len()))
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_string()
}

/// Decodes the URL-encoded bytes Kannel's fakesmsc logs (`+` is a space byte).
fn url_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex byte"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn utf16be(bytes: &[u8]) -> String {
    assert!(
        bytes.len().is_multiple_of(2),
        "UCS-2 has an even number of bytes"
    );
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).expect("UTF-16")
}

/// One message as Kannel's fakesmsc logged it: `Got message N: <from to type text>`.
#[derive(Debug)]
struct FakeSmscMessage {
    from: String,
    to: String,
    kind: String,
    text: String,
}

/// The message to `to` that Kannel's fakesmsc received since `tail` was made.
async fn fakesmsc_message(tail: &Tail, to: &str) -> FakeSmscMessage {
    eventually(
        &format!("Kannel's fakesmsc to receive a message to {to}"),
        async || {
            tail.lines().iter().find_map(|l| {
                let (_, rest) = l.split_once("Got message ")?;
                let (_, msg) = rest.split_once(": <")?;
                let msg = msg.strip_suffix('>')?;
                let mut parts = msg.splitn(4, ' ');
                let m = FakeSmscMessage {
                    from: parts.next()?.to_string(),
                    to: parts.next()?.to_string(),
                    kind: parts.next()?.to_string(),
                    text: parts.next().unwrap_or_default().to_string(),
                };
                (m.to == to).then_some(m)
            })
        },
    )
    .await
}

/// The `submit_sm`s to `dest` bound as `system_id` that the npm SMSC recorded since `tail`.
async fn smsc_submits(tail: &Tail, system_id: &str, dest: &str, count: usize) -> Vec<Value> {
    eventually(
        &format!("{count} submit_sm from {system_id} to {dest} at the npm SMSC"),
        async || {
            let found: Vec<Value> = tail
                .records()
                .into_iter()
                .filter(|r| {
                    r["event"] == "submit_sm" && r["system_id"] == system_id && r["dest"] == dest
                })
                .collect();
            (found.len() >= count).then_some(found)
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Kannel with its fake SMSC

#[tokio::test]
async fn peers_kannel_fake_accepts_delivers_and_the_code_verifies() {
    let Some(p) = peers("peers_kannel_fake_accepts_delivers_and_the_code_verifies") else {
        return;
    };
    let tail = Tail::new(&p.fakesmsc_log);
    let app = spawn(kannel_route(
        &p,
        "kannel-fake",
        &p.kannel_fake,
        &p.kannel_password,
        "fake",
    ))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL_DELIVERED).await;

    let a = only_attempt(&app, &vid).await;
    assert_eq!(a.route, "kannel-fake");
    assert_eq!(a.provider, "kannel");
    assert_eq!(
        a.gateway_state,
        gateway::SUCCESS,
        "Kannel accepted it: {a:?}"
    );
    assert_eq!(a.encoding.as_deref(), Some("GSM-7"));

    // The message reached Kannel's fake SMSC as plain text from the route's sender.
    let m = fakesmsc_message(&tail, NL_DELIVERED).await;
    assert_eq!(m.from, SENDER, "{m:?}");
    assert_eq!(m.kind, "text", "{m:?}");
    assert!(m.text.ends_with(" is your verification code"), "{m:?}");

    // Kannel's fake smsc reports an SMSC ack (type 8, ignored) and then "delivered"
    // (type 1, with no receipt text) to the route's hook.
    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "delivered: {rec}");
    verify_ok(&app, &vid, &code_in(&m.text)).await;
}

#[tokio::test]
async fn peers_kannel_fake_ucs2_text_goes_with_coding_2() {
    let Some(p) = peers("peers_kannel_fake_ucs2_text_goes_with_coding_2") else {
        return;
    };
    let tail = Tail::new(&p.fakesmsc_log);
    let app = spawn(kannel_route(
        &p,
        "kannel-fake",
        &p.kannel_fake,
        &p.kannel_password,
        "fake",
    ))
    .await;
    let app_id = app.app(json!({})).await;
    let tpl = app
        .template(&app_id, json!({"text": "Ваш код: ##code##"}))
        .await;
    let to = "31612340002";
    let vid = app.send_ok(&app_id, tpl, to).await;
    let a = only_attempt(&app, &vid).await;
    assert_eq!(a.gateway_state, gateway::SUCCESS, "{a:?}");
    assert_eq!(a.encoding.as_deref(), Some("UCS-2"));
    assert_eq!(a.segments, Some(1));

    // fakesmsc shows UCS-2 messages as `ucs-2` with the UTF-16BE bytes URL-encoded.
    let m = fakesmsc_message(&tail, to).await;
    assert_eq!(m.kind, "ucs-2", "Kannel sent UCS-2 (coding=2): {m:?}");
    let text = utf16be(&url_bytes(&m.text));
    let code = code_in(&text);
    assert_eq!(text, format!("Ваш код: {code}"));

    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    verify_ok(&app, &vid, &code).await;
}

#[tokio::test]
async fn peers_kannel_wrong_password_fails_the_attempt() {
    let Some(p) = peers("peers_kannel_wrong_password_fails_the_attempt") else {
        return;
    };
    let app = spawn(kannel_route(
        &p,
        "kannel-fake",
        &p.kannel_fake,
        "not-the-password",
        "fake",
    ))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, "31612340003").await;
    let a = only_attempt(&app, &vid).await;
    assert_eq!(a.gateway_state, gateway::FAIL, "{a:?}");
    let reason = a.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("403") && reason.contains("Authorization failed"),
        "Kannel answers 403 Authorization failed: {a:?}"
    );
    assert!(
        app.jobs()
            .await
            .iter()
            .all(|j| !(j.kind == job_kind::DELIVER && j.attempt_id == Some(a.id))),
        "a refusal for the credentials is not retried"
    );
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
}

// ---------------------------------------------------------------------------------------------
// Kannel over SMPP to the npm SMSC

#[tokio::test]
async fn peers_kannel_smpp_delivered_receipt_comes_back_through_the_hook() {
    let Some(p) = peers("peers_kannel_smpp_delivered_receipt_comes_back_through_the_hook") else {
        return;
    };
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(kannel_route(
        &p,
        "kannel-smpp",
        &p.kannel_smpp,
        &p.kannel_password,
        "smpp",
    ))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL_DELIVERED).await;
    let a = only_attempt(&app, &vid).await;
    assert_eq!(a.gateway_state, gateway::SUCCESS, "{a:?}");

    let sm = &smsc_submits(&tail, "kannel", NL_DELIVERED, 1).await[0];
    assert_eq!(sm["source"], SENDER, "{sm}");
    assert_eq!(sm["data_coding"], 0, "{sm}");
    assert_eq!(
        sm["registered_delivery"].as_u64().unwrap() & 1,
        1,
        "Kannel asked for the SMSC receipt: {sm}"
    );
    let text = sm["message"].as_str().unwrap();
    assert!(text.ends_with(" is your verification code"), "{sm}");

    // deliver_sm DELIVRD → Kannel → GET /hooks/kannel-smpp?type=1&… → delivered.
    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    verify_ok(&app, &vid, &code_in(text)).await;
}

#[tokio::test]
async fn peers_kannel_smpp_undelivered_receipt_fails_with_the_reason() {
    let Some(p) = peers("peers_kannel_smpp_undelivered_receipt_fails_with_the_reason") else {
        return;
    };
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(kannel_route(
        &p,
        "kannel-smpp",
        &p.kannel_smpp,
        &p.kannel_password,
        "smpp",
    ))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL_UNDELIVERED).await;
    assert_eq!(
        only_attempt(&app, &vid).await.gateway_state,
        gateway::SUCCESS
    );
    smsc_submits(&tail, "kannel", NL_UNDELIVERED, 1).await;

    // deliver_sm UNDELIV → Kannel DLR type 2 with the receipt text in %A.
    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "failed: {rec}");
    let reason = rec["data"]["sms"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("UNDELIV"),
        "the receipt's stat is the reason: {rec}"
    );
}

#[tokio::test]
async fn peers_kannel_smpp_ucs2_arrives_as_data_coding_8() {
    let Some(p) = peers("peers_kannel_smpp_ucs2_arrives_as_data_coding_8") else {
        return;
    };
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(kannel_route(
        &p,
        "kannel-smpp",
        &p.kannel_smpp,
        &p.kannel_password,
        "smpp",
    ))
    .await;
    let app_id = app.app(json!({})).await;
    let tpl = app
        .template(&app_id, json!({"text": "رمز التحقق: ##code##"}))
        .await;
    let to = "31612340006";
    let vid = app.send_ok(&app_id, tpl, to).await;
    let sm = &smsc_submits(&tail, "kannel", to, 1).await[0];
    assert_eq!(sm["data_coding"], 8, "UCS-2 at the SMSC: {sm}");
    let text = sm["message"].as_str().unwrap();
    assert_eq!(text, format!("رمز التحقق: {}", code_in(text)), "{sm}");
    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    verify_ok(&app, &vid, &code_in(text)).await;
}

#[tokio::test]
async fn peers_kannel_smsc_refused_for_its_password_makes_kannel_refuse_the_message() {
    let Some(p) =
        peers("peers_kannel_smsc_refused_for_its_password_makes_kannel_refuse_the_message")
    else {
        return;
    };
    // Kannel's smsc `smpp-bad` binds with the password `bad`; the npm SMSC refuses it with
    // ESME_RINVPASWD and Kannel 1.4.5 gives that smsc up for good (status `dead`, no
    // rebind). It does not queue messages for it: sendsms answers 403 "Not routable. Do not
    // try again." (and sends a type 16 report).
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(kannel_route(
        &p,
        "kannel-bad",
        &p.kannel_smpp,
        &p.kannel_password,
        "smpp-bad",
    ))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let to = "31612340007";
    let vid = app.send_ok(&app_id, tpl, to).await;
    let a = only_attempt(&app, &vid).await;
    assert_eq!(a.gateway_state, gateway::FAIL, "{a:?}");
    let reason = a.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("Not routable") && reason.contains("403"),
        "{a:?}"
    );
    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
    assert!(
        tail.records().iter().all(|r| r["dest"] != to),
        "nothing reached the SMSC"
    );
}

// ---------------------------------------------------------------------------------------------
// otpgate's SMPP provider against the npm SMSC

/// Waits until the route's bind stands.
async fn bound(app: &TestApp) {
    eventually("the SMPP route to bind", async || {
        app.service.routing.routes()[0]
            .provider
            .is_up()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn peers_smpp_delivered() {
    let Some(p) = peers("peers_smpp_delivered") else {
        return;
    };
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(smpp_route(&p, "otpgate", "secret")).await;
    bound(&app).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL_DELIVERED).await;
    let a = only_attempt(&app, &vid).await;
    assert_eq!(a.gateway_state, gateway::SUCCESS, "{a:?}");

    let sm = &smsc_submits(&tail, "otpgate", NL_DELIVERED, 1).await[0];
    assert_eq!(
        a.provider_message_id.as_deref(),
        sm["id"].as_str(),
        "the SMSC's message id is recorded: {sm}"
    );
    assert_eq!(sm["source"], SENDER, "{sm}");
    assert_eq!(sm["data_coding"], 0, "{sm}");
    assert_eq!(sm["registered_delivery"], 1, "{sm}");
    let text = sm["message"].as_str().unwrap();

    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    verify_ok(&app, &vid, &code_in(text)).await;
}

#[tokio::test]
async fn peers_smpp_undelivered() {
    let Some(p) = peers("peers_smpp_undelivered") else {
        return;
    };
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(smpp_route(&p, "otpgate", "secret")).await;
    bound(&app).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL_UNDELIVERED).await;
    assert_eq!(
        only_attempt(&app, &vid).await.gateway_state,
        gateway::SUCCESS
    );
    smsc_submits(&tail, "otpgate", NL_UNDELIVERED, 1).await;
    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
    let reason = rec["data"]["sms"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("UNDELIV"), "{rec}");
}

#[tokio::test]
async fn peers_smpp_throttled_stays_pending_with_a_retry() {
    let Some(p) = peers("peers_smpp_throttled_stays_pending_with_a_retry") else {
        return;
    };
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(smpp_route(&p, "otpgate", "secret")).await;
    bound(&app).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL_THROTTLED).await;
    let sm = &smsc_submits(&tail, "otpgate", NL_THROTTLED, 1).await[0];
    assert_eq!(sm["status"], "THROTTLED", "{sm}");

    let a = only_attempt(&app, &vid).await;
    assert_eq!(a.gateway_state, gateway::PENDING, "{a:?}");
    let reason = a.reason.clone().unwrap_or_default();
    assert!(
        reason.to_ascii_lowercase().contains("throttl"),
        "the reason says throttled: {a:?}"
    );
    let jobs = app.jobs().await;
    assert!(
        jobs.iter()
            .any(|j| j.kind == job_kind::DELIVER && j.attempt_id == Some(a.id)),
        "a retry is scheduled: {jobs:?}"
    );
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], -1, "still pending: {rec}");
}

#[tokio::test]
async fn peers_smpp_bad_password_keeps_the_route_down_and_retries() {
    let Some(p) = peers("peers_smpp_bad_password_keeps_the_route_down_and_retries") else {
        return;
    };
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(smpp_route(&p, "otpbad", "bad")).await;
    // The SMSC refused the bind (and keeps refusing the reconnects).
    eventually("the npm SMSC to refuse otpgate's bind", async || {
        tail.records()
            .iter()
            .any(|r| r["system_id"] == "otpbad" && r["ok"] == false)
            .then_some(())
    })
    .await;
    assert!(
        !app.service.routing.routes()[0].provider.is_up(),
        "a refused bind leaves the route down"
    );
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL_DELIVERED).await;
    for round in 0..2 {
        let a = only_attempt(&app, &vid).await;
        assert_eq!(
            a.gateway_state,
            gateway::PENDING,
            "round {round}: retried, not failed: {a:?}"
        );
        assert!(
            a.reason
                .as_deref()
                .unwrap_or_default()
                .contains("not bound"),
            "{a:?}"
        );
        let jobs = app.jobs().await;
        let retry = jobs
            .iter()
            .find(|j| j.kind == job_kind::DELIVER && j.attempt_id == Some(a.id))
            .unwrap_or_else(|| panic!("a retry is scheduled: {jobs:?}"));
        assert_eq!(retry.tries, round + 1, "{retry:?}");
        // The retry comes due and finds the route still down.
        let wait = (retry.due_ms - app.clock_now_secs() * 1000) / 1000 + 1;
        app.advance_and_drain(wait.max(1)).await;
    }
    assert!(
        tail.records()
            .iter()
            .all(|r| r["event"] != "submit_sm" || r["system_id"] != "otpbad"),
        "nothing was submitted"
    );
}

#[tokio::test]
async fn peers_smpp_ucs2_multipart() {
    let Some(p) = peers("peers_smpp_ucs2_multipart") else {
        return;
    };
    let tail = Tail::new(&p.smsc_record);
    let app = spawn(smpp_route(&p, "otpgate", "secret")).await;
    bound(&app).await;
    let app_id = app.app(json!({})).await;
    // Over 70 UTF-16 units with the code: more than one UCS-2 SMS, two parts (67 units each).
    let body = "Ваш код подтверждения для входа в личный кабинет. Никому его не сообщайте:";
    let tpl = app
        .template(&app_id, json!({"text": format!("{body} ##code##")}))
        .await;
    let to = "31612340012";
    let vid = app.send_ok(&app_id, tpl, to).await;
    let a = only_attempt(&app, &vid).await;
    assert_eq!(a.gateway_state, gateway::SUCCESS, "{a:?}");
    assert_eq!(a.encoding.as_deref(), Some("UCS-2"));
    assert_eq!(a.segments, Some(2), "{a:?}");

    let parts = smsc_submits(&tail, "otpgate", to, 2).await;
    assert_eq!(parts.len(), 2, "{parts:?}");
    let mut seqs = Vec::new();
    for sm in &parts {
        assert_eq!(sm["data_coding"], 8, "{sm}");
        assert_eq!(sm["esm_class"].as_u64().unwrap() & 0x40, 0x40, "UDHI: {sm}");
        // The concatenation header: IEI 00, length 03, reference, total 2, sequence.
        let udh = sm["udh"][0].as_str().unwrap();
        assert_eq!(udh.len(), 10, "{sm}");
        assert!(udh.starts_with("0003") && udh[6..8] == *"02", "{sm}");
        seqs.push((udh[8..10].to_string(), udh[4..6].to_string()));
    }
    assert_eq!(seqs[0].1, seqs[1].1, "one reference for both parts");
    let mut ordered: Vec<&Value> = parts.iter().collect();
    ordered.sort_by_key(|sm| sm["udh"][0].as_str().unwrap()[8..10].to_string());
    let text: String = ordered
        .iter()
        .map(|sm| sm["message"].as_str().unwrap())
        .collect();
    let code = code_in(&text);
    assert_eq!(text, format!("{body} {code}"));
    assert_eq!(
        a.provider_message_id.as_deref(),
        ordered[0]["id"].as_str(),
        "the first part's id stands for the message"
    );

    // Both parts' receipts say DELIVRD: the message is delivered.
    let rec = settled_record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    assert_eq!(rec["data"]["sms"]["chargeCnt"], 2, "{rec}");
    verify_ok(&app, &vid, &code).await;
}
