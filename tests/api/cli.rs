//! The `otpgate` binary itself: management subcommands, `config check`, `migrate`, and `serve`
//! end to end. Every test runs the real executable against its own temporary database, with
//! inherited `OTPGATE_…` variables removed so the caller's environment cannot leak in.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otpgate::crypto::buka_sign;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::MASTER_KEY;

const BIN: &str = env!("CARGO_BIN_EXE_otpgate");
const US: &str = "14155552671";

/// A scratch directory with its own database URL.
pub(crate) struct Sandbox {
    dir: TempDir,
    database_url: String,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = format!("sqlite://{}", dir.path().join("x.db").display());
        Self { dir, database_url }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `otpgate ARGS` with a clean environment: this sandbox's database and the test master key.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTPGATE_") {
                cmd.env_remove(&name);
            }
        }
        cmd.args(args)
            .current_dir(self.path())
            .env("OTPGATE_DATABASE_URL", &self.database_url)
            .env("OTPGATE_MASTER_KEY", MASTER_KEY)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `otpgate ARGS` to completion.
    fn run(&self, args: &[&str]) -> Ran {
        Ran::from(self.cmd(args).output().expect("otpgate runs"))
    }

    /// Runs `otpgate ARGS`, asserting success, and returns its stdout.
    #[track_caller]
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(r.status.success(), "otpgate {args:?} failed: {r}");
        r.stdout
    }

    /// Runs `otpgate ARGS --json`-style commands and parses stdout.
    #[track_caller]
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("otpgate {args:?} printed no JSON ({e}): {out}"))
    }
}

