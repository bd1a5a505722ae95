//! The one binary's subcommands. `main` only calls [`run`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::app::{Options, Server, open_store, shutdown_signal};
use crate::clock::SystemClock;
use crate::config::{Config, Mode, Validated};
use crate::crypto::Keys;
use crate::providers::routing::Routing;
use crate::service::{MerchantChange, MerchantInput, Service};
use crate::store::{Merchant, tenant_kind};

#[derive(Parser, Debug)]
#[command(
    name = "otpgate",
    version,
    about = "Self-hosted OTP verification gateway"
)]
pub struct Cli {
    /// TOML configuration file; `OTPGATE_…` environment variables override it.
    #[arg(long, global = true, env = "OTPGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage tenants (API key owners).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage SGate merchants (payout-API OTP callers with RSA keys).
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// The delivery job queue: counts, then the jobs in due order.
    Jobs {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Messages the console provider delivered, newest first.
    Outbox {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration and explain what it means.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant; prints its API key and secret once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List tenants (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Key(KeyCommand),
}

/// What `tenant` and `merchant` share: switching a key off and on, and its IP allow-list.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Refuse every request signed with this key.
    Disable { api_key: String },
    /// Accept requests signed with this key again.
    Enable { api_key: String },
    /// Restrict the key's owner to addresses or CIDR blocks (replaces the list).
    AllowIp {
        api_key: String,
        #[arg(required_unless_present = "clear")]
        cidrs: Vec<String>,
        /// Remove the restriction.
        #[arg(long, conflicts_with = "cidrs")]
        clear: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MerchantCommand {
    /// Register a merchant: prints its V-Api-Key and the system public key it verifies
    /// responses with.
    Create {
        #[arg(long)]
        name: String,
        /// The merchant's RSA public key, PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// Sandbox: the test numbers answer with fixed sessionids and code 123456.
        #[arg(long)]
        sandbox: bool,
        /// Product names `appname` may take (the text's `{APP_NAME}`).
        #[arg(long = "app-name", value_name = "NAME", num_args = 1.., action = clap::ArgAction::Append)]
        app_names: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List merchants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a merchant's public key, mode or product names.
    Update {
        api_key: String,
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        #[arg(long, conflicts_with = "production")]
        sandbox: bool,
        #[arg(long)]
        production: bool,
        /// Replaces the product names.
        #[arg(long = "app-name", value_name = "NAME", num_args = 1.., action = clap::ArgAction::Append)]
        app_names: Option<Vec<String>>,
    },
    #[command(flatten)]
    Key(KeyCommand),
    /// Print the system public key (PEM) merchants verify responses with; generates the key
    /// pair on first use.
    SystemKey,
}

fn load(cli: &Cli) -> anyhow::Result<(Config, Validated)> {
    let cfg = Config::load(cli.config.as_deref()).context("reading configuration")?;
    match cfg.validate() {
        Ok(v) => Ok((cfg, v)),
        Err(problems) => bail!("invalid configuration:\n  - {}", problems.join("\n  - ")),
    }
}

fn init_logs(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OTPGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        let _ = builder.json().flatten_event(true).try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// A service for the management commands (no routes, no listener).
async fn offline_service(cfg: &Config, v: &Validated) -> anyhow::Result<Service> {
    let store = open_store(&cfg.database_url).await?;
    Ok(Service::new(
        store,
        Arc::new(SystemClock),
        Arc::new(Keys::new(&v.master_key)),
        Arc::new(Routing::new(Vec::new(), Arc::new(SystemClock))),
        cfg.delivery.clone(),
        crate::providers::ReceiptSink::new().0,
    ))
}

fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Config {
        command: ConfigCommand::Check,
    } = &cli.command
    {
        return config_check(&cli);
    }
    let (cfg, v) = load(&cli)?;
    init_logs(&cfg);
    match cli.command {
        Command::Serve => serve(cfg, v).await,
        Command::Migrate => {
            open_store(&cfg.database_url).await?;
            println!("database {} is up to date", cfg.database_url);
            Ok(())
        }
        Command::Config { .. } => Ok(()),
        Command::Tenant { command } => tenant(command, &cfg, &v).await,
        Command::Merchant { command } => merchant(command, &cfg, &v).await,
        Command::Jobs { limit, json } => jobs(&cfg, &v, limit, json).await,
        Command::Outbox { limit, json } => {
            let svc = offline_service(&cfg, &v).await?;
            let entries = svc.store.list_outbox(limit.clamp(1, 10_000)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("the outbox is empty");
            } else {
                for e in entries {
                    println!(
                        "{}  {:<4}  +{}  {}  (verificationId {})",
                        ms_to_rfc3339(e.at_ms),
                        e.channel,
                        e.to,
                        e.text,
                        e.verification_id
                    );
                }
            }
            Ok(())
        }
    }
}

async fn jobs(cfg: &Config, v: &Validated, limit: i64, json: bool) -> anyhow::Result<()> {
    let svc = offline_service(cfg, v).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let stats = svc.store.job_stats(now).await?;
    let list = svc.store.list_jobs(limit.clamp(1, 10_000)).await?;
    if json {
        let rows: Vec<_> = list
            .iter()
            .map(|j| {
                serde_json::json!({"id": j.id, "kind": j.kind, "key": j.key, "due": ms_to_rfc3339(j.due_ms),
                "owner": j.owner, "leaseUntil": j.lease_ms.map(ms_to_rfc3339), "tries": j.tries,
                "lastError": j.last_error})
            })
            .collect();
        let oldest = stats.oldest_due_ms.map(ms_to_rfc3339);
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "queued": stats.total, "inFlight": stats.in_flight, "due": stats.due, "oldestDue": oldest, "jobs": rows
            }))?
        );
        return Ok(());
    }
    let lag = stats
        .oldest_due_ms
        .map(|d| format!(", the oldest waiting {:.1} s", (now - d) as f64 / 1000.0))
        .unwrap_or_default();
    let flight = match stats.in_flight {
        0 => String::new(),
        n => format!(" ({n} of them deliveries in flight, held on their attempts)"),
    };
    println!(
        "{} jobs queued{flight}, {} due now{lag}",
        stats.total, stats.due
    );
    for j in list {
        let held = match (&j.owner, j.lease_ms) {
            (Some(o), Some(l)) => format!("  held by {o} until {}", ms_to_rfc3339(l)),
            _ => String::new(),
        };
        let error = j
            .last_error
            .map(|e| format!("  last error: {e}"))
            .unwrap_or_default();
        println!(
            "{}  {:<8} {:<40} tries {}{held}{error}",
            ms_to_rfc3339(j.due_ms),
            j.kind,
            j.key,
            j.tries
        );
    }
    Ok(())
}

fn config_check(cli: &Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref()).context("reading configuration")?;
    // A check writes nothing: a missing development key file is only reported.
    match cfg.validate_with(false) {
        Ok(v) => {
            println!("configuration is valid");
            println!("  mode            {:?}", cfg.mode);
            println!("  listen          {}", v.listen);
            println!("  database        {}", cfg.database_url);
            println!("  master key      {}", v.master_key_source);
            println!("  display offset  {}", cfg.display_offset);
            println!("  currency        {}", cfg.currency);
            println!(
                "  public URL      {} (hooks at <public URL>/hooks/<route>)",
                cfg.public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", v.listen))
            );
            if cfg.routes.is_empty() && !cfg.console.enabled {
                println!(
                    "  routes          none: sends will answer that no route serves the number"
                );
            } else {
                println!("  routes          (lower priority first)");
            }
            for r in &cfg.routes {
                let channels: Vec<&str> = r.channel_list().iter().map(|c| c.as_str()).collect();
                let mut serves: Vec<String> = r.countries.clone();
                serves.extend(r.prefixes.iter().map(|p| format!("+{p}")));
                println!(
                    "    {:<16} {:<12} {:<9} priority {:<5} serves {}",
                    r.name,
                    r.provider,
                    channels.join(","),
                    r.priority,
                    if serves.is_empty() {
                        "every number".to_string()
                    } else {
                        serves.join(" ")
                    }
                );
            }
            if cfg.console.enabled {
                println!(
                    "    {:<16} {:<12} {:<9} last resort: prints codes to the terminal (development only), sender {}",
                    "console", "console", "sms,call", cfg.console.sender
                );
            }
            Ok(())
        }
        Err(problems) => bail!(
            "configuration is not valid:\n  - {}",
            problems.join("\n  - ")
        ),
    }
}

