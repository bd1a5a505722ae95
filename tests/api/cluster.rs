//! Two real `otpgate serve` nodes on one PostgreSQL schema (issue "PostgreSQL backend and
//! several nodes", item 4): traffic spread over both nodes, then one node SIGKILLed while flow
//! steps are pending and while it holds claims; the survivor must finish every pending step
//! exactly once. A second, quicker test fires the atomic rules (orderId, a per-number limit,
//! single-use verifies, the wrong-code budget) at both nodes at once.
//!
//! Both skip without a PostgreSQL server, except under `CI=true` (see `tests/common/pg_schema.rs`).
//! The schema is read directly with `sqlx` (what the nodes claim, attempt and hand to the
//! console), and the records through the survivor's API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::cli::{Sandbox, Served, Signer};
use crate::crash::{serve_with, sigterm};

const TO: &str = "14155552671";
/// The flow node's `waitingTime`, seconds (the contract's minimum).
const WAIT_SECS: i64 = 30;
/// `delivery.lease_secs` of both nodes: how long a dead node's claims keep their jobs.
const LEASE_SECS: i64 = 3;
/// The nodes' names: each claim's owner is `<HOSTNAME>-<pid>-<random>`.
const NODE_A: &str = "node-a";
const NODE_B: &str = "node-b";

// ---------------------------------------------------------------------------------------------
// Helpers

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// `otpgate ARGS --json` against the PostgreSQL URL, parsed.
#[track_caller]
fn cli_json(sb: &Sandbox, url: &str, args: &[&str]) -> Value {
    let out = sb
        .cmd(args)
        .env("OTPGATE_DATABASE_URL", url)
        .output()
        .expect("otpgate runs");
    assert!(
        out.status.success(),
        "otpgate {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "otpgate {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The tenant both nodes serve, created once with the CLI on the shared schema.
fn create_tenant(sb: &Sandbox, url: &str) -> (String, String) {
    let c = cli_json(
        sb,
        url,
        &["tenant", "create", "--name", "cluster", "--json"],
    );
    let field = |f: &str| {
        c[f].as_str()
            .unwrap_or_else(|| panic!("{f}: {c}"))
            .to_string()
    };
    (field("apiKey"), field("apiSecret"))
}

/// Starts `otpgate serve` (development, console provider, the test master key) on the shared
/// schema as node `name`, with a short lease, and waits until it answers `/readyz`.
async fn start_node(
    sb: &Sandbox,
    url: &str,
    name: &str,
    key: &str,
    secret: &str,
) -> (Served, Signer) {
    serve_with(sb, name, key, secret, |cmd| {
        cmd.env("OTPGATE_DATABASE_URL", url)
            .env("OTPGATE_DEV_TENANT", "false")
            .env("OTPGATE_DELIVERY__LEASE_SECS", LEASE_SECS.to_string())
            // A lease must outlast the longest submit.
            .env("OTPGATE_DELIVERY__SUBMIT_TIMEOUT_SECS", "2")
            .env("HOSTNAME", name);
    })
    .await
}

/// An app (with `app_extra` settings) and its template; with `flow`, also a flow of one node
/// `{waitingTime 30, status 2, sms, channelCut 1}`: the code goes again unless verified.
async fn catalog(api: &Signer, app_extra: Value, flow: bool) -> (String, i64, Option<i64>) {
    let mut body = json!({"name": format!("app_{}", otpgate::domain::ids::random_alnum(6))});
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), app_extra) {
        b.extend(extra);
    }
    let v = api.post("/v3/otp/app/add", body).await;
    assert_eq!(v["status"], "0", "{v}");
    let app_id = v["data"]["appId"].as_str().expect("appId").to_string();
    let v = api
        .post(
            "/otp/template/add",
            json!({"appId": app_id, "name": "cluster_tpl", "text": "##code## is your code"}),
        )
        .await;
    assert_eq!(v["status"], "0", "{v}");
    let tpl = v["data"]["templateId"].as_i64().expect("templateId");
    let flow_id = if flow {
        let v = api
            .post(
                "/v3/otp/flow/add",
                json!({"name": format!("flow_{}", otpgate::domain::ids::random_alnum(6)), "flow": [
                    {"waitingTime": WAIT_SECS, "status": 2, "channel": "sms", "channelCut": 1}
                ]}),
            )
            .await;
        assert_eq!(v["status"], "0", "{v}");
        Some(v["data"]["flowId"].as_i64().expect("flowId"))
    } else {
        None
    };
    (app_id, tpl, flow_id)
}

/// The code of each verification id's first message in the console outbox (the shared
/// schema's `console_outbox`), waiting until every one is there: deliveries run after the
/// answer.
async fn codes(db: &PgPool, vids: &BTreeSet<String>) -> HashMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = sqlx::query("SELECT verification_id, text FROM console_outbox ORDER BY id")
            .fetch_all(db)
            .await
            .expect("read the outbox");
        let mut found = HashMap::new();
        for r in rows {
            let vid: String = r.get(0);
            let text: String = r.get(1);
            if vids.contains(&vid) {
                let code = text.split_whitespace().next().expect("code").to_string();
                found.entry(vid).or_insert(code);
            }
        }
        if found.len() == vids.len() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} sends reached the console",
            found.len(),
            vids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // Fields are read through `Debug` in failure messages.
