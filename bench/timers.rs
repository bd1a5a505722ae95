//! The flow-timer benchmark (`bash bench/timers.sh` drives it): many sessions with a pending
//! task-flow timer, what they cost the server in memory, and how late the timers fire when
//! they all come due at once.
//!
//! It runs the whole scenario itself, against a database of its own:
//!
//! 1. creates a tenant (`otpgate tenant create`), starts `otpgate serve` (A), and creates an app,
//!    a template and a flow of one node (`waitingTime` 120 s by default, `status` 2: send again
//!    while not verified, SMS, same route);
//! 2. sends N codes with that flow, from `--concurrency` clients, to distinct numbers; each
//!    send's attempt goes through the console provider, which writes the session's flow timer
//!    (a `flow` job due `waitingTime` after the hand-over);
//! 3. reads A's memory (`/proc/PID/status`) before the sends and once every timer is written,
//!    then stops A with SIGTERM before the first timer is due;
//! 4. reads the queue from the stopped server's database (read-only): how many timers, and
//!    when the first and the last are due;
//! 5. waits until the last timer is due, so that every timer is due at the same moment, and
//!    starts `otpgate serve` again (B): B starts with all N timers overdue;
//! 6. follows B's `/metrics` and `/proc` until every timer has fired and the queue is empty:
//!    the drain time, the firing curve, `otpgate_job_lag_seconds{kind="flow"}` (due time to
//!    worker start) and B's peak memory.
//!
//! ```text
//! cargo run --release --example timers -- --server target/release/otpgate --workdir DIR \
//!     [--sessions 100000] [--concurrency 32] [--waiting-secs 120] [--workers N] \
//!     [--sample-ms 1000] [--json]
//! ```
//!
//! The servers' standard output (the console provider prints every message) goes to
//! `/dev/null`; their logs (`OTPGATE_LOG=warn`) go to `server-a.err` / `server-b.err` in the
//! work directory. Only processes this program started are ever signalled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otpgate::crypto::{MasterKey, buka_sign};
use otpgate::domain::phone::PhoneNumber;
use reqwest::{Client, Method};
use serde_json::{Value, json};

const USAGE: &str = "usage: timers --server PATH --workdir DIR [--sessions N (100000)] \
[--concurrency N (32)] [--waiting-secs 30-120 (120)] [--workers N] [--sample-ms N (1000)] [--json]";

/// The last send must be accepted this long before the first timer is due, so that server A
/// can be stopped before any timer fires.
const STOP_MARGIN: Duration = Duration::from_secs(15);
/// Server B starts this long after the last timer came due.
const RESTART_AFTER_LAST_DUE_MS: i64 = 1_000;
/// Upper bound on the whole drain, whatever happens.
const MAX_DRAIN: Duration = Duration::from_secs(1_800);

#[derive(Debug, Clone)]
struct Args {
    server: PathBuf,
    workdir: PathBuf,
    sessions: usize,
    concurrency: usize,
    waiting_secs: i64,
    workers: Option<usize>,
    sample: Duration,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut server = None;
    let mut workdir = None;
    let mut sessions = 100_000usize;
    let mut concurrency = 32usize;
    let mut waiting_secs = 120i64;
    let mut workers = None;
    let mut sample_ms = 1000u64;
    let mut json = false;
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
            "--server" => server = Some(PathBuf::from(value("--server")?)),
            "--workdir" => workdir = Some(PathBuf::from(value("--workdir")?)),
            "--sessions" => sessions = number(&value("--sessions")?, "--sessions")?,
            "--concurrency" => concurrency = number(&value("--concurrency")?, "--concurrency")?,
            "--waiting-secs" => waiting_secs = number(&value("--waiting-secs")?, "--waiting-secs")?,
            "--workers" => workers = Some(number(&value("--workers")?, "--workers")?),
            "--sample-ms" => sample_ms = number(&value("--sample-ms")?, "--sample-ms")?,
            "--json" => json = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !(1..=1_000_000).contains(&sessions) {
        return Err("--sessions must be 1-1000000".into());
    }
    if !(1..=1024).contains(&concurrency) {
        return Err("--concurrency must be 1-1024".into());
    }
    if !(30..=120).contains(&waiting_secs) {
        return Err("--waiting-secs must be 30-120 (the flow node's range)".into());
    }
    if workers.is_some_and(|w| !(1..=4096).contains(&w)) {
        return Err("--workers must be 1-4096".into());
    }
    if !(20..=5_000).contains(&sample_ms) {
        return Err("--sample-ms must be 20-5000".into());
    }
    Ok(Args {
        server: server.ok_or_else(|| format!("--server is required\n{USAGE}"))?,
        workdir: workdir.ok_or_else(|| format!("--workdir is required\n{USAGE}"))?,
        sessions,
        concurrency,
        waiting_secs,
        workers,
        sample: Duration::from_millis(sample_ms),
        json,
    })
}

fn number<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{name}: {s:?} is not a whole number"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn log(msg: impl AsRef<str>) {
    eprintln!("timers: {}", msg.as_ref());
}

