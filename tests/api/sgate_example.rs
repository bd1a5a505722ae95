//! The example SGate client, `examples/sgate-client.sh` (bash, openssl, curl), against the
//! real server: it signs requests the way the vendor documents and verifies the signed answers
//! with the system public key, so a passing run checks both sides of the signature scheme with
//! an independent implementation.
//!
//! The tests need `bash`, `curl` and `openssl`. Without them they return at once with a note,
//! except under `CI=true`, where a missing tool is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use otpgate::service::MerchantInput;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::TestApp;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sgate-client.sh");

/// The sandbox session of the test number 512345678.
const TEST_SESSION: &str = "10290d703f8254593ff93533f00af153";

/// Whether `bash`, `curl` and `openssl` are installed; says why not (or panics under
/// `CI=true`) when one is missing.
fn tools_present(test: &str) -> bool {
    let missing: Vec<&str> = [
        ("bash", "--version"),
        ("curl", "--version"),
        ("openssl", "version"),
    ]
    .into_iter()
    .filter(|(tool, arg)| {
        !Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .map(|(tool, _)| tool)
    .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{test}: the example client needs {}, which is not installed",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (CI=true: a missing tool is a failure)");
    }
    eprintln!("skipped: {why}");
    false
}

/// Runs a command to completion, asserting success.
#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A merchant key pair made by `openssl genrsa`: the private key, and the public key as
/// PKCS#8 (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) PEM.
fn openssl_key_pair(dir: &Path, name: &str, pkcs1: bool) -> (PathBuf, String) {
    let private = dir.join(format!("{name}.pem"));
    run_ok(
        Command::new("openssl")
            .arg("genrsa")
            .arg("-out")
            .arg(&private)
            .arg("2048"),
    );
    let public = run_ok(
        Command::new("openssl")
            .arg("rsa")
            .arg("-in")
            .arg(&private)
            .arg(if pkcs1 {
                "-RSAPublicKey_out"
            } else {
                "-pubout"
            }),
    );
    let header = if pkcs1 {
        "-----BEGIN RSA PUBLIC KEY-----"
    } else {
        "-----BEGIN PUBLIC KEY-----"
    };
    assert!(public.starts_with(header), "{public}");
    (private, public)
}

/// The example client set up for one merchant of a running server.
struct Client {
    base: String,
    api_key: String,
    private_key: PathBuf,
    system_key: PathBuf,
}

/// One run of the script.
struct Ran {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Ran {
    /// The response body the script printed: one line of JSON.
    #[track_caller]
    fn body(&self) -> Value {
        let line = self
            .stdout
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("the body ends with a newline: {self}"));
        assert!(!line.contains('\n'), "one line: {self}");
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("a JSON body ({e}): {self}"));
        let id = v["requestId"].as_str().unwrap_or_default();
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
            "requestId: {self}"
        );
        assert_eq!(v["sensitiveFields"], json!({}), "{self}");
        v
    }

    /// Exit 0, code 200, a verified response signature; the body's `data`.
    #[track_caller]
    fn ok(&self) -> Value {
        assert_eq!(self.status, Some(0), "{self}");
        let v = self.body();
        assert_eq!(v["code"], 200, "{self}");
        assert_eq!(v["message"], "Request succeeded.", "{self}");
        assert!(
            self.stderr.contains("response signature: verified"),
            "{self}"
        );
        v["data"].clone()
    }

    /// Exit 1 with this code, the answer still signed and verified.
    #[track_caller]
    fn refused(&self, code: i64) {
        assert_eq!(self.status, Some(1), "{self}");
        let v = self.body();
        assert_eq!(v["code"], code, "{self}");
        assert_eq!(v["data"], json!({}), "{self}");
        assert!(
            self.stderr.contains("response signature: verified"),
            "{self}"
        );
    }
}