/// A finished command's outcome.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Self {
        Self {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Ran {
    /// Asserts a failure whose output mentions every needle (case-insensitive).
    #[track_caller]
    fn assert_fails_mentioning(&self, needles: &[&str]) {
        assert!(!self.status.success(), "expected a non-zero exit: {self}");
        let all = format!("{}\n{}", self.stdout, self.stderr).to_lowercase();
        for n in needles {
            assert!(
                all.contains(&n.to_lowercase()),
                "the output should mention {n:?}: {self}"
            );
        }
    }
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// The tenant row with this key in `tenant list --json`.
#[track_caller]
fn tenant_row(sb: &Sandbox, key: &str) -> Value {
    let list = sb.json(&["tenant", "list", "--json"]);
    let rows = list
        .as_array()
        .unwrap_or_else(|| panic!("tenant list --json is an array: {list}"));
    rows.iter()
        .find(|r| r["apiKey"] == key)
        .unwrap_or_else(|| panic!("tenant {key} is listed: {list}"))
        .clone()
}

pub(crate) fn create_tenant(sb: &Sandbox, name: &str) -> (String, String) {
    let c = sb.json(&["tenant", "create", "--name", name, "--json"]);
    let key = c["apiKey"]
        .as_str()
        .unwrap_or_else(|| panic!("apiKey: {c}"))
        .to_string();
    let secret = c["apiSecret"]
        .as_str()
        .unwrap_or_else(|| panic!("apiSecret: {c}"))
        .to_string();
    (key, secret)
}

// ---------------------------------------------------------------------------------------------
// tenant …

#[test]
fn tenant_create_prints_key_and_secret_once_and_list_never_shows_secrets() {
    let sb = Sandbox::new();
    let r = sb.run(&["tenant", "create", "--name", "acme", "--json"]);
    assert!(r.status.success(), "{r}");
    let c: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {r}"));
    let obj = c.as_object().expect("an object");
    let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["apiKey", "apiSecret", "tenantId"], "{c}");
    assert!(c["tenantId"].as_i64().is_some_and(|id| id > 0), "{c}");
    let key = c["apiKey"].as_str().expect("apiKey").to_string();
    let secret = c["apiSecret"].as_str().expect("apiSecret").to_string();
    assert!(!key.is_empty() && !secret.is_empty(), "{c}");
    assert_ne!(key, secret);
    assert!(
        !r.stderr.contains(&secret),
        "the secret must never be logged: {r}"
    );

    // The text form shows the key and the secret too.
    let text = sb.ok(&["tenant", "create", "--name", "other"]);
    assert!(
        text.contains("Api-Key:") && text.contains("API secret:"),
        "{text}"
    );

    let list = sb.run(&["tenant", "list", "--json"]);
    assert!(list.status.success(), "{list}");
    assert!(
        !list.stdout.contains(&secret),
        "tenant list --json must not show the secret: {list}"
    );
    assert!(!list.stderr.contains(&secret), "{list}");
    assert!(
        !list.stdout.to_lowercase().contains("secret"),
        "tenant list --json must not carry any secret field: {list}"
    );
    let rows: Value = serde_json::from_str(&list.stdout).expect("JSON list");
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    let row = tenant_row(&sb, &key);
    assert_eq!(row["name"], "acme", "{row}");
    assert_eq!(row["enabled"], true, "{row}");
    assert_eq!(row["tenantId"], c["tenantId"], "{row}");
    assert_eq!(row["allowIps"], json!([]), "{row}");

    let table = sb.run(&["tenant", "list"]);
    assert!(table.status.success(), "{table}");
    assert!(
        table.stdout.contains(&key) && table.stdout.contains("acme"),
        "{table}"
    );
    assert!(
        !table.stdout.contains(&secret),
        "tenant list must not show the secret: {table}"
    );
}

#[test]
fn tenant_disable_and_enable_flip_the_listed_state() {
    let sb = Sandbox::new();
    let (key, _) = create_tenant(&sb, "acme");
    let out = sb.ok(&["tenant", "disable", &key]);
    assert!(out.contains(&key), "{out}");
    assert_eq!(tenant_row(&sb, &key)["enabled"], false);
    // Disabling twice is harmless.
    sb.ok(&["tenant", "disable", &key]);
    assert_eq!(tenant_row(&sb, &key)["enabled"], false);
    sb.ok(&["tenant", "enable", &key]);
    assert_eq!(tenant_row(&sb, &key)["enabled"], true);
}

#[test]
fn tenant_allow_ip_sets_and_clears_the_list() {
    let sb = Sandbox::new();
    let (key, _) = create_tenant(&sb, "acme");
    let out = sb.ok(&["tenant", "allow-ip", &key, "10.0.0.0/8", "127.0.0.1"]);
    assert!(
        out.contains("10.0.0.0/8") && out.contains("127.0.0.1"),
        "{out}"
    );
    let allow = tenant_row(&sb, &key)["allowIps"].clone();
    let allow: Vec<&str> = allow
        .as_array()
        .expect("allowIps array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(allow.len(), 2, "{allow:?}");
    assert!(allow.contains(&"10.0.0.0/8"), "{allow:?}");
    assert!(
        allow.iter().any(|a| a.starts_with("127.0.0.1")),
        "{allow:?}"
    );

    // A new list replaces the old one.
    sb.ok(&["tenant", "allow-ip", &key, "192.168.1.0/24"]);
    assert_eq!(tenant_row(&sb, &key)["allowIps"], json!(["192.168.1.0/24"]));

    sb.ok(&["tenant", "allow-ip", &key, "--clear"]);
    assert_eq!(tenant_row(&sb, &key)["allowIps"], json!([]));
}

#[test]
fn tenant_allow_ip_refuses_garbage_and_keeps_the_old_list() {
    let sb = Sandbox::new();
    let (key, _) = create_tenant(&sb, "acme");
    sb.ok(&["tenant", "allow-ip", &key, "10.0.0.0/8"]);
    sb.run(&["tenant", "allow-ip", &key, "nope"])
        .assert_fails_mentioning(&["nope"]);
    sb.run(&["tenant", "allow-ip", &key, "10.0.0.0/8", "300.1.1.1"])
        .assert_fails_mentioning(&["300.1.1.1"]);
    assert_eq!(
        tenant_row(&sb, &key)["allowIps"],
        json!(["10.0.0.0/8"]),
        "a refused list changes nothing"
    );
    // Neither addresses nor --clear: a usage error.
    let r = sb.run(&["tenant", "allow-ip", &key]);
    assert!(!r.status.success(), "{r}");
    assert!(!r.stderr.trim().is_empty(), "{r}");
}

#[test]
fn unknown_tenant_keys_fail_with_a_message() {
    let sb = Sandbox::new();
    create_tenant(&sb, "acme");
    for args in [
        &["tenant", "disable", "NoSuchKey123"][..],
        &["tenant", "enable", "NoSuchKey123"][..],
        &["tenant", "allow-ip", "NoSuchKey123", "10.0.0.0/8"][..],
    ] {
        let r = sb.run(args);
        assert!(!r.status.success(), "otpgate {args:?} should fail: {r}");
        let msg = r.stderr.to_lowercase();
        assert!(
            msg.contains("tenant") || msg.contains("nosuchkey123"),
            "otpgate {args:?} should explain: {r}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// merchant …

/// A fresh RSA key pair of `bits`: the private key (PKCS#8 PEM) and the public key in both
/// forms merchants hand in, PKCS#8 (`PUBLIC KEY`) and PKCS#1 (`RSA PUBLIC KEY`).
struct KeyFiles {
    private: std::path::PathBuf,
    public_pkcs8: std::path::PathBuf,
    public_pkcs1: std::path::PathBuf,
}

fn key_files(sb: &Sandbox, name: &str, bits: usize) -> KeyFiles {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = rsa::PrivateKey::new(&mut rand_rsa::rng(), bits).expect("RSA key");
    let public = key.to_public_key();
    let private = sb.path().join(format!("{name}.key.pem"));
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 PEM")
            .as_bytes(),
    )
    .expect("write key");
    let public_pkcs8 = sb.path().join(format!("{name}.pub.pem"));
    let public_pkcs1 = sb.path().join(format!("{name}.rsa.pub.pem"));
    std::fs::write(
        &public_pkcs8,
        public
            .to_public_key_pem(LineEnding::LF)
            .expect("PKCS#8 PEM"),
    )
    .expect("write key");
    std::fs::write(
        &public_pkcs1,
        public.to_pkcs1_pem(LineEnding::LF).expect("PKCS#1 PEM"),
    )
    .expect("write key");
    KeyFiles {
        private,
        public_pkcs8,
        public_pkcs1,
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `merchant create --json` with these extra arguments.
#[track_caller]
fn create_merchant(sb: &Sandbox, name: &str, key: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "merchant",
        "create",
        "--name",
        name,
        "--public-key",
        path_str(key),
        "--json",
    ];
    args.extend_from_slice(extra);
    sb.json(&args)
}

/// The merchant row with this key in `merchant list --json`.
#[track_caller]
fn merchant_row(sb: &Sandbox, key: &str) -> Value {
    let list = sb.json(&["merchant", "list", "--json"]);
    list.as_array()
        .unwrap_or_else(|| panic!("merchant list --json is an array: {list}"))
        .iter()
        .find(|r| r["apiKey"] == key)
        .unwrap_or_else(|| panic!("merchant {key} is listed: {list}"))
        .clone()
}

fn api_key_of(created: &Value) -> String {
    created["apiKey"]
        .as_str()
        .unwrap_or_else(|| panic!("apiKey: {created}"))
        .to_string()
}

#[test]
fn merchant_create_takes_pkcs8_and_pkcs1_keys_and_prints_the_system_key() {
    let sb = Sandbox::new();
    let keys = key_files(&sb, "shop", 2048);

    let c = create_merchant(
        &sb,
        "shop",
        &keys.public_pkcs8,
        &["--sandbox", "--app-name", "TestApp", "Other App"],
    );
    let key = api_key_of(&c);
    assert!(
        key.len() >= 16 && key.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{c}"
    );
    assert_eq!(c["sandbox"], true, "{c}");
    assert_eq!(c["enabled"], true, "{c}");
    assert_eq!(c["name"], "shop", "{c}");
    assert_eq!(c["appNames"], json!(["TestApp", "Other App"]), "{c}");
    assert_eq!(c["allowIps"], json!([]), "{c}");
    let system = c["systemPublicKey"]
        .as_str()
        .unwrap_or_else(|| panic!("systemPublicKey: {c}"))
        .to_string();
    assert!(
        system.starts_with("-----BEGIN PUBLIC KEY-----") && !system.contains("PRIVATE"),
        "{c}"
    );
    let verifier = otpgate::crypto::RsaVerifier::from_pem(&system).expect("a usable public key");
    assert_eq!(verifier.bits(), 2048);

    // The same key pair in PKCS#1 form, production (the default), without product names.
    let c1 = create_merchant(&sb, "shop one", &keys.public_pkcs1, &[]);
    assert_eq!(c1["sandbox"], false, "{c1}");
    assert_eq!(c1["appNames"], json!([]), "{c1}");
    assert_ne!(api_key_of(&c1), key, "each merchant has its own key");
    assert_eq!(
        c1["systemPublicKey"], system,
        "one system key for every merchant"
    );

    // The text form says the same.
    let text = sb.ok(&[
        "merchant",
        "create",
        "--name",
        "shop text",
        "--public-key",
        path_str(&keys.public_pkcs1),
        "--sandbox",
    ]);
    assert!(text.contains("V-Api-Key:"), "{text}");
    assert!(text.contains("sandbox"), "{text}");
    assert!(
        text.contains("1603"),
        "no product names is explained: {text}"
    );
    assert!(text.contains(system.trim_end()), "{text}");

    let list = sb.json(&["merchant", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    assert_eq!(merchant_row(&sb, &key)["appNames"], c["appNames"]);
}

#[test]
fn merchant_create_refuses_bad_and_short_keys() {
    let sb = Sandbox::new();
    let garbage = sb.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
    )
    .expect("write");
    let short = key_files(&sb, "short", 1024);
    let good = key_files(&sb, "good", 2048);
    let create = |key: &Path, extra: &[&str]| {
        let mut args = vec![
            "merchant",
            "create",
            "--name",
            "shop",
            "--public-key",
            path_str(key),
        ];
        args.extend_from_slice(extra);
        sb.run(&args)
    };

    create(&garbage, &[]).assert_fails_mentioning(&["public-key", "RSA public key"]);
    for k in [&short.public_pkcs8, &short.public_pkcs1] {
        create(k, &[]).assert_fails_mentioning(&["2048", "1024"]);
    }
    create(&sb.path().join("missing.pem"), &[]).assert_fails_mentioning(&["missing.pem"]);
    let long_name = "n".repeat(33);
    create(&good.public_pkcs8, &["--app-name", &long_name])
        .assert_fails_mentioning(&["app-name", "32"]);
    // A private key is not a public key.
    create(&good.private, &[]).assert_fails_mentioning(&["public-key"]);
    assert_eq!(
        sb.json(&["merchant", "list", "--json"]),
        json!([]),
        "a refused merchant is not created"
    );
}

#[test]
fn merchant_list_update_disable_and_enable() {
    let sb = Sandbox::new();
    let keys = key_files(&sb, "shop", 2048);
    let other = key_files(&sb, "other", 2048);
    let key = api_key_of(&create_merchant(
        &sb,
        "shop",
        &keys.public_pkcs8,
        &["--sandbox", "--app-name", "TestApp"],
    ));

    let table = sb.ok(&["merchant", "list"]);
    let line = table
        .lines()
        .find(|l| l.contains(&key))
        .unwrap_or_else(|| panic!("{key} in {table}"));
    for word in ["sandbox", "true", "any", "TestApp", "shop"] {
        assert!(line.contains(word), "{word:?} in {line:?}");
    }

    let out = sb.ok(&[
        "merchant",
        "update",
        &key,
        "--production",
        "--app-name",
        "X",
    ]);
    assert!(out.contains(&key), "{out}");
    let row = merchant_row(&sb, &key);
    assert_eq!(row["sandbox"], false, "{row}");
    assert_eq!(row["appNames"], json!(["X"]), "{row}");
    assert!(
        sb.ok(&["merchant", "list"]).contains("production"),
        "the table shows the mode"
    );

    // Unnamed settings are kept.
    sb.ok(&["merchant", "update", &key, "--sandbox"]);
    let row = merchant_row(&sb, &key);
    assert_eq!(
        (row["sandbox"].clone(), row["appNames"].clone()),
        (json!(true), json!(["X"]))
    );
    sb.ok(&[
        "merchant",
        "update",
        &key,
        "--public-key",
        path_str(&other.public_pkcs1),
        "--app-name",
        "A",
        "B",
    ]);
    assert_eq!(merchant_row(&sb, &key)["appNames"], json!(["A", "B"]));

    let r = sb.run(&["merchant", "update", &key, "--sandbox", "--production"]);
    assert!(!r.status.success(), "{r}");
    assert!(r.stderr.contains("--production"), "{r}");
    sb.run(&["merchant", "update", "NoSuchKey123", "--production"])
        .assert_fails_mentioning(&["merchant"]);

    let out = sb.ok(&["merchant", "disable", &key]);
    assert!(out.contains(&key) && out.contains("disabled"), "{out}");
    assert_eq!(merchant_row(&sb, &key)["enabled"], false);
    sb.ok(&["merchant", "disable", &key]);
    assert_eq!(merchant_row(&sb, &key)["enabled"], false);
    sb.ok(&["merchant", "enable", &key]);
    assert_eq!(merchant_row(&sb, &key)["enabled"], true);
    for args in [
        &["merchant", "disable", "NoSuchKey123"][..],
        &["merchant", "enable", "NoSuchKey123"][..],
        &["merchant", "allow-ip", "NoSuchKey123", "10.0.0.0/8"][..],
    ] {
        sb.run(args).assert_fails_mentioning(&["merchant"]);
    }
}

#[test]
fn merchant_allow_ip_sets_and_clears_the_list() {
    let sb = Sandbox::new();
    let keys = key_files(&sb, "shop", 2048);
    let key = api_key_of(&create_merchant(&sb, "shop", &keys.public_pkcs8, &[]));
    let out = sb.ok(&["merchant", "allow-ip", &key, "10.0.0.0/8", "192.168.1.7"]);
    assert!(
        out.contains("10.0.0.0/8") && out.contains("192.168.1.7"),
        "{out}"
    );
    let allow = merchant_row(&sb, &key)["allowIps"].clone();
    let allow: Vec<&str> = allow
        .as_array()
        .expect("allowIps")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(allow.len(), 2, "{allow:?}");
    assert!(allow.contains(&"10.0.0.0/8"), "{allow:?}");
    assert!(
        allow.iter().any(|a| a.starts_with("192.168.1.7")),
        "{allow:?}"
    );
    assert!(sb.ok(&["merchant", "list"]).contains("10.0.0.0/8"));

    sb.run(&["merchant", "allow-ip", &key, "nope"])
        .assert_fails_mentioning(&["nope"]);
    assert_eq!(
        merchant_row(&sb, &key)["allowIps"].as_array().map(Vec::len),
        Some(2)
    );

    let out = sb.ok(&["merchant", "allow-ip", &key, "--clear"]);
    assert!(out.contains("any address"), "{out}");
    assert_eq!(merchant_row(&sb, &key)["allowIps"], json!([]));
    let r = sb.run(&["merchant", "allow-ip", &key]);
    assert!(!r.status.success() && !r.stderr.trim().is_empty(), "{r}");
}

#[test]
fn merchant_system_key_is_generated_once_and_stored_sealed() {
    use base64::Engine;
    use rsa::pkcs8::DecodePrivateKey;

    let sb = Sandbox::new();
    let first = sb.ok(&["merchant", "system-key"]);
    assert!(
        first.starts_with("-----BEGIN PUBLIC KEY-----")
            && first.trim_end().ends_with("-----END PUBLIC KEY-----"),
        "{first}"
    );
    otpgate::crypto::RsaVerifier::from_pem(&first).expect("a usable public key");
    let second = sb.ok(&["merchant", "system-key"]);
    assert_eq!(first, second, "generated once, then the same key");

    let db = rusqlite::Connection::open_with_flags(
        sb.path().join("x.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database");
    let rows: Vec<(String, String)> = db
        .prepare("SELECT private_enc, public_pem FROM system_keys")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 1, "one system key");
    let (private_enc, public_pem) = &rows[0];
    assert_eq!(public_pem.trim_end(), first.trim_end());
    assert!(!private_enc.contains("PRIVATE KEY"), "{private_enc}");
    assert!(
        !private_enc.starts_with("MII"),
        "not plain Base64 DER: {private_enc}"
    );
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for text in [private_enc.as_str(), private_enc.trim_start_matches("v1.")] {
            if let Ok(der) = engine.decode(text) {
                assert!(
                    rsa::PrivateKey::from_pkcs8_der(&der).is_err(),
                    "the stored private key must not be readable without the master key"
                );
            }
        }
    }
    drop(db);

    // Another master key cannot open it: the command fails and says why.
    let r = Ran::from(
        sb.cmd(&["merchant", "system-key"])
            .env("OTPGATE_MASTER_KEY", "ab".repeat(32))
            .output()
            .expect("runs"),
    );
    r.assert_fails_mentioning(&["master key"]);
}

#[test]
fn tenant_commands_do_not_reach_merchants() {
    let sb = Sandbox::new();
    let keys = key_files(&sb, "shop", 2048);
    let merchant = api_key_of(&create_merchant(&sb, "shop", &keys.public_pkcs8, &[]));
    let (tenant, _) = create_tenant(&sb, "acme");

    let list = sb.json(&["tenant", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["apiKey"], tenant.as_str(), "{list}");
    assert!(!sb.ok(&["tenant", "list"]).contains(&merchant));
    let list = sb.json(&["merchant", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert!(!sb.ok(&["merchant", "list"]).contains(&tenant));

    for args in [
        &["tenant", "disable", &merchant][..],
        &["tenant", "enable", &merchant][..],
        &["tenant", "allow-ip", &merchant, "10.0.0.0/8"][..],
    ] {
        sb.run(args).assert_fails_mentioning(&["tenant"]);
    }
    let row = merchant_row(&sb, &merchant);
    assert_eq!(
        (row["enabled"].clone(), row["allowIps"].clone()),
        (json!(true), json!([]))
    );
    for args in [
        &["merchant", "disable", &tenant][..],
        &["merchant", "update", &tenant, "--production"][..],
    ] {
        sb.run(args).assert_fails_mentioning(&["merchant"]);
    }
    assert_eq!(tenant_row(&sb, &tenant)["enabled"], true);
}

// ---------------------------------------------------------------------------------------------
// config check

#[test]
fn config_check_explains_the_default_development_configuration() {
    let sb = Sandbox::new();
    let r = sb.run(&["config", "check"]);
    assert!(r.status.success(), "{r}");
    let out = r.stdout.to_lowercase();
    assert!(out.contains("valid"), "{r}");
    assert!(out.contains("development"), "{r}");
    assert!(
        out.contains("console"),
        "the console provider is explained: {r}"
    );
    assert!(
        out.contains("127.0.0.1:8080"),
        "the listen address is shown: {r}"
    );
    assert!(
        r.stdout.contains(&sb.database_url),
        "the database is shown: {r}"
    );
    assert!(
        !r.stdout.contains(MASTER_KEY) && !r.stderr.contains(MASTER_KEY),
        "the master key is never printed: {r}"
    );
}

#[test]
fn config_check_writes_nothing_and_serve_creates_the_development_key() {
    let sb = Sandbox::new();
    let key_file = sb.path().join("x.db.master-key");
    let r = Ran::from(
        sb.cmd(&["config", "check"])
            .env_remove("OTPGATE_MASTER_KEY")
            .output()
            .expect("runs"),
    );
    assert!(r.status.success(), "{r}");
    assert!(r.stdout.contains("created on the first start"), "{r}");
    assert!(
        !key_file.exists(),
        "config check must not write the key file"
    );
    assert!(!sb.path().join("x.db").exists(), "nor the database");
    let r = Ran::from(
        sb.cmd(&["migrate"])
            .env_remove("OTPGATE_MASTER_KEY")
            .output()
            .expect("runs"),
    );
    assert!(r.status.success(), "{r}");
    assert!(
        key_file.exists(),
        "a real start creates the development key"
    );
}

#[test]
fn config_check_refuses_production_without_key_and_with_console() {
    let sb = Sandbox::new();
    let r = Ran::from(
        sb.cmd(&["config", "check"])
            .env_remove("OTPGATE_MASTER_KEY")
            .env("OTPGATE_MODE", "production")
            .output()
            .expect("runs"),
    );
    r.assert_fails_mentioning(&["master key", "console"]);
    // Every problem is listed at once, not just the first.
    assert!(
        r.stderr.contains("OTPGATE_MASTER_KEY"),
        "the variable to set is named: {r}"
    );
}

#[test]
fn config_check_accepts_production_with_key_and_without_console() {
    let sb = Sandbox::new();
    let r = Ran::from(
        sb.cmd(&["config", "check"])
            .env("OTPGATE_MODE", "production")
            .env("OTPGATE_CONSOLE__ENABLED", "false")
            .output()
            .expect("runs"),
    );
    assert!(r.status.success(), "{r}");
    assert!(r.stdout.to_lowercase().contains("production"), "{r}");
}

#[test]
fn config_check_explains_a_bad_listen_address() {
    let sb = Sandbox::new();
    let r = Ran::from(
        sb.cmd(&["config", "check"])
            .env("OTPGATE_LISTEN", "not-an-address")
            .output()
            .expect("runs"),
    );
    r.assert_fails_mentioning(&["listen", "not-an-address"]);
}

#[test]
fn config_check_reads_a_toml_file() {
    let sb = Sandbox::new();
    let file = sb.path().join("otpgate.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\ncurrency = \"USD\"\n").expect("write toml");
    let file = file.to_str().expect("utf-8 path");
    let out = sb.ok(&["--config", file, "config", "check"]);
    assert!(out.contains("127.0.0.1:9999"), "{out}");
    assert!(out.contains("USD"), "{out}");
    // The environment overrides the file.
    let r = Ran::from(
        sb.cmd(&["--config", file, "config", "check"])
            .env("OTPGATE_LISTEN", "127.0.0.1:7777")
            .output()
            .expect("runs"),
    );
    assert!(
        r.status.success() && r.stdout.contains("127.0.0.1:7777"),
        "{r}"
    );
    // The option also works after the subcommand (it is global).
    let out = sb.ok(&["config", "check", "--config", file]);
    assert!(out.contains("127.0.0.1:9999"), "{out}");
}

#[test]
fn config_check_reports_a_bad_toml_file() {
    let sb = Sandbox::new();
    let file = sb.path().join("bad.toml");
    std::fs::write(&file, "listne = \"127.0.0.1:9999\"\n").expect("write toml");
    sb.run(&["--config", file.to_str().unwrap(), "config", "check"])
        .assert_fails_mentioning(&["listne"]);
    let missing = sb.path().join("missing.toml");
    sb.run(&["--config", missing.to_str().unwrap(), "config", "check"])
        .assert_fails_mentioning(&["missing.toml"]);
}

/// `OTPGATE_CONFIG` is the documented environment form of `--config` (clap `env`).
#[test]
fn config_file_can_be_named_by_otpgate_config() {
    let sb = Sandbox::new();
    let file = sb.path().join("otpgate.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\n").expect("write toml");
    let r = Ran::from(
        sb.cmd(&["config", "check"])
            .env("OTPGATE_CONFIG", &file)
            .output()
            .expect("runs"),
    );
    assert!(
        r.status.success(),
        "OTPGATE_CONFIG must not be read as a configuration key: {r}"
    );
    assert!(r.stdout.contains("127.0.0.1:9999"), "{r}");
}

/// `OTPGATE_LOG` sets the log filter; it is not a configuration key.
#[test]
fn otpgate_log_sets_the_filter_without_breaking_the_configuration() {
    let sb = Sandbox::new();
    for args in [&["config", "check"][..], &["tenant", "list"][..]] {
        let r = Ran::from(
            sb.cmd(args)
                .env("OTPGATE_LOG", "warn")
                .output()
                .expect("runs"),
        );
        assert!(r.status.success(), "OTPGATE_LOG=warn otpgate {args:?}: {r}");
    }
    let r = Ran::from(
        sb.cmd(&["tenant", "create", "--name", "quiet"])
            .env("OTPGATE_LOG", "warn")
            .output()
            .expect("runs"),
    );
    assert!(r.status.success(), "{r}");
    assert!(
        !r.stderr.contains("INFO"),
        "info lines are filtered out: {r}"
    );
}

// ---------------------------------------------------------------------------------------------
// migrate

#[test]
fn migrate_creates_a_fresh_database_and_is_idempotent() {
    let sb = Sandbox::new();
    let db = sb.path().join("fresh.db");
    let url = format!("sqlite://{}", db.display());
    assert!(!db.exists());
    let r = Ran::from(
        sb.cmd(&["migrate"])
            .env("OTPGATE_DATABASE_URL", &url)
            .output()
            .expect("runs"),
    );
    assert!(r.status.success(), "{r}");
    assert!(db.is_file(), "migrate creates {}: {r}", db.display());
    let again = Ran::from(
        sb.cmd(&["migrate"])
            .env("OTPGATE_DATABASE_URL", &url)
            .output()
            .expect("runs"),
    );
    assert!(
        again.status.success(),
        "a second migrate is a no-op: {again}"
    );
    // The migrated database is usable by the other commands.
    let r = Ran::from(
        sb.cmd(&["tenant", "list", "--json"])
            .env("OTPGATE_DATABASE_URL", &url)
            .output()
            .expect("runs"),
    );
    assert!(r.status.success() && r.stdout.trim() == "[]", "{r}");
}

#[test]
fn outbox_of_a_fresh_database_is_empty() {
    let sb = Sandbox::new();
    assert_eq!(sb.json(&["outbox", "--json"]), json!([]));
    assert!(sb.ok(&["outbox"]).contains("empty"));
}

// ---------------------------------------------------------------------------------------------
// serve

/// A running `otpgate serve`. Dropping it kills the process.
pub(crate) struct Served {
    pub(crate) child: Child,
    /// stdout lines, read by a thread so the server never blocks on a full pipe.
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// stderr, collected by a thread.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    pub(crate) fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("otpgate serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining.
                    continue;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Reads stdout until a line contains `needle`, returning that line.
    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "no stdout line with {needle:?} within {timeout:?} (exit status {status:?}); stdout so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Everything printed on stdout so far.
    fn stdout_so_far(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Stops the process, returning its exit status and stderr.
    pub(crate) fn finish(mut self, timeout: Duration) -> (Option<ExitStatus>, String) {
        let status = self.wait_exit(timeout);
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The stderr thread ends once the process is gone.
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        (status, stderr)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn value_after(line: &str, label: &str) -> String {
    line.split_once(label)
        .map(|(_, rest)| rest.trim().to_string())
        .unwrap_or_else(|| panic!("{label:?} in {line:?}"))
}

/// A signed Buka request.
pub(crate) struct Signer {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) key: String,
    pub(crate) secret: String,
}

impl Signer {
    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            .to_string();
        let resp = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("Api-Key", &self.key)
            .header("Timestamp", &ts)
            .header("Sign", buka_sign(&self.key, &self.secret, &ts))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(resp.status(), 200, "POST {path}");
        let v: Value = resp.json().await.expect("JSON answer");
        assert!(v["status"].is_string(), "{v}");
        v
    }
}

/// The newest outbox entry, waiting briefly in case delivery is asynchronous.
fn newest_outbox_entry(sb: &Sandbox, verification_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = sb.json(&["outbox", "--json"]);
        let entries = list
            .as_array()
            .unwrap_or_else(|| panic!("outbox --json is an array: {list}"));
        if let Some(first) = entries.first()
            && first["verificationId"] == verification_id
        {
            return first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the send never reached the outbox: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn serve_in_development_sends_through_the_console_outbox() {
    let sb = Sandbox::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = sb.cmd(&["serve"]);
    cmd.env("OTPGATE_LISTEN", &addr)
        .env("OTPGATE_MODE", "development");
    let mut server = Served::start(cmd);
    let key = value_after(
        &server.wait_for_line("Api-Key:", Duration::from_secs(60)),
        "Api-Key:",
    );
    let secret = value_after(
        &server.wait_for_line("API secret:", Duration::from_secs(5)),
        "API secret:",
    );
    assert!(!key.is_empty() && !secret.is_empty());

    // The development tenant is a real tenant of the same database; its secret stays hidden.
    let row = tenant_row(&sb, &key);
    assert_eq!(row["enabled"], true, "{row}");
    assert!(!sb.ok(&["tenant", "list", "--json"]).contains(&secret));

    let api = Signer {
        client: reqwest::Client::new(),
        base: format!("http://{addr}"),
        key,
        secret,
    };
    let health: Value = api
        .client
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("healthz JSON");
    assert_eq!(health["status"], "ok");

    let v = api
        .post("/v3/otp/app/add", json!({"name": "cli_e2e_app"}))
        .await;
    assert_eq!(v["status"], "0", "{v}");
    let app_id = v["data"]["appId"].as_str().expect("appId").to_string();
    let v = api
        .post(
            "/otp/template/add",
            json!({"appId": app_id, "name": "cli_e2e_tpl", "text": "##code## is your code"}),
        )
        .await;
    assert_eq!(v["status"], "0", "{v}");
    let tpl = v["data"]["templateId"].as_i64().expect("templateId");
    let v = api
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US}),
        )
        .await;
    assert_eq!(v["status"], "0", "{v}");
    let vid = v["data"]["verificationId"]
        .as_str()
        .expect("verificationId")
        .to_string();

    let entry = newest_outbox_entry(&sb, &vid);
    assert_eq!(entry["channel"], "sms", "{entry}");
    assert_eq!(entry["to"], US, "{entry}");
    assert_eq!(entry["verificationId"], vid.as_str(), "{entry}");
    let text = entry["text"].as_str().expect("text").to_string();
    let code = text
        .strip_suffix(" is your code")
        .unwrap_or_else(|| panic!("template text: {text:?}"));
    assert_eq!(code.len(), 4, "default code length: {text:?}");
    assert!(
        code.bytes().all(|b| b.is_ascii_digit()),
        "numeric code: {text:?}"
    );

    let table = sb.ok(&["outbox"]);
    assert!(table.contains(&text), "outbox shows the text: {table}");
    assert!(
        table.contains(&vid),
        "outbox shows the verification id: {table}"
    );
    assert!(table.contains(US), "outbox shows the number: {table}");
    let limited = sb.json(&["outbox", "--limit", "1", "--json"]);
    assert_eq!(limited.as_array().map(Vec::len), Some(1), "{limited}");

    // The console provider also prints the message on the server's stdout.
    server.wait_for_line(&vid, Duration::from_secs(5));
    assert!(server.stdout_so_far().contains(&text));

    let wrong = if code == "0000" { "1111" } else { "0000" };
    let r = api
        .post(
            "/v3/otp/verification/verify",
            json!({"verificationId": vid, "code": wrong}),
        )
        .await;
    assert_eq!(r["data"]["matched"], 2, "{r}");
    let r = api
        .post(
            "/v3/otp/verification/verify",
            json!({"verificationId": vid, "code": code}),
        )
        .await;
    assert_eq!(r["status"], "0", "{r}");
    assert_eq!(r["data"]["matched"], 0, "{r}");

    // A disabled tenant is refused at once by the running server: on the calls that read the
    // tenant row, and on send and verify, which check the row the server last read (and
    // cached) inside their own transaction.
    sb.ok(&["tenant", "disable", &api.key]);
    let r = api
        .post("/v3/otp/app/add", json!({"name": "cli_e2e_app2"}))
        .await;
    assert_eq!(r["status"], "-1", "{r}");
    let r = api
        .post(
            "/v3/otp/verification/verify",
            json!({"verificationId": vid, "code": code}),
        )
        .await;
    assert_eq!(r["status"], "-1", "{r}");
    let r = api
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US}),
        )
        .await;
    assert_eq!(r["status"], "-1", "{r}");
    // Enabled again, and limited to an address the test does not call from: -2.
    sb.ok(&["tenant", "enable", &api.key]);
    sb.ok(&["tenant", "allow-ip", &api.key, "10.0.0.0/8"]);
    let r = api
        .post(
            "/v3/otp/verification/verify",
            json!({"verificationId": vid, "code": code}),
        )
        .await;
    assert_eq!(r["status"], "-2", "{r}");
    drop(api);

    // SIGTERM stops the server cleanly.
    let killed = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let (status, stderr) = server.finish(Duration::from_secs(15));
    let status = status
        .unwrap_or_else(|| panic!("serve did not stop within 15 s of SIGTERM; stderr:\n{stderr}"));
    assert!(
        status.success(),
        "serve exits 0 after SIGTERM: {status}; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains(&text),
        "message texts (they carry codes) are never logged: {stderr}"
    );
}

#[test]
fn serve_in_production_refuses_the_console_provider() {
    let sb = Sandbox::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = sb.cmd(&["serve"]);
    cmd.env("OTPGATE_LISTEN", &addr)
        .env("OTPGATE_MODE", "production");
    let mut server = Served::start(cmd);
    let status = server.wait_exit(Duration::from_secs(30));
    let out = server.stdout_so_far();
    let (_, stderr) = server.finish(Duration::ZERO);
    let status = status.unwrap_or_else(|| {
        panic!("production serve with the console provider must not start: {stderr}")
    });
    assert!(!status.success(), "{status}");
    assert!(
        stderr.to_lowercase().contains("console"),
        "the refusal names the console provider: {stderr}"
    );
    assert!(
        !out.contains("Api-Key:"),
        "no development tenant in production: {out}"
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "nothing listens on {addr} after the refusal"
    );
}

#[tokio::test]
async fn serve_in_production_without_console_starts_without_a_dev_tenant() {
    let sb = Sandbox::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = sb.cmd(&["serve"]);
    cmd.env("OTPGATE_LISTEN", &addr)
        .env("OTPGATE_MODE", "production")
        .env("OTPGATE_CONSOLE__ENABLED", "false");
    let mut server = Served::start(cmd);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            let (_, stderr) = server.finish(Duration::ZERO);
            panic!("serve exited with {status}: {stderr}");
        }
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !server.stdout_so_far().contains("Api-Key:"),
        "no development tenant in production"
    );
    assert_eq!(sb.json(&["tenant", "list", "--json"]), json!([]));
}

#[tokio::test]
async fn jobs_lists_the_queue_and_a_second_server_on_one_database_is_refused() {
    let sb = Sandbox::new();
    let empty = sb.json(&["jobs", "--json"]);
    assert_eq!(empty["queued"], 0, "{empty}");
    assert_eq!(
        sb.ok(&["jobs"]).lines().next(),
        Some("0 jobs queued, 0 due now")
    );

    let (key, secret) = create_tenant(&sb, "jobs");
    let (server, api) = crate::crash::serve(&sb, &key, &secret).await;

    // A second server on the same file refuses to start, naming the reason.
    let mut second = sb.cmd(&["serve"]);
    second.env("OTPGATE_LISTEN", format!("127.0.0.1:{}", free_port()));
    Ran::from(second.output().expect("runs"))
        .assert_fails_mentioning(&["another otpgate server", "one server per SQLite database"]);

    let app_id = api
        .post("/v3/otp/app/add", json!({"name": "jobs_app"}))
        .await["data"]["appId"]
        .as_str()
        .expect("appId")
        .to_string();
    let tpl = api
        .post(
            "/v3/otp/template/add",
            json!({"appId": app_id, "name": "jobs_tpl", "text": "##code## is your code"}),
        )
        .await["data"]["templateId"]
        .as_i64()
        .expect("templateId");
    let flow = api
        .post(
            "/v3/otp/flow/add",
            json!({"name": "jobs_flow", "flow": [{"waitingTime": 120, "status": 2, "channel": "sms"}]}),
        )
        .await["data"]["flowId"]
        .as_i64()
        .expect("flowId");
    let v = api
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US, "flowId": flow}),
        )
        .await;
    let vid = v["data"]["verificationId"]
        .as_str()
        .expect("vid")
        .to_string();
    // Once delivered, the flow timer is the only job.
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let listed = sb.json(&["jobs", "--json"]);
        if listed["jobs"][0]["kind"] == "flow" {
            break listed;
        }
        assert!(Instant::now() < deadline, "no flow job: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed["queued"], 1, "{listed}");
    assert_eq!(listed["due"], 0, "{listed}");
    let job = &listed["jobs"][0];
    assert_eq!(job["key"], format!("flow:{vid}:0"), "{listed}");
    assert!(
        job["owner"].is_null(),
        "a waiting timer is not held: {listed}"
    );
    let table = sb.ok(&["jobs"]);
    assert!(table.starts_with("1 jobs queued, 0 due now"), "{table}");
    assert!(table.contains(&format!("flow:{vid}:0")), "{table}");

    crate::crash::sigterm(&server);
    let (status, stderr) = server.finish(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    // Stopped: the lock is free again and the timer is still queued.
    assert_eq!(sb.json(&["jobs", "--json"])["queued"], 1);

    // A delivery being handed over holds its claim on its attempt: counted, not listed.
    {
        use otpgate::store::*;
        let store = otpgate::store::sqlite::SqliteStore::connect(&sb.database_url)
            .await
            .expect("open the database");
        let tenant = store.tenant_by_key(&key).await.unwrap().expect("tenant");
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let created = store
            .create_send(&NewSend {
                tenant_id: tenant.id,
                app_id: app_id.clone(),
                phone: US.into(),
                verification_id: "in-flight-1".into(),
                kind: "send",
                order_id: None,
                total_limit: None,
                phone_limit: None,
                target: SendTarget::New(NewSession {
                    app_id: app_id.clone(),
                    template_id: Some(tpl),
                    flow_id: None,
                    phone: US.into(),
                    region: Some("US".into()),
                    code: StoredCode {
                        hash: "h".into(),
                        sealed: "s".into(),
                        expires_ms: now_ms + 300_000,
                    },
                    code_type: 1,
                    code_length: 6,
                    case_insensitive: false,
                    external_id: None,
                }),
                attempt: NewAttempt {
                    channel: "sms".into(),
                    route: "console".into(),
                    provider: "console".into(),
                    sender: None,
                    mcc: Some(310),
                    flow_step: None,
                    sending: Some(SendingInfo::default()),
                },
                now_ms,
                claim: Some(NewClaim {
                    owner: "a-worker".into(),
                    lease_until_ms: now_ms + 60_000,
                }),
                guard: None,
            })
            .await
            .expect("a send held by a worker");
        assert!(matches!(created, SendOutcome::Created { job: Some(_), .. }));
    }
    let listed = sb.json(&["jobs", "--json"]);
    assert_eq!(
        (&listed["queued"], &listed["inFlight"], &listed["due"]),
        (&json!(2), &json!(1), &json!(0)),
        "{listed}"
    );
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1), "{listed}");
    let table = sb.ok(&["jobs"]);
    assert!(
        table.starts_with(
            "2 jobs queued (1 of them deliveries in flight, held on their attempts), 0 due now"
        ),
        "{table}"
    );
}
