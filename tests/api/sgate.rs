//! The SGate payout-API OTP dialect against the running server, through a vendor-style client
//! written here from the wire contract alone (`shared/spec/sgate-payout.md`): it builds the
//! signed JSON by hand, MD5-hexes it, signs the hex with MD5withRSA, and checks every answer's
//! envelope, headers and signature (the system key for authenticated answers, an empty
//! `V-Signature` for the others).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::join_all;
use md5::{Digest, Md5};
use otpgate::clock::{Clock, ManualClock};
use otpgate::providers::ProviderError;
use otpgate::providers::memory::{MemoryProvider, Script};
use otpgate::providers::routing::RouteConfig;
use otpgate::service::MerchantInput;
use otpgate::store::tenant_kind;
use reqwest::Method;
use reqwest::header::HeaderMap;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use crate::harness::*;

const SEND: &str = "/openApi/v1/otp/sendOtp";
const CHECK: &str = "/openApi/v1/otp/checkOtp";
const DETAIL: &str = "/openApi/v1/otp/otpDetail";
const APP: &str = "TestApp";

/// The codes of a request that failed authentication: answered with an empty signature.
const UNAUTHENTICATED: [i64; 8] = [1201, 1204, 1205, 1208, 1209, 1210, 1211, 1213];

/// The vendor's sandbox test numbers (effective form) and their fixed session ids.
const TEST_NUMBERS: [(&str, &str); 6] = [
    ("512345678", "10290d703f8254593ff93533f00af153"),
    ("500000001", "a3f551d80f05a0e3e9056869fda18485"),
    ("500000002", "e8cffbb22c2e09af7004c92b82a4275f"),
    ("500000003", "05121e9b019b6ac4bd938322dcaf73ef"),
    ("500000004", "9e1aac7c1f6719e12e3384ced6782887"),
    ("500000005", "c6cfc53d34b2c93eaaa9d430397dead0"),
];

// ---------------------------------------------------------------------------------------------
// The vendor-style client
// ---------------------------------------------------------------------------------------------

fn new_key() -> rsa::PrivateKey {
    rsa::PrivateKey::new(&mut rand_rsa::rng(), 2048).expect("RSA key")
}

/// The merchants' key pair (generated once per test binary).
fn merchant_key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(new_key)
}

/// A key no merchant registered.
fn stranger_key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(new_key)
}

/// A JSON string literal the way the contract serializes: `"` and `\` and control characters
/// escaped, `/` and non-ASCII left as they are.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The signed object, keys in the contract's order, on one line without spaces.
fn signing_json(
    api_key: &str,
    timestamp: i64,
    nonce: &str,
    url: &str,
    method: &str,
    body: &str,
) -> String {
    format!(
        "{{\"api_key\":{},\"timestamp\":{timestamp},\"nonce_str\":{},\"url\":{},\"method\":{},\"body\":{}}}",
        json_str(api_key),
        json_str(nonce),
        json_str(url),
        json_str(method),
        json_str(body)
    )
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// MD5withRSA over the MD5 hex of the signed JSON, Base64.
fn sign(key: &rsa::PrivateKey, signed_json: &str) -> String {
    let sig = key
        .pkcs1v15_sign::<Md5>(md5_hex(signed_json).as_bytes())
        .expect("signs");
    STANDARD.encode(sig)
}

/// Percent-encodes a query value (everything but the unreserved characters).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn fresh_nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:016x}{:04x}",
        rand::random::<u64>(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn now_secs(clock: &ManualClock) -> i64 {
    clock.now().timestamp()
}

/// A merchant's client.
struct Vendor {
    base: String,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    api_key: String,
    system: rsa::PublicKey,
}

/// One request; a test may spoil any part of it.
#[derive(Clone)]
struct Req {
    method: Method,
    /// Path and query, as sent (and signed unless `signed_url` says otherwise).
    url: String,
    body: String,
    api_key: String,
    version: String,
    /// The `V-Timestamp` header.
    timestamp: String,
    /// The `timestamp` in the signed JSON.
    signed_timestamp: i64,
    nonce: String,
    user_agent: Option<String>,
    /// A `V-` header left out.
    omit: Option<&'static str>,
    /// Replaces the computed signature.
    signature: Option<String>,
    signer: &'static rsa::PrivateKey,
    signed_url: Option<String>,
    signed_body: Option<String>,
    signed_method: Option<String>,
}

/// A checked answer.
struct Answer {
    v: Value,
    text: String,
    headers: HeaderMap,
}

impl Answer {
    fn code(&self) -> i64 {
        self.v["code"].as_i64().expect("integer code")
    }

    fn data(&self) -> &Value {
        &self.v["data"]
    }

    fn message(&self) -> &str {
        self.v["message"].as_str().expect("string message")
    }

    fn request_id(&self) -> String {
        self.v["requestId"].as_str().expect("requestId").to_string()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("response header {name} missing"))
            .to_str()
            .expect("visible ASCII")
    }

    /// Asserts the code, showing the whole answer when it differs.
    #[track_caller]
    fn expect(&self, code: i64) -> &Self {
        assert_eq!(self.code(), code, "{}", self.text);
        self
    }

    /// Asserts the code and that the message names `needle`.
    #[track_caller]
    fn expect_naming(&self, code: i64, needle: &str) {
        self.expect(code);
        assert!(
            self.message().contains(needle),
            "message should name {needle:?}: {}",
            self.text
        );
    }

    fn session_id(&self) -> String {
        self.expect(200);
        self.data()["sessionid"]
            .as_str()
            .expect("sessionid")
            .to_string()
    }
}

impl Vendor {
    fn req(&self, method: Method, url: &str, body: &str) -> Req {
        let ts = now_secs(&self.clock);
        Req {
            method,
            url: url.to_string(),
            body: body.to_string(),
            api_key: self.api_key.clone(),
            version: "1".into(),
            timestamp: ts.to_string(),
            signed_timestamp: ts,
            nonce: fresh_nonce(),
            user_agent: Some("vendor-test/1.0".into()),
            omit: None,
            signature: None,
            signer: merchant_key(),
            signed_url: None,
            signed_body: None,
            signed_method: None,
        }
    }

    fn post_req(&self, path: &str, body: &Value) -> Req {
        self.req(Method::POST, path, &body.to_string())
    }

    /// Sends the request and checks the answer: HTTP 200, the envelope, the five `V-` headers,
    /// and the signature (empty when authentication failed, else the system key's).
    async fn send(&self, r: Req) -> Answer {
        let signature = r.signature.clone().unwrap_or_else(|| {
            sign(
                r.signer,
                &signing_json(
                    &r.api_key,
                    r.signed_timestamp,
                    &r.nonce,
                    r.signed_url.as_deref().unwrap_or(&r.url),
                    r.signed_method.as_deref().unwrap_or(r.method.as_str()),
                    r.signed_body.as_deref().unwrap_or(&r.body),
                ),
            )
        });
        let mut rb = self
            .http
            .request(r.method.clone(), format!("{}{}", self.base, r.url));
        if let Some(ua) = &r.user_agent {
            rb = rb.header("User-Agent", ua);
        }
        for (name, value) in [
            ("V-Api-Key", &r.api_key),
            ("V-Api-Version", &r.version),
            ("V-Timestamp", &r.timestamp),
            ("V-Nonce-Str", &r.nonce),
            ("V-Signature", &signature),
        ] {
            if r.omit != Some(name) {
                rb = rb.header(name, value);
            }
        }
        if r.method == Method::POST {
            rb = rb
                .header("Content-Type", "application/json")
                .body(r.body.clone());
        }
        let resp = rb.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        assert_eq!(status, 200, "business outcomes are HTTP 200: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {text}"));
        check_envelope(&v, &text);
        let answer = Answer { v, text, headers };
        assert!(
            answer
                .header("content-type")
                .starts_with("application/json")
        );
        let echoed = if r.omit == Some("V-Api-Key") {
            ""
        } else {
            r.api_key.trim()
        };
        assert_eq!(answer.header("v-api-key"), echoed, "V-Api-Key is echoed");
        assert_eq!(answer.header("v-api-version"), "1");
        let ts: i64 = answer
            .header("v-timestamp")
            .parse()
            .expect("V-Timestamp in seconds");
        assert_eq!(ts, now_secs(&self.clock), "the response time");
        let nonce = answer.header("v-nonce-str").to_string();
        assert!(!nonce.is_empty() && nonce != r.nonce, "a new nonce");
        let sig = answer.header("v-signature");
        if UNAUTHENTICATED.contains(&answer.code()) {
            assert_eq!(
                sig, "",
                "unauthenticated answers are unsigned: {}",
                answer.text
            );
        } else {
            let signed = signing_json(
                &r.api_key,
                ts,
                &nonce,
                &r.url,
                r.method.as_str(),
                &answer.text,
            );
            let raw = STANDARD.decode(sig).expect("V-Signature is Base64");
            self.system
                .pkcs1v15_verify::<Md5>(md5_hex(&signed).as_bytes(), &raw)
                .unwrap_or_else(|e| {
                    panic!(
                        "the answer's signature must verify with the system key ({e}): {}",
                        answer.text
                    )
                });
        }
        answer
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.post_req(path, body)).await
    }

    async fn send_otp(&self, mobile: impl Into<Value>, appname: &str) -> Answer {
        self.post(SEND, &json!({"mobile": mobile.into(), "appname": appname}))
            .await
    }

    /// Sends, asserts success, returns the sessionid.
    async fn send_ok(&self, mobile: impl Into<Value>, appname: &str) -> String {
        self.send_otp(mobile, appname).await.session_id()
    }

    async fn check(&self, mobile: impl Into<Value>, code: &str, sessionid: &str) -> Answer {
        self.post(
            CHECK,
            &json!({"mobile": mobile.into(), "code": code, "sessionid": sessionid}),
        )
        .await
    }

    fn detail_url(mobile: &str, sessionid: &str) -> String {
        format!(
            "{DETAIL}?mobile={}&sessionid={}",
            pct(mobile),
            pct(sessionid)
        )
    }

    async fn detail(&self, mobile: &str, sessionid: &str) -> Answer {
        self.get(&Self::detail_url(mobile, sessionid)).await
    }

    async fn get(&self, url: &str) -> Answer {
        self.send(self.req(Method::GET, url, "")).await
    }

    /// An authenticated call that reaches the business layer (an unknown session: 1610).
    fn probe(&self) -> Req {
        self.req(
            Method::GET,
            &Self::detail_url("551234567", &"0".repeat(32)),
            "",
        )
    }
}