// ---------------------------------------------------------------------------------------------
// The server processes.

/// The environment both servers and the tenant command share.
struct ServerEnv {
    bin: PathBuf,
    workdir: PathBuf,
    db: PathBuf,
    master_key: String,
    workers: Option<usize>,
}

impl ServerEnv {
    /// `otpgate <args>` with a clean `OTPGATE_` environment.
    fn command(&self, listen: Option<u16>) -> Command {
        let mut c = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OTPGATE_") {
                c.env_remove(k);
            }
        }
        c.env("OTPGATE_MODE", "development")
            .env(
                "OTPGATE_DATABASE_URL",
                format!("sqlite://{}", self.db.display()),
            )
            .env("OTPGATE_MASTER_KEY", &self.master_key)
            .env("OTPGATE_DEV_TENANT", "false")
            .env("OTPGATE_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(port) = listen {
            c.env("OTPGATE_LISTEN", format!("127.0.0.1:{port}"));
        }
        if let Some(w) = self.workers {
            c.env("OTPGATE_DELIVERY__WORKERS", w.to_string());
        }
        c
    }

    /// Creates the tenant the benchmark signs with (this also creates the database).
    fn create_tenant(&self) -> Result<(String, String), String> {
        let out = self
            .command(None)
            .args(["tenant", "create", "--name", "bench-timers", "--json"])
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "otpgate tenant create failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = text
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("otpgate tenant create printed no JSON: {text}"))?;
        match (v["apiKey"].as_str(), v["apiSecret"].as_str()) {
            (Some(k), Some(s)) => Ok((k.to_string(), s.to_string())),
            _ => Err(format!("otpgate tenant create: unexpected output {v}")),
        }
    }

    /// Starts `otpgate serve` and waits until `/healthz` answers.
    async fn start(&self, name: &str, client: &Client) -> Result<Server, String> {
        let mut last = String::new();
        for attempt in 1..=3 {
            let port = free_port()?;
            let err_path = self.workdir.join(format!("server-{name}.err"));
            let err = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&err_path)
                .map_err(|e| format!("{}: {e}", err_path.display()))?;
            let spawned = Instant::now();
            let spawned_ms = now_ms();
            let child = self
                .command(Some(port))
                .arg("serve")
                // The console provider prints every message: not wanted, and not free.
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
            let mut server = Server {
                name: name.to_string(),
                pid: child.id(),
                child: Some(child),
                base: format!("http://127.0.0.1:{port}"),
                spawned,
                spawned_ms,
                ready_after: Duration::ZERO,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if server.exited() {
                    break;
                }
                let ok = client
                    .get(format!("{}/healthz", server.base))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    server.ready_after = spawned.elapsed();
                    return Ok(server);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            server.stop(Duration::from_secs(5)).await;
            last = tail(&err_path, 10);
            log(format!(
                "server {name} did not start (attempt {attempt}): {last}"
            ));
        }
        Err(format!("server {name} did not start: {last}"))
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A server this program started. Dropping it stops it (SIGTERM, then SIGKILL).
struct Server {
    name: String,
    pid: u32,
    child: Option<Child>,
    base: String,
    spawned: Instant,
    spawned_ms: i64,
    ready_after: Duration,
}

impl Server {
    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    fn sigterm(&self) {
        // Only ever this child's own pid.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM, then waits up to `grace` before SIGKILL. Returns how long it took and whether
    /// it exited on its own.
    async fn stop(&mut self, grace: Duration) -> (Duration, bool) {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else {
            return (Duration::ZERO, true);
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return (Duration::ZERO, true);
        }
        self.sigterm();
        while started.elapsed() < grace {
            if !matches!(child.try_wait(), Ok(None)) {
                return (started.elapsed(), true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        log(format!(
            "server {} ignored SIGTERM for {} s; killing it",
            self.name,
            grace.as_secs()
        ));
        let _ = child.kill();
        let _ = child.wait();
        (started.elapsed(), false)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            self.sigterm();
            for _ in 0..100 {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the kernel says about a process.

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Memory {
    vm_rss_kb: u64,
    vm_hwm_kb: u64,
    rss_anon_kb: u64,
    rss_file_kb: u64,
    rss_shmem_kb: u64,
    threads: u64,
}

fn memory(pid: u32) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut m = Memory::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let n = v
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match k {
            "VmRSS" => m.vm_rss_kb = n,
            "VmHWM" => m.vm_hwm_kb = n,
            "RssAnon" => m.rss_anon_kb = n,
            "RssFile" => m.rss_file_kb = n,
            "RssShmem" => m.rss_shmem_kb = n,
            "Threads" => m.threads = n,
            _ => {}
        }
    }
    m
}

/// User plus system CPU seconds of a process so far (clock ticks of 1/100 s, Linux's
/// `USER_HZ`).
fn cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the command name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// /metrics.

/// One scrape of the Prometheus text: `(name, labels, value)` per sample.
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            out.push((name.to_string(), labels, value));
        }
        Scrape(out)
    }

    /// The sum over every series of `name` whose labels include `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && filter
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| v)
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }

    /// Every series of `name`, keyed by the value of `label`.
    fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for (n, l, v) in &self.0 {
            if n == name {
                let key = l.get(label).cloned().unwrap_or_default();
                *m.entry(key).or_default() += v;
            }
        }
        m
    }

    /// The cumulative buckets `(upper bound, count)` of a histogram for one `kind`.
    fn buckets(&self, name: &str, kind: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut b: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter(|(n, l, _)| *n == bucket && l.get("kind").is_some_and(|k| k == kind))
            .filter_map(|(_, l, v)| {
                let le = l.get("le")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *v))
            })
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(e);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        m.insert(k.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    m
}

