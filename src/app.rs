//! Start-up: from a validated configuration to a bound listener and a runnable server.
//! Tests call [`Server::build`] with port 0, an injected clock and an in-memory provider.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::config::{Config, Validated};
use crate::crypto::Keys;
use crate::domain::validate::{parse_bill_period, parse_price};
use crate::http::{AppState, HttpSettings, router};
use crate::providers::console::ConsoleProvider;
use crate::providers::routing::{PriceTable, Route, RouteConfig, Routing};
use crate::providers::{Provider, ProviderContext, ReceiptSink, kannel, smpp, twilio, vonage};
use crate::service::Service;
use crate::store::sqlite::SqliteStore;
use crate::store::{SharedStore, Store};

/// Opens the configured database and applies migrations.
pub async fn open_store(database_url: &str) -> anyhow::Result<SharedStore> {
    if crate::config::is_postgres_url(database_url) {
        let store = crate::store::postgres::PgStore::connect(database_url)
            .await
            .with_context(|| format!("opening database {}", redact_url(database_url)))?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::connect(database_url)
        .await
        .with_context(|| format!("opening database {database_url}"))?;
    store.migrate().await.context("applying migrations")?;
    Ok(Arc::new(store))
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// How to build a server besides its configuration.
pub struct Options {
    pub clock: SharedClock,
    /// Named providers (tests use in-memory ones). One named like a configured route carries
    /// that route; the others are routes of their own, priced by the console settings, and
    /// the console route is left out.
    pub routes: Vec<(String, Arc<dyn Provider>)>,
    /// Whether the console provider prints to stdout.
    pub print_console: bool,
    /// Whether job workers run. Tests turn them off and drain the queue themselves
    /// ([`Service::drain`]), so the injected clock alone decides what is due.
    pub workers: bool,
}

/// Where routing sits in the route order: the console provider comes after every configured
/// route (it is the development fallback).
const CONSOLE_PRIORITY: i64 = 1_000_000;

/// What building providers needs besides their configuration.
struct Wiring<'a> {
    cfg: &'a Config,
    opts: &'a Options,
    sink: ReceiptSink,
    http: reqwest::Client,
    /// `public_url` (or `http://<listen address>`), without a trailing slash.
    public_base: String,
}

impl Wiring<'_> {
    fn console(&self) -> Arc<dyn Provider> {
        Arc::new(ConsoleProvider::new(
            self.opts.clock.clone(),
            self.opts.print_console,
        ))
    }

    /// A configured route's provider.
    fn provider(&self, r: &RouteConfig) -> anyhow::Result<Arc<dyn Provider>> {
        let ctx = ProviderContext {
            route: r.name.clone(),
            clock: self.opts.clock.clone(),
            receipts: self.sink.clone(),
            hook_url: format!("{}/hooks/{}", self.public_base, r.name),
            http: self.http.clone(),
        };
        let missing = || anyhow::anyhow!("route {}: [routes.{}] is missing", r.name, r.provider);
        match r.provider.as_str() {
            "smpp" => smpp::build(r.smpp.as_ref().ok_or_else(missing)?, ctx),
            "kannel" => kannel::build(r.kannel.as_ref().ok_or_else(missing)?, ctx),
            "twilio" => twilio::build(r.twilio.as_ref().ok_or_else(missing)?, false, ctx),
            "twilio-voice" => twilio::build(r.twilio.as_ref().ok_or_else(missing)?, true, ctx),
            "vonage" => vonage::build(r.vonage.as_ref().ok_or_else(missing)?, ctx),
            "console" => Ok(self.console()),
            other => anyhow::bail!("route {}: unknown provider {other}", r.name),
        }
    }

    /// The console route, priced and labelled by `[console]`.
    fn console_route(&self, provider: Arc<dyn Provider>, name: String) -> Route {
        let c = &self.cfg.console;
        Route {
            default_sender: Some(c.sender.clone()),
            sms_price: PriceTable::flat(parse_price(&c.price_per_segment).unwrap_or(0)),
            call_price: PriceTable::flat(parse_price(&c.price_per_call_block).unwrap_or(0)),
            bill_period: parse_bill_period(&c.bill_period).unwrap_or((60, 60)),
            receipt_timeout_ms: self.cfg.delivery.receipt_timeout_secs * 1000,
            ..Route::simple(name, provider)
        }
    }

    /// Every route: the configured ones (a route whose name an injected provider carries
    /// gets that provider: tests), then injected providers without a configured route, then
    /// the console when nothing was injected.
    fn routing(&self) -> anyhow::Result<Routing> {
        let clock = self.opts.clock.clone();
        let injected = |name: &str| {
            self.opts
                .routes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
        };
        let timeout_ms = self.cfg.delivery.receipt_timeout_secs * 1000;
        let mut routes = Vec::new();
        for r in &self.cfg.routes {
            let provider = match injected(&r.name) {
                Some(p) => p,
                None => self.provider(r)?,
            };
            routes.push(Route::from_config(r, provider, timeout_ms));
        }
        for (name, p) in &self.opts.routes {
            if !self.cfg.routes.iter().any(|r| &r.name == name) {
                routes.push(self.console_route(p.clone(), name.clone()));
            }
        }
        if self.cfg.console.enabled && self.opts.routes.is_empty() {
            routes.push(Route {
                priority: CONSOLE_PRIORITY,
                ..self.console_route(self.console(), "console".into())
            });
        }
        Ok(Routing::new(routes, clock))
    }
}