/// `{code, message, data, sensitiveFields, requestId}`, in that order, with their types.
#[track_caller]
fn check_envelope(v: &Value, text: &str) {
    assert_eq!(
        top_level_keys(text),
        ["code", "message", "data", "sensitiveFields", "requestId"],
        "{text}"
    );
    assert!(v["code"].is_i64(), "{text}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    assert!(v["data"].is_object(), "{text}");
    assert_eq!(v["sensitiveFields"], json!({}), "{text}");
    let rid = v["requestId"].as_str().expect("requestId");
    assert!(
        rid.len() == 32
            && rid
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "requestId must be 32 upper-case hex: {rid}"
    );
    if v["code"] == 200 {
        assert_eq!(v["message"], "Request succeeded.", "{text}");
    }
}

/// The top-level keys of a JSON object, in document order.
fn top_level_keys(text: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Keys>(text).expect("an object").0
}

// ---------------------------------------------------------------------------------------------
// Merchants and helpers
// ---------------------------------------------------------------------------------------------

fn merchant_pem() -> String {
    merchant_key()
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("PEM")
}

/// A new merchant of `app` with the shared key, and its client.
async fn merchant(app: &TestApp, sandbox: bool, products: &[&str]) -> Vendor {
    let m = app
        .service
        .create_merchant(MerchantInput {
            name: format!("merchant {}", fresh_nonce()),
            public_key_pem: merchant_pem(),
            sandbox,
            app_names: products.iter().map(|p| p.to_string()).collect(),
        })
        .await
        .expect("merchant created");
    let pem = app.service.system_public_key().await.expect("system key");
    Vendor {
        base: app.base.clone(),
        http: reqwest::Client::new(),
        clock: app.clock.clone(),
        api_key: m.tenant.api_key,
        system: rsa::PublicKey::from_public_key_pem(&pem).expect("system public key"),
    }
}

async fn production(app: &TestApp) -> Vendor {
    merchant(app, false, &[APP]).await
}

/// The four accepted forms of an effective number.
fn formats(eff: &str) -> [String; 4] {
    [
        eff.to_string(),
        format!("0{eff}"),
        format!("966{eff}"),
        format!("+966{eff}"),
    ]
}

/// The code of the last message sent to the effective number `eff`.
fn code_to(app: &TestApp, eff: &str) -> String {
    let to = format!("966{eff}");
    let msg = app
        .provider
        .sent()
        .into_iter()
        .rev()
        .find(|m| m.to == to)
        .unwrap_or_else(|| panic!("a message to {to}"));
    msg.text[..6].to_string()
}

fn other_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

fn stcpay_text(code: &str, app_name: &str) -> String {
    format!(
        "{code} is OTP to varify your STCPAY account , please input within 5 minutes. - {app_name}"
    )
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

#[test]
fn the_vendors_md5_example() {
    let s = signing_json(
        "xxxxxxxxxxxxxx",
        1686647706,
        "TIj5tZ3gM6FbprYlKNR2",
        "/openApi/v1/payee/custom/list",
        "GET",
        "",
    );
    assert_eq!(
        s,
        r#"{"api_key":"xxxxxxxxxxxxxx","timestamp":1686647706,"nonce_str":"TIj5tZ3gM6FbprYlKNR2","url":"/openApi/v1/payee/custom/list","method":"GET","body":""}"#
    );
    assert_eq!(md5_hex(&s), "8a5908e27626d79d73dc14bd9ba00e72");
    // The client's own escaping: quotes and backslashes escaped, `/` and non-ASCII not.
    assert_eq!(json_str("{\"a\":\"x/ü\\\n\"}"), r#""{\"a\":\"x/ü\\\n\"}""#);
}

#[tokio::test]
async fn the_body_is_signed_exactly_as_sent() {
    let app = TestApp::spawn().await;
    // A product name with a quote, a slash, a backslash and non-ASCII letters.
    let name = "متجر \"Ü\"/\\1";
    let v = merchant(&app, false, &[name]).await;
    // Pretty-printed, with a newline and spaces, non-ASCII unescaped.
    let body = format!(
        "{{\n  \"mobile\": \"0551234567\",\n  \"appname\": {}\n}}",
        json_str(name)
    );
    let a = v.send(v.req(Method::POST, SEND, &body)).await;
    a.expect(200);
    assert_eq!(a.data()["appname"], name);
    assert_eq!(a.data()["mobile"], "0551234567");
    app.drain().await;
    let code = code_to(&app, "551234567");
    assert_eq!(app.provider.sent()[0].text, stcpay_text(&code, name));
    // The same body re-serialized (not as sent) does not verify.
    let mut r = v.req(Method::POST, SEND, &body);
    r.signed_body =
        Some(serde_json::to_string(&json!({"mobile": "0551234567", "appname": name})).unwrap());
    v.send(r).await.expect(1213);
    // Nor does a signature over another method.
    let mut r = v.req(Method::POST, SEND, &body);
    r.signed_method = Some("post".into());
    v.send(r).await.expect(1213);
}

#[tokio::test]
async fn otp_detail_signs_its_url_with_the_query_exactly_as_sent() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let sid = v.send_ok("+966551234567", APP).await;
    app.drain().await;
    // `+` percent-encoded: the request is signed over `%2B`, and so is the answer (the client
    // checks the answer's signature over the url it sent).
    let url = Vendor::detail_url("+966551234567", &sid);
    assert!(url.contains("mobile=%2B966551234567"), "{url}");
    let a = v.get(&url).await;
    a.expect(200);
    assert_eq!(a.data()["mobile"], "+966551234567");
    // Lower-case escapes are signed as sent too.
    let lower = url.replace("%2B", "%2b");
    v.get(&lower).await.expect(200);
    // A signature over the decoded url does not verify.
    let mut r = v.req(Method::GET, &url, "");
    r.signed_url = Some(format!("{DETAIL}?mobile=+966551234567&sessionid={sid}"));
    v.send(r).await.expect(1213);
    // Nor one without the query.
    let mut r = v.req(Method::GET, &url, "");
    r.signed_url = Some(DETAIL.to_string());
    v.send(r).await.expect(1213);
    // A raw `+` is a space once decoded: signed as sent, but not a number.
    let raw = format!("{DETAIL}?mobile=+966551234567&sessionid={sid}");
    v.get(&raw).await.expect(1612);
}

// ---------------------------------------------------------------------------------------------
// Envelope and headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_answer_has_the_envelope_and_a_unique_request_id() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let mut ids = HashSet::new();
    let sent = v.send_otp("551234567", APP).await;
    sent.expect(200);
    assert_eq!(
        top_level_keys(&sent.data().to_string()).len(),
        3,
        "{}",
        sent.text
    );
    assert_eq!(sent.data()["mobile"], "551234567");
    assert_eq!(sent.data()["appname"], APP);
    let sid = sent.session_id();
    assert_eq!(sid.len(), 32);
    assert!(
        sid.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{sid}"
    );
    ids.insert(sent.request_id());
    app.drain().await;
    let code = code_to(&app, "551234567");
    let checked = v.check("551234567", &code, &sid).await;
    checked.expect(200);
    assert_eq!(checked.data(), &json!({}));
    ids.insert(checked.request_id());
    for _ in 0..5 {
        ids.insert(v.detail("551234567", &sid).await.expect(200).request_id());
        ids.insert(
            v.check("551234567", &code, &sid)
                .await
                .expect(1607)
                .request_id(),
        );
        // Unauthenticated answers too.
        let mut r = v.probe();
        r.api_key = "nobody".into();
        ids.insert(v.send(r).await.expect(1201).request_id());
    }
    assert_eq!(ids.len(), 17, "every requestId is unique");
}

#[tokio::test]
async fn answers_echo_the_callers_api_key() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    // The client asserts the echo on every answer; these are the unusual ones.
    let mut r = v.probe();
    r.api_key = "not-a-merchant".into();
    let a = v.send(r).await;
    a.expect(1201);
    assert_eq!(a.header("v-api-key"), "not-a-merchant");
    let mut r = v.probe();
    r.omit = Some("V-Api-Key");
    let a = v.send(r).await;
    a.expect_naming(1208, "V-Api-Key");
    assert_eq!(a.header("v-api-key"), "");
    let a = v.send(v.probe()).await;
    a.expect(1610);
    assert_eq!(a.header("v-api-key"), v.api_key);
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn header_checks_answer_their_codes() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    v.send(v.probe()).await.expect(1610);

    let mut r = v.probe();
    r.user_agent = None;
    v.send(r).await.expect(1211);
    let mut r = v.probe();
    r.user_agent = Some(String::new());
    v.send(r).await.expect(1211);

    for h in [
        "V-Api-Key",
        "V-Api-Version",
        "V-Timestamp",
        "V-Nonce-Str",
        "V-Signature",
    ] {
        let mut r = v.probe();
        r.omit = Some(h);
        v.send(r).await.expect_naming(1208, h);
    }
    let mut r = v.probe();
    r.signature = Some(String::new());
    v.send(r).await.expect_naming(1208, "V-Signature");

    for bad in ["2", "0", "01", "v1", "1.0"] {
        let mut r = v.probe();
        r.version = bad.into();
        v.send(r).await.expect(1210);
    }

    let mut r = v.probe();
    r.api_key = "unknown-key".into();
    v.send(r).await.expect(1201);
    // The Buka tenant's key is no merchant key.
    let mut r = v.probe();
    r.api_key = app.key.clone();
    v.send(r).await.expect(1201);

    let now = now_secs(&app.clock);
    for (offset, code) in [(-301, 1204), (301, 1204), (-300, 1610), (300, 1610)] {
        let mut r = v.probe();
        r.timestamp = (now + offset).to_string();
        r.signed_timestamp = now + offset;
        v.send(r).await.expect(code);
    }
    // Far from the window in either direction, without overflowing anything.
    for far in [i64::MIN, -9_000_000_000_000_000_000, i64::MAX, 0] {
        let mut r = v.probe();
        r.timestamp = far.to_string();
        r.signed_timestamp = far;
        v.send(r).await.expect(1204);
    }
    for bad in ["abc", "1.5e9", &format!("{now}000x"), &format!("{now}.0")] {
        let mut r = v.probe();
        r.timestamp = bad.to_string();
        v.send(r).await.expect(1209);
    }
    // The header and the signed timestamp must agree.
    let mut r = v.probe();
    r.signed_timestamp = now - 1;
    v.send(r).await.expect(1213);

    let mut r = v.probe();
    r.nonce = "n".repeat(129);
    v.send(r).await.expect(1209);
    let mut r = v.probe();
    r.nonce = "n".repeat(128);
    v.send(r).await.expect(1610);

    let mut r = v.probe();
    r.signer = stranger_key();
    v.send(r).await.expect(1213);
    let mut r = v.probe();
    r.signature = Some("bm90IGEgc2lnbmF0dXJl".into());
    v.send(r).await.expect(1213);
    let mut r = v.probe();
    r.signature = Some("!!!".into());
    v.send(r).await.expect(1213);
    // The key in the signed data is the header's.
    let mut r = v.probe();
    r.signature = Some(sign(
        merchant_key(),
        &signing_json("another", now, &r.nonce, &r.url, "GET", ""),
    ));
    v.send(r).await.expect(1213);
}

