//! The test harness: starts the real server in-process on a free port with its own SQLite
//! file, an injected clock and the in-memory provider, and signs Buka requests.

use std::sync::Arc;

use chrono::Duration;
use otpgate::app::{Options, Server};
use otpgate::clock::ManualClock;
use otpgate::config::{Config, Secret};
use otpgate::crypto::buka_sign;
use otpgate::providers::Provider;
use otpgate::providers::memory::MemoryProvider;
use otpgate::service::Service;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    /// The first route's provider.
    pub provider: Arc<MemoryProvider>,
    /// Every route's provider, in route order.
    pub providers: Vec<Arc<MemoryProvider>>,
    pub service: Service,
    pub key: String,
    pub secret: String,
    pub _dir: TempDir,
    /// The PostgreSQL schema of this test, when the suite runs on PostgreSQL.
    _schema: Option<crate::pg_schema::SchemaGuard>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Which store the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `OTPGATE_TEST_STORE=postgres` runs every test's server on a PostgreSQL schema of its own
/// (see `tests/common/pg_schema.rs`); the default is a SQLite file per test.
pub fn test_store() -> Backend {
    match std::env::var("OTPGATE_TEST_STORE").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub const MASTER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server; `tweak` may change the configuration first.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_routes(tweak, |clock| {
            vec![Arc::new(MemoryProvider::named("memory", clock))]
        })
        .await
    }

    /// Two routes, `route-a` then `route-b`, each with its own in-memory provider.
    pub async fn spawn_two_routes() -> Self {
        Self::spawn_routes(
            |_| {},
            |clock| {
                vec![
                    Arc::new(MemoryProvider::named("route-a", clock.clone())),
                    Arc::new(MemoryProvider::named("route-b", clock)),
                ]
            },
        )
        .await
    }

    /// Starts a server with the routes of its configuration (`cfg.routes`, set by `tweak`)
    /// instead of in-memory ones; the console provider is off. `provider`/`providers` then
    /// hold one unrouted in-memory provider that nothing uses.
    pub async fn spawn_configured(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_routes(
            |cfg| {
                cfg.console.enabled = false;
                tweak(cfg)
            },
            |_| Vec::new(),
        )
        .await
    }

    /// Starts a server whose routes are the providers `routes` builds (named after them).
    pub async fn spawn_routes(
        tweak: impl FnOnce(&mut Config),
        routes: impl FnOnce(otpgate::clock::SharedClock) -> Vec<Arc<MemoryProvider>>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, schema) = match test_store() {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("otpgate.db").display()),
                None,
            ),
            Backend::Postgres => {
                let (url, guard) = crate::pg_schema::fresh_schema("api")
                    .await
                    .expect("OTPGATE_TEST_STORE=postgres needs a PostgreSQL server");
                (url, Some(guard))
            }
        };
        let mut cfg = Config {
            listen: "127.0.0.1:0".into(),
            database_url,
            master_key: Some(Secret::new(MASTER_KEY)),
            ..Config::default()
        };
        tweak(&mut cfg);
        let v = cfg.validate().expect("valid test configuration");
        let clock = Arc::new(ManualClock::starting_now());
        let providers = routes(clock.clone());
        let server = Server::build(
            &cfg,
            &v,
            Options {
                clock: clock.clone(),
                routes: providers
                    .iter()
                    .map(|p| (p.name().to_string(), p.clone() as Arc<dyn Provider>))
                    .collect(),
                print_console: false,
                workers: false,
            },
        )
        .await
        .expect("server builds");
        let base = format!("http://{}", server.addr);
        let service = server.service.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        let created = service.create_tenant("test tenant").await.expect("tenant");
        let provider = providers
            .first()
            .cloned()
            .unwrap_or_else(|| Arc::new(MemoryProvider::named("unrouted", clock.clone())));
        Self {
            base,
            client: reqwest::Client::new(),
            clock,
            provider,
            providers,
            service,
            key: created.tenant.api_key,
            secret: created.api_secret,
            _dir: dir,
            _schema: schema,
            shutdown: Some(tx),
        }
    }

    /// A request signed for `key`/`secret` at the server clock's current time.
    pub fn signed_as(
        &self,
        key: &str,
        secret: &str,
        method: Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let ts = self.clock_now_secs().to_string();
        self.client
            .request(method, format!("{}{}", self.base, path))
            .header("Api-Key", key)
            .header("Timestamp", &ts)
            .header("Sign", buka_sign(key, secret, &ts))
    }

    pub fn signed(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.signed_as(&self.key, &self.secret, method, path)
    }

    pub fn clock_now_secs(&self) -> i64 {
        use otpgate::clock::Clock;
        self.clock.now().timestamp()
    }

    /// Runs what the request started and every job due at the clock's time, to the end: the
    /// server's workers are off in tests, so nothing happens behind a test's back.
    pub async fn drain(&self) -> usize {
        self.service.drain().await.expect("jobs drain")
    }

    /// Moves the clock, then runs what came due.
    pub async fn advance_and_drain(&self, secs: i64) -> usize {
        self.advance(secs);
        self.drain().await
    }

    /// Every job in the queue, in due order.
    pub async fn jobs(&self) -> Vec<otpgate::store::Job> {
        self.service.store.list_jobs(1000).await.expect("jobs")
    }

    /// Sends a request, asserts HTTP 200 and returns the JSON envelope (after draining what
    /// the request started).
    pub async fn envelope(&self, rb: reqwest::RequestBuilder) -> Value {
        let v = self.envelope_undrained(rb).await;
        self.drain().await;
        v
    }

    /// As [`Self::envelope`], without draining: for tests that hold a delivery in the provider
    /// (the drain would wait for it).
    pub async fn envelope_undrained(&self, rb: reqwest::RequestBuilder) -> Value {
        let resp = rb.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(status, 200, "HTTP status must be 200, body: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got: {text}"));
        assert!(v["status"].is_string(), "status must be a string: {v}");
        assert!(v["reason"].is_string(), "reason must be a string: {v}");
        v
    }

    /// A signed POST answered without draining (see [`Self::envelope_undrained`]).
    pub async fn post_undrained(&self, path: &str, body: Value) -> Value {
        self.envelope_undrained(self.signed(Method::POST, path).json(&body))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.envelope(self.signed(Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.envelope(self.signed(Method::PUT, path).json(&body))
            .await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.envelope(self.signed(Method::GET, path)).await
    }

    /// Posts a raw body (for malformed JSON).
    pub async fn post_raw(&self, path: &str, body: &str) -> Value {
        self.envelope(
            self.signed(Method::POST, path)
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(Duration::seconds(secs));
    }

    /// Creates an app (name unique per call) and returns its id.
    pub async fn app(&self, extra: Value) -> String {
        let mut body = json!({"name": format!("app_{}", otpgate::domain::ids::random_alnum(6))});
        merge(&mut body, extra);
        let v = self.post("/v3/otp/app/add", body).await;
        assert_eq!(v["status"], "0", "{v}");
        v["data"]["appId"].as_str().expect("appId").to_string()
    }

    /// Creates a template for the app and returns its id.
    pub async fn template(&self, app_id: &str, extra: Value) -> i64 {
        let mut body = json!({
            "appId": app_id,
            "name": format!("tpl_{}", otpgate::domain::ids::random_alnum(6)),
            "text": "##code## is your verification code",
        });
        merge(&mut body, extra);
        let v = self.post("/v3/otp/template/add", body).await;
        assert_eq!(v["status"], "0", "{v}");
        v["data"]["templateId"].as_i64().expect("templateId")
    }

    /// An app with a default template: `(appId, templateId)`.
    pub async fn app_and_template(&self) -> (String, i64) {
        let app = self.app(json!({})).await;
        let tpl = self.template(&app, json!({})).await;
        (app, tpl)
    }

    /// Sends a code; returns the whole envelope.
    pub async fn send(&self, app: &str, tpl: i64, to: &str) -> Value {
        self.post(
            "/v3/otp/verification/send",
            json!({"appId": app, "templateId": tpl, "to": to}),
        )
        .await
    }

    /// Sends a code and returns the verification id, asserting success.
    pub async fn send_ok(&self, app: &str, tpl: i64, to: &str) -> String {
        let v = self.send(app, tpl, to).await;
        assert_eq!(v["status"], "0", "{v}");
        v["data"]["verificationId"]
            .as_str()
            .expect("verificationId")
            .to_string()
    }

    /// The text of the last message the provider was given.
    pub fn last_text(&self) -> String {
        self.provider
            .sent()
            .last()
            .expect("a message was sent")
            .text
            .clone()
    }

    /// The code in the last message (the template puts it first).
    pub fn last_code(&self) -> String {
        self.last_text()
            .split_whitespace()
            .next()
            .expect("code")
            .to_string()
    }

    /// Creates a flow from its nodes and returns its id.
    pub async fn flow(&self, nodes: Value) -> i64 {
        let v = self
            .post(
                "/v3/otp/flow/add",
                json!({"name": format!("flow_{}", otpgate::domain::ids::random_alnum(6)), "flow": nodes}),
            )
            .await;
        assert_eq!(v["status"], "0", "{v}");
        v["data"]["flowId"].as_i64().expect("flowId")
    }

    /// Sends a code that follows `flow`; returns the verification id.
    pub async fn send_with_flow(&self, app: &str, tpl: i64, to: &str, flow: i64) -> String {
        let v = self
            .post(
                "/v3/otp/verification/send",
                json!({"appId": app, "templateId": tpl, "to": to, "flowId": flow}),
            )
            .await;
        assert_eq!(v["status"], "0", "{v}");
        v["data"]["verificationId"]
            .as_str()
            .expect("verificationId")
            .to_string()
    }

    /// The session's attempts as stored, oldest first.
    pub async fn attempts(&self, vid: &str) -> Vec<otpgate::store::Attempt> {
        let (_, session) = self
            .service
            .store
            .verification_session(vid)
            .await
            .expect("store")
            .expect("verification exists");
        self.service
            .store
            .attempts_for_session(&session.id)
            .await
            .expect("attempts")
    }

    pub async fn verify(&self, vid: &str, code: &str) -> Value {
        self.post(
            "/v3/otp/verification/verify",
            json!({"verificationId": vid, "code": code}),
        )
        .await
    }
}

/// Shallow-merges the fields of `extra` into `base`.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

/// Asserts a Buka error status and that the reason mentions `needle`.
#[track_caller]
pub fn assert_error(v: &Value, status: &str, needle: &str) {
    assert_eq!(v["status"], status, "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(needle),
        "reason {reason:?} should mention {needle:?}: {v}"
    );
}
