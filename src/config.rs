//! Typed, layered configuration: defaults, then a TOML file, then `OTPGATE_…` variables.
//!
//! Nested keys use a double underscore in the environment: `OTPGATE_CONSOLE__SENDER=ACME`.
//! Validation happens once at start-up ([`Config::validate`]); `otpgate config check` prints
//! the same explanation without starting anything.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret's value: `env:NAME` reads the environment variable `NAME` (so a
    /// configuration file need not hold passwords); anything else is the value itself.
    pub fn resolve(&self) -> Result<String, String> {
        match self.0.strip_prefix("env:") {
            Some(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
            }
            None => Ok(self.0.clone()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

/// The console provider: prints messages to the terminal and keeps them in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// Sender id shown when the template names none.
    pub sender: String,
    /// Price of one SMS segment, a decimal string in `currency`.
    pub price_per_segment: String,
    /// Price of one started call billing block.
    pub price_per_call_block: String,
    /// Call billing increments, e.g. `20+20`.
    pub bill_period: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sender: "OTPGATE".into(),
            price_per_segment: "0".into(),
            price_per_call_block: "0".into(),
            bill_period: "60+60".into(),
        }
    }
}

/// The delivery engine: job workers, retries, receipts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Deliveries and other jobs one process runs at once; beyond that, work waits in the
    /// queue.
    pub workers: usize,
    /// Tries of a deliver job whose route answers with a retryable error before the attempt
    /// fails.
    pub max_tries: i64,
    /// Wait before the first retry, seconds; it doubles with every further retry (at most
    /// 300 s).
    pub retry_backoff_secs: i64,
    /// How long a claimed job stays claimed if its worker disappears, seconds.
    pub lease_secs: i64,
    /// Longest wait for a route to answer a submit, seconds.
    pub submit_timeout_secs: i64,
    /// How long an accepted message may wait for its delivery receipt, seconds.
    pub receipt_timeout_secs: i64,
    /// How often the routes that cannot push receipts are polled, seconds.
    pub sync_interval_secs: i64,
    /// On SIGINT/SIGTERM, how long running jobs get to finish before they are released.
    pub shutdown_grace_secs: i64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            workers: 256,
            max_tries: 5,
            retry_backoff_secs: 2,
            lease_secs: 60,
            submit_timeout_secs: 30,
            receipt_timeout_secs: 600,
            sync_interval_secs: 30,
            shutdown_grace_secs: 10,
        }
    }
}

impl DeliveryConfig {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut check = |name: &str, v: i64, lo: i64, hi: i64| {
            if !(lo..=hi).contains(&v) {
                p.push(format!("delivery.{name} = {v} must be {lo}-{hi}"));
            }
        };
        check("workers", self.workers as i64, 1, 4096);
        check("max_tries", self.max_tries, 1, 100);
        check("retry_backoff_secs", self.retry_backoff_secs, 1, 300);
        check("submit_timeout_secs", self.submit_timeout_secs, 1, 600);
        check("lease_secs", self.lease_secs, 2, 3600);
        check(
            "receipt_timeout_secs",
            self.receipt_timeout_secs,
            1,
            7 * 86_400,
        );
        check("sync_interval_secs", self.sync_interval_secs, 1, 60);
        check("shutdown_grace_secs", self.shutdown_grace_secs, 0, 600);
        if self.lease_secs <= self.submit_timeout_secs {
            p.push(format!(
                "delivery.lease_secs = {} must exceed delivery.submit_timeout_secs = {}: a claim \
                 must outlast the longest submit",
                self.lease_secs, self.submit_timeout_secs
            ));
        }
        p
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// `sqlite://PATH` (created if missing), `sqlite::memory:`, or `postgres://…` (several
    /// nodes; `?options=-c%20search_path%3DSCHEMA` picks a schema).
    pub database_url: String,
    pub mode: Mode,
    /// 32 bytes, as 64 hex characters or base64. Required in production.
    pub master_key: Option<Secret>,
    /// Allowed drift of a signed request's timestamp, seconds.
    pub timestamp_tolerance_secs: i64,
    /// UTC offset used for times shown to callers, e.g. `+08:00`.
    pub display_offset: String,
    /// Currency of `pay`, `rate` and `cost`.
    pub currency: String,
    /// Whether `serve` creates a tenant on an empty development database.
    pub dev_tenant: bool,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// The URL upstreams use to reach this server's `/hooks/...` (delivery reports, call
    /// status), e.g. `https://otp.example.com`. Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    pub console: ConsoleConfig,
    pub delivery: DeliveryConfig,
    /// Upstream routes (`[[routes]]`), besides the console provider.
    pub routes: Vec<crate::providers::routing::RouteConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://otpgate.db".into(),
            mode: Mode::Development,
            master_key: None,
            timestamp_tolerance_secs: 300,
            display_offset: "+00:00".into(),
            currency: "EUR".into(),
            dev_tenant: true,
            max_body_bytes: 64 * 1024,
            log_format: "text".into(),
            public_url: None,
            console: ConsoleConfig::default(),
            delivery: DeliveryConfig::default(),
            routes: Vec::new(),
        }
    }
}