#[tokio::test]
async fn header_checks_run_in_the_contracts_order() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let now = now_secs(&app.clock);
    // No User-Agent beats everything else.
    let mut r = v.probe();
    r.user_agent = None;
    r.omit = Some("V-Signature");
    r.version = "9".into();
    v.send(r).await.expect(1211);
    // A missing header beats a bad version and an unknown key.
    let mut r = v.probe();
    r.omit = Some("V-Nonce-Str");
    r.version = "9".into();
    r.api_key = "unknown".into();
    v.send(r).await.expect(1208);
    // A bad version beats an unknown key.
    let mut r = v.probe();
    r.version = "9".into();
    r.api_key = "unknown".into();
    v.send(r).await.expect(1210);
    // An unknown key beats a bad timestamp and signature.
    let mut r = v.probe();
    r.api_key = "unknown".into();
    r.timestamp = "yesterday".into();
    r.signature = Some("x".into());
    v.send(r).await.expect(1201);
    // The allow-list beats a stale timestamp.
    app.service
        .set_tenant_allow_ips(tenant_kind::SGATE, &v.api_key, &["10.0.0.0/8".into()])
        .await
        .unwrap();
    let mut r = v.probe();
    r.timestamp = (now - 1000).to_string();
    v.send(r).await.expect(1205);
    app.service
        .set_tenant_allow_ips(tenant_kind::SGATE, &v.api_key, &[])
        .await
        .unwrap();
    // A stale timestamp beats an over-long nonce and a bad signature.
    let mut r = v.probe();
    r.timestamp = (now - 1000).to_string();
    r.nonce = "n".repeat(200);
    r.signer = stranger_key();
    v.send(r).await.expect(1204);
    // An over-long nonce beats a bad signature.
    let mut r = v.probe();
    r.nonce = "n".repeat(200);
    r.signer = stranger_key();
    v.send(r).await.expect(1209);
}

