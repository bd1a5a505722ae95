//! Buka authentication against the running server: headers, signature, timestamp window,
//! disabled tenants, IP allow-lists and tenant isolation.

use otpgate::crypto::buka_sign;
use otpgate::service::ServiceError;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// A cheap authenticated read used to probe the auth layer.
const LIST: &str = "/v3/otp/template/list";

type Headers = Vec<(&'static str, String)>;

/// A full, correct set of auth headers for the test tenant at timestamp `ts`.
fn headers_at(app: &TestApp, ts: &str) -> Headers {
    vec![
        ("Api-Key", app.key.clone()),
        ("Timestamp", ts.to_string()),
        ("Sign", buka_sign(&app.key, &app.secret, ts)),
    ]
}

/// Correct headers at the server clock's current time.
fn good_headers(app: &TestApp) -> Headers {
    headers_at(app, &app.clock_now_secs().to_string())
}

fn without(mut h: Headers, name: &str) -> Headers {
    h.retain(|(k, _)| *k != name);
    h
}

fn replaced(h: Headers, name: &'static str, value: &str) -> Headers {
    let mut h = without(h, name);
    h.push((name, value.to_string()));
    h
}

/// GETs `path` with exactly the given headers and returns the envelope.
async fn get_with(app: &TestApp, path: &str, headers: &Headers) -> Value {
    let mut rb = app.client.get(format!("{}{path}", app.base));
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    app.envelope(rb).await
}

/// A correctly signed request whose timestamp is `delta` seconds off the server clock.
async fn list_at_offset(app: &TestApp, delta: i64) -> Value {
    let ts = (app.clock_now_secs() + delta).to_string();
    get_with(app, LIST, &headers_at(app, &ts)).await
}

#[track_caller]
fn assert_ok(v: &Value) {
    assert_eq!(v["status"], "0", "{v}");
}

/// A second tenant on the same server, calling with its own key.
pub(crate) struct OtherTenant<'a> {
    app: &'a TestApp,
    pub key: String,
    pub secret: String,
}