struct JobRow {
    id: i64,
    key: String,
    kind: String,
    session_id: Option<String>,
    attempt_id: Option<i64>,
    due_ms: i64,
    owner: Option<String>,
    lease_ms: Option<i64>,
    tries: i64,
}

impl JobRow {
    fn of(r: &PgRow) -> Self {
        Self {
            id: r.get("id"),
            key: r.get("key"),
            kind: r.get("kind"),
            session_id: r.get("session_id"),
            attempt_id: r.get("attempt_id"),
            due_ms: r.get("due_ms"),
            owner: r.get("owner"),
            lease_ms: r.get("lease_ms"),
            tries: r.get("tries"),
        }
    }

    fn held_by(&self, node: &str) -> bool {
        self.owner
            .as_deref()
            .is_some_and(|o| o.starts_with(&format!("{node}-")))
    }
}

/// The queue, and the deliver jobs held on attempts being handed over (with no queue id: 0).
async fn jobs(db: &PgPool) -> Vec<JobRow> {
    sqlx::query(
        "SELECT id, key, kind, session_id, attempt_id, due_ms, owner, lease_ms, tries FROM jobs \
         UNION ALL SELECT 0, 'deliver:' || id, 'deliver', session_id, id, \
         COALESCE(send_ms, created_ms), claim_owner, claim_lease_ms, 1 FROM attempts \
         WHERE claim_lease_ms IS NOT NULL ORDER BY id",
    )
    .fetch_all(db)
    .await
    .expect("read jobs")
    .iter()
    .map(JobRow::of)
    .collect()
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // Fields are read through `Debug` in failure messages.
struct AttemptRow {
    id: i64,
    session_id: String,
    verification_id: String,
    channel: String,
    gateway_state: String,
    report_state: String,
    send_ms: Option<i64>,
    flow_step: Option<i64>,
}

async fn attempts(db: &PgPool) -> Vec<AttemptRow> {
    sqlx::query(
        "SELECT id, session_id, verification_id, channel, gateway_state, report_state, send_ms, \
         flow_step FROM attempts ORDER BY id",
    )
    .fetch_all(db)
    .await
    .expect("read attempts")
    .iter()
    .map(|r| AttemptRow {
        id: r.get("id"),
        session_id: r.get("session_id"),
        verification_id: r.get("verification_id"),
        channel: r.get("channel"),
        gateway_state: r.get("gateway_state"),
        report_state: r.get("report_state"),
        send_ms: r.get("send_ms"),
        flow_step: r.get("flow_step"),
    })
    .collect()
}

/// orderId → session id.
async fn orders(db: &PgPool) -> BTreeMap<String, String> {
    sqlx::query(
        "SELECT o.order_id, v.session_id FROM orders o \
         JOIN verifications v ON v.verification_id = o.verification_id",
    )
    .fetch_all(db)
    .await
    .expect("read orders")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// attempt id → how many times the console got it.
async fn outbox_counts(db: &PgPool) -> HashMap<i64, i64> {
    sqlx::query(
        "SELECT attempt_id, count(*) FROM console_outbox WHERE attempt_id IS NOT NULL \
         GROUP BY attempt_id",
    )
    .fetch_all(db)
    .await
    .expect("read the outbox")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// What the test sent for one orderId.
#[derive(Debug)]
struct Sent {
    verification_id: String,
    /// The node that took the send (0 = A, 1 = B).
    node: usize,
    /// Whether the code was verified (then the flow node must not send again).
    verified: bool,
}

// ---------------------------------------------------------------------------------------------
// SIGKILL of one node

/// Sends with a flow spread over two nodes (plus verifies, wrong codes and repeated orderIds on
/// the other node); when the flow timers come due, node A is SIGKILLed the moment it is seen
/// holding claims. Node B must then fire every pending node exactly once: every session ends
/// with two SMS attempts (one if it was verified), no attempt reaches the console twice, the
/// dead node's claims are taken over once their lease lapses, and the queue ends empty but for
/// the receipt timeouts of hand-overs the kill interrupted.
#[tokio::test]
async fn the_survivor_completes_every_pending_flow_step_of_a_sigkilled_node_exactly_once() {
    let Some((url, _schema)) = crate::pg_schema::fresh_schema("cluster").await else {
        return;
    };
    let started = Instant::now();
    let sb = Sandbox::new();
    let (key, secret) = create_tenant(&sb, &url);
    let db = PgPool::connect(&url).await.expect("connect to the schema");
    let (mut node_a, api_a) = start_node(&sb, &url, NODE_A, &key, &secret).await;
    let (node_b, api_b) = start_node(&sb, &url, NODE_B, &key, &secret).await;
    let apis = [&api_a, &api_b];
    // The catalog is written through A and used through both.
    let (app_id, tpl, flow_id) = catalog(&api_a, json!({}), true).await;
    let flow_id = flow_id.expect("flow");

    // 48 sends, alternating nodes, 12 at a time.
    const N: usize = 48;
    let sends_started = Instant::now();
    let answers: Vec<(String, usize, Value)> = futures::stream::iter(0..N)
        .map(|i| {
            let (app_id, api) = (&app_id, apis[i % 2]);
            async move {
                let order_id = format!("c-{i:03}");
                let body = json!({"appId": app_id, "templateId": tpl, "to": TO,
                    "flowId": flow_id, "orderId": order_id});
                let v = api.post("/v3/otp/verification/send", body).await;
                (order_id, i % 2, v)
            }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let mut sent: BTreeMap<String, Sent> = BTreeMap::new();
    for (order_id, node, v) in answers {
        assert_eq!(v["status"], "0", "send {order_id}: {v}");
        let vid = v["data"]["verificationId"]
            .as_str()
            .unwrap_or_else(|| panic!("verificationId: {v}"))
            .to_string();
        sent.insert(
            order_id,
            Sent {
                verification_id: vid,
                node,
                verified: false,
            },
        );
    }
    let sends_took = sends_started.elapsed();

    // Every sixth orderId again, on the other node: the same verification, nothing new.
    let app = app_id.as_str();
    let repeats = join_all(sent.iter().step_by(6).map(|(order_id, s)| {
        let api = apis[1 - s.node];
        async move {
            let v = api
                .post(
                    "/v3/otp/verification/send",
                    json!({"appId": app, "templateId": tpl, "to": TO,
                        "flowId": flow_id, "orderId": order_id}),
                )
                .await;
            (s, v)
        }
    }))
    .await;
    for (s, v) in &repeats {
        assert_eq!(v["status"], "-20", "a repeated orderId: {v}");
        assert_eq!(
            v["data"]["verificationId"],
            s.verification_id.as_str(),
            "{v}"
        );
    }

    // Through the other node: a quarter of the sessions verified, another quarter given a
    // wrong code (counted, the session stays open and its flow goes on).
    let vids: BTreeSet<String> = sent.values().map(|s| s.verification_id.clone()).collect();
    let code_of = codes(&db, &vids).await;
    let checks = join_all(
        sent.values_mut()
            .enumerate()
            .filter(|(i, _)| i % 4 >= 2)
            .map(|(i, s)| {
                let api = apis[1 - s.node];
                let code = code_of[&s.verification_id].clone();
                let correct = i % 4 == 3;
                let typed = if correct {
                    code
                } else if code == "0000" {
                    "1111".to_string()
                } else {
                    "0000".to_string()
                };
                s.verified = correct;
                let vid = s.verification_id.clone();
                async move {
                    let v = api
                        .post(
                            "/v3/otp/verification/verify",
                            json!({"verificationId": vid, "code": typed}),
                        )
                        .await;
                    (correct, v)
                }
            }),
    )
    .await;
    for (correct, v) in &checks {
        assert_eq!(v["status"], "0", "{v}");
        assert_eq!(v["data"]["matched"], if *correct { 0 } else { 2 }, "{v}");
    }
    let verified = sent.values().filter(|s| s.verified).count();
    assert_eq!(verified, N / 4);
    let expected = |s: &Sent| if s.verified { 1 } else { 2 };

    // Before the kill: one flow timer per session (verified ones too, until they come due),
    // nothing else, nobody's claim (once every first delivery has recorded its outcome).
    let deadline = Instant::now() + Duration::from_secs(20);
    let queued = loop {
        let q = jobs(&db).await;
        if q.len() == N && q.iter().all(|j| j.kind == "flow" && j.owner.is_none()) {
            break q;
        }
        assert!(
            Instant::now() < deadline,
            "not one unclaimed flow timer per session: {q:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let first_due = queued.iter().map(|j| j.due_ms).min().expect("a timer");
    let last_due = queued.iter().map(|j| j.due_ms).max().expect("a timer");

    // Wait for the timers (the one real wait: `waitingTime`), then watch the queue and kill A
    // the moment it holds the claimed delivery of a node attempt it just wrote (the narrowest
    // window), or any claim once a quarter of the timers are gone.
    let lead = first_due - 300 - now_ms();
    if lead > 0 {
        tokio::time::sleep(Duration::from_millis(lead as u64)).await;
    }
    let watch_deadline = Instant::now() + Duration::from_secs(20);
    let held_at_kill = loop {
        let q = jobs(&db).await;
        let held: Vec<JobRow> = q.iter().filter(|j| j.held_by(NODE_A)).cloned().collect();
        let timers = q.iter().filter(|j| j.kind == "flow").count();
        let delivering = held.iter().any(|j| j.kind == "deliver");
        if delivering || (!held.is_empty() && timers <= N * 3 / 4) || timers <= N / 4 {
            node_a.child.kill().expect("SIGKILL node A");
            break held;
        }
        assert!(
            Instant::now() < watch_deadline,
            "the flow timers never came due: {q:#?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let killed_at = Instant::now();
    let killed_ms = now_ms();
    let (status, stderr_a) = node_a.finish(Duration::from_secs(10));
    let status = status.expect("the killed node is gone");
    assert!(!status.success(), "a SIGKILLed node does not exit 0");
    drop(api_a);
    assert!(
        !held_at_kill.is_empty(),
        "A was never seen holding a claim while three quarters of the timers came due"
    );

    // What the dead node left: its claims (the queue can still change: a commit it sent just
    // before dying may land), and the timers still pending.
    let after_kill = jobs(&db).await;
    let claims_left: Vec<JobRow> = after_kill
        .iter()
        .filter(|j| j.held_by(NODE_A))
        .cloned()
        .collect();
    let orphaned: BTreeSet<String> = claims_left
        .iter()
        .filter_map(|j| j.session_id.clone())
        .collect();
    let timers_pending = after_kill.iter().filter(|j| j.kind == "flow").count();
    assert!(
        timers_pending > 0,
        "flow steps must still be pending when A dies"
    );
    eprintln!(
        "cluster: A killed {} ms after the first timer was due (timers due over {} ms), seen \
         holding {:?}; left in the queue claimed by A: {:?}; {timers_pending} of {N} flow \
         timers pending",
        killed_ms - first_due,
        last_due - first_due,
        held_at_kill.iter().map(|j| &j.key).collect::<Vec<_>>(),
        claims_left.iter().map(|j| &j.key).collect::<Vec<_>>(),
    );

    // Poll until B has done everything: every session has its expected SMS attempts (never
    // more, at any look), every attempt is settled, no flow or deliver job is left.
    let deadline = Instant::now()
        + Duration::from_millis((last_due - now_ms()).max(0) as u64)
        + Duration::from_secs(30);
    let mut taken_over: Option<Duration> = None;
    let completed = loop {
        let q = jobs(&db).await;
        if taken_over.is_none() && !q.iter().any(|j| j.held_by(NODE_A)) {
            taken_over = Some(killed_at.elapsed());
        }
        let all = attempts(&db).await;
        let by_order = orders(&db).await;
        let mut done = 0;
        for (order_id, session_id) in &by_order {
            let s = sent
                .get(order_id)
                .unwrap_or_else(|| panic!("an order nobody acknowledged: {order_id}"));
            let n = all
                .iter()
                .filter(|a| &a.session_id == session_id && a.channel == "sms")
                .count();
            assert!(
                n <= expected(s),
                "{order_id} ({s:?}) has {n} SMS attempts: {:#?}",
                all.iter()
                    .filter(|a| &a.session_id == session_id)
                    .collect::<Vec<_>>()
            );
            done += usize::from(n == expected(s));
        }
        let unsettled = all
            .iter()
            .filter(|a| matches!(a.gateway_state.as_str(), "create" | "pending" | "sending"))
            .count();
        let work = q
            .iter()
            .filter(|j| matches!(j.kind.as_str(), "flow" | "deliver"))
            .count();
        if done == N && unsettled == 0 && work == 0 && taken_over.is_some() {
            break killed_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "B did not finish: {done} of {N} sessions complete, {unsettled} attempts unsettled, \
             jobs: {q:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let taken_over = taken_over.expect("taken over");
    assert!(
        taken_over < Duration::from_secs(LEASE_SECS as u64 + 5),
        "A's claims outlived their {LEASE_SECS} s lease by far: {taken_over:?}"
    );

    // Through the survivor's API: every acknowledged send, with its attempts.
    for (order_id, s) in &sent {
        let r = api_b
            .post(
                "/v3/otp/verification/orderId/record",
                json!({"appId": app_id.as_str(), "orderId": order_id}),
            )
            .await;
        assert_eq!(r["status"], "0", "record of {order_id}: {r}");
        assert_eq!(r["data"]["orderId"], order_id.as_str(), "{r}");
        assert_eq!(r["data"]["flowId"], flow_id, "{r}");
        let sms = r["data"]["sms"].as_array().expect("sms array");
        assert_eq!(sms.len(), expected(s), "{order_id} ({s:?}): {r}");
    }

    // From the schema: the attempts, the console, the queue.
    let all = attempts(&db).await;
    let by_order = orders(&db).await;
    assert_eq!(
        by_order.keys().collect::<Vec<_>>(),
        sent.keys().collect::<Vec<_>>(),
        "the stored orders are the acknowledged sends"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM sessions").await,
        N as i64,
        "repeated orderIds made no session"
    );
    let consoled = outbox_counts(&db).await;
    for (attempt, n) in &consoled {
        assert_eq!(*n, 1, "attempt {attempt} reached the console {n} times");
    }
    let mut unknown = Vec::new();
    // Worst lateness of the node attempts: of sessions B ran alone, and of those whose job A
    // held when it died (these wait for the lease).
    let (mut worst_late_ms, mut worst_orphan_late_ms) = (0, 0);
    let mut orphan_fates = Vec::new();
    for (order_id, session_id) in &by_order {
        let s = &sent[order_id];
        let list: Vec<&AttemptRow> = all.iter().filter(|a| &a.session_id == session_id).collect();
        assert_eq!(list.len(), expected(s), "{order_id}: {list:#?}");
        let first = list[0];
        assert_eq!(first.verification_id, s.verification_id, "{first:?}");
        assert_eq!(first.flow_step, Some(0), "{first:?}");
        assert_eq!(first.gateway_state, "success", "{first:?}");
        assert_eq!(consoled.get(&first.id), Some(&1), "{first:?}");
        let Some(node) = list.get(1) else {
            if orphaned.contains(session_id) {
                orphan_fates.push(format!("{order_id}: verified, no node attempt"));
            }
            continue;
        };
        assert_eq!(node.verification_id, s.verification_id, "{node:?}");
        assert_eq!(node.flow_step, Some(1), "{node:?}");
        match node.gateway_state.as_str() {
            "success" => {
                assert_eq!(node.report_state, "success", "{node:?}");
                assert_eq!(consoled.get(&node.id), Some(&1), "{node:?}");
            }
            // A died handing it over: it may or may not have reached the console, and it is
            // never sent again.
            "unknown" => {
                assert!(
                    orphaned.contains(session_id),
                    "only a hand-over A was doing when it died can be unknown: {node:?}"
                );
                unknown.push(node.id);
            }
            other => panic!("{order_id}: node attempt left in gateway state {other}: {node:?}"),
        }
        let due = first.send_ms.expect("first hand-over") + WAIT_SECS * 1000;
        let late = node.send_ms.expect("node hand-over") - due;
        assert!(late >= 0, "{order_id}: node fired {} ms early", -late);
        assert!(
            late < (LEASE_SECS + 10) * 1000,
            "{order_id}: node fired {late} ms after it was due"
        );
        if orphaned.contains(session_id) {
            worst_orphan_late_ms = worst_orphan_late_ms.max(late);
            orphan_fates.push(format!(
                "{order_id}: {} after {late} ms, {} in the console",
                node.gateway_state,
                consoled.get(&node.id).unwrap_or(&0)
            ));
        } else {
            worst_late_ms = worst_late_ms.max(late);
        }
    }
    let left = jobs(&db).await;
    for j in &left {
        assert_eq!(j.kind, "receipt", "left over: {j:?}");
        assert!(
            j.attempt_id.is_some_and(|a| unknown.contains(&a)),
            "a receipt timeout of an attempt that is not unknown: {j:?}"
        );
        assert!(!j.held_by(NODE_A), "{j:?}");
    }
    assert_eq!(
        left.len(),
        unknown.len(),
        "one receipt timeout per interrupted hand-over: {left:#?}"
    );

    // B stops cleanly, holding nothing, and logged each interrupted hand-over once.
    sigterm(&node_b);
    let (status, stderr_b) = node_b.finish(Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("no exit within 30 s of SIGTERM:\n{stderr_b}"));
    assert!(status.success(), "{status}; stderr:\n{stderr_b}");
    let claimed = count(&db, "SELECT count(*) FROM jobs WHERE owner IS NOT NULL").await;
    assert_eq!(claimed, 0, "claims held after both nodes stopped");
    assert_eq!(
        count_lines(&stderr_b, "state unknown"),
        unknown.len(),
        "B's log:\n{stderr_b}"
    );
    assert!(!stderr_a.contains("panicked"), "A's log:\n{stderr_a}");
    assert!(!stderr_b.contains("panicked"), "B's log:\n{stderr_b}");
    let lapsed = count_lines(&stderr_b, "claim lapsed");
    db.close().await;
    eprintln!(
        "cluster: {N} sends over both nodes in {sends_took:?} ({verified} verified); B took over \
         A's claims {taken_over:?} after the kill and had every session complete {completed:?} \
         after it; sessions whose job A held: {orphan_fates:?}; {} node attempts interrupted \
         mid-hand-over (unknown); worst lateness {worst_late_ms} ms (B alone), \
         {worst_orphan_late_ms} ms (A's claims); {lapsed} lapsed-claim warnings on B; total {:?}",
        unknown.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Atomic rules over two nodes

/// The atomic rules hold with concurrent requests split over both nodes: one session per
/// orderId, a per-number limit of 1 lets exactly one send through, twenty correct verifies
/// match once, and concurrent wrong codes never exceed the budget of five.
#[tokio::test]
async fn atomic_rules_hold_with_requests_split_over_two_nodes() {
    let Some((url, _schema)) = crate::pg_schema::fresh_schema("cluster").await else {
        return;
    };
    let started = Instant::now();
    let sb = Sandbox::new();
    let (key, secret) = create_tenant(&sb, &url);
    let db = PgPool::connect(&url).await.expect("connect to the schema");
    let (node_a, api_a) = start_node(&sb, &url, NODE_A, &key, &secret).await;
    let (node_b, api_b) = start_node(&sb, &url, NODE_B, &key, &secret).await;
    let apis = [&api_a, &api_b];
    let (app_id, tpl, _) = catalog(&api_a, json!({}), false).await;
    let send = |i: usize, to: &'static str, app: String, order: Option<&'static str>| {
        let mut body = json!({"appId": app, "templateId": tpl, "to": to});
        if let Some(o) = order {
            body["orderId"] = json!(o);
        }
        apis[i % 2].post("/v3/otp/verification/send", body)
    };

    // 30 concurrent sends of one orderId, alternating nodes: one session, one message.
    let results = join_all((0..30).map(|i| send(i, TO, app_id.clone(), Some("dup-1")))).await;
    let ok: Vec<&Value> = results.iter().filter(|v| v["status"] == "0").collect();
    assert_eq!(ok.len(), 1, "{results:#?}");
    let vid = ok[0]["data"]["verificationId"]
        .as_str()
        .expect("verificationId")
        .to_string();
    for v in results.iter().filter(|v| v["status"] != "0") {
        assert_eq!(v["status"], "-20", "{v}");
        assert_eq!(v["data"]["verificationId"], vid.as_str(), "{v}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM sessions").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 1);

    // 20 concurrent correct verifies, alternating nodes: exactly one matches.
    let code = codes(&db, &BTreeSet::from([vid.clone()])).await[&vid].clone();
    let results = join_all((0..20).map(|i| {
        apis[i % 2].post(
            "/v3/otp/verification/verify",
            json!({"verificationId": vid, "code": code}),
        )
    }))
    .await;
    let matched: Vec<i64> = results
        .iter()
        .map(|v| {
            v["data"]["matched"]
                .as_i64()
                .unwrap_or_else(|| panic!("{v}"))
        })
        .collect();
    assert_eq!(
        matched.iter().filter(|m| **m == 0).count(),
        1,
        "{matched:?}"
    );
    assert_eq!(
        matched.iter().filter(|m| **m == 4).count(),
        19,
        "{matched:?}"
    );

    // 12 concurrent wrong codes on a fresh session, alternating nodes: five are counted, then
    // the session is locked, and the right code no longer works.
    let v = send(1, "14155552672", app_id.clone(), None).await;
    assert_eq!(v["status"], "0", "{v}");
    let vid2 = v["data"]["verificationId"]
        .as_str()
        .expect("vid")
        .to_string();
    let code2 = codes(&db, &BTreeSet::from([vid2.clone()])).await[&vid2].clone();
    let wrong = if code2 == "0000" { "1111" } else { "0000" };
    let results = join_all((0..12).map(|i| {
        apis[i % 2].post(
            "/v3/otp/verification/verify",
            json!({"verificationId": vid2, "code": wrong}),
        )
    }))
    .await;
    let counted = results
        .iter()
        .filter(|v| v["status"] == "0" && v["data"]["matched"] == 2)
        .count();
    let locked = results.iter().filter(|v| v["status"] == "-23").count();
    assert_eq!((counted, locked), (5, 7), "{results:#?}");
    let v = api_b
        .post(
            "/v3/otp/verification/verify",
            json!({"verificationId": vid2, "code": code2}),
        )
        .await;
    assert_eq!(v["status"], "-23", "{v}");

    // A per-number limit of 1: of 60 concurrent sends over both nodes, exactly one passes.
    let (limited_app, limited_tpl, _) = catalog(
        &api_b,
        json!({"periodPhoneSendLimit": {"enabled": true, "unit": 1, "period": 1, "limit": 1}}),
        false,
    )
    .await;
    let results = join_all((0..60).map(|i| {
        apis[i % 2].post(
            "/v3/otp/verification/send",
            json!({"appId": limited_app, "templateId": limited_tpl, "to": "14155552673"}),
        )
    }))
    .await;
    let ok = results.iter().filter(|v| v["status"] == "0").count();
    let limited = results.iter().filter(|v| v["status"] == "-28").count();
    assert_eq!((ok, limited), (1, 59), "{results:#?}");

    // Every send that passed reached the console once; nothing is left to run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let consoled = outbox_counts(&db).await;
        let sessions = count(&db, "SELECT count(*) FROM sessions").await;
        let attempts = count(&db, "SELECT count(*) FROM attempts").await;
        let jobs_left = count(&db, "SELECT count(*) FROM jobs").await;
        assert_eq!((sessions, attempts), (3, 3), "one attempt per passed send");
        assert!(consoled.values().all(|n| *n == 1), "{consoled:?}");
        if consoled.len() == 3 && jobs_left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} messages in the console, {jobs_left} jobs left",
            consoled.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for (name, node) in [(NODE_A, node_a), (NODE_B, node_b)] {
        sigterm(&node);
        let (status, stderr) = node.finish(Duration::from_secs(30));
        let status = status.unwrap_or_else(|| panic!("{name}: no exit after SIGTERM:\n{stderr}"));
        assert!(status.success(), "{name}: {status}; stderr:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name}:\n{stderr}");
    }
    db.close().await;
    eprintln!("cluster atomic rules: {:?}", started.elapsed());
}