/// What [`Config::validate`] settles besides plain values.
#[derive(Debug, Clone)]
pub struct Validated {
    pub listen: SocketAddr,
    pub offset: chrono::FixedOffset,
    pub master_key: MasterKey,
    /// How the master key was obtained, for `config check` and the start-up log.
    pub master_key_source: String,
}

impl Config {
    /// Loads defaults, then the TOML file (if given), then `OTPGATE_…` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        // OTPGATE_LOG (log filter) and OTPGATE_CONFIG (the file path) are read elsewhere.
        let env = Env::prefixed("OTPGATE_")
            .filter(|k| !matches!(k.as_str().to_ascii_lowercase().as_str(), "log" | "config"))
            .split("__");
        fig.merge(env).extract().map_err(Box::new)
    }

    /// Checks everything, returning every problem found (not only the first). In development
    /// without a master key, the key file next to the database is created if missing.
    pub fn validate(&self) -> Result<Validated, Vec<String>> {
        self.validate_with(true)
    }

    /// As [`Config::validate`]; with `create_key_file` false nothing is written (for
    /// `config check`), and a missing development key is reported as one to be created.
    pub fn validate_with(&self, create_key_file: bool) -> Result<Validated, Vec<String>> {
        let mut problems = Vec::new();
        let listen = match self.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "listen = {:?} is not an address like 127.0.0.1:8080",
                    self.listen
                ));
                None
            }
        };
        if !self.database_url.starts_with("sqlite:") && !is_postgres_url(&self.database_url) {
            problems.push(format!(
                "database_url = {:?}: use sqlite://PATH (e.g. sqlite://otpgate.db) or postgres://USER@HOST/DB",
                self.database_url
            ));
        }
        let offset = match parse_offset(&self.display_offset) {
            Some(o) => Some(o),
            None => {
                problems.push(format!(
                    "display_offset = {:?} is not an offset like +00:00 or -05:30",
                    self.display_offset
                ));
                None
            }
        };
        if !(1..=86_400).contains(&self.timestamp_tolerance_secs) {
            problems.push("timestamp_tolerance_secs must be 1-86400".into());
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.push(format!(
                "currency = {:?} is not a three-letter ISO 4217 code",
                self.currency
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            problems.push("max_body_bytes must be 1024-16777216".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            problems.push(format!(
                "log_format = {:?} must be text or json",
                self.log_format
            ));
        }
        for (name, value) in [
            ("console.price_per_segment", &self.console.price_per_segment),
            (
                "console.price_per_call_block",
                &self.console.price_per_call_block,
            ),
        ] {
            if crate::domain::validate::parse_price(value).is_none() {
                problems.push(format!(
                    "{name} = {value:?} is not a decimal with at most 6 places"
                ));
            }
        }
        if crate::domain::validate::parse_bill_period(&self.console.bill_period).is_none() {
            problems.push(format!(
                "console.bill_period = {:?} is not two positive whole seconds like 20+20",
                self.console.bill_period
            ));
        }
        if !crate::domain::validate::is_valid_sender_id(&self.console.sender) {
            problems.push(format!(
                "console.sender = {:?} is not a sender id (up to 11 letters/digits, or up to 15 digits)",
                self.console.sender
            ));
        }
        problems.extend(self.delivery.problems());
        problems.extend(crate::providers::routing::routes_problems(&self.routes));
        if let Some(url) = &self.public_url {
            let ok = reqwest::Url::parse(url).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !ok {
                problems.push(format!(
                    "public_url = {url:?} is not an http(s) URL without query, like https://otp.example.com"
                ));
            }
        }
        if self.mode == Mode::Production && self.routes.iter().any(|r| r.provider == "console") {
            problems.push(
                "mode = production refuses routes with provider = \"console\": it prints codes to the terminal"
                    .into(),
            );
        }
        if self.mode == Mode::Production && self.console.enabled {
            problems.push(
                "mode = production refuses the console provider: it prints codes to the terminal. \
                 Set console.enabled = false (OTPGATE_CONSOLE__ENABLED=false) and configure a real route"
                    .into(),
            );
        }
        let master = match (&self.master_key, self.mode) {
            (Some(k), _) => match MasterKey::parse(k.expose()) {
                Ok(m) => Some((m, "from configuration".to_string())),
                Err(e) => {
                    problems.push(format!("master_key: {e}"));
                    None
                }
            },
            (None, Mode::Production) => {
                problems.push(
                    "mode = production needs a master key (OTPGATE_MASTER_KEY): 32 random bytes as base64 \
                     (e.g. `openssl rand -base64 32`); it encrypts API secrets at rest"
                        .into(),
                );
                None
            }
            (None, Mode::Development) if is_postgres_url(&self.database_url) => {
                problems.push(
                    "a PostgreSQL database needs a master key (OTPGATE_MASTER_KEY) even in development: \
                     every node must share it to read the secrets it seals (e.g. `openssl rand -base64 32`)"
                        .into(),
                );
                None
            }
            (None, Mode::Development) => {
                match development_master_key(&self.database_url, create_key_file) {
                    Ok(pair) => Some(pair),
                    Err(e) => {
                        problems.push(format!("development master key: {e}"));
                        None
                    }
                }
            }
        };
        match (listen, offset, master, problems.is_empty()) {
            (Some(listen), Some(offset), Some((master_key, master_key_source)), true) => {
                Ok(Validated {
                    listen,
                    offset,
                    master_key,
                    master_key_source,
                })
            }
            _ => Err(problems),
        }
    }
}

/// Parses `+HH:MM` / `-HH:MM` (or `Z`).
pub fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    if s == "Z" {
        return chrono::FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// In development without a configured key, a random key is kept in a file next to the
/// database (`<database>.master-key`, mode 0600), so restarts can still read stored secrets.
/// In-memory databases get a throwaway key.
fn development_master_key(database_url: &str, create: bool) -> Result<(MasterKey, String), String> {
    let Some(path) = sqlite_path(database_url) else {
        return Ok((
            MasterKey::generate().0,
            "generated for this in-memory database".into(),
        ));
    };
    let key_path = PathBuf::from(format!("{}.master-key", path.display()));
    if let Ok(existing) = std::fs::read_to_string(&key_path) {
        let key =
            MasterKey::parse(&existing).map_err(|e| format!("{}: {e}", key_path.display()))?;
        return Ok((key, format!("development key file {}", key_path.display())));
    }
    let (key, encoded) = MasterKey::generate();
    if !create {
        return Ok((
            key,
            format!(
                "development key file {} (created on the first start)",
                key_path.display()
            ),
        ));
    }
    write_private(&key_path, &encoded)
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    Ok((
        key,
        format!("development key file {} (created)", key_path.display()),
    ))
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())
}

/// Whether the URL names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(database_url: &str) -> bool {
    database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
}

/// The file path of a `sqlite://` URL, or `None` for an in-memory database.
pub fn sqlite_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_in_development() {
        let c = Config {
            database_url: "sqlite::memory:".into(),
            ..Config::default()
        };
        let v = c.validate().unwrap();
        assert_eq!(v.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn production_refuses_console_and_missing_key() {
        let c = Config {
            mode: Mode::Production,
            database_url: "sqlite::memory:".into(),
            ..Config::default()
        };
        let problems = c.validate().unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("console")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("master key")),
            "{problems:?}"
        );
    }

    #[test]
    fn delivery_settings_are_checked() {
        let mut c = Config {
            database_url: "sqlite::memory:".into(),
            ..Config::default()
        };
        c.delivery.lease_secs = 30;
        c.delivery.sync_interval_secs = 61;
        let problems = c.validate().unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("lease_secs")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("sync_interval_secs")),
            "{problems:?}"
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(
            parse_offset("-05:30").unwrap().local_minus_utc(),
            -(5 * 3600 + 1800)
        );
        assert!(parse_offset("08:00").is_none());
        assert!(parse_offset("+24:00").is_none());
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://otpgate.db"),
            Some(PathBuf::from("otpgate.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/otp.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/otp.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "\"***\"");
    }
}