async fn serve(cfg: Config, v: Validated) -> anyhow::Result<()> {
    let server = Server::build(
        &cfg,
        &v,
        Options {
            clock: Arc::new(SystemClock),
            routes: Vec::new(),
            print_console: true,
            workers: true,
        },
    )
    .await?;
    tracing::info!(
        listen = %server.addr,
        mode = ?cfg.mode,
        database = %cfg.database_url,
        master_key = %v.master_key_source,
        "otpgate serving"
    );
    if cfg.mode == Mode::Development
        && cfg.dev_tenant
        && server.service.store.count_tenants().await? == 0
    {
        let created = server.service.create_tenant("development").await?;
        println!(
            "\n  Development tenant created. Shown once; keep it.\n    Api-Key:    {}\n    API secret: {}\n",
            created.tenant.api_key, created.api_secret
        );
    }
    server.run(shutdown_signal()).await?;
    Ok(())
}

async fn tenant(cmd: TenantCommand, cfg: &Config, v: &Validated) -> anyhow::Result<()> {
    let svc = offline_service(cfg, v).await?;
    match cmd {
        TenantCommand::Create { name, json } => {
            let c = svc.create_tenant(&name).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenantId": c.tenant.id, "apiKey": c.tenant.api_key, "apiSecret": c.api_secret})
                );
            } else {
                println!(
                    "tenant {} ({}) created. The secret is shown once.\n  Api-Key:    {}\n  API secret: {}",
                    c.tenant.id, c.tenant.name, c.tenant.api_key, c.api_secret
                );
            }
        }
        TenantCommand::List { json } => {
            let list = svc.list_tenants().await?;
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|t| {
                        serde_json::json!({"tenantId": t.id, "name": t.name, "apiKey": t.api_key,
                        "enabled": t.enabled, "allowIps": t.allow_ips, "createdAt": ms_to_rfc3339(t.created_ms)})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<6} {:<18} {:<8} {:<20} NAME",
                    "ID", "API KEY", "ENABLED", "ALLOW-IP"
                );
                for t in list {
                    let allow = if t.allow_ips.is_empty() {
                        "any".to_string()
                    } else {
                        t.allow_ips.join(",")
                    };
                    println!(
                        "{:<6} {:<18} {:<8} {:<20} {}",
                        t.id, t.api_key, t.enabled, allow, t.name
                    );
                }
            }
        }
        TenantCommand::Key(cmd) => key_command(&svc, tenant_kind::BUKA, cmd).await?,
    }
    Ok(())
}