#[tokio::test]
async fn a_nonce_is_used_once_and_a_forgery_does_not_burn_it() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let r = v.probe();
    v.send(r.clone()).await.expect(1610);
    // The same request again: a replay.
    v.send(r.clone()).await.expect(1209);
    // Re-signed with a new timestamp, the nonce is still spent.
    let mut again = r.clone();
    app.advance(5);
    again.timestamp = now_secs(&app.clock).to_string();
    again.signed_timestamp = now_secs(&app.clock);
    v.send(again).await.expect(1209);
    // A replayed nonce with a bad signature is reported as the replay.
    let mut forged = v.probe();
    forged.nonce = r.nonce.clone();
    forged.signer = stranger_key();
    v.send(forged).await.expect(1209);

    // A forged request first: refused, and the genuine request with its nonce still passes.
    let nonce = fresh_nonce();
    let mut forged = v.probe();
    forged.nonce = nonce.clone();
    forged.signer = stranger_key();
    v.send(forged.clone()).await.expect(1213);
    v.send(forged).await.expect(1213);
    let mut genuine = v.probe();
    genuine.nonce = nonce.clone();
    v.send(genuine.clone()).await.expect(1610);
    v.send(genuine).await.expect(1209);

    // Nonces are per merchant.
    let other = production(&app).await;
    let mut r2 = other.probe();
    r2.nonce = nonce;
    other.send(r2).await.expect(1610);
}

#[tokio::test]
async fn a_disabled_merchant_is_refused() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    app.service
        .set_tenant_enabled(tenant_kind::SGATE, &v.api_key, false)
        .await
        .unwrap();
    v.send(v.probe()).await.expect(1201);
    v.send_otp("551234567", APP).await.expect(1201);
    app.drain().await;
    assert!(app.provider.sent().is_empty());
    app.service
        .set_tenant_enabled(tenant_kind::SGATE, &v.api_key, true)
        .await
        .unwrap();
    v.send(v.probe()).await.expect(1610);
}