/// A quantile from cumulative buckets, as Prometheus' `histogram_quantile` computes it: linear
/// within the bucket it falls in; the highest finite bound if it falls in `+Inf`.
fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_bound = 0.0;
    let mut prev_count = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(prev_bound);
            }
            let in_bucket = count - prev_count;
            let frac = if in_bucket > 0.0 {
                (rank - prev_count) / in_bucket
            } else {
                1.0
            };
            return Some(prev_bound + (bound - prev_bound) * frac);
        }
        prev_bound = bound;
        prev_count = count;
    }
    Some(prev_bound)
}

async fn scrape(client: &Client, base: &str) -> Result<(Scrape, Duration), String> {
    let t0 = Instant::now();
    let resp = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    if status != 200 {
        return Err(format!("GET /metrics: HTTP {status}: {text}"));
    }
    Ok((Scrape::parse(&text), t0.elapsed()))
}

// ---------------------------------------------------------------------------------------------
// The queue, read from a stopped server's database.

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueKind {
    jobs: i64,
    claimed: i64,
    due_min_ms: Option<i64>,
    due_max_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DbState {
    jobs: BTreeMap<String, QueueKind>,
    sessions: i64,
    attempts: i64,
    db_bytes: u64,
}

fn read_db(db: &Path) -> Result<DbState, String> {
    use rusqlite::{Connection, OpenFlags};
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("opening {}: {e}", db.display()))?;
    let q = |e: rusqlite::Error| format!("reading {}: {e}", db.display());
    let mut s = DbState::default();
    let mut stmt = c
        .prepare(
            "SELECT kind, COUNT(*), SUM(owner IS NOT NULL), MIN(due_ms), MAX(due_ms) \
             FROM jobs GROUP BY kind",
        )
        .map_err(q)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                QueueKind {
                    jobs: r.get(1)?,
                    claimed: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    due_min_ms: r.get(3)?,
                    due_max_ms: r.get(4)?,
                },
            ))
        })
        .map_err(q)?;
    for row in rows {
        let (k, v) = row.map_err(q)?;
        s.jobs.insert(k, v);
    }
    s.sessions = c
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .map_err(q)?;
    s.attempts = c
        .query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
        .map_err(q)?;
    s.db_bytes = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    Ok(s)
}

/// Every flow timer's due time, in the order the workers claim them (`ORDER BY due_ms`).
fn flow_due_times(db: &Path) -> Result<Vec<i64>, String> {
    use rusqlite::{Connection, OpenFlags};
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("opening {}: {e}", db.display()))?;
    let q = |e: rusqlite::Error| format!("reading {}: {e}", db.display());
    let mut stmt = c
        .prepare("SELECT due_ms FROM jobs WHERE kind = 'flow' ORDER BY due_ms")
        .map_err(q)?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(q)?;
    rows.collect::<Result<_, _>>().map_err(q)
}

// ---------------------------------------------------------------------------------------------
// The Buka API.

struct Api {
    client: Client,
    base: String,
    key: String,
    secret: String,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let ts = (now_ms() / 1000).to_string();
        let resp = self
            .client
            .request(Method::POST, format!("{}{path}", self.base))
            .header("Api-Key", &self.key)
            .header("Timestamp", &ts)
            .header("Sign", buka_sign(&self.key, &self.secret, &ts))
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
        serde_json::from_slice(&bytes).map_err(|e| format!("POST {path}: not JSON: {e}"))
    }

    /// `data` of a successful (status "0") answer.
    async fn ok(&self, path: &str, body: &Value) -> Result<Value, String> {
        let v = self.post(path, body).await?;
        if v["status"].as_str() == Some("0") {
            Ok(v["data"].clone())
        } else {
            Err(format!("{path} failed: {v}"))
        }
    }
}

