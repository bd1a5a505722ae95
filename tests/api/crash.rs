//! Crash safety and graceful shutdown of the real `otpgate serve`: a SIGKILL in the middle of
//! a burst of sends, then a restart on the same database, must neither lose an acknowledged
//! send nor hand any attempt to its route twice, and the flow timers written before the crash
//! must fire on time; a SIGTERM must finish (or release) every claimed job and keep the flow
//! timers for the next start.
//!
//! The database is read directly (read-only, `rusqlite`) only once the server has exited.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use otpgate::crypto::buka_sign;
use reqwest::Method;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

use crate::cli::{Sandbox, Served, Signer, create_tenant, free_port};

const TO: &str = "14155552671";
/// The flow node's `waitingTime`, seconds (the contract's minimum).
const WAIT_SECS: i64 = 30;
/// How late a node may fire after it is due.
const MAX_LATE_MS: i64 = 10_000;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Starts `otpgate serve` (development, console provider) on a free port of this sandbox's
/// database and waits until it answers `/readyz`.
pub(crate) async fn serve(sb: &Sandbox, key: &str, secret: &str) -> (Served, Signer) {
    serve_with(sb, "serve", key, secret, |_| {}).await
}

/// As [`serve`], with `configure` adding to the command (another database, settings); `name`
/// names the process in failures.
pub(crate) async fn serve_with(
    sb: &Sandbox,
    name: &str,
    key: &str,
    secret: &str,
    configure: impl FnOnce(&mut std::process::Command),
) -> (Served, Signer) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = sb.cmd(&["serve"]);
    cmd.env("OTPGATE_LISTEN", &addr)
        .env("OTPGATE_MODE", "development");
    configure(&mut cmd);
    let mut server = Served::start(cmd);
    let api = Signer {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("HTTP client"),
        base: format!("http://{addr}"),
        key: key.to_string(),
        secret: secret.to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = api.client.get(format!("{}/readyz", api.base)).send().await
            && r.status() == 200
        {
            break;
        }
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            let (_, stderr) = server.finish(Duration::ZERO);
            panic!("{name} exited with {status} before it was ready; stderr:\n{stderr}");
        }
        assert!(Instant::now() < deadline, "{name} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, api)
}

/// A signed Buka request that may fail (the server may be gone): the parsed envelope, or why
/// there is none.
async fn try_call(
    api: &Signer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .to_string();
    let mut req = api
        .client
        .request(method, format!("{}{}", api.base, path))
        .header("Api-Key", &api.key)
        .header("Timestamp", &ts)
        .header("Sign", buka_sign(&api.key, &api.secret, &ts));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("{path}: HTTP {}", resp.status()));
    }
    resp.json().await.map_err(|e| format!("{path}: {e}"))
}