#[tokio::test]
async fn an_allow_list_without_the_callers_address_is_refused() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    app.service
        .set_tenant_allow_ips(
            tenant_kind::SGATE,
            &v.api_key,
            &["10.0.0.0/8".into(), "192.0.2.7".into()],
        )
        .await
        .unwrap();
    v.send(v.probe()).await.expect(1205);
    v.send_otp("551234567", APP).await.expect(1205);
    app.drain().await;
    assert!(app.provider.sent().is_empty());
    app.service
        .set_tenant_allow_ips(
            tenant_kind::SGATE,
            &v.api_key,
            &["10.0.0.0/8".into(), "127.0.0.1".into()],
        )
        .await
        .unwrap();
    v.send(v.probe()).await.expect(1610);
    app.service
        .set_tenant_allow_ips(tenant_kind::SGATE, &v.api_key, &["127.0.0.0/8".into()])
        .await
        .unwrap();
    v.send(v.probe()).await.expect(1610);
}

#[tokio::test]
async fn a_merchant_key_cannot_sign_buka_requests() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    // A merchant has no API secret: whatever Buka `Sign` is tried, the key is refused.
    for secret in ["", "secret"] {
        let resp = app
            .envelope(
                app.signed_as(&v.api_key, secret, Method::POST, "/v3/otp/app/add")
                    .json(&json!({"name": "sneaky"})),
            )
            .await;
        assert_eq!(resp["status"], "-1", "{resp}");
    }
    let resp = app
        .envelope(app.signed_as(&v.api_key, "", Method::GET, "/v3/otp/template/list"))
        .await;
    assert_eq!(resp["status"], "-1", "{resp}");
    // The Buka tenant itself still works.
    let ok = app.post("/v3/otp/app/add", json!({"name": "fine"})).await;
    assert_eq!(ok["status"], "0", "{ok}");
}

// ---------------------------------------------------------------------------------------------
// Body validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_and_malformed_fields_name_themselves() {
    let app = TestApp::spawn().await;
    let v = merchant(&app, false, &[APP, &"A".repeat(32)]).await;
    let sid = "0".repeat(32);

    // sendOtp
    v.post(SEND, &json!({"appname": APP}))
        .await
        .expect_naming(1102, "mobile");
    v.post(SEND, &json!({"mobile": "", "appname": APP}))
        .await
        .expect_naming(1102, "mobile");
    v.post(SEND, &json!({"mobile": null, "appname": APP}))
        .await
        .expect_naming(1102, "mobile");
    v.post(SEND, &json!({"mobile": "551234567"}))
        .await
        .expect_naming(1102, "appname");
    v.send(v.req(Method::POST, SEND, ""))
        .await
        .expect_naming(1102, "body");
    v.post(SEND, &json!({"mobile": true, "appname": APP}))
        .await
        .expect_naming(1103, "mobile");
    v.post(SEND, &json!({"mobile": -551234567, "appname": APP}))
        .await
        .expect_naming(1103, "mobile");
    v.post(SEND, &json!({"mobile": 551234567.5, "appname": APP}))
        .await
        .expect_naming(1103, "mobile");
    v.post(SEND, &json!({"mobile": ["551234567"], "appname": APP}))
        .await
        .expect_naming(1103, "mobile");
    v.post(SEND, &json!({"mobile": "551234567", "appname": 7}))
        .await
        .expect_naming(1103, "appname");
    v.post(
        SEND,
        &json!({"mobile": "551234567", "appname": "A".repeat(33)}),
    )
    .await
    .expect_naming(1103, "appname");
    v.post(
        SEND,
        &json!({"mobile": "551234567", "appname": APP, "type": 1}),
    )
    .await
    .expect_naming(1103, "type");
    v.send(v.req(Method::POST, SEND, "{\"mobile\":"))
        .await
        .expect_naming(1103, "body");
    v.send(v.req(Method::POST, SEND, "[\"551234567\"]"))
        .await
        .expect_naming(1103, "body");

    // checkOtp
    let ok = json!({"mobile": "551234567", "code": "123456", "sessionid": sid});
    for field in ["mobile", "code", "sessionid"] {
        let mut body = ok.clone();
        body.as_object_mut().unwrap().remove(field);
        v.post(CHECK, &body).await.expect_naming(1102, field);
    }
    for (field, bad) in [
        ("code", json!("12345")),
        ("code", json!("1234567")),
        ("code", json!(["123456"])),
        ("sessionid", json!("0".repeat(31))),
        ("sessionid", json!("0".repeat(33))),
        ("sessionid", json!(12)),
        ("mobile", json!({"n": 1})),
    ] {
        let mut body = ok.clone();
        body[field] = bad;
        v.post(CHECK, &body).await.expect_naming(1103, field);
    }

    // otpDetail
    v.get(&format!("{DETAIL}?sessionid={sid}"))
        .await
        .expect_naming(1102, "mobile");
    v.get(&format!("{DETAIL}?mobile=551234567"))
        .await
        .expect_naming(1102, "sessionid");
    v.get(&format!("{DETAIL}?mobile=551234567&sessionid=abc"))
        .await
        .expect_naming(1103, "sessionid");

    // The limits themselves pass: a 32-character product name.
    v.send_otp("551234567", &"A".repeat(32)).await.expect(200);
    app.drain().await;
}

// ---------------------------------------------------------------------------------------------
// sendOtp and checkOtp in production
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn send_check_and_check_again_in_production() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    app.advance(17);
    let sent_at = now_secs(&app.clock);
    let sid = v.send_ok("0551234567", APP).await;
    app.drain().await;
    let sent = app.provider.sent();
    assert_eq!(sent.len(), 1);
    let msg = &sent[0];
    assert_eq!(msg.to, "966551234567");
    assert_eq!(msg.channel, otpgate::domain::Channel::Sms);
    let code = &msg.text[..6];
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert_eq!(msg.text, stcpay_text(code, APP));

    let d = v.detail("0551234567", &sid).await;
    d.expect(200);
    assert_eq!(
        d.data(),
        &json!({"mobile": "0551234567", "sessionid": sid, "status": "success",
                "reportstatus": "success", "created_at": sent_at})
    );
    assert_eq!(
        top_level_keys(&d.data().to_string()).len(),
        5,
        "nothing else in data"
    );
    app.advance(3);
    // Checked with another form of the same number.
    v.check("+966551234567", code, &sid).await.expect(200);
    v.check("+966551234567", code, &sid).await.expect(1607);
    v.check("551234567", other_code(code), &sid)
        .await
        .expect(1607);
    // Still described after use, created_at unchanged.
    let d = v.detail("551234567", &sid).await;
    assert_eq!(d.expect(200).data()["created_at"], sent_at);
}