/// App (code valid 60 minutes, so no session expires before its timer; limits off),
/// template, and a flow of one node.
async fn setup(api: &Api, waiting_secs: i64) -> Result<(String, i64, i64), String> {
    let off = json!({"enabled": false});
    let app = api
        .ok(
            "/v3/otp/app/add",
            &json!({"name": "bench_timers", "codeExpiry": 60,
                    "periodTotalSendLimit": off, "periodPhoneSendLimit": off}),
        )
        .await?;
    let app = app["appId"]
        .as_str()
        .ok_or("app/add: no appId")?
        .to_string();
    let tpl = api
        .ok(
            "/v3/otp/template/add",
            &json!({"appId": app, "name": "bench_timers", "text": "##code## is your code",
                    "codeType": 1, "codeLength": 4}),
        )
        .await?;
    let tpl = tpl["templateId"]
        .as_i64()
        .ok_or("template/add: no templateId")?;
    let flow = api
        .ok(
            "/v3/otp/flow/add",
            &json!({"name": "bench_timers", "flow": [
                {"waitingTime": waiting_secs, "status": 2, "channel": "sms", "channelCut": 1}
            ]}),
        )
        .await?;
    let flow = flow["flowId"].as_i64().ok_or("flow/add: no flowId")?;
    Ok((app, tpl, flow))
}