fn read_key_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn merchant_json(m: &Merchant) -> serde_json::Value {
    serde_json::json!({
        "tenantId": m.tenant.id,
        "name": m.tenant.name,
        "apiKey": m.tenant.api_key,
        "sandbox": m.sandbox,
        "enabled": m.tenant.enabled,
        "allowIps": m.tenant.allow_ips,
        "appNames": m.products.iter().map(|p| &p.name).collect::<Vec<_>>(),
        "createdAt": ms_to_rfc3339(m.tenant.created_ms),
    })
}

fn mode(m: &Merchant) -> &'static str {
    if m.sandbox { "sandbox" } else { "production" }
}

async fn merchant(cmd: MerchantCommand, cfg: &Config, v: &Validated) -> anyhow::Result<()> {
    let svc = offline_service(cfg, v).await?;
    match cmd {
        MerchantCommand::Create {
            name,
            public_key,
            sandbox,
            app_names,
            json,
        } => {
            let m = svc
                .create_merchant(MerchantInput {
                    name,
                    public_key_pem: read_key_file(&public_key)?,
                    sandbox,
                    app_names,
                })
                .await?;
            let system_key = svc.system_public_key().await?;
            if json {
                let mut out = merchant_json(&m);
                out["systemPublicKey"] = system_key.into();
                println!("{out}");
            } else {
                let names: Vec<_> = m.products.iter().map(|p| p.name.as_str()).collect();
                println!(
                    "merchant {} ({}) created, {}.\n  V-Api-Key: {}\n  app names: {}\n\nThe merchant verifies response signatures with this system public key:\n{}",
                    m.tenant.id,
                    m.tenant.name,
                    mode(&m),
                    m.tenant.api_key,
                    if names.is_empty() {
                        "(none: sendOtp answers 1603 until some are set)".to_string()
                    } else {
                        names.join(", ")
                    },
                    system_key.trim_end()
                );
            }
        }
        MerchantCommand::List { json } => {
            let list = svc.list_merchants().await?;
            if json {
                let rows: Vec<_> = list.iter().map(merchant_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<6} {:<26} {:<11} {:<8} {:<20} {:<24} NAME",
                    "ID", "API KEY", "MODE", "ENABLED", "ALLOW-IP", "APP NAMES"
                );
                for m in list {
                    let allow = if m.tenant.allow_ips.is_empty() {
                        "any".to_string()
                    } else {
                        m.tenant.allow_ips.join(",")
                    };
                    let names: Vec<_> = m.products.iter().map(|p| p.name.as_str()).collect();
                    println!(
                        "{:<6} {:<26} {:<11} {:<8} {:<20} {:<24} {}",
                        m.tenant.id,
                        m.tenant.api_key,
                        mode(&m),
                        m.tenant.enabled,
                        allow,
                        names.join(","),
                        m.tenant.name
                    );
                }
            }
        }
        MerchantCommand::Update {
            api_key,
            public_key,
            sandbox,
            production,
            app_names,
        } => {
            let public_key_pem = match public_key {
                Some(p) => Some(read_key_file(&p)?),
                None => None,
            };
            let m = svc
                .update_merchant(
                    &api_key,
                    MerchantChange {
                        public_key_pem,
                        sandbox: (sandbox || production).then_some(sandbox),
                        app_names,
                    },
                )
                .await?;
            println!("merchant {api_key} updated: {}", merchant_json(&m));
        }
        MerchantCommand::Key(cmd) => key_command(&svc, tenant_kind::SGATE, cmd).await?,
        MerchantCommand::SystemKey => {
            print!("{}", svc.system_public_key().await?);
        }
    }
    Ok(())
}

/// `tenant` / `merchant` `disable`, `enable`, `allow-ip` on a key of `kind`.
async fn key_command(svc: &Service, kind: &str, cmd: KeyCommand) -> anyhow::Result<()> {
    let noun = if kind == tenant_kind::SGATE {
        "merchant"
    } else {
        "tenant"
    };
    match cmd {
        KeyCommand::Disable { api_key } => {
            svc.set_tenant_enabled(kind, &api_key, false).await?;
            println!("{noun} {api_key} disabled");
        }
        KeyCommand::Enable { api_key } => {
            svc.set_tenant_enabled(kind, &api_key, true).await?;
            println!("{noun} {api_key} enabled");
        }
        KeyCommand::AllowIp {
            api_key,
            cidrs,
            clear,
        } => {
            let list = svc
                .set_tenant_allow_ips(kind, &api_key, if clear { &[] } else { &cidrs })
                .await?;
            if list.is_empty() {
                println!("{noun} {api_key}: any address may call");
            } else {
                println!("{noun} {api_key}: only {} may call", list.join(", "));
            }
        }
    }
    Ok(())
}