/// Takes the lock that makes a server the only one serving a SQLite file: at start a server
/// takes over every job claim found in the database, which is only right if no other server
/// holds any. The lock is `<database>.lock`, held while the returned file is open.
fn lock_database(database_url: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = crate::config::sqlite_path(database_url) else {
        return Ok(None);
    };
    let lock_path = std::path::PathBuf::from(format!("{}.lock", path.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another otpgate server is already serving {} (it holds {}); run one server per SQLite database",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", lock_path.display()))
        }
    }
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: TcpListener,
    router: axum::Router,
    pub addr: SocketAddr,
    pub service: Service,
    workers: bool,
    /// Stops the receipt consumer when the server stops.
    receipts_stop: tokio::sync::watch::Sender<bool>,
    /// Held while the server lives (see [`lock_database`]).
    _lock: Option<std::fs::File>,
}

impl Server {
    pub async fn build(cfg: &Config, v: &Validated, opts: Options) -> anyhow::Result<Self> {
        let lock = lock_database(&cfg.database_url)?;
        let store = open_store(&cfg.database_url).await?;
        let keys = Arc::new(Keys::new(&v.master_key));
        let listener = TcpListener::bind(v.listen)
            .await
            .with_context(|| format!("binding {}", v.listen))?;
        let addr = listener.local_addr()?;
        let public_base = cfg
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let (sink, receipts) = ReceiptSink::new();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("otpgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let routing = Arc::new(
            Wiring {
                cfg,
                opts: &opts,
                sink: sink.clone(),
                http,
                public_base: public_base.clone(),
            }
            .routing()?,
        );
        let service = Service::new(
            store,
            opts.clock.clone(),
            keys,
            routing,
            cfg.delivery.clone(),
            sink,
        );
        let state = AppState {
            service: service.clone(),
            settings: Arc::new(HttpSettings {
                timestamp_tolerance_secs: cfg.timestamp_tolerance_secs,
                display_offset: v.offset,
                max_body_bytes: cfg.max_body_bytes,
                public_base,
            }),
        };
        let (receipts_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(service.clone().run_receipts(receipts, stopped));
        service
            .start_jobs()
            .await
            .context("preparing the job queue")?;
        Ok(Self {
            listener,
            router: router(state),
            addr,
            service,
            workers: opts.workers,
            receipts_stop,
            _lock: lock,
        })
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish, stops the job
    /// workers, gives running jobs their grace period and releases what is left.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = self
            .workers
            .then(|| tokio::spawn(self.service.clone().run_workers(stopped)));
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        let _ = stop.send(true);
        if let Some(w) = workers {
            let _ = w.await;
        }
        self.service.stop_jobs().await;
        for route in self.service.routing.routes() {
            route.provider.close().await;
        }
        let _ = self.receipts_stop.send(true);
        drop(self._lock);
        served
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
