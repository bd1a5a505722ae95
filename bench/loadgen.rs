//! A small load generator for otpgate's Buka API (`bash bench/run.sh` drives it).
//!
//! It creates an app (period limits off) and a template, then runs three phases, each with the
//! same number of concurrent signed clients for the same time:
//!
//! 1. `GET /healthz`: the cost of HTTP alone, the yardstick;
//! 2. `POST /v3/otp/verification/send` to distinct valid numbers;
//! 3. `POST /v3/otp/verification/verify` with a wrong code, spread over the ids of phase 2.
//!
//! Only HTTP 200 answers with the expected JSON count as successes (for send, status "0" with a
//! verificationId; for verify, any Buka envelope: a wrong code is `matched 2`, and after five
//! wrong codes the session answers `-23`; both are real work for the server). Latency
//! percentiles are over successful requests. The load generator and the server share the same
//! machine, so absolute numbers say little; the ratios to `/healthz` are what to compare.
//!
//! ```text
//! cargo run --release --example loadgen -- --base http://127.0.0.1:8080 --key K --secret S \
//!     [--concurrency 32] [--duration-secs 10 | --requests N] [--json] [--only-send]
//! cargo run --release --example loadgen -- --get 'http://127.0.0.1:13013/cgi-bin/sendsms?…&to={to}' \
//!     [--concurrency 32] [--requests N]
//! ```
//!
//! `--only-send` runs the send phase alone (the SMPP benchmark, `bench/smpp.sh`). `--get URL`
//! runs one phase of plain GETs (`{to}` becomes a destination number; any 2xx answer is a
//! success): the same load against another gateway, e.g. Kannel's sendsms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otpgate::crypto::buka_sign;
use otpgate::domain::phone::PhoneNumber;
use reqwest::{Client, Method, Url};
use serde_json::{Value, json};

/// Stage targets: a phase's throughput as a fraction of `/healthz` throughput.
const TARGET_SEND: f64 = 0.25;
const TARGET_VERIFY: f64 = 0.4;
/// Hard bounds, whatever the arguments say.
const MAX_REQUESTS_PER_PHASE: u64 = 10_000_000;
const MAX_PHASE_SECS: u64 = 600;
/// A wrong code: templates here use 4 digits, so six never match.
const WRONG_CODE: &str = "000000";

const USAGE: &str = "usage: loadgen --base URL --key API_KEY --secret API_SECRET \
[--concurrency N (32)] [--duration-secs N (10)] [--requests N] [--json]";