impl<'a> OtherTenant<'a> {
    pub(crate) async fn create(app: &'a TestApp) -> Self {
        let created = app
            .service
            .create_tenant("other")
            .await
            .expect("second tenant");
        Self {
            app,
            key: created.tenant.api_key,
            secret: created.api_secret,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.app.signed_as(&self.key, &self.secret, method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.app.envelope(rb).await
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        self.call(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> Value {
        self.call(Method::PUT, path, Some(body)).await
    }
}

#[test]
fn vendor_worked_example_signature() {
    assert_eq!(
        buka_sign("bDqJFiq9", "7bz1lzh9", "1630468800"),
        "05d7a50893e22a5c4bb3216ae3396c7c"
    );
}

#[tokio::test]
async fn signed_request_works_on_both_bases() {
    let app = TestApp::spawn().await;
    for base in ["/v3/otp", "/otp"] {
        let v = app.get(&format!("{base}/template/list")).await;
        assert_ok(&v);
        assert_eq!(v["reason"], "success");
        assert!(v["data"].is_array(), "{v}");
    }
}

#[tokio::test]
async fn sign_is_compared_case_insensitively() {
    let app = TestApp::spawn().await;
    let h = good_headers(&app);
    let sign = h
        .iter()
        .find(|(k, _)| *k == "Sign")
        .unwrap()
        .1
        .to_ascii_uppercase();
    assert!(
        sign.bytes().any(|b| b.is_ascii_uppercase()),
        "the digest has letters"
    );
    assert_ok(&get_with(&app, LIST, &replaced(h, "Sign", &sign)).await);
}

#[tokio::test]
async fn missing_api_key_or_sign_is_an_auth_error() {
    let app = TestApp::spawn().await;
    for header in ["Api-Key", "Sign"] {
        let v = get_with(&app, LIST, &without(good_headers(&app), header)).await;
        assert_error(&v, "-1", "authentication");
    }
}

#[tokio::test]
async fn unknown_key_is_an_auth_error() {
    let app = TestApp::spawn().await;
    let ts = app.clock_now_secs().to_string();
    let key = "NoSuchKey1234567";
    let h = vec![
        ("Api-Key", key.to_string()),
        ("Timestamp", ts.clone()),
        ("Sign", buka_sign(key, &app.secret, &ts)),
    ];
    assert_error(&get_with(&app, LIST, &h).await, "-1", "authentication");
}

#[tokio::test]
async fn wrong_signature_is_an_auth_error() {
    let app = TestApp::spawn().await;
    let ts = app.clock_now_secs().to_string();
    let cases = [
        buka_sign(&app.key, "not-the-secret", &ts),
        // Right key and secret, but signed over another timestamp.
        buka_sign(
            &app.key,
            &app.secret,
            &(app.clock_now_secs() - 1).to_string(),
        ),
        "0".repeat(32),
        "garbage".into(),
    ];
    for sign in cases {
        let v = get_with(&app, LIST, &replaced(good_headers(&app), "Sign", &sign)).await;
        assert_error(&v, "-1", "authentication");
    }
}

#[tokio::test]
async fn missing_or_non_numeric_timestamp_is_16() {
    let app = TestApp::spawn().await;
    let v = get_with(&app, LIST, &without(good_headers(&app), "Timestamp")).await;
    assert_error(&v, "-16", "timestamp");
    // Signed over the bad value, so only the timestamp itself is at fault.
    for ts in ["abc", "1630468800.5", "1e9"] {
        let v = get_with(&app, LIST, &headers_at(&app, ts)).await;
        assert_error(&v, "-16", "timestamp");
    }
}

#[tokio::test]
async fn timestamp_window_is_300_seconds_either_side() {
    let app = TestApp::spawn().await;
    for delta in [-301, 301, -3600, 3600] {
        let v = list_at_offset(&app, delta).await;
        assert_error(&v, "-16", "timestamp");
    }
    // Milliseconds are not seconds: far in the future.
    let ms = (app.clock_now_secs() * 1000).to_string();
    assert_error(
        &get_with(&app, LIST, &headers_at(&app, &ms)).await,
        "-16",
        "timestamp",
    );
    // Far from now in either direction, without overflowing the window check.
    for far in [i64::MIN, -9_000_000_000_000_000_000, i64::MAX] {
        let v = get_with(&app, LIST, &headers_at(&app, &far.to_string())).await;
        assert_error(&v, "-16", "timestamp");
    }
    for delta in [-300, -299, 0, 299, 300] {
        assert_ok(&list_at_offset(&app, delta).await);
    }
}

#[tokio::test]
async fn timestamp_window_follows_the_server_clock() {
    let app = TestApp::spawn().await;
    let ts = app.clock_now_secs().to_string();
    assert_ok(&get_with(&app, LIST, &headers_at(&app, &ts)).await);
    app.advance(301);
    let v = get_with(&app, LIST, &headers_at(&app, &ts)).await;
    assert_error(&v, "-16", "timestamp");
}

#[tokio::test]
async fn disabled_tenant_is_refused_until_re_enabled() {
    let app = TestApp::spawn().await;
    app.service
        .set_tenant_enabled(otpgate::store::tenant_kind::BUKA, &app.key, false)
        .await
        .expect("disable");
    assert_error(&app.get(LIST).await, "-1", "authentication");
    app.service
        .set_tenant_enabled(otpgate::store::tenant_kind::BUKA, &app.key, true)
        .await
        .expect("enable");
    assert_ok(&app.get(LIST).await);
}

/// Send, sendRule, resend and verify authenticate against the tenant row as last read and
/// check it in their own transaction: a change made behind the server's back (here straight
/// in the store, as the CLI does from its own process) applies to the very next call, in both
/// directions, and a refused call writes nothing.
#[tokio::test]
async fn tenant_changes_apply_at_once_to_the_calls_that_use_the_cached_row() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, "14155550101").await;
    assert_eq!(app.verify(&vid, "000000").await["data"]["matched"], 2);
    let sent = app.provider.sent().len();
    let store = app.service.store.clone();
    let set_enabled = |on: bool| {
        let store = store.clone();
        let key = app.key.clone();
        async move {
            assert!(
                store
                    .set_tenant_enabled(otpgate::store::tenant_kind::BUKA, &key, on)
                    .await
                    .expect("store")
            );
        }
    };
    let set_allow = |list: &[&str]| {
        let store = store.clone();
        let key = app.key.clone();
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        async move {
            assert!(
                store
                    .set_tenant_allow_ips(otpgate::store::tenant_kind::BUKA, &key, &list)
                    .await
                    .expect("store")
            );
        }
    };

    set_enabled(false).await;
    assert_error(
        &app.send(&app_id, tpl, "14155550102").await,
        "-1",
        "authentication",
    );
    assert_error(&app.verify(&vid, "000000").await, "-1", "authentication");
    let rule = app
        .post(
            "/v3/otp/verification/sendRule",
            json!({"appId": app_id, "to": "14155550103", "code": "4321"}),
        )
        .await;
    assert_error(&rule, "-1", "authentication");
    let resend = app
        .post(
            "/v3/otp/verification/resend",
            json!({"verificationId": vid}),
        )
        .await;
    assert_error(&resend, "-1", "authentication");
    assert_eq!(
        app.provider.sent().len(),
        sent,
        "a refused send delivers nothing"
    );

    set_enabled(true).await;
    let second = app.send_ok(&app_id, tpl, "14155550104").await;

    set_allow(&["10.0.0.0/8"]).await;
    assert_error(&app.verify(&second, "000000").await, "-2", "IP");
    assert_error(&app.send(&app_id, tpl, "14155550105").await, "-2", "IP");
    set_allow(&[]).await;
    // The refused verifies counted no wrong code: four more wrong codes answer `matched 2`
    // (the last of them is the fifth in all and locks the session), then -23.
    for _ in 0..4 {
        assert_eq!(app.verify(&vid, "000000").await["data"]["matched"], 2);
    }
    assert_eq!(app.verify(&vid, "000000").await["status"], "-23");
    assert_eq!(app.provider.sent().len(), sent + 1);
}

/// Sets the test tenant's allow-list, asserting the service accepts it.
async fn allow(app: &TestApp, entries: &[&str]) {
    let list: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
    app.service
        .set_tenant_allow_ips(otpgate::store::tenant_kind::BUKA, &app.key, &list)
        .await
        .expect("allow-list accepted");
}

#[tokio::test]
async fn ip_allow_list_outside_is_refused_with_2() {
    let app = TestApp::spawn().await;
    allow(&app, &["10.0.0.0/8"]).await;
    let v = app.get(LIST).await;
    assert_error(&v, "-2", "IP");
    let v = app.get("/otp/template/list").await;
    assert_eq!(v["status"], "-2", "{v}");
}

#[tokio::test]
async fn ip_allow_list_cidr_and_single_address_admit_the_caller() {
    let app = TestApp::spawn().await;
    for entries in [
        &["127.0.0.0/8"][..],
        &["127.0.0.1"],
        &["10.0.0.0/8", "127.0.0.1"],
    ] {
        allow(&app, entries).await;
        assert_ok(&app.get(LIST).await);
    }
}

#[tokio::test]
async fn empty_allow_list_clears_the_restriction() {
    let app = TestApp::spawn().await;
    allow(&app, &["10.0.0.0/8"]).await;
    assert_eq!(app.get(LIST).await["status"], "-2");
    allow(&app, &[]).await;
    assert_ok(&app.get(LIST).await);
}

#[tokio::test]
async fn bad_allow_list_entry_is_refused_by_the_service() {
    let app = TestApp::spawn().await;
    for bad in ["nope", "10.0.0.0/33", "300.1.1.1"] {
        let err = app
            .service
            .set_tenant_allow_ips(
                otpgate::store::tenant_kind::BUKA,
                &app.key,
                &[bad.to_string()],
            )
            .await
            .expect_err("a bad entry is refused");
        assert!(
            matches!(err, ServiceError::Invalid { .. }),
            "{bad}: {err:?}"
        );
    }
    let err = app
        .service
        .set_tenant_allow_ips(
            otpgate::store::tenant_kind::BUKA,
            "NoSuchKey1234567",
            &["127.0.0.1".to_string()],
        )
        .await
        .expect_err("unknown tenant");
    assert!(matches!(err, ServiceError::NotFound(_)), "{err:?}");
    // Nothing was stored: the caller is still admitted.
    assert_ok(&app.get(LIST).await);
}

#[tokio::test]
async fn another_tenants_objects_do_not_exist() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow = app
        .post(
            "/v3/otp/flow/add",
            json!({"name": "tenant one flow", "flow": [{"waitingTime": 30, "status": 1, "channel": "sms"}]}),
        )
        .await;
    assert_ok(&flow);
    let flow_id = flow["data"]["flowId"].as_i64().expect("flowId");
    let other = OtherTenant::create(&app).await;

    let details = [
        format!("/v3/otp/app/details/{app_id}"),
        format!("/v3/otp/template/details/{tpl}"),
        format!("/v3/otp/flow/details/{flow_id}"),
        format!("/otp/app/details/{app_id}"),
    ];
    for path in &details {
        assert_error(&other.get(path).await, "-24", "does not exist");
    }

    let app_path = format!("/v3/otp/app/update/{app_id}");
    let tpl_path = format!("/v3/otp/template/update/{tpl}");
    let flow_path = format!("/v3/otp/flow/update/{flow_id}");
    let tpl_body = json!({"name": "stolen tpl", "text": "##code## mine now"});
    let flow_body = json!({"name": "stolen flow", "flow": [{"waitingTime": 30, "status": 2, "channel": "call"}]});
    let updates = [
        other.put(&app_path, json!({"name": "stolen app"})).await,
        other.post(&app_path, json!({"name": "stolen app"})).await,
        other
            .put(
                "/v3/otp/app/update",
                json!({"appId": app_id, "name": "stolen app"}),
            )
            .await,
        other.put(&tpl_path, tpl_body.clone()).await,
        other.post(&tpl_path, tpl_body).await,
        other.put(&flow_path, flow_body.clone()).await,
        other.post(&flow_path, flow_body).await,
    ];
    for v in &updates {
        assert_error(v, "-24", "does not exist");
    }

    let v = other
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": "14155552671"}),
        )
        .await;
    assert_error(&v, "-24", "does not exist");
    let v = other
        .post(
            "/v3/otp/template/add",
            json!({"appId": app_id, "name": "foreign tpl", "text": "##code##"}),
        )
        .await;
    assert_error(&v, "-24", "does not exist");
    assert!(app.provider.sent().is_empty(), "nothing was sent");

    // The owner's objects are untouched and still visible to the owner only.
    let mine = app.get(&format!("/v3/otp/app/details/{app_id}")).await;
    assert_ok(&mine);
    assert!(
        mine["data"]["name"].as_str().unwrap().starts_with("app_"),
        "{mine}"
    );
    assert_eq!(
        app.get(&format!("/v3/otp/flow/details/{flow_id}")).await["data"]["name"],
        "tenant one flow"
    );
    assert_eq!(other.get(LIST).await["data"], json!([]));
    assert_eq!(other.get("/v3/otp/flow/list").await["data"], json!([]));
}