#[tokio::test]
async fn mobile_may_be_a_json_number_and_is_echoed_as_sent() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let a = v.send_otp(966551234567u64, APP).await;
    a.expect(200);
    // The response's `mobile` is a string (the contract's type) with the digits sent.
    assert_eq!(a.data()["mobile"], "966551234567");
    let sid = a.session_id();
    app.drain().await;
    let code = code_to(&app, "551234567");
    v.check(551234567u64, &code, &sid).await.expect(200);
    // `type` stcpay is accepted.
    v.post(
        SEND,
        &json!({"mobile": "+966561234567", "appname": APP, "type": "stcpay"}),
    )
    .await
    .expect(200);
    app.drain().await;
    assert_eq!(app.provider.sent().len(), 2);
}

#[tokio::test]
async fn otp_failure_codes() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;

    // 1612: not one of the four formats.
    for bad in [
        "412345678",
        "55123456",
        "5512345678",
        "00551234567",
        "+971551234567",
        "9660551234567",
        "+96655123456a",
        " 551234567",
        "+9665512345678",
    ] {
        v.send_otp(bad, APP).await.expect(1612);
    }
    v.send_otp(55123456u64, APP).await.expect(1612);
    // 1603: no product names at all; 1604: not one of them.
    let bare = merchant(&app, false, &[]).await;
    bare.send_otp("551234567", APP).await.expect(1603);
    v.send_otp("551234567", "OtherApp").await.expect(1604);
    v.send_otp("551234567", "testapp").await.expect(1604);
    // 1605: a type other than stcpay.
    v.post(
        SEND,
        &json!({"mobile": "551234567", "appname": APP, "type": "sms"}),
    )
    .await
    .expect(1605);
    app.drain().await;
    assert!(app.provider.sent().is_empty(), "nothing was sent");

    let sid = v.send_ok("551234567", APP).await;
    app.drain().await;
    let code = code_to(&app, "551234567");
    // 1612 on check and detail too.
    v.check("412345678", &code, &sid).await.expect(1612);
    v.detail("412345678", &sid).await.expect(1612);
    // 1610: an unknown sessionid, or another merchant's.
    let unknown = "f".repeat(32);
    v.check("551234567", &code, &unknown).await.expect(1610);
    v.detail("551234567", &unknown).await.expect(1610);
    let other = production(&app).await;
    other.check("551234567", &code, &sid).await.expect(1610);
    other.detail("551234567", &sid).await.expect(1610);
    // 1608: the sessionid of another number.
    v.check("561234567", &code, &sid).await.expect(1608);
    v.detail("0561234567", &sid).await.expect(1608);
    // 1609: a wrong code.
    v.check("551234567", other_code(&code), &sid)
        .await
        .expect(1609);
    // None of these spent the session.
    v.check("551234567", &code, &sid).await.expect(200);
    // 1607: used.
    v.check("551234567", &code, &sid).await.expect(1607);
}

#[tokio::test]
async fn a_code_expires_after_five_minutes() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let early = v.send_ok("551234567", APP).await;
    let late = v.send_ok("561234567", APP).await;
    app.drain().await;
    let (early_code, late_code) = (code_to(&app, "551234567"), code_to(&app, "561234567"));
    app.advance(299);
    v.check("551234567", &early_code, &early).await.expect(200);
    app.advance(1);
    v.check("561234567", &late_code, &late).await.expect(1607);
    v.check("561234567", other_code(&late_code), &late)
        .await
        .expect(1607);
    let d = v.detail("561234567", &late).await;
    assert_eq!(d.expect(200).data()["status"], "success");
}

#[tokio::test]
async fn five_wrong_codes_lock_the_otp() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let sid = v.send_ok("551234567", APP).await;
    app.drain().await;
    let code = code_to(&app, "551234567");
    let wrong = other_code(&code);
    for _ in 0..5 {
        v.check("551234567", wrong, &sid).await.expect(1609);
    }
    v.check("551234567", &code, &sid).await.expect(1606);
    v.check("551234567", wrong, &sid).await.expect(1606);
    // The lock outlives the code's validity.
    app.advance(301);
    v.check("551234567", &code, &sid).await.expect(1606);
}

#[tokio::test]
async fn the_four_formats_share_one_number_and_its_minute() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let sid = v.send_ok("551234567", APP).await;
    for m in formats("551234567").into_iter().skip(1) {
        v.send_otp(m, APP).await.expect(1212);
    }
    v.send_otp(966551234567u64, APP).await.expect(1212);
    // Another number is not limited.
    v.send_ok("+966561234567", APP).await;
    app.advance(59);
    v.send_otp("0551234567", APP).await.expect(1212);
    app.drain().await;
    assert_eq!(
        app.provider.sent().len(),
        2,
        "the refused sends sent nothing"
    );
    let code = code_to(&app, "551234567");
    app.advance(1);
    // A minute after the first send (the refusals did not count).
    let second = v.send_ok("+966551234567", APP).await;
    assert_ne!(second, sid);
    app.drain().await;
    assert_eq!(app.provider.sent().len(), 3);
    // The first OTP stayed valid through the refusals.
    v.check("0551234567", &code, &sid).await.expect(200);
    let code2 = code_to(&app, "551234567");
    v.check("551234567", &code2, &second).await.expect(200);
}

#[tokio::test]
async fn a_check_before_the_hand_over_is_1611() {
    // One delivery slot, held by the first send: the second waits in the queue.
    let app = TestApp::spawn_with(|c| c.delivery.workers = 1).await;
    let v = production(&app).await;
    app.provider.push_script(Script::Hold);
    let held = v.send_ok("561234567", APP).await;
    let queued = v.send_ok("551234567", APP).await;
    v.check("551234567", "123456", &queued).await.expect(1611);
    v.check("551234567", "123456", &queued).await.expect(1611);
    // A hand-over in progress counts as handed over (the code may already be out): checked.
    let during = v.check("561234567", "123456", &held).await;
    app.provider.release();
    app.drain().await;
    let held_code = code_to(&app, "561234567");
    during.expect(if held_code == "123456" { 200 } else { 1609 });
    let code = code_to(&app, "551234567");
    // The 1611 answers spent nothing.
    v.check("551234567", &code, &queued).await.expect(200);
}

#[tokio::test]
async fn no_sms_route_for_the_number_is_1601() {
    let route: RouteConfig = serde_json::from_value(
        json!({"name": "nl-only", "provider": "console", "countries": ["NL"]}),
    )
    .unwrap();
    let app = TestApp::spawn_routes(
        move |cfg| cfg.routes = vec![route],
        |clock| vec![Arc::new(MemoryProvider::named("nl-only", clock))],
    )
    .await;
    let v = production(&app).await;
    v.send_otp("551234567", APP).await.expect(1601);
    app.drain().await;
    assert!(app.provider.sent().is_empty());
}