#[derive(Debug, Clone)]
struct Args {
    base: Url,
    key: String,
    secret: String,
    concurrency: usize,
    /// Time limit of each phase.
    duration: Duration,
    /// Request limit of each phase.
    requests: u64,
    json: bool,
    only_send: bool,
    /// `--get`: a plain GET phase against this URL instead of the Buka phases.
    get: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut base = None;
    let mut key = None;
    let mut secret = None;
    let mut concurrency = 32usize;
    let mut duration_secs = None;
    let mut requests = None;
    let mut json = false;
    let mut only_send = false;
    let mut get = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match name.as_str() {
            "--base" => base = Some(value("--base")?),
            "--key" => key = Some(value("--key")?),
            "--secret" => secret = Some(value("--secret")?),
            "--concurrency" => concurrency = number(&value("--concurrency")?, "--concurrency")?,
            "--duration-secs" => {
                duration_secs = Some(number(&value("--duration-secs")?, "--duration-secs")?)
            }
            "--requests" => requests = Some(number(&value("--requests")?, "--requests")?),
            "--json" => json = true,
            "--only-send" => only_send = true,
            "--get" => get = Some(value("--get")?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if let Some(url) = &get {
        // The GET phase needs no tenant: base, key and secret default to the URL and nothing.
        base = base.or_else(|| Some(url.replace("{to}", "0")));
        key = key.or_else(|| Some(String::new()));
        secret = secret.or_else(|| Some(String::new()));
    }
    let base = base.ok_or_else(|| format!("--base is required\n{USAGE}"))?;
    let mut base =
        Url::parse(base.trim_end_matches('/')).map_err(|e| format!("--base {base:?}: {e}"))?;
    if get.is_some() {
        base.set_query(None);
        base.set_path("");
    }
    let loopback = match base.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if !loopback || base.scheme() != "http" {
        return Err(format!(
            "--base {base} must be an http:// loopback address (127.0.0.1)"
        ));
    }
    if !(1..=1024).contains(&concurrency) {
        return Err("--concurrency must be 1-1024".into());
    }
    let secs = match (duration_secs, requests) {
        (Some(s), _) => s,
        (None, Some(_)) => MAX_PHASE_SECS,
        (None, None) => 10,
    };
    if !(1..=MAX_PHASE_SECS).contains(&secs) {
        return Err(format!("--duration-secs must be 1-{MAX_PHASE_SECS}"));
    }
    let requests = requests.unwrap_or(MAX_REQUESTS_PER_PHASE);
    if !(1..=MAX_REQUESTS_PER_PHASE).contains(&requests) {
        return Err(format!("--requests must be 1-{MAX_REQUESTS_PER_PHASE}"));
    }
    Ok(Args {
        base,
        key: key.ok_or_else(|| format!("--key is required\n{USAGE}"))?,
        secret: secret.ok_or_else(|| format!("--secret is required\n{USAGE}"))?,
        concurrency,
        duration: Duration::from_secs(secs),
        requests,
        json,
        only_send,
        get,
    })
}

fn number<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{name}: {s:?} is not a whole number"))
}

/// Makes signed Buka requests.
struct Api {
    client: Client,
    base: Url,
    key: String,
    secret: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    fn signed(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            .to_string();
        self.client
            .request(method, self.url(path))
            .header("Api-Key", &self.key)
            .header("Timestamp", &ts)
            .header("Sign", buka_sign(&self.key, &self.secret, &ts))
    }

    /// A signed POST; `Err` unless the answer is HTTP 200 with a JSON envelope.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let resp = self
            .signed(Method::POST, path)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        if status != 200 {
            return Err(format!("POST {path}: HTTP {status}"));
        }
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("POST {path}: not JSON: {e}"))?;
        if !v["status"].is_string() {
            return Err(format!("POST {path}: not a Buka envelope: {v}"));
        }
        Ok(v)
    }
}

/// What one request came to.
enum Outcome {
    /// Counted, with the Buka status (or "200" for plain endpoints) and an optional payload.
    Ok {
        status: String,
        id: Option<String>,
    },
    Err(String),
}