impl Client {
    fn command(&self, call: &str, arg: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT)
            .arg(call)
            .arg(arg)
            .env("SGATE_URL", &self.base)
            .env("SGATE_API_KEY", &self.api_key)
            .env("SGATE_PRIVATE_KEY", &self.private_key)
            .env("SGATE_SYSTEM_KEY", &self.system_key);
        // The server is on loopback: no proxy in between.
        for v in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
            cmd.env_remove(v);
        }
        cmd
    }

    /// Runs the script off the runtime's thread (the server answers on it).
    async fn run_cmd(mut cmd: Command) -> Ran {
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("the script's thread")
            .expect("bash runs");
        Ran {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn run(&self, call: &str, arg: &str) -> Ran {
        Self::run_cmd(self.command(call, arg)).await
    }
}

/// A server, a merchant with an `openssl genrsa` key, and the system key in a file.
async fn setup(
    app: &TestApp,
    dir: &TempDir,
    name: &str,
    sandbox: bool,
    pkcs1: bool,
    app_names: &[&str],
) -> Client {
    let (private_key, public_pem) = openssl_key_pair(dir.path(), name, pkcs1);
    let merchant = app
        .service
        .create_merchant(MerchantInput {
            name: name.to_string(),
            public_key_pem: public_pem,
            sandbox,
            app_names: app_names.iter().map(|s| s.to_string()).collect(),
        })
        .await
        .expect("merchant created");
    let system_key = dir.path().join("system-public.pem");
    std::fs::write(
        &system_key,
        app.service.system_public_key().await.expect("system key"),
    )
    .expect("write the system key");
    Client {
        base: app.base.clone(),
        api_key: merchant.tenant.api_key,
        private_key,
        system_key,
    }
}

#[tokio::test]
async fn example_client_against_a_sandbox_merchant() {
    if !tools_present("example_client_against_a_sandbox_merchant") {
        return;
    }
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let c = setup(
        &app,
        &dir,
        "sandbox",
        true,
        false,
        &["TestApp", "Tést/App ✓"],
    )
    .await;

    // The documented examples of the script's header.
    let r = c
        .run(
            "sendOtp",
            r#"{"mobile":"+966512345678","appname":"TestApp"}"#,
        )
        .await;
    assert_eq!(
        r.ok(),
        json!({"mobile": "+966512345678", "appname": "TestApp", "sessionid": TEST_SESSION}),
        "{r}"
    );
    assert!(
        r.stdout.starts_with(r#"{"code":200,"message":"Request succeeded.","data":{"mobile":"+966512345678","appname":"TestApp","sessionid":"10290d703f8254593ff93533f00af153"},"sensitiveFields":{},"requestId":""#),
        "the body as the server wrote it: {r}"
    );
    for (query, mobile) in [
        (
            format!("mobile=512345678&sessionid={TEST_SESSION}"),
            "512345678",
        ),
        (
            format!("mobile=%2B966512345678&sessionid={TEST_SESSION}"),
            "+966512345678",
        ),
    ] {
        let r = c.run("otpDetail", &query).await;
        let data = r.ok();
        assert_eq!(data["mobile"], mobile, "{r}");
        assert_eq!(data["sessionid"], TEST_SESSION, "{r}");
        assert_eq!(
            (data["status"].as_str(), data["reportstatus"].as_str()),
            (Some("success"), Some("success")),
            "{r}"
        );
        let created = data["created_at"].as_i64().expect("created_at");
        assert!(
            (created - app.clock_now_secs()).abs() <= 5,
            "created_at is the send's time: {r}"
        );
    }
    let check = format!(r#"{{"mobile":"512345678","code":"123456","sessionid":"{TEST_SESSION}"}}"#);
    // A test number verifies any number of times.
    for _ in 0..2 {
        let r = c.run("checkOtp", &check).await;
        assert_eq!(r.ok(), json!({}), "{r}");
    }

    // A wrong code: exit 1, the refusal signed all the same.
    let r = c
        .run(
            "checkOtp",
            &format!(r#"{{"mobile":"512345678","code":"654321","sessionid":"{TEST_SESSION}"}}"#),
        )
        .await;
    r.refused(1609);

    // What the signed string must carry as is: newlines and tabs of a pretty-printed body,
    // '/', non-ASCII, a backslash; a number for mobile (echoed as a string).
    let r = c
        .run(
            "sendOtp",
            "{\n\t\"mobile\": 500000001,\n\t\"appname\": \"T\\u00e9st/App \u{2713}\",\n\t\"note\": \"a\\\\b\"\n}",
        )
        .await;
    assert_eq!(
        r.ok(),
        json!({"mobile": "500000001", "appname": "Tést/App ✓", "sessionid": "a3f551d80f05a0e3e9056869fda18485"}),
        "{r}"
    );

    // A base URL with a trailing slash.
    let mut cmd = c.command(
        "otpDetail",
        &format!("mobile=0512345678&sessionid={TEST_SESSION}"),
    );
    cmd.env("SGATE_URL", format!("{}/", c.base));
    let r = Client::run_cmd(cmd).await;
    assert_eq!(r.ok()["mobile"], "0512345678", "{r}");

    // Raw control characters make the body invalid JSON (1103), but the script must still
    // sign it as the server's JSON writer escapes it (\b \f \u0001 …) to get that far.
    let r = c
        .run(
            "sendOtp",
            "{\"mobile\":\"512345678\",\"appname\":\"Test\u{1}\u{8}\u{c}\u{1f}App\"}",
        )
        .await;
    r.refused(1103);

    // Not an SGate server: no V- headers to check.
    let mut cmd = c.command("sendOtp", r#"{"mobile":"512345678","appname":"TestApp"}"#);
    cmd.env("SGATE_URL", format!("{}/nowhere", c.base));
    let r = Client::run_cmd(cmd).await;
    assert_eq!(r.status, Some(1), "{r}");
    assert!(r.stderr.contains("response signature: missing"), "{r}");

    // Without SGATE_SYSTEM_KEY the answer is not checked.
    let mut cmd = c.command("checkOtp", &check);
    cmd.env_remove("SGATE_SYSTEM_KEY");
    let r = Client::run_cmd(cmd).await;
    assert_eq!(r.status, Some(0), "{r}");
    assert_eq!(r.body()["code"], 200, "{r}");
    assert!(!r.stderr.contains("response signature"), "{r}");

    // An unknown key: refused, and the answer is unsigned.
    let mut cmd = c.command("sendOtp", r#"{"mobile":"512345678","appname":"TestApp"}"#);
    cmd.env("SGATE_API_KEY", "NoSuchMerchantKey");
    let r = Client::run_cmd(cmd).await;
    assert_eq!(r.status, Some(1), "{r}");
    assert_eq!(r.body()["code"], 1201, "{r}");
    assert!(
        r.stderr
            .contains("response signature: empty (the request was not authenticated)"),
        "{r}"
    );

    // Signed with another key: 1213, unsigned.
    let (other_key, _) = openssl_key_pair(dir.path(), "other", false);
    let mut cmd = c.command("sendOtp", r#"{"mobile":"512345678","appname":"TestApp"}"#);
    cmd.env("SGATE_PRIVATE_KEY", &other_key);
    let r = Client::run_cmd(cmd).await;
    assert_eq!(r.status, Some(1), "{r}");
    assert_eq!(r.body()["code"], 1213, "{r}");
    assert!(r.stderr.contains("response signature: empty"), "{r}");
}

#[tokio::test]
async fn example_client_round_trip_with_a_production_merchant() {
    if !tools_present("example_client_round_trip_with_a_production_merchant") {
        return;
    }
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A PKCS#1 public key this time.
    let c = setup(&app, &dir, "production", false, true, &["TestApp"]).await;

    let r = c
        .run("sendOtp", r#"{"mobile":"0512345670","appname":"TestApp"}"#)
        .await;
    let data = r.ok();
    assert_eq!(
        (data["mobile"].as_str(), data["appname"].as_str()),
        (Some("0512345670"), Some("TestApp")),
        "{r}"
    );
    let session = data["sessionid"].as_str().expect("sessionid").to_string();
    assert!(
        session.len() == 32
            && session
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{r}"
    );
    assert_ne!(
        session, TEST_SESSION,
        "a production merchant has no test numbers"
    );

    app.drain().await;
    let sent = app.provider.sent();
    assert_eq!(sent.len(), 1, "one SMS");
    let code = app.last_code();
    assert_eq!(
        app.last_text(),
        format!(
            "{code} is OTP to varify your STCPAY account , please input within 5 minutes. - TestApp"
        )
    );
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );

    let r = c
        .run(
            "otpDetail",
            &format!("mobile=966512345670&sessionid={session}"),
        )
        .await;
    let data = r.ok();
    assert_eq!(data["mobile"], "966512345670", "{r}");
    assert_eq!(data["sessionid"], session.as_str(), "{r}");
    assert!(
        ["pending", "sending", "success"].contains(&data["status"].as_str().unwrap_or_default()),
        "{r}"
    );

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let body = |code: &str| {
        format!(r#"{{"mobile":"+966512345670","code":"{code}","sessionid":"{session}"}}"#)
    };
    c.run("checkOtp", &body(wrong)).await.refused(1609);
    let r = c.run("checkOtp", &body(&code)).await;
    assert_eq!(r.ok(), json!({}), "{r}");
    // Used up.
    c.run("checkOtp", &body(&code)).await.refused(1607);
}