// ---------------------------------------------------------------------------------------------
// otpDetail states
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn otp_detail_reports_the_attempts_states() {
    let app = TestApp::spawn_with(|c| c.delivery.workers = 1).await;
    let v = production(&app).await;
    let state = |a: &Answer| {
        a.expect(200);
        (
            a.data()["status"].as_str().unwrap().to_string(),
            a.data()["reportstatus"].as_str().unwrap().to_string(),
            a.data()["created_at"].as_i64().unwrap(),
        )
    };
    let pair = |s: &str, r: &str, t: i64| (s.to_string(), r.to_string(), t);

    // Delivered.
    app.advance(11);
    let t1 = now_secs(&app.clock);
    let delivered = v.send_ok("551234567", APP).await;
    app.drain().await;
    // Delivery failed at the carrier.
    app.advance(13);
    let t2 = now_secs(&app.clock);
    app.provider
        .push_script(Script::FailReceipt("absent subscriber".into()));
    let failed = v.send_ok("561234567", APP).await;
    app.drain().await;
    // Accepted, no receipt yet.
    app.advance(7);
    let t3 = now_secs(&app.clock);
    app.provider.push_script(Script::Accept);
    let accepted = v.send_ok("571234567", APP).await;
    app.drain().await;
    // Refused by the route for good.
    let t4 = now_secs(&app.clock);
    app.provider
        .push_script(Script::Fail(ProviderError::Permanent("rejected".into())));
    let refused = v.send_ok("581234567", APP).await;
    app.drain().await;

    assert_eq!(
        state(&v.detail("551234567", &delivered).await),
        pair("success", "success", t1)
    );
    assert_eq!(
        state(&v.detail("561234567", &failed).await),
        pair("success", "fail", t2)
    );
    assert_eq!(
        state(&v.detail("571234567", &accepted).await),
        pair("success", "pending", t3)
    );
    let (status, _, created) = state(&v.detail("581234567", &refused).await);
    assert_eq!(
        (status.as_str(), created),
        ("fail", t4),
        "the route refused it"
    );

    // Held inside the route's submit: sending; the next send waits for the one slot: pending.
    app.advance(5);
    let t5 = now_secs(&app.clock);
    app.provider.push_script(Script::Hold);
    let held = v.send_ok("591234567", APP).await;
    let queued = v.send_ok("501234567", APP).await;
    assert_eq!(
        state(&v.detail("591234567", &held).await),
        pair("sending", "pending", t5)
    );
    assert_eq!(
        state(&v.detail("501234567", &queued).await),
        pair("pending", "unknown", t5)
    );
    v.check("501234567", "123456", &queued).await.expect(1611);
    app.provider.release();
    app.drain().await;
    assert_eq!(
        state(&v.detail("591234567", &held).await),
        pair("success", "success", t5)
    );
    assert_eq!(
        state(&v.detail("501234567", &queued).await),
        pair("success", "success", t5)
    );

    // The accepted message never got a receipt: after the receipt timeout, a failed report.
    app.advance_and_drain(600).await;
    assert_eq!(
        state(&v.detail("571234567", &accepted).await),
        pair("success", "fail", t3)
    );
}

// ---------------------------------------------------------------------------------------------
// Sandbox
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sandbox_test_numbers_send_nothing_and_always_verify() {
    let app = TestApp::spawn().await;
    let v = merchant(&app, true, &[APP]).await;
    // Nothing was sent yet: no task to describe.
    for (eff, sid) in TEST_NUMBERS {
        v.detail(eff, sid).await.expect(1610);
    }
    let mut last_send = 0;
    for round in 0..4 {
        // A minute apart, so the per-number limit is not what this test is about.
        app.advance(60);
        last_send = now_secs(&app.clock);
        for (eff, sid) in TEST_NUMBERS {
            let mobile = formats(eff)[round].clone();
            let a = v.send_otp(mobile.as_str(), APP).await;
            a.expect(200);
            assert_eq!(
                a.data(),
                &json!({"mobile": mobile, "appname": APP, "sessionid": sid})
            );
        }
    }
    app.drain().await;
    assert!(app.provider.sent().is_empty(), "test numbers send nothing");
    assert!(app.jobs().await.is_empty());

    for (eff, sid) in TEST_NUMBERS {
        for mobile in formats(eff) {
            // Any number of times, in any form.
            v.check(mobile.as_str(), "123456", sid).await.expect(200);
            v.check(mobile.as_str(), "123456", sid).await.expect(200);
            let d = v.detail(&mobile, sid).await;
            d.expect(200);
            assert_eq!(
                d.data(),
                &json!({"mobile": mobile, "sessionid": sid, "status": "success",
                        "reportstatus": "success", "created_at": last_send})
            );
        }
        v.check(eff, "654321", sid).await.expect(1609);
    }
    // Wrong codes never lock a test number.
    let (eff, sid) = TEST_NUMBERS[1];
    for _ in 0..6 {
        v.check(eff, "000000", sid).await.expect(1609);
    }
    v.check(eff, "123456", sid).await.expect(200);
    // A test number's sessionid with another number.
    v.check(TEST_NUMBERS[2].0, "123456", sid).await.expect(1608);
    v.check("551234567", "123456", sid).await.expect(1608);
    v.detail("+966500000003", sid).await.expect(1608);
    // created_at follows the last send.
    app.advance(90);
    let resent = now_secs(&app.clock);
    assert_eq!(v.send_ok(966500000001u64, APP).await, sid);
    assert_eq!(
        v.detail(eff, sid).await.expect(200).data()["created_at"],
        resent
    );
    // A JSON number is echoed as its digits.
    let a = v.send_otp(512345678u64, APP).await;
    assert_eq!(a.expect(200).data()["mobile"], "512345678");
    // Sandbox still validates the request.
    v.send_otp("+966500000001", "Unknown").await.expect(1604);
    // Sandbox detail and checks belong to this merchant only.
    let other = merchant(&app, true, &[APP]).await;
    other.detail(eff, sid).await.expect(1610);
    app.drain().await;
    assert!(app.provider.sent().is_empty());
}