#[derive(Default)]
struct WorkerTally {
    latencies_us: Vec<u64>,
    errors: u64,
    statuses: BTreeMap<String, u64>,
    error_samples: BTreeMap<String, u64>,
    ids: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PhaseResult {
    phase: String,
    requests: u64,
    ok: u64,
    errors: u64,
    elapsed_secs: f64,
    /// Successful requests per second.
    throughput_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Buka `status` of the successful answers.
    statuses: BTreeMap<String, u64>,
    /// The most frequent error messages (at most five).
    error_kinds: BTreeMap<String, u64>,
    #[serde(skip)]
    ids: Vec<String>,
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[idx] as f64 / 1000.0
}

/// Runs `concurrency` workers for at most `duration` and `max_requests` requests in all.
/// `one(i)` performs the i-th request of the phase.
async fn run_phase<F, Fut>(phase: &str, args: &Args, one: F) -> PhaseResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    eprintln!(
        "loadgen: phase {phase}: {} clients for {} s (at most {} requests)",
        args.concurrency,
        args.duration.as_secs(),
        args.requests
    );
    let one = Arc::new(one);
    let issued = Arc::new(AtomicU64::new(0));
    let max = args.requests;
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let one = one.clone();
        let issued = issued.clone();
        workers.push(tokio::spawn(async move {
            let mut t = WorkerTally::default();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= max {
                    break;
                }
                let t0 = Instant::now();
                let left = deadline.saturating_duration_since(t0) + Duration::from_secs(10);
                match tokio::time::timeout(left, one(i)).await {
                    Ok(Outcome::Ok { status, id }) => {
                        t.latencies_us.push(t0.elapsed().as_micros() as u64);
                        *t.statuses.entry(status).or_default() += 1;
                        t.ids.extend(id);
                    }
                    Ok(Outcome::Err(e)) => {
                        t.errors += 1;
                        *t.error_samples.entry(e).or_default() += 1;
                    }
                    Err(_) => {
                        t.errors += 1;
                        *t.error_samples.entry("timed out".into()).or_default() += 1;
                    }
                }
            }
            t
        }));
    }
    let mut all = WorkerTally::default();
    for w in workers {
        match w.await {
            Ok(t) => {
                all.latencies_us.extend(t.latencies_us);
                all.errors += t.errors;
                for (k, v) in t.statuses {
                    *all.statuses.entry(k).or_default() += v;
                }
                for (k, v) in t.error_samples {
                    *all.error_samples.entry(k).or_default() += v;
                }
                all.ids.extend(t.ids);
            }
            Err(e) => {
                all.errors += 1;
                *all.error_samples
                    .entry(format!("worker failed: {e}"))
                    .or_default() += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let ok = all.latencies_us.len() as u64;
    let mut kinds: Vec<(String, u64)> = all.error_samples.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    kinds.truncate(5);
    PhaseResult {
        phase: phase.to_string(),
        requests: ok + all.errors,
        ok,
        errors: all.errors,
        elapsed_secs: elapsed,
        throughput_rps: if elapsed > 0.0 {
            ok as f64 / elapsed
        } else {
            0.0
        },
        p50_ms: percentile_ms(&all.latencies_us, 50.0),
        p99_ms: percentile_ms(&all.latencies_us, 99.0),
        max_ms: all
            .latencies_us
            .last()
            .map_or(0.0, |us| *us as f64 / 1000.0),
        statuses: all.statuses,
        error_kinds: kinds.into_iter().collect(),
        ids: all.ids,
    }
}

/// `count` distinct destination numbers the numbering plan accepts: US 415-555-XXXX first
/// (14155552671 is the documented example), then UK mobiles 07911 XXXXXX if more are needed.
fn destination_numbers(count: usize) -> Vec<String> {
    let us = (0..10_000u32).map(|n| format!("1415555{n:04}"));
    let uk = (0..1_000_000u32).map(|n| format!("447911{n:06}"));
    us.chain(uk)
        .filter(|n| PhoneNumber::parse(n).is_ok())
        .take(count)
        .collect()
}

async fn setup(api: &Api) -> Result<(String, i64), String> {
    let suffix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or_default();
    let off = json!({"enabled": false});
    let v = api
        .post(
            "/v3/otp/app/add",
            &json!({
                "name": format!("bench_{suffix}"),
                "codeExpiry": 60,
                "periodTotalSendLimit": off,
                "periodPhoneSendLimit": off,
            }),
        )
        .await?;
    let app = match (v["status"].as_str(), v["data"]["appId"].as_str()) {
        (Some("0"), Some(id)) => id.to_string(),
        _ => return Err(format!("app/add failed: {v}")),
    };
    let v = api
        .post(
            "/v3/otp/template/add",
            &json!({
                "appId": app,
                "name": format!("bench_{suffix}"),
                "text": "##code## is your code",
                "codeType": 1,
                "codeLength": 4,
            }),
        )
        .await?;
    match (v["status"].as_str(), v["data"]["templateId"].as_i64()) {
        (Some("0"), Some(tpl)) => Ok((app, tpl)),
        _ => Err(format!("template/add failed: {v}")),
    }
}

fn short(e: &str) -> String {
    let mut s: String = e.chars().take(120).collect();
    if s.len() < e.len() {
        s.push('…');
    }
    s
}

async fn healthz(api: &Api) -> Outcome {
    let resp = match api.client.get(api.url("/healthz")).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Err(short(&format!("GET /healthz: {e}"))),
    };
    let status = resp.status();
    match resp.bytes().await {
        Ok(body) if status == 200 && serde_json::from_slice::<Value>(&body).is_ok() => {
            Outcome::Ok {
                status: "200".into(),
                id: None,
            }
        }
        Ok(_) => Outcome::Err(format!("GET /healthz: HTTP {status}")),
        Err(e) => Outcome::Err(short(&format!("GET /healthz: {e}"))),
    }
}

async fn send(api: &Api, app: &str, tpl: i64, to: &str) -> Outcome {
    let body = json!({"appId": app, "templateId": tpl, "to": to});
    match api.post("/v3/otp/verification/send", &body).await {
        Ok(v) => match (v["status"].as_str(), v["data"]["verificationId"].as_str()) {
            (Some("0"), Some(id)) => Outcome::Ok {
                status: "0".into(),
                id: Some(id.to_string()),
            },
            _ => Outcome::Err(short(&format!(
                "send: status {} {}",
                v["status"],
                v["reason"].as_str().unwrap_or_default()
            ))),
        },
        Err(e) => Outcome::Err(short(&e)),
    }
}

async fn verify(api: &Api, id: &str) -> Outcome {
    let body = json!({"verificationId": id, "code": WRONG_CODE});
    match api.post("/v3/otp/verification/verify", &body).await {
        Ok(v) => {
            let status = v["status"].as_str().unwrap_or_default().to_string();
            if status == "0" || status == "-23" {
                let matched = v["data"]["matched"].as_i64().unwrap_or(i64::MIN);
                Outcome::Ok {
                    status: format!("{status} (matched {matched})"),
                    id: None,
                }
            } else {
                Outcome::Err(short(&format!(
                    "verify: status {status} {}",
                    v["reason"].as_str().unwrap_or_default()
                )))
            }
        }
        Err(e) => Outcome::Err(short(&e)),
    }
}

fn ratio(a: &PhaseResult, base: &PhaseResult) -> f64 {
    if base.throughput_rps > 0.0 {
        a.throughput_rps / base.throughput_rps
    } else {
        0.0
    }
}

fn table(args: &Args, phases: &[&PhaseResult], send_ratio: f64, verify_ratio: f64) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "otpgate load test: {} clients, {} s per phase, against {}\n\n",
        args.concurrency,
        args.duration.as_secs(),
        args.base
    ));
    out.push_str(&format!(
        "{:<8} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9}\n",
        "phase", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    ));
    for p in phases {
        out.push_str(&format!(
            "{:<8} {:>9} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2}\n",
            p.phase, p.requests, p.errors, p.throughput_rps, p.p50_ms, p.p99_ms, p.max_ms
        ));
    }
    out.push('\n');
    let verdict = |r: f64, t: f64| if r >= t { "met" } else { "MISSED" };
    if phases.len() > 1 {
        out.push_str(&format!(
            "send/healthz   {send_ratio:.3}  (target >= {TARGET_SEND}: {})\n",
            verdict(send_ratio, TARGET_SEND)
        ));
        out.push_str(&format!(
            "verify/healthz {verify_ratio:.3}  (target >= {TARGET_VERIFY}: {})\n",
            verdict(verify_ratio, TARGET_VERIFY)
        ));
    }
    for p in phases {
        if !p.statuses.is_empty() && p.phase != "healthz" {
            let s: Vec<String> = p
                .statuses
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out.push_str(&format!("{} answers: {}\n", p.phase, s.join(", ")));
        }
        for (e, n) in &p.error_kinds {
            out.push_str(&format!("{} error ×{n}: {e}\n", p.phase));
        }
    }
    out
}