/// A signed request to a server that must answer.
async fn call(api: &Signer, method: Method, path: &str, body: Option<Value>) -> Value {
    try_call(api, method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An app, its template and a flow of one node `{waitingTime 30, status 2, sms, channelCut 1}`.
async fn catalog(api: &Signer) -> (String, i64, i64) {
    let v = api
        .post("/v3/otp/app/add", json!({"name": "crash_app"}))
        .await;
    assert_eq!(v["status"], "0", "{v}");
    let app_id = v["data"]["appId"].as_str().expect("appId").to_string();
    let v = api
        .post(
            "/otp/template/add",
            json!({"appId": app_id, "name": "crash_tpl", "text": "##code## is your code"}),
        )
        .await;
    assert_eq!(v["status"], "0", "{v}");
    let tpl = v["data"]["templateId"].as_i64().expect("templateId");
    let v = api
        .post(
            "/v3/otp/flow/add",
            json!({"name": "crash_flow", "flow": [
                {"waitingTime": WAIT_SECS, "status": 2, "channel": "sms", "channelCut": 1}
            ]}),
        )
        .await;
    assert_eq!(v["status"], "0", "{v}");
    let flow_id = v["data"]["flowId"].as_i64().expect("flowId");
    (app_id, tpl, flow_id)
}

/// What became of the sends of a burst.
#[derive(Default)]
struct Burst {
    /// orderId → verificationId of every send the server acknowledged.
    acked: BTreeMap<String, String>,
    /// Sends that got no answer (the server went away), by orderId.
    unanswered: BTreeSet<String>,
    /// Sends the server answered with anything but success.
    refused: Vec<Value>,
    /// When the signal was sent, after how many acknowledgements.
    signalled: Option<(Instant, usize)>,
}

/// Fires `total` sends (each with its own orderId and the flow), `concurrency` at a time, and
/// calls `signal` the moment `signal_after` have been acknowledged, while the others are still
/// in flight; then collects the rest of the answers.
async fn burst(
    api: &Signer,
    (app_id, tpl, flow_id): (&str, i64, i64),
    prefix: &str,
    total: usize,
    concurrency: usize,
    signal_after: usize,
    mut signal: impl FnMut(),
) -> Burst {
    let mut sends = futures::stream::iter(0..total)
        .map(|i| {
            let order_id = format!("{prefix}-{i:04}");
            async move {
                let body = json!({"appId": app_id, "templateId": tpl, "to": TO,
                    "flowId": flow_id, "orderId": order_id});
                let r = try_call(api, Method::POST, "/v3/otp/verification/send", Some(body)).await;
                (order_id, r)
            }
        })
        .buffer_unordered(concurrency);
    let mut out = Burst::default();
    while let Some((order_id, r)) = sends.next().await {
        match r {
            Ok(v) if v["status"] == "0" => {
                let vid = v["data"]["verificationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("verificationId: {v}"))
                    .to_string();
                out.acked.insert(order_id, vid);
            }
            Ok(v) => out.refused.push(v),
            Err(_) => {
                out.unanswered.insert(order_id);
            }
        }
        if out.signalled.is_none() && out.acked.len() >= signal_after {
            signal();
            out.signalled = Some((Instant::now(), out.acked.len()));
        }
    }
    if out.signalled.is_none() {
        signal();
        out.signalled = Some((Instant::now(), out.acked.len()));
    }
    out
}

pub(crate) fn sigterm(server: &Served) {
    let ok = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success(), "kill -TERM {}", server.pid());
}

fn db_path(sb: &Sandbox) -> PathBuf {
    sb.path().join("x.db")
}

/// The database, read-only; only once no server runs on it.
fn open_db(sb: &Sandbox) -> Connection {
    Connection::open_with_flags(db_path(sb), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database read-only")
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // Fields are read through `Debug` in failure messages.
struct AttemptRow {
    id: i64,
    session_id: String,
    verification_id: String,
    gateway_state: String,
    report_state: String,
    reason: Option<String>,
    created_ms: i64,
    send_ms: Option<i64>,
    flow_step: Option<i64>,
}

fn attempts(db: &Connection) -> Vec<AttemptRow> {
    db.prepare(
        "SELECT id, session_id, verification_id, gateway_state, report_state, reason, created_ms, \
         send_ms, flow_step FROM attempts ORDER BY id",
    )
    .expect("prepare")
    .query_map([], |r| {
        Ok(AttemptRow {
            id: r.get(0)?,
            session_id: r.get(1)?,
            verification_id: r.get(2)?,
            gateway_state: r.get(3)?,
            report_state: r.get(4)?,
            reason: r.get(5)?,
            created_ms: r.get(6)?,
            send_ms: r.get(7)?,
            flow_step: r.get(8)?,
        })
    })
    .expect("query attempts")
    .collect::<Result<_, _>>()
    .expect("attempt rows")
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // Fields are read through `Debug` in failure messages.
struct JobRow {
    id: i64,
    key: String,
    kind: String,
    session_id: Option<String>,
    attempt_id: Option<i64>,
    step: Option<i64>,
    due_ms: i64,
    owner: Option<String>,
    lease_ms: Option<i64>,
}

fn jobs(db: &Connection) -> Vec<JobRow> {
    db.prepare(
        "SELECT id, key, kind, session_id, attempt_id, step, due_ms, owner, lease_ms FROM jobs \
         ORDER BY id",
    )
    .expect("prepare")
    .query_map([], |r| {
        Ok(JobRow {
            id: r.get(0)?,
            key: r.get(1)?,
            kind: r.get(2)?,
            session_id: r.get(3)?,
            attempt_id: r.get(4)?,
            step: r.get(5)?,
            due_ms: r.get(6)?,
            owner: r.get(7)?,
            lease_ms: r.get(8)?,
        })
    })
    .expect("query jobs")
    .collect::<Result<_, _>>()
    .expect("job rows")
}

/// orderId → session id, from the database.
fn orders(db: &Connection) -> BTreeMap<String, String> {
    db.prepare(
        "SELECT o.order_id, v.session_id FROM orders o \
         JOIN verifications v ON v.verification_id = o.verification_id",
    )
    .expect("prepare")
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
    .expect("query orders")
    .collect::<Result<_, _>>()
    .expect("order rows")
}

/// The console outbox through `otpgate outbox --json`: how many entries each attempt has, and
/// their times.
fn outbox(sb: &Sandbox) -> (HashMap<i64, usize>, HashMap<i64, i64>) {
    let list = sb.json(&["outbox", "--json", "--limit", "10000"]);
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("outbox --json is an array: {list}"));
    assert!(entries.len() < 10_000, "the outbox listing was cut short");
    let mut count = HashMap::new();
    let mut at = HashMap::new();
    for e in entries {
        let attempt = e["attemptId"]
            .as_i64()
            .unwrap_or_else(|| panic!("every console message names its attempt: {e}"));
        *count.entry(attempt).or_insert(0) += 1;
        at.insert(attempt, e["atMs"].as_i64().expect("atMs"));
    }
    (count, at)
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

// ---------------------------------------------------------------------------------------------
// SIGKILL

/// Sends whose server is SIGKILLed mid-burst: after a restart on the same database every
/// acknowledged send has its record, no attempt was handed to the console twice, and every
/// session's flow node fires exactly once, on time (its timer was written before the crash).
#[tokio::test]
async fn a_flow_node_fires_once_after_sigkill_and_restart() {
    let sb = Sandbox::new();
    let (key, secret) = create_tenant(&sb, "crash");
    let (mut server, api) = serve(&sb, &key, &secret).await;
    let (app_id, tpl, flow_id) = catalog(&api).await;

    // 120 sends, 48 at a time; SIGKILL the moment 60 are acknowledged, with the rest (and
    // their deliveries) in flight.
    let started = Instant::now();
    let b = burst(&api, (&app_id, tpl, flow_id), "kill", 120, 48, 60, || {
        server.child.kill().expect("SIGKILL");
    })
    .await;
    let (killed_at, acked_before_kill) = b.signalled.expect("signalled");
    let (status, stderr1) = server.finish(Duration::from_secs(10));
    let status = status.expect("the killed server is gone");
    assert!(
        !status.success(),
        "a SIGKILLed server does not exit 0: {status}"
    );
    assert!(
        killed_at.duration_since(started) < Duration::from_secs(10),
        "the kill came {:?} after the first send: too close to the flow node's due time",
        killed_at.duration_since(started)
    );
    assert!(b.refused.is_empty(), "sends refused: {:?}", b.refused);
    assert!(
        b.acked.len() >= acked_before_kill && acked_before_kill >= 60,
        "{} acknowledged",
        b.acked.len()
    );
    eprintln!(
        "crash: killed {:?} after the first send; {} sends acknowledged, {} unanswered",
        killed_at.duration_since(started),
        b.acked.len(),
        b.unanswered.len()
    );
    drop(api);

    // Restart on the same database.
    let (server, api) = serve(&sb, &key, &secret).await;
    let restarted_at = Instant::now();

    // Every acknowledged verificationId has its record.
    for (order_id, vid) in &b.acked {
        let r = call(
            &api,
            Method::GET,
            &format!("/v3/otp/verification/record/{vid}"),
            None,
        )
        .await;
        assert_eq!(r["status"], "0", "record of acknowledged {vid}: {r}");
        assert_eq!(r["data"]["verificationId"], vid.as_str(), "{r}");
        assert_eq!(
            r["data"]["verifications"]["orderId"],
            order_id.as_str(),
            "{r}"
        );
        assert!(r["data"]["sms"].is_object(), "an SMS attempt: {r}");
    }
    // Which unanswered sends were committed anyway: they must go on like the others.
    let mut committed: BTreeSet<String> = b.acked.keys().cloned().collect();
    for order_id in &b.unanswered {
        let r = call(
            &api,
            Method::POST,
            "/v3/otp/verification/orderId/record",
            Some(json!({"orderId": order_id})),
        )
        .await;
        match r["status"].as_str() {
            Some("0") => {
                committed.insert(order_id.clone());
            }
            Some("-24") => {}
            _ => panic!("orderId record of {order_id}: {r}"),
        }
    }

    // Wait until every session has its node attempt: two SMS attempts, never more.
    let deadline = started + Duration::from_secs(WAIT_SECS as u64 + 45);
    let mut waiting: BTreeSet<String> = committed.clone();
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} sessions never got their flow node attempt (e.g. {:?}); restart was {:?} ago",
            waiting.len(),
            waiting.iter().next(),
            restarted_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut still = BTreeSet::new();
        for order_id in &waiting {
            let r = call(
                &api,
                Method::POST,
                "/v3/otp/verification/orderId/record",
                Some(json!({"orderId": order_id})),
            )
            .await;
            assert_eq!(r["status"], "0", "{order_id}: {r}");
            let sms = r["data"]["sms"].as_array().expect("sms array").len();
            assert!(sms <= 2, "{order_id} has {sms} SMS attempts: {r}");
            if sms < 2 {
                still.insert(order_id.clone());
            }
        }
        waiting = still;
    }
    let nodes_seen_after = started.elapsed();

    // Stop cleanly, then read what was written.
    sigterm(&server);
    let (status, stderr2) = server.finish(Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("no exit within 30 s of SIGTERM:\n{stderr2}"));
    assert!(status.success(), "{status}; stderr:\n{stderr2}");

    let db = open_db(&sb);
    let orders = orders(&db);
    assert_eq!(
        orders.keys().cloned().collect::<BTreeSet<_>>(),
        committed,
        "the orders in the database are the acknowledged sends plus those found by orderId"
    );
    let all = attempts(&db);
    let mut by_session: HashMap<&str, Vec<&AttemptRow>> = HashMap::new();
    for a in &all {
        by_session.entry(&a.session_id).or_default().push(a);
    }
    assert_eq!(
        by_session.len(),
        orders.len(),
        "every session with attempts belongs to a committed send"
    );
    let (sent, sent_at) = outbox(&sb);
    for (attempt, n) in &sent {
        assert_eq!(
            *n, 1,
            "attempt {attempt} was handed to the console {n} times"
        );
        assert!(
            all.iter().any(|a| a.id == *attempt),
            "outbox entry for unknown attempt {attempt}"
        );
    }

    let mut unknown = 0;
    // Interrupted after the console took it: the case "sent once, never again" proves.
    let mut unknown_but_sent = 0;
    let mut worst_late_ms = 0;
    for (order_id, session_id) in &orders {
        let list = by_session
            .get(session_id.as_str())
            .unwrap_or_else(|| panic!("session {session_id} of {order_id} has no attempts"));
        assert_eq!(list.len(), 2, "{order_id}: exactly first + node: {list:#?}");
        let (first, node) = (list[0], list[1]);
        if let Some(vid) = b.acked.get(order_id) {
            assert_eq!(&first.verification_id, vid, "{first:?}");
        }
        assert_eq!(first.verification_id, node.verification_id, "{list:#?}");
        assert_eq!(first.flow_step, Some(0), "{first:?}");
        assert_eq!(node.flow_step, Some(1), "{node:?}");
        match first.gateway_state.as_str() {
            "success" => assert_eq!(
                sent.get(&first.id),
                Some(&1),
                "a handed-over first attempt is in the outbox once: {first:?}"
            ),
            "unknown" => {
                unknown += 1;
                unknown_but_sent += usize::from(sent.contains_key(&first.id));
            }
            other => panic!("first attempt left in gateway state {other}: {first:?}"),
        }
        assert_eq!(node.gateway_state, "success", "{node:?}");
        assert_eq!(node.report_state, "success", "{node:?}");
        assert_eq!(sent.get(&node.id), Some(&1), "{node:?}");

        // On time: due `waitingTime` after the first attempt was handed over.
        let first_sent = first.send_ms.expect("first attempt send time");
        let node_sent = node.send_ms.expect("node attempt send time");
        let due = first_sent + WAIT_SECS * 1000;
        let late = node_sent - due;
        assert!(
            late >= 0,
            "{order_id}: node fired {} ms before it was due: {list:#?}",
            -late
        );
        assert!(
            late < MAX_LATE_MS,
            "{order_id}: node fired {late} ms after it was due: {list:#?}"
        );
        let console_late = sent_at[&node.id] - due;
        assert!(
            (0..MAX_LATE_MS).contains(&console_late),
            "{order_id}: the console got the node {console_late} ms after it was due"
        );
        worst_late_ms = worst_late_ms.max(late);
    }

    // Nothing is left to run but the receipt timeouts of attempts whose fate is unknown.
    let left = jobs(&db);
    for j in &left {
        assert!(
            j.owner.is_none() && j.lease_ms.is_none(),
            "claimed after SIGTERM: {j:?}"
        );
        assert_eq!(j.kind, "receipt", "left over: {j:?}");
        let a = all
            .iter()
            .find(|a| Some(a.id) == j.attempt_id)
            .unwrap_or_else(|| panic!("receipt job of a missing attempt: {j:?}"));
        assert_eq!(a.gateway_state, "unknown", "{j:?} {a:?}");
    }
    assert_eq!(
        left.len(),
        unknown,
        "one receipt timeout per unknown attempt"
    );

    // The restarted server logged each interrupted hand-over once.
    assert_eq!(
        count_lines(&stderr2, "state unknown"),
        unknown,
        "restart log:\n{stderr2}"
    );
    if unknown > 0 {
        assert!(
            stderr2.contains("claims left by a stopped server were freed"),
            "restart log:\n{stderr2}"
        );
    }
    assert!(!stderr1.contains("panicked"), "first server:\n{stderr1}");
    eprintln!(
        "crash: {} sessions, {unknown} first attempts interrupted mid-hand-over (unknown; \
         {unknown_but_sent} of them had reached the console), nodes all fired {:?} after the \
         first send, worst lateness {worst_late_ms} ms",
        orders.len(),
        nodes_seen_after
    );
}

// ---------------------------------------------------------------------------------------------
// SIGTERM

/// SIGTERM in the middle of a burst: the server exits 0, holds no claim afterwards, every
/// committed attempt was handed over exactly once (or, had the grace period run out, its
/// deliver job is released), and each session's flow timer is in the queue, unclaimed and due
/// `waitingTime` after the first hand-over, for the next start.
#[tokio::test]
async fn sigterm_finishes_or_releases_claimed_jobs() {
    let sb = Sandbox::new();
    let (key, secret) = create_tenant(&sb, "term");
    let (server, api) = serve(&sb, &key, &secret).await;
    let (app_id, tpl, flow_id) = catalog(&api).await;

    let b = burst(&api, (&app_id, tpl, flow_id), "term", 60, 16, 20, || {
        sigterm(&server)
    })
    .await;
    let (status, stderr) = server.finish(Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("no exit within 30 s of SIGTERM:\n{stderr}"));
    assert!(
        status.success(),
        "serve exits 0 on SIGTERM: {status}; stderr:\n{stderr}"
    );
    assert!(b.refused.is_empty(), "sends refused: {:?}", b.refused);
    assert!(b.acked.len() >= 20, "{} acknowledged", b.acked.len());
    eprintln!(
        "sigterm: {} sends acknowledged, {} unanswered",
        b.acked.len(),
        b.unanswered.len()
    );

    let db = open_db(&sb);
    let orders = orders(&db);
    // A graceful stop answers every request it accepted: the stored sends are exactly the
    // acknowledged ones (the unanswered ones were refused at the door, never half-done).
    assert_eq!(
        orders.keys().collect::<Vec<_>>(),
        b.acked.keys().collect::<Vec<_>>(),
        "stored orders vs acknowledged sends"
    );
    let all = attempts(&db);
    let left = jobs(&db);
    let claimed: Vec<&JobRow> = left
        .iter()
        .filter(|j| j.owner.is_some() || j.lease_ms.is_some())
        .collect();
    assert!(
        claimed.is_empty(),
        "claims held after SIGTERM: {claimed:#?}"
    );

    let (sent, _) = outbox(&sb);
    for (attempt, n) in &sent {
        assert_eq!(
            *n, 1,
            "attempt {attempt} was handed to the console {n} times"
        );
    }
    assert_eq!(
        all.len(),
        orders.len(),
        "one attempt per send so far: {all:#?}"
    );
    let mut finished = 0;
    for a in &all {
        let deliver = left
            .iter()
            .find(|j| j.kind == "deliver" && j.attempt_id == Some(a.id));
        let flow = left
            .iter()
            .find(|j| j.kind == "flow" && j.session_id.as_deref() == Some(a.session_id.as_str()));
        match a.gateway_state.as_str() {
            "success" => {
                finished += 1;
                assert_eq!(sent.get(&a.id), Some(&1), "handed over once: {a:?}");
                assert!(
                    deliver.is_none(),
                    "a finished delivery keeps no job: {deliver:?}"
                );
                let flow = flow
                    .unwrap_or_else(|| panic!("the flow timer of {a:?} is lost; jobs: {left:#?}"));
                assert_eq!(flow.step, Some(0), "{flow:?}");
                assert_eq!(flow.attempt_id, Some(a.id), "{flow:?}");
                let sent_ms = a.send_ms.expect("send time");
                let after = flow.due_ms - sent_ms;
                assert!(
                    (WAIT_SECS * 1000..WAIT_SECS * 1000 + 5_000).contains(&after),
                    "the node is due {after} ms after the hand-over: {flow:?} {a:?}"
                );
            }
            // Released by the grace period: its deliver job waits, free, for the next start.
            "sending" => {
                assert!(
                    deliver.is_some(),
                    "a released delivery keeps its job: {a:?}"
                );
                assert!(flow.is_none(), "{flow:?}");
            }
            other => panic!("attempt in gateway state {other} after SIGTERM: {a:?}"),
        }
    }
    assert_eq!(
        left.len(),
        all.len(),
        "one job (flow timer or released delivery) per session: {left:#?}"
    );
    // The console answers at once: within the grace period every delivery finishes.
    assert_eq!(finished, all.len(), "deliveries left unfinished: {all:#?}");
    assert!(
        stderr.contains("every running job finished"),
        "the shutdown is logged:\n{stderr}"
    );
}
