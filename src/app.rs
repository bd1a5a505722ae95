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
use crate::providers::Provider;
use crate::providers::console::ConsoleProvider;
use crate::providers::routing::{Route, Routing};
use crate::service::Service;
use crate::store::sqlite::SqliteStore;
use crate::store::{SharedStore, Store};

/// Opens the configured database and applies migrations.
pub async fn open_store(database_url: &str) -> anyhow::Result<SharedStore> {
    let store = SqliteStore::connect(database_url)
        .await
        .with_context(|| format!("opening database {database_url}"))?;
    store.migrate().await.context("applying migrations")?;
    Ok(Arc::new(store))
}

/// How to build a server besides its configuration.
pub struct Options {
    pub clock: SharedClock,
    /// Named routes that replace the configured providers (tests use in-memory ones); the
    /// console settings give their sender and prices.
    pub routes: Vec<(String, Arc<dyn Provider>)>,
    /// Whether the console provider prints to stdout.
    pub print_console: bool,
    /// Whether job workers run. Tests turn them off and drain the queue themselves
    /// ([`Service::drain`]), so the injected clock alone decides what is due.
    pub workers: bool,
}

fn routing(cfg: &Config, store: &SharedStore, opts: &Options) -> Routing {
    let c = &cfg.console;
    let providers: Vec<(String, Arc<dyn Provider>)> = if !opts.routes.is_empty() {
        opts.routes.clone()
    } else if c.enabled {
        vec![(
            "console".to_string(),
            Arc::new(ConsoleProvider::new(
                store.clone(),
                opts.clock.clone(),
                opts.print_console,
            )),
        )]
    } else {
        Vec::new()
    };
    let routes = providers
        .into_iter()
        .map(|(name, provider)| Route {
            name,
            provider,
            default_sender: Some(c.sender.clone()),
            price_per_segment_micros: parse_price(&c.price_per_segment).unwrap_or(0),
            price_per_call_block_micros: parse_price(&c.price_per_call_block).unwrap_or(0),
            bill_period: parse_bill_period(&c.bill_period).unwrap_or((60, 60)),
            receipt_timeout_ms: cfg.delivery.receipt_timeout_secs * 1000,
        })
        .collect();
    Routing::new(routes)
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
    /// Held while the server lives (see [`lock_database`]).
    _lock: Option<std::fs::File>,
}

impl Server {
    pub async fn build(cfg: &Config, v: &Validated, opts: Options) -> anyhow::Result<Self> {
        let lock = lock_database(&cfg.database_url)?;
        let store = open_store(&cfg.database_url).await?;
        let keys = Arc::new(Keys::new(&v.master_key));
        let routing = Arc::new(routing(cfg, &store, &opts));
        let service = Service::new(
            store,
            opts.clock.clone(),
            keys,
            routing,
            cfg.delivery.clone(),
        );
        let state = AppState {
            service: service.clone(),
            settings: Arc::new(HttpSettings {
                timestamp_tolerance_secs: cfg.timestamp_tolerance_secs,
                display_offset: v.offset,
                max_body_bytes: cfg.max_body_bytes,
            }),
        };
        let listener = TcpListener::bind(v.listen)
            .await
            .with_context(|| format!("binding {}", v.listen))?;
        let addr = listener.local_addr()?;
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