#[tokio::test]
async fn sandbox_test_numbers_are_not_held_to_the_minute_but_keep_the_allow_list() {
    let app = TestApp::spawn().await;
    let v = merchant(&app, true, &[APP]).await;
    let (eff, sid) = TEST_NUMBERS[0];
    // Nothing is sent, so nothing is limited: every form, back to back.
    for mobile in formats(eff).iter().chain(formats(eff).iter()) {
        assert_eq!(v.send_ok(mobile.as_str(), APP).await, sid);
    }
    // A real number of the same sandbox merchant is limited as ever.
    v.send_ok("551234567", APP).await;
    v.send_otp("0551234567", APP).await.expect(1212);
    // The operator's allow-list holds in sandbox too (an explicit setting wins over the
    // vendor's open sandbox).
    app.service
        .set_tenant_allow_ips(tenant_kind::SGATE, &v.api_key, &["10.0.0.0/8".into()])
        .await
        .unwrap();
    v.send_otp(eff, APP).await.expect(1205);
}

#[tokio::test]
async fn sandbox_numbers_outside_the_list_are_sent_for_real() {
    let app = TestApp::spawn().await;
    let v = merchant(&app, true, &[APP]).await;
    let sid = v.send_ok("+966551234567", APP).await;
    assert!(TEST_NUMBERS.iter().all(|(_, s)| *s != sid));
    app.drain().await;
    assert_eq!(app.provider.sent().len(), 1);
    let code = code_to(&app, "551234567");
    assert_eq!(app.provider.sent()[0].text, stcpay_text(&code, APP));
    v.check("551234567", &code, &sid).await.expect(200);
    v.check("551234567", &code, &sid).await.expect(1607);
}

#[tokio::test]
async fn a_production_merchant_sends_real_sms_to_test_numbers() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let (eff, fixed) = TEST_NUMBERS[1];
    let sid = v.send_ok(format!("+966{eff}"), APP).await;
    assert_ne!(sid, fixed);
    app.drain().await;
    let sent = app.provider.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, format!("966{eff}"));
    let code = code_to(&app, eff);
    // The fixed session means nothing here.
    v.check(eff, "123456", fixed).await.expect(1610);
    v.detail(eff, fixed).await.expect(1610);
    v.check(eff, &code, &sid).await.expect(200);
    v.check(eff, &code, &sid).await.expect(1607);
    // And the one-minute rule applies.
    v.send_otp(eff, APP).await.expect(1212);
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn thirty_concurrent_sends_to_one_number_let_one_through() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let forms = formats("551234567");
    let answers = join_all((0..30).map(|i| {
        let mobile: Value = if i % 5 == 4 {
            json!(551234567u64)
        } else {
            json!(forms[i % 5])
        };
        v.send_otp(mobile, APP)
    }))
    .await;
    let codes: Vec<i64> = answers.iter().map(Answer::code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == 1212).count(),
        29,
        "{codes:?}"
    );
    app.drain().await;
    assert_eq!(app.provider.sent().len(), 1, "exactly one message");
}

#[tokio::test]
async fn twenty_concurrent_correct_checks_succeed_once() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let sid = v.send_ok("551234567", APP).await;
    app.drain().await;
    let code = code_to(&app, "551234567");
    let answers = join_all((0..20).map(|_| v.check("551234567", &code, &sid))).await;
    let codes: Vec<i64> = answers.iter().map(Answer::code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == 1607).count(),
        19,
        "{codes:?}"
    );
}

#[tokio::test]
async fn concurrent_replays_of_one_nonce_pass_once() {
    let app = TestApp::spawn().await;
    let v = production(&app).await;
    let r = v.probe();
    let answers = join_all((0..10).map(|_| v.send(r.clone()))).await;
    let codes: Vec<i64> = answers.iter().map(Answer::code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 1610).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 1209).count(), 9, "{codes:?}");
}

// ---------------------------------------------------------------------------------------------
// Two nodes on one PostgreSQL database
// ---------------------------------------------------------------------------------------------

/// The same merchant's client, talking to another node.
fn on_node(v: &Vendor, node: &TestApp) -> Vendor {
    Vendor {
        base: node.base.clone(),
        http: reqwest::Client::new(),
        clock: node.clock.clone(),
        api_key: v.api_key.clone(),
        system: v.system.clone(),
    }
}

/// With requests spread over two servers on one PostgreSQL schema: one send per minute per
/// number, a nonce used once, a code consumed once, and one system key signing on both nodes.
/// Skips locally without PostgreSQL; fails under `CI=true`.
#[tokio::test]
async fn the_sgate_rules_hold_across_two_nodes() {
    let Some((url, _guard)) = crate::pg_schema::fresh_schema("sgate2").await else {
        return;
    };
    let a = TestApp::spawn_with(|c| c.database_url = url.clone()).await;
    let b = TestApp::spawn_with(|c| c.database_url = url.clone()).await;
    let va = production(&a).await;
    // Node b never generated a key: it signs with the one node a stored (checked by `expect`).
    let vb = on_node(&va, &b);

    let answers = join_all((0..30).map(|i| {
        let v = if i % 2 == 0 { &va } else { &vb };
        let mobile = formats("551234567")[i % 4].clone();
        async move { v.send_otp(mobile.as_str(), APP).await }
    }))
    .await;
    let ok: Vec<_> = answers.iter().filter(|a| a.code() == 200).collect();
    assert_eq!(ok.len(), 1, "exactly one send in the minute");
    assert!(answers.iter().all(|a| a.code() == 200 || a.code() == 1212));
    let sid = ok[0].data()["sessionid"]
        .as_str()
        .expect("sessionid")
        .to_string();
    a.drain().await;
    b.drain().await;
    let sent: Vec<_> = a
        .provider
        .sent()
        .into_iter()
        .chain(b.provider.sent())
        .collect();
    assert_eq!(sent.len(), 1, "one message for the one send");
    let code = sent[0].text[..6].to_string();

    // Either node describes the session; the code is consumed once, wherever it is checked.
    va.detail("551234567", &sid).await.expect(200);
    vb.detail("0551234567", &sid).await.expect(200);
    let checks = join_all((0..10).map(|i| {
        let v = if i % 2 == 0 { &va } else { &vb };
        let (code, sid) = (code.clone(), sid.clone());
        async move { v.check("551234567", &code, &sid).await.code() }
    }))
    .await;
    assert_eq!(
        checks.iter().filter(|c| **c == 200).count(),
        1,
        "{checks:?}"
    );
    assert!(checks.iter().all(|c| *c == 200 || *c == 1607), "{checks:?}");

    // A nonce spent on one node is spent on the other.
    let r = va.probe();
    va.send(r.clone()).await.expect(1610);
    vb.send(r).await.expect(1209);
}