async fn run(args: Args) -> Result<(), String> {
    let client = Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let api = Arc::new(Api {
        client,
        base: args.base.clone(),
        key: args.key.clone(),
        secret: args.secret.clone(),
    });
    if let Some(url) = args.get.clone() {
        return get_phase(&args, api, url).await;
    }
    let (app, tpl) = setup(&api).await?;
    eprintln!("loadgen: app {app}, template {tpl}");
    if args.only_send {
        let numbers = Arc::new(destination_numbers(20_000));
        let (api, app) = (api.clone(), Arc::new(app));
        let sent = run_phase("send", &args, move |i| {
            let (api, app, numbers) = (api.clone(), app.clone(), numbers.clone());
            async move {
                let to = &numbers[(i % numbers.len().max(1) as u64) as usize];
                send(&api, &app, tpl, to).await
            }
        })
        .await;
        return print_single(&args, &sent);
    }

    let health = {
        let api = api.clone();
        run_phase("healthz", &args, move |_| {
            let api = api.clone();
            async move { healthz(&api).await }
        })
        .await
    };

    let numbers = Arc::new(destination_numbers(20_000));
    if numbers.is_empty() {
        return Err("no destination number passed the numbering-plan check".into());
    }
    let sent = {
        let (api, app, numbers) = (api.clone(), Arc::new(app), numbers.clone());
        run_phase("send", &args, move |i| {
            let (api, app, numbers) = (api.clone(), app.clone(), numbers.clone());
            async move {
                let to = &numbers[(i % numbers.len() as u64) as usize];
                send(&api, &app, tpl, to).await
            }
        })
        .await
    };

    if sent.ids.is_empty() {
        return Err(format!(
            "the send phase produced no verification ids: {:?}",
            sent.error_kinds
        ));
    }
    let ids = Arc::new(sent.ids.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let verified = {
        let api = api.clone();
        run_phase("verify", &args, move |_| {
            let (api, ids, next) = (api.clone(), ids.clone(), next.clone());
            async move {
                let id = &ids[next.fetch_add(1, Ordering::Relaxed) % ids.len()];
                verify(&api, id).await
            }
        })
        .await
    };

    let send_ratio = ratio(&sent, &health);
    let verify_ratio = ratio(&verified, &health);
    let phases = [&health, &sent, &verified];
    let human = table(&args, &phases, send_ratio, verify_ratio);
    if args.json {
        eprintln!("\n{human}");
        let v = json!({
            "base": args.base.as_str(),
            "concurrency": args.concurrency,
            "durationSecs": args.duration.as_secs(),
            "phases": phases,
            "ratios": {
                "sendToHealthz": send_ratio,
                "verifyToHealthz": verify_ratio,
            },
            "targets": {
                "sendToHealthz": TARGET_SEND,
                "verifyToHealthz": TARGET_VERIFY,
            },
            "met": {
                "sendToHealthz": send_ratio >= TARGET_SEND,
                "verifyToHealthz": verify_ratio >= TARGET_VERIFY,
            },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
    } else {
        println!("{human}");
    }
    Ok(())
}

/// A phase of plain GETs against another gateway.
async fn get_phase(args: &Args, api: Arc<Api>, url: String) -> Result<(), String> {
    let numbers = Arc::new(destination_numbers(20_000));
    let url = Arc::new(url);
    let result = run_phase("get", args, move |i| {
        let (api, numbers, url) = (api.clone(), numbers.clone(), url.clone());
        async move {
            let to = &numbers[(i % numbers.len().max(1) as u64) as usize];
            match api.client.get(url.replace("{to}", to)).send().await {
                Ok(r) if r.status().is_success() => {
                    let status = r.status().as_u16().to_string();
                    let _ = r.bytes().await;
                    Outcome::Ok { status, id: None }
                }
                Ok(r) => Outcome::Err(format!("GET: HTTP {}", r.status())),
                Err(e) => Outcome::Err(short(&format!("GET: {e}"))),
            }
        }
    })
    .await;
    print_single(args, &result)
}

/// One phase's result: JSON on stdout with `--json`, else a table.
fn print_single(args: &Args, p: &PhaseResult) -> Result<(), String> {
    let human = table(args, &[p], 0.0, 0.0);
    if args.json {
        eprintln!("\n{human}");
        println!(
            "{}",
            serde_json::to_string_pretty(p).map_err(|e| e.to_string())?
        );
    } else {
        println!("{human}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