/// `count` distinct destination numbers the numbering plan accepts: US 415-555-XXXX, then UK
/// mobiles 07911 XXXXXX (the same as the load generator's).
fn destination_numbers(count: usize) -> Vec<String> {
    let us = (0..10_000u32).map(|n| format!("1415555{n:04}"));
    let uk = (0..1_000_000u32).map(|n| format!("447911{n:06}"));
    us.chain(uk)
        .filter(|n| PhoneNumber::parse(n).is_ok())
        .take(count)
        .collect()
}

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SendResult {
    requested: usize,
    ok: u64,
    errors: u64,
    /// Sends left out because the first timer would have come due.
    not_sent: u64,
    secs: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    error_kinds: BTreeMap<String, u64>,
    first_ms: i64,
    last_ms: i64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// Sends one code with the flow to each number, `concurrency` at a time, until all are sent or
/// `deadline` passes.
async fn send_all(
    api: Arc<Api>,
    numbers: Arc<Vec<String>>,
    app: Arc<String>,
    tpl: i64,
    flow: i64,
    concurrency: usize,
    deadline: Instant,
) -> SendResult {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let first_ms = now_ms();
    let progress = {
        let done = done.clone();
        let total = numbers.len();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let n = done.load(Ordering::Relaxed);
                log(format!(
                    "  sent {n} / {total} ({:.0}/s)",
                    n as f64 / started.elapsed().as_secs_f64()
                ));
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (api, numbers, app, next, done) = (
            api.clone(),
            numbers.clone(),
            app.clone(),
            next.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(to) = numbers.get(i) else {
                    break;
                };
                let t0 = Instant::now();
                let body = json!({"appId": *app, "templateId": tpl, "flowId": flow, "to": to});
                match api.ok("/v3/otp/verification/send", &body).await {
                    Ok(d) if d["verificationId"].is_string() => {
                        lat.push(t0.elapsed().as_micros() as u64)
                    }
                    Ok(d) => *errors.entry(format!("no verificationId: {d}")).or_default() += 1,
                    Err(e) => {
                        let e: String = e.chars().take(160).collect();
                        *errors.entry(e).or_default() += 1
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        match t.await {
            Ok((l, e)) => {
                lat.extend(l);
                for (k, v) in e {
                    *errors.entry(k).or_default() += v;
                }
            }
            Err(e) => {
                *errors
                    .entry(format!("client task failed: {e}"))
                    .or_default() += 1
            }
        }
    }
    progress.abort();
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let errs: u64 = errors.values().sum();
    SendResult {
        requested: numbers.len(),
        ok,
        errors: errs,
        not_sent: (numbers.len() as u64).saturating_sub(ok + errs),
        secs,
        rps: ok as f64 / secs.max(1e-9),
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        error_kinds: errors,
        first_ms,
        last_ms: now_ms(),
    }
}

// ---------------------------------------------------------------------------------------------
// The scenario.

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Sample {
    /// Seconds since server B answered `/healthz`.
    t: f64,
    fired: f64,
    due: f64,
    queued: f64,
    rss_mib: f64,
    /// The anonymous part (heap, SQLite page caches); the rest is mapped file pages.
    anon_mib: f64,
    cpu_secs: f64,
}

/// When `fraction` of `total` timers had fired, in seconds since B was ready (linear between
/// two samples).
fn fired_at(samples: &[Sample], total: f64, fraction: f64) -> Option<f64> {
    let goal = (total * fraction).ceil().max(1.0);
    let mut prev: Option<&Sample> = None;
    for s in samples {
        if s.fired >= goal {
            return Some(match prev {
                Some(p) if s.fired > p.fired => {
                    p.t + (s.t - p.t) * (goal - p.fired) / (s.fired - p.fired)
                }
                _ => s.t,
            });
        }
        prev = Some(s);
    }
    None
}

/// Each timer's lag, from its due time to the moment the firing curve passed its rank: the
/// workers claim in due order, so the k-th timer to fire is (to within the 64 running at once)
/// the k-th due. `due_sorted` in ms; `ready_ms` is when the samples' `t` is 0.
fn derived_lags(due_sorted: &[i64], samples: &[Sample], ready_ms: i64) -> Vec<f64> {
    let mut lags = Vec::with_capacity(due_sorted.len());
    let mut prev = (0.0f64, 0.0f64); // (t, fired)
    let mut it = samples.iter();
    let mut cur = it.next();
    for (k, due) in due_sorted.iter().enumerate() {
        let rank = (k + 1) as f64;
        while let Some(s) = cur {
            if s.fired >= rank {
                break;
            }
            prev = (s.t, s.fired);
            cur = it.next();
        }
        let Some(s) = cur else {
            break;
        };
        let t = if s.fired > prev.1 {
            prev.0 + (s.t - prev.0) * (rank - prev.1) / (s.fired - prev.1)
        } else {
            s.t
        };
        let fired_ms = ready_ms as f64 + t * 1000.0;
        lags.push(((fired_ms - *due as f64) / 1000.0).max(0.0));
    }
    lags
}

fn quantile_of(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn secs_between(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms) as f64 / 1000.0
}

async fn run(args: Args) -> Result<Value, String> {
    let started_at = chrono::Utc::now();
    let load_start = loadavg();
    let workdir = std::fs::canonicalize(&args.workdir)
        .map_err(|e| format!("--workdir {}: {e}", args.workdir.display()))?;
    let env = ServerEnv {
        bin: args.server.clone(),
        db: workdir.join("timers.db"),
        workdir,
        master_key: MasterKey::generate().1,
        workers: args.workers,
    };
    let client = Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;

    let (key, secret) = env.create_tenant()?;
    let numbers = Arc::new(destination_numbers(args.sessions));
    if numbers.len() < args.sessions {
        return Err(format!(
            "only {} valid destination numbers; at most that many sessions",
            numbers.len()
        ));
    }

    // --- Server A: the sends.
    let mut a = env.start("a", &client).await?;
    log(format!(
        "server A (pid {}) ready in {:.2} s at {}",
        a.pid,
        a.ready_after.as_secs_f64(),
        a.base
    ));
    let api = Arc::new(Api {
        client: client.clone(),
        base: a.base.clone(),
        key,
        secret,
    });
    let (app, tpl, flow) = setup(&api, args.waiting_secs).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mem_idle = memory(a.pid);
    log(format!(
        "app {app}, template {tpl}, flow {flow} (one node: {} s, status 2, sms); server A at {:.1} MiB",
        args.waiting_secs,
        mib(mem_idle.vm_rss_kb)
    ));
    log(format!(
        "sending {} codes with {} clients...",
        args.sessions, args.concurrency
    ));
    let cpu_a0 = cpu_secs(a.pid);
    let send_deadline =
        Instant::now() + Duration::from_secs(args.waiting_secs as u64) - STOP_MARGIN;
    let sent = send_all(
        api.clone(),
        numbers.clone(),
        Arc::new(app.clone()),
        tpl,
        flow,
        args.concurrency,
        send_deadline,
    )
    .await;
    log(format!(
        "sent {} ({} errors, {} not sent) in {:.1} s: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
        sent.ok, sent.errors, sent.not_sent, sent.secs, sent.rps, sent.p50_ms, sent.p99_ms
    ));
    if sent.ok == 0 {
        return Err(format!("no send succeeded: {:?}", sent.error_kinds));
    }
    if sent.not_sent > 0 {
        log(format!(
            "WARNING: {} sends were left out: the first timer comes due {} s after the first send",
            sent.not_sent, args.waiting_secs
        ));
    }

    // Every accepted send is handed to the console route in the background; its flow timer is
    // written with the outcome. Wait for all of them.
    let deliveries_from = Instant::now();
    let delivered = loop {
        let (m, _) = scrape(&client, &a.base).await?;
        let delivered = m.sum("otpgate_provider_submit_seconds_count", &[]);
        if delivered >= sent.ok as f64 {
            break delivered;
        }
        if deliveries_from.elapsed() > Duration::from_secs(60) {
            log(format!(
                "WARNING: only {delivered} of {} deliveries done after 60 s",
                sent.ok
            ));
            break delivered;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The outcome (and the timer) is committed just after the submit is counted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries_secs = deliveries_from.elapsed().as_secs_f64();
    let mem_pending = memory(a.pid);
    let cpu_a = cpu_secs(a.pid) - cpu_a0;
    let (m, took) = scrape(&client, &a.base).await?;
    let queued_a = m.sum("otpgate_jobs_queued", &[]);
    let fired_before_stop = m.sum("otpgate_flow_steps_total", &[]);
    let pending_scrape_ms = took.as_secs_f64() * 1000.0;
    log(format!(
        "{delivered} delivered; {queued_a} jobs queued; server A at {:.1} MiB (peak {:.1} MiB); \
         /metrics took {:.1} ms",
        mib(mem_pending.vm_rss_kb),
        mib(mem_pending.vm_hwm_kb),
        took.as_secs_f64() * 1000.0
    ));
    let stop_a_ms = now_ms();
    let (stop_a, clean_a) = a.stop(Duration::from_secs(60)).await;
    log(format!(
        "server A stopped (SIGTERM) in {:.2} s; {fired_before_stop} timers had fired before",
        stop_a.as_secs_f64()
    ));
    if fired_before_stop > 0.0 {
        log("WARNING: some timers fired before the stop; they are not part of the burst");
    }

    // --- The queue between the two servers.
    let db_pending = read_db(&env.db)?;
    let flows = db_pending.jobs.get("flow").cloned().unwrap_or_default();
    let (Some(first_due), Some(last_due)) = (flows.due_min_ms, flows.due_max_ms) else {
        return Err(format!(
            "no flow timer in the queue after the sends: {:?}",
            db_pending.jobs
        ));
    };
    log(format!(
        "queue: {:?}; flow timers due from +{:.1} s to +{:.1} s after the stop",
        db_pending
            .jobs
            .iter()
            .map(|(k, v)| (k.as_str(), v.jobs))
            .collect::<BTreeMap<_, _>>(),
        secs_between(stop_a_ms, first_due),
        secs_between(stop_a_ms, last_due)
    ));
    if stop_a_ms >= first_due {
        log("WARNING: server A stopped after the first timer was due");
    }
    let due_times = flow_due_times(&env.db)?;
    let expected = flows.jobs as f64;
    let restart_ms = (last_due + RESTART_AFTER_LAST_DUE_MS).max(now_ms());
    log(format!(
        "waiting {:.0} s until every timer is due...",
        secs_between(now_ms(), restart_ms)
    ));
    tokio::time::sleep(Duration::from_millis((restart_ms - now_ms()).max(0) as u64)).await;

    // --- Server B: the burst.
    let mut b = env.start("b", &client).await?;
    let ready_ms = b.spawned_ms + b.ready_after.as_millis() as i64;
    let mem_ready = memory(b.pid);
    log(format!(
        "server B (pid {}) ready in {:.2} s with {expected} timers overdue by {:.1}-{:.1} s",
        b.pid,
        b.ready_after.as_secs_f64(),
        secs_between(last_due, ready_ms),
        secs_between(first_due, ready_ms)
    ));
    let ready_at = b.spawned + b.ready_after;
    let mut samples: Vec<Sample> = Vec::new();
    let mut burst_scrape_ms = Vec::new();
    let mut last_log = Instant::now();
    let mut peak_rss_kb = mem_ready.vm_rss_kb;
    let mut peak_anon_kb = mem_ready.rss_anon_kb;
    let mut peak_threads = mem_ready.threads;
    let last: Scrape = loop {
        let (m, took) = scrape(&client, &b.base).await?;
        burst_scrape_ms.push(took.as_secs_f64() * 1000.0);
        let mem = memory(b.pid);
        peak_rss_kb = peak_rss_kb.max(mem.vm_rss_kb);
        peak_anon_kb = peak_anon_kb.max(mem.rss_anon_kb);
        peak_threads = peak_threads.max(mem.threads);
        let s = Sample {
            t: ready_at.elapsed().as_secs_f64(),
            fired: m.sum("otpgate_flow_steps_total", &[]),
            due: m.sum("otpgate_jobs_due", &[]),
            queued: m.sum("otpgate_jobs_queued", &[]),
            rss_mib: mib(mem.vm_rss_kb),
            anon_mib: mib(mem.rss_anon_kb),
            cpu_secs: cpu_secs(b.pid),
        };
        let finished = s.fired >= expected && s.due == 0.0 && s.queued == 0.0;
        if last_log.elapsed() >= Duration::from_secs(5) {
            log(format!(
                "  +{:.1} s: {} fired, {} due, {} queued, {:.1} MiB",
                s.t, s.fired, s.due, s.queued, s.rss_mib
            ));
            last_log = Instant::now();
        }
        samples.push(s);
        if finished {
            break m;
        }
        if ready_at.elapsed() > MAX_DRAIN {
            return Err(format!(
                "the timers did not drain within {} s",
                MAX_DRAIN.as_secs()
            ));
        }
        if b.exited() {
            return Err(format!(
                "server B exited during the burst: {}",
                tail(&env.workdir.join("server-b.err"), 10)
            ));
        }
        tokio::time::sleep(args.sample).await;
    };
    let drain_secs = samples.last().map_or(0.0, |s| s.t);
    let mem_drained = memory(b.pid);
    // Everything B did: starting, the burst and the scrapes.
    let cpu_b = samples.last().map_or(0.0, |s| s.cpu_secs);
    let buckets = last.buckets("otpgate_job_lag_seconds", "flow");
    let lag_count = last.sum("otpgate_job_lag_seconds_count", &[("kind", "flow")]);
    let lag_sum = last.sum("otpgate_job_lag_seconds_sum", &[("kind", "flow")]);
    // Counters are whole numbers.
    let flow_results: BTreeMap<String, u64> = last
        .by_label("otpgate_flow_steps_total", "result")
        .into_iter()
        .map(|(k, v)| (k, v as u64))
        .collect();
    let job_results: BTreeMap<String, u64> = last
        .0
        .iter()
        .filter(|(n, l, _)| n == "otpgate_jobs_total" && l.get("kind").is_some_and(|k| k == "flow"))
        .map(|(_, l, v)| (l.get("result").cloned().unwrap_or_default(), *v as u64))
        .collect();
    let (stop_b, clean_b) = b.stop(Duration::from_secs(60)).await;
    let db_after = read_db(&env.db)?;
    let err_lines = |name: &str| {
        std::fs::read_to_string(env.workdir.join(format!("server-{name}.err")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let errors_a = err_lines("a");
    let errors_b = err_lines("b");
    if errors_a + errors_b > 0 {
        log(format!(
            "the servers logged {errors_a} + {errors_b} warning/error lines; the last ones of B:\n{}",
            tail(&env.workdir.join("server-b.err"), 5)
        ));
    }

    let mut lags = derived_lags(&due_times, &samples, ready_ms);
    lags.sort_by(f64::total_cmp);
    let dq = |p: f64| quantile_of(&lags, p);
    let q = |p: f64| histogram_quantile(p, &buckets);
    let fired = |f: f64| fired_at(&samples, expected, f);
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    // Thin the firing curve to at most ~200 points for the JSON.
    let step = samples.len().div_ceil(200).max(1);
    let curve: Vec<&Sample> = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == samples.len())
        .map(|(_, s)| s)
        .collect();
    let result = json!({
        "benchmark": "flow timers",
        "startedAt": started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "finishedAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavgStart": load_start,
            "loadavgEnd": loadavg(),
        },
        "config": {
            "sessions": args.sessions,
            "concurrency": args.concurrency,
            "waitingSecs": args.waiting_secs,
            "workers": args.workers.map_or(json!("default (256)"), |w| json!(w)),
            "sampleMs": args.sample.as_millis() as u64,
        },
        "send": sent,
        "pending": {
            "deliveriesDoneSecsAfterSends": deliveries_secs,
            "delivered": delivered,
            "jobsQueued": queued_a,
            "firedBeforeStop": fired_before_stop,
            "serverCpuSecs": cpu_a,
            "memoryIdle": mem_idle,
            "memoryPending": mem_pending,
            "metricsScrapeMs": pending_scrape_ms,
            "stopSecs": stop_a.as_secs_f64(),
            "stoppedCleanly": clean_a,
            "stoppedBeforeFirstDue": stop_a_ms < first_due,
            "queue": db_pending,
            "dueSpreadSecs": secs_between(first_due, last_due),
        },
        "burst": {
            "timers": expected,
            "readySecs": b.ready_after.as_secs_f64(),
            "overdueAtReadySecs": {"min": secs_between(last_due, ready_ms), "max": secs_between(first_due, ready_ms)},
            "drainSecs": drain_secs,
            "timersPerSec": expected / drain_secs.max(1e-9),
            "firedSecsAfterReady": {"p50": fired(0.5), "p90": fired(0.9), "p99": fired(0.99), "all": fired(1.0)},
            "lagSeconds": {
                "count": lag_count,
                "mean": if lag_count > 0.0 { lag_sum / lag_count } else { 0.0 },
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
                "buckets": buckets.iter().map(|(b, c)| json!([if b.is_finite() { json!(b) } else { json!("+Inf") }, c])).collect::<Vec<_>>(),
            },
            "lagDerivedSeconds": {
                "count": lags.len(),
                "mean": if lags.is_empty() { 0.0 } else { lags.iter().sum::<f64>() / lags.len() as f64 },
                "p50": dq(0.5), "p90": dq(0.9), "p99": dq(0.99), "max": dq(1.0),
            },
            "flowSteps": flow_results,
            "flowJobs": job_results,
            "memoryAtReady": mem_ready,
            "memoryDrained": mem_drained,
            "peakRssSampledKb": peak_rss_kb,
            "peakAnonSampledKb": peak_anon_kb,
            "peakThreadsSampled": peak_threads,
            "serverCpuSecs": cpu_b,
            "serverCpuUsPerTimer": cpu_b * 1e6 / expected.max(1.0),
            "metricsScrapeMs": {"mean": mean(&burst_scrape_ms), "max": burst_scrape_ms.iter().copied().fold(0.0, f64::max)},
            "stopSecs": stop_b.as_secs_f64(),
            "stoppedCleanly": clean_b,
            "curve": curve,
        },
        "after": db_after,
        "serverLogLines": {"a": errors_a, "b": errors_b},
    });
    Ok(result)
}

fn table(v: &Value) -> String {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let kb = |p: &str| mib(v.pointer(p).and_then(Value::as_u64).unwrap_or(0));
    let mut o = String::new();
    o.push_str(&format!(
        "otpgate flow timers: {} sessions, one flow node of {} s, {} clients, workers {}\n\n",
        v["config"]["sessions"],
        v["config"]["waitingSecs"],
        v["config"]["concurrency"],
        match &v["config"]["workers"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    ));
    o.push_str(&format!(
        "sends            {:>8} ok, {} errors, {} not sent, {:.1} s, {:.0}/s (p50 {:.1} ms, p99 {:.1} ms)\n",
        v["send"]["ok"], v["send"]["errors"], v["send"]["notSent"], f("/send/secs"), f("/send/rps"),
        f("/send/p50Ms"), f("/send/p99Ms")
    ));
    o.push_str(&format!(
        "timers pending   {:>8} (due over {:.1} s; {} fired before the stop)\n",
        f("/burst/timers"),
        f("/pending/dueSpreadSecs"),
        f("/pending/firedBeforeStop")
    ));
    o.push_str("\nmemory of the server (MiB)        VmRSS   anon   file   peak (VmHWM)  threads\n");
    for (label, p) in [
        ("A idle, before the sends", "/pending/memoryIdle"),
        ("A with every timer pending", "/pending/memoryPending"),
        ("B ready, timers overdue", "/burst/memoryAtReady"),
        ("B after the burst", "/burst/memoryDrained"),
    ] {
        o.push_str(&format!(
            "  {label:<30} {:>6.1} {:>6.1} {:>6.1} {:>8.1} {:>12}\n",
            kb(&format!("{p}/vmRssKb")),
            kb(&format!("{p}/rssAnonKb")),
            kb(&format!("{p}/rssFileKb")),
            kb(&format!("{p}/vmHwmKb")),
            v.pointer(&format!("{p}/threads"))
                .map(Value::to_string)
                .unwrap_or_default(),
        ));
    }
    o.push_str(&format!(
        "  {:<30} {:>6.1} {:>6.1} {:>6} {:>8} {:>12}  (largest samples)\n",
        "B during the burst, sampled",
        kb("/burst/peakRssSampledKb"),
        kb("/burst/peakAnonSampledKb"),
        "",
        "",
        v["burst"]["peakThreadsSampled"].to_string()
    ));
    o.push_str(&format!(
        "\nburst: server B ready in {:.2} s with every timer overdue by {:.1}-{:.1} s\n",
        f("/burst/readySecs"),
        f("/burst/overdueAtReadySecs/min"),
        f("/burst/overdueAtReadySecs/max")
    ));
    o.push_str(&format!(
        "  drained in {:.1} s after ready: {:.0} timers/s, {:.0} µs server CPU per timer\n",
        f("/burst/drainSecs"),
        f("/burst/timersPerSec"),
        f("/burst/serverCpuUsPerTimer")
    ));
    o.push_str(&format!(
        "  fired, seconds after ready:      p50 {:.1}  p90 {:.1}  p99 {:.1}  all {:.1}\n",
        f("/burst/firedSecsAfterReady/p50"),
        f("/burst/firedSecsAfterReady/p90"),
        f("/burst/firedSecsAfterReady/p99"),
        f("/burst/firedSecsAfterReady/all")
    ));
    o.push_str(&format!(
        "  otpgate_job_lag_seconds{{kind=\"flow\"}}: p50 {:.1}  p90 {:.1}  p99 {:.1}  mean {:.1} (n = {:.0})\n",
        f("/burst/lagSeconds/p50"),
        f("/burst/lagSeconds/p90"),
        f("/burst/lagSeconds/p99"),
        f("/burst/lagSeconds/mean"),
        f("/burst/lagSeconds/count")
    ));
    o.push_str(&format!(
        "  lag per timer, from the firing curve: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}\n",
        f("/burst/lagDerivedSeconds/p50"),
        f("/burst/lagDerivedSeconds/p90"),
        f("/burst/lagDerivedSeconds/p99"),
        f("/burst/lagDerivedSeconds/max"),
        f("/burst/lagDerivedSeconds/mean")
    ));
    o.push_str(&format!(
        "  flow steps: {}   flow jobs: {}\n",
        v["burst"]["flowSteps"], v["burst"]["flowJobs"]
    ));
    o.push_str(&format!(
        "  /metrics answered in {:.1} ms with every timer pending, {:.1} ms mean ({:.1} max) \
         during the burst\n",
        f("/pending/metricsScrapeMs"),
        f("/burst/metricsScrapeMs/mean"),
        f("/burst/metricsScrapeMs/max")
    ));
    o.push_str(&format!(
        "\nload average: {} at the start, {} at the end ({} cores)\n",
        v["machine"]["loadavgStart"].as_str().unwrap_or("?"),
        v["machine"]["loadavgEnd"].as_str().unwrap_or("?"),
        v["machine"]["cores"]
    ));
    o
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("timers: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let json_out = args.json;
    match run(args).await {
        Ok(v) => {
            let human = table(&v);
            if json_out {
                eprintln!("\n{human}");
                match serde_json::to_string_pretty(&v) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("timers: {e}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            } else {
                println!("{human}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("timers: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
