//! Kannel and HTTP presets (Twilio, Vonage) against wiremock stubs replaying their wire shapes.
//!
//! The `direct_*` tests build each provider by hand and call `submit` and `hook` themselves;
//! signatures are computed here independently of the providers' own code.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use otpgate::config::Secret;
use otpgate::domain::Channel;
use otpgate::providers::{
    HookError, HookRequest, OutboundMessage, ProviderContext, ProviderError, ReceiptKey,
    ReceiptSink, VoiceParams, kannel, termination, twilio, vonage,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::TestApp;
use otpgate::store::{gateway, job_kind, report};

const HOOK: &str = "http://otp.example.test/hooks/r1";

fn ctx(hook_url: &str) -> ProviderContext {
    let (receipts, _rx) = ReceiptSink::new();
    ProviderContext {
        route: "r1".into(),
        clock: Arc::new(otpgate::clock::SystemClock),
        receipts,
        hook_url: hook_url.into(),
        http: reqwest::Client::new(),
    }
}

fn sms(attempt_id: i64, text: &str) -> OutboundMessage {
    OutboundMessage {
        attempt_id,
        verification_id: "v1".into(),
        channel: Channel::Sms,
        to: "31600000000".into(),
        sender: Some("OTP".into()),
        text: text.into(),
        voice: None,
    }
}

/// A callback as the hook endpoint hands it over: `url` is the full URL as called.
fn hook_req(method: &str, url: &str, headers: HeaderMap, body: &[u8]) -> HookRequest {
    let query = url
        .split_once('?')
        .map(|(_, q)| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap())
        .unwrap_or_default();
    HookRequest {
        method: method.into(),
        url: url.into(),
        subpath: String::new(),
        query,
        headers,
        body: body.to_vec().into(),
    }
}

/// The form parameters of a request wiremock received.
fn form_of(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn query_of(req: &wiremock::Request) -> Vec<(String, String)> {
    req.url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Kannel

fn kannel_cfg(url: &str, token: Option<&str>) -> kannel::KannelConfig {
    serde_json::from_value(json!({
        "url": url,
        "username": "otp",
        "password": "otppw",
        "smsc": "fake",
        "hook_token": token,
    }))
    .unwrap()
}

/// What Kannel does with a dlr-url: substitute its placeholders, URL-encoding each value.
fn kannel_fill(dlr_url: &str, dlr_type: u32, reply: &str) -> String {
    let enc = |s: &str| serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string();
    dlr_url
        .replace("%d", &dlr_type.to_string())
        .replace("%F", &enc("smsc-77"))
        .replace("%T", "1700000000")
        .replace("%A", &enc(reply))
}

async fn kannel_sent(server: &MockServer) -> Vec<(String, String)> {
    let reqs = server.received_requests().await.unwrap();
    let last = reqs.last().expect("kannel was called");
    assert_eq!(last.method.as_str(), "GET");
    assert_eq!(last.url.path(), "/cgi-bin/sendsms");
    query_of(last)
}

#[tokio::test]
async fn direct_kannel_submit_sends_sendsms_with_a_dlr_url_and_the_hook_maps_reports() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/cgi-bin/sendsms"))
        .respond_with(ResponseTemplate::new(202).set_body_string("0: Accepted for delivery"))
        .mount(&server)
        .await;
    let cfg = kannel_cfg(&format!("{}/cgi-bin/sendsms", server.uri()), Some("s3cret"));
    assert!(cfg.problems("r1").is_empty());
    let p = kannel::build(&cfg, ctx(HOOK)).unwrap();
    assert!(p.supports(Channel::Sms) && !p.supports(Channel::Call));

    let done = p.submit(&sms(42, "123456 is your code")).await.unwrap();
    assert_eq!(done.message_id, "kannel-42");
    assert!(done.receipt.is_none());
    let q = kannel_sent(&server).await;
    assert_eq!(get(&q, "username"), Some("otp"));
    assert_eq!(get(&q, "password"), Some("otppw"));
    assert_eq!(get(&q, "from"), Some("OTP"));
    assert_eq!(get(&q, "to"), Some("31600000000"));
    assert_eq!(get(&q, "text"), Some("123456 is your code"));
    assert_eq!(get(&q, "dlr-mask"), Some("31"));
    assert_eq!(get(&q, "smsc"), Some("fake"));
    assert_eq!(get(&q, "coding"), None, "GSM-7 text needs no coding");
    let dlr_url = get(&q, "dlr-url").unwrap().to_string();
    assert_eq!(
        dlr_url,
        format!("{HOOK}?ref=42&type=%d&fid=%F&ts=%T&reply=%A&token=s3cret")
    );

    // Kannel calls back: delivered.
    let url = kannel_fill(
        &dlr_url,
        1,
        "id:smsc-77 sub:001 dlvrd:001 stat:DELIVRD err:000",
    );
    let reply = p
        .hook(&hook_req("GET", &url, HeaderMap::new(), b""))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.receipts.len(), 1);
    let (key, r) = &reply.receipts[0];
    assert_eq!(key, &ReceiptKey::Attempt(42));
    assert!(r.delivered);
    assert_eq!(r.at_ms, 1_700_000_000_000);

    // Failed, with the receipt's stat and err.
    let url = kannel_fill(&dlr_url, 2, "id:smsc-77 stat:UNDELIV err:001 text:x");
    let reply = p
        .hook(&hook_req("GET", &url, HeaderMap::new(), b""))
        .await
        .unwrap();
    let (_, r) = &reply.receipts[0];
    assert!(!r.delivered);
    assert_eq!(
        r.reason.as_deref(),
        Some("delivery failed: UNDELIV err:001")
    );

    // SMSC reject.
    let url = kannel_fill(&dlr_url, 16, "NACK/0x0000000b/Invalid Destination");
    let reply = p
        .hook(&hook_req("GET", &url, HeaderMap::new(), b""))
        .await
        .unwrap();
    assert_eq!(reply.receipts[0].1.reason.as_deref(), Some("SMSC reject"));

    // Buffered and SMSC ack are not final: 200, no receipt.
    for t in [4, 8] {
        let url = kannel_fill(&dlr_url, t, "ACK/");
        let reply = p
            .hook(&hook_req("GET", &url, HeaderMap::new(), b""))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply.receipts.is_empty(), "type {t}");
    }

    // Without the token, or with another one: refused.
    let forged = kannel_fill(&dlr_url, 1, "").replace("token=s3cret", "token=guess");
    assert!(matches!(
        p.hook(&hook_req("GET", &forged, HeaderMap::new(), b""))
            .await,
        Err(HookError::Forbidden(_))
    ));
    let no_token = format!("{HOOK}?ref=42&type=1");
    assert!(matches!(
        p.hook(&hook_req("GET", &no_token, HeaderMap::new(), b""))
            .await,
        Err(HookError::Forbidden(_))
    ));
    // A bad ref or type is a bad request.
    for q in ["ref=x&type=1", "type=1", "ref=42&type=", "ref=42"] {
        let url = format!("{HOOK}?{q}&token=s3cret");
        assert!(
            matches!(
                p.hook(&hook_req("GET", &url, HeaderMap::new(), b"")).await,
                Err(HookError::BadRequest(_))
            ),
            "{q}"
        );
    }
}

#[tokio::test]
async fn direct_kannel_sends_ucs2_text_as_coding_2() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(202).set_body_string("3: Queued for later delivery"))
        .mount(&server)
        .await;
    let p = kannel::build(
        &kannel_cfg(&format!("{}/cgi-bin/sendsms", server.uri()), None),
        ctx(HOOK),
    )
    .unwrap();
    p.submit(&sms(7, "Ваш код 123456")).await.unwrap();
    let q = kannel_sent(&server).await;
    assert_eq!(get(&q, "coding"), Some("2"));
    assert_eq!(get(&q, "charset"), Some("UTF-8"));
    assert_eq!(get(&q, "text"), Some("Ваш код 123456"));
    let dlr_url = get(&q, "dlr-url").unwrap();
    assert!(!dlr_url.contains("token"), "{dlr_url}");
    // Without a token the hook takes any well-formed report.
    let reply = p
        .hook(&hook_req(
            "GET",
            &format!("{HOOK}?ref=7&type=1"),
            HeaderMap::new(),
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(reply.receipts[0].0, ReceiptKey::Attempt(7));
}

#[tokio::test]
async fn direct_kannel_refusals_are_permanent_and_outages_retryable() {
    let server = MockServer::start().await;
    let p = kannel::build(
        &kannel_cfg(&format!("{}/cgi-bin/sendsms", server.uri()), None),
        ctx(HOOK),
    )
    .unwrap();
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403).set_body_string("Authorization failed for sendsms"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let e = p.submit(&sms(1, "x")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Permanent(t) if t.contains("Authorization failed")),
        "{e:?}"
    );
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("Sendsms is disabled"))
        .mount(&server)
        .await;
    let e = p.submit(&sms(1, "x")).await.unwrap_err();
    assert!(matches!(e, ProviderError::Retryable(_)), "{e:?}");
    // Nobody listening: retryable, and the error does not show the password.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = kannel::build(
        &kannel_cfg(&format!("http://{closed}/cgi-bin/sendsms"), None),
        ctx(HOOK),
    )
    .unwrap();
    let e = p.submit(&sms(1, "x")).await.unwrap_err();
    assert!(matches!(&e, ProviderError::Retryable(_)), "{e:?}");
    assert!(!e.to_string().contains("otppw"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Twilio

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";

fn twilio_cfg(base: &str) -> twilio::TwilioConfig {
    serde_json::from_value(json!({
        "base_url": base,
        "account_sid": SID,
        "auth_token": TOKEN,
        "from": "+15005550006",
    }))
    .unwrap()
}

/// X-Twilio-Signature, computed here: base64(HMAC-SHA1(token, url + sorted key+value)).
fn twilio_sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn signed_form(url: &str, params: &[(&str, &str)], token: &str) -> HookRequest {
    let mut h = HeaderMap::new();
    h.insert(
        "X-Twilio-Signature",
        HeaderValue::from_str(&twilio_sign(token, url, params)).unwrap(),
    );
    h.insert(
        "Content-Type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    hook_req(
        "POST",
        url,
        h,
        serde_urlencoded::to_string(params).unwrap().as_bytes(),
    )
}

fn basic_auth_of(req: &wiremock::Request) -> String {
    let h = req.headers.get("authorization").unwrap().to_str().unwrap();
    let b = h.strip_prefix("Basic ").unwrap();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
}

#[tokio::test]
async fn direct_twilio_sms_submit_and_signed_status_callbacks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued",
        })))
        .mount(&server)
        .await;
    let p = twilio::build(&twilio_cfg(&server.uri()), false, ctx(HOOK)).unwrap();
    assert_eq!(p.kind(), "twilio");
    assert!(p.supports(Channel::Sms) && !p.supports(Channel::Call));
    let done = p.submit(&sms(42, "123456 is your code")).await.unwrap();
    assert_eq!(done.message_id, "SM0123456789abcdef0123456789abcdef");

    let reqs = server.received_requests().await.unwrap();
    let req = &reqs[0];
    assert_eq!(basic_auth_of(req), format!("{SID}:{TOKEN}"));
    let f = form_of(&req.body);
    assert_eq!(get(&f, "To"), Some("+31600000000"));
    assert_eq!(get(&f, "From"), Some("+15005550006"));
    assert_eq!(get(&f, "Body"), Some("123456 is your code"));
    let callback = get(&f, "StatusCallback").unwrap().to_string();
    assert_eq!(callback, format!("{HOOK}?ref=42"));

    // Twilio posts the status to the callback URL, signed.
    let sent = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", "sent"),
        ("AccountSid", SID),
    ];
    let reply = p.hook(&signed_form(&callback, &sent, TOKEN)).await.unwrap();
    assert!(reply.receipts.is_empty(), "sent is not final");
    let delivered = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", "delivered"),
        ("AccountSid", SID),
        ("To", "+31600000000"),
    ];
    let reply = p
        .hook(&signed_form(&callback, &delivered, TOKEN))
        .await
        .unwrap();
    assert_eq!(reply.receipts.len(), 1);
    assert_eq!(reply.receipts[0].0, ReceiptKey::Attempt(42));
    assert!(reply.receipts[0].1.delivered);
    let undelivered = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
    ];
    let reply = p
        .hook(&signed_form(&callback, &undelivered, TOKEN))
        .await
        .unwrap();
    let r = &reply.receipts[0].1;
    assert!(!r.delivered);
    assert!(r.reason.as_deref().unwrap().contains("30003"), "{r:?}");

    // Without a ref, the SID identifies the message.
    let reply = p.hook(&signed_form(HOOK, &delivered, TOKEN)).await.unwrap();
    assert_eq!(
        reply.receipts[0].0,
        ReceiptKey::Message("SM0123456789abcdef0123456789abcdef".into())
    );

    // Wrong token, missing header, tampered body or URL: refused.
    assert!(matches!(
        p.hook(&signed_form(&callback, &delivered, "other")).await,
        Err(HookError::Forbidden(_))
    ));
    let mut unsigned = signed_form(&callback, &delivered, TOKEN);
    unsigned.headers.remove("X-Twilio-Signature");
    assert!(matches!(
        p.hook(&unsigned).await,
        Err(HookError::Forbidden(_))
    ));
    let mut tampered = signed_form(&callback, &undelivered, TOKEN);
    tampered.body = serde_urlencoded::to_string(delivered)
        .unwrap()
        .into_bytes()
        .into();
    assert!(matches!(
        p.hook(&tampered).await,
        Err(HookError::Forbidden(_))
    ));
    let mut moved = signed_form(&callback, &delivered, TOKEN);
    moved.url = format!("{HOOK}?ref=43");
    assert!(matches!(p.hook(&moved).await, Err(HookError::Forbidden(_))));
}

#[tokio::test]
async fn direct_twilio_errors_carry_code_and_message() {
    let server = MockServer::start().await;
    let p = twilio::build(&twilio_cfg(&server.uri()), false, ctx(HOOK)).unwrap();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number +31600000000 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400,
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let e = p.submit(&sms(1, "x")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Permanent(t) if t.contains("21211") && t.contains("not a valid phone number")),
        "{e:?}"
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "code": 20429, "message": "Too Many Requests", "status": 429,
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    assert!(matches!(
        p.submit(&sms(1, "x")).await,
        Err(ProviderError::Retryable(_))
    ));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    assert!(matches!(
        p.submit(&sms(1, "x")).await,
        Err(ProviderError::Retryable(_))
    ));
}

#[tokio::test]
async fn direct_twilio_voice_places_a_call_and_builds_the_call_record() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Calls.json")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "CA0123456789abcdef0123456789abcdef", "status": "queued",
        })))
        .mount(&server)
        .await;
    let p = twilio::build(&twilio_cfg(&server.uri()), true, ctx(HOOK)).unwrap();
    assert_eq!(p.kind(), "twilio-voice");
    assert!(p.supports(Channel::Call) && !p.supports(Channel::Sms));
    let call = OutboundMessage {
        channel: Channel::Call,
        text: "Your code is 1, 2, 3 & <4>".into(),
        voice: Some(VoiceParams {
            language: "en-US".into(),
            speech_rate: 0,
            repeat_cnt: 2,
            max_duration: 60,
        }),
        ..sms(9, "")
    };
    let done = p.submit(&call).await.unwrap();
    assert_eq!(done.message_id, "CA0123456789abcdef0123456789abcdef");
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(basic_auth_of(&reqs[0]), format!("{SID}:{TOKEN}"));
    let f = form_of(&reqs[0].body);
    assert_eq!(get(&f, "To"), Some("+31600000000"));
    assert_eq!(get(&f, "From"), Some("+15005550006"));
    assert_eq!(get(&f, "TimeLimit"), Some("60"));
    let say = "<Say language=\"en-US\">Your code is 1, 2, 3 &amp; &lt;4&gt;</Say>";
    assert_eq!(
        get(&f, "Twiml").unwrap(),
        format!("<Response>{say}<Pause length=\"1\"/>{say}</Response>")
    );
    let events: Vec<&str> = f
        .iter()
        .filter(|(k, _)| k == "StatusCallbackEvent")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
    let callback = get(&f, "StatusCallback").unwrap().to_string();
    assert_eq!(callback, format!("{HOOK}?ref=9"));

    let status = |s: &'static str, ts: &'static str, dur: Option<&'static str>| {
        let mut v = vec![
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("CallStatus", s),
            ("Timestamp", ts),
            ("AccountSid", SID),
        ];
        if let Some(d) = dur {
            v.push(("CallDuration", d));
        }
        signed_form(&callback, &v, TOKEN)
    };
    for (s, ts) in [
        ("initiated", "Tue, 14 Nov 2023 22:13:18 +0000"),
        ("ringing", "Tue, 14 Nov 2023 22:13:20 +0000"),
        ("in-progress", "Tue, 14 Nov 2023 22:13:25 +0000"),
    ] {
        let reply = p.hook(&status(s, ts, None)).await.unwrap();
        assert!(reply.receipts.is_empty(), "{s} is not final");
    }
    let reply = p
        .hook(&status(
            "completed",
            "Tue, 14 Nov 2023 22:13:55 +0000",
            Some("30"),
        ))
        .await
        .unwrap();
    let (key, r) = &reply.receipts[0];
    assert_eq!(key, &ReceiptKey::Attempt(9));
    assert!(r.delivered);
    let t0 = 1_700_000_000_000; // 2023-11-14 22:13:20 UTC
    assert_eq!(r.at_ms, t0 + 35_000);
    let c = r.call.as_ref().unwrap();
    assert_eq!(c.termination_code, termination::ANSWERED);
    assert_eq!(c.ringing_ms, Some(t0));
    assert_eq!(c.answer_ms, Some(t0 + 5_000));
    assert_eq!(c.duration_secs, 30);

    // Busy and unanswered calls are not delivered.
    for (s, code) in [
        ("busy", termination::BUSY),
        ("no-answer", termination::NO_ANSWER),
        ("failed", termination::FAILED),
        ("canceled", termination::FAILED),
    ] {
        let reply = p
            .hook(&status(s, "Tue, 14 Nov 2023 22:14:00 +0000", Some("0")))
            .await
            .unwrap();
        let r = &reply.receipts[0].1;
        assert!(!r.delivered, "{s}");
        assert_eq!(r.call.as_ref().unwrap().termination_code, code, "{s}");
    }
    // Call callbacks are signed too.
    let mut forged = status("completed", "Tue, 14 Nov 2023 22:13:55 +0000", Some("30"));
    forged.headers.insert(
        "X-Twilio-Signature",
        HeaderValue::from_static("0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
    );
    assert!(matches!(
        p.hook(&forged).await,
        Err(HookError::Forbidden(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Vonage

const SIG_SECRET: &str = "vonage-signature-secret";

fn vonage_cfg(base: &str, method: &str) -> vonage::VonageConfig {
    serde_json::from_value(json!({
        "base_url": base,
        "api_key": "abcd1234",
        "api_secret": "vonage-api-secret",
        "signature_secret": SIG_SECRET,
        "signature_method": method,
    }))
    .unwrap()
}

/// Vonage's receipt signature, computed here from its documented recipe.
fn vonage_sign(params: &[(&str, &str)], method: &str) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let s: String = sorted
        .iter()
        .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
        .collect();
    match method {
        "md5hash" => {
            let mut h = Md5::new();
            h.update(format!("{s}{SIG_SECRET}").as_bytes());
            hex::encode(h.finalize())
        }
        "sha256" => {
            let mut m =
                <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SIG_SECRET.as_bytes()).unwrap();
            m.update(s.as_bytes());
            hex::encode_upper(m.finalize().into_bytes())
        }
        _ => unreachable!(),
    }
}

/// A delivery receipt as Vonage sends it, signed, with `timestamp` = now − `age_secs`.
fn vonage_receipt(status: &str, age_secs: i64) -> Vec<(String, String)> {
    let ts = (chrono::Utc::now().timestamp() - age_secs).to_string();
    vec![
        ("msisdn".into(), "31600000000".into()),
        ("to".into(), "OTP".into()),
        ("network-code".into(), "20416".into()),
        ("messageId".into(), "0A0000000123ABCD1".into()),
        ("price".into(), "0.03330000".into()),
        ("status".into(), status.into()),
        ("scts".into(), "2311142213".into()),
        (
            "err-code".into(),
            if status == "delivered" { "0" } else { "6" }.into(),
        ),
        ("api-key".into(), "abcd1234".into()),
        ("client-ref".into(), "42".into()),
        ("message-timestamp".into(), "2023-11-14 22:13:20".into()),
        ("timestamp".into(), ts),
        (
            "nonce".into(),
            "ec11dd3e-1e7f-4db5-9467-82b02cd223b9".into(),
        ),
    ]
}

fn with_sig(mut p: Vec<(String, String)>, method: &str) -> Vec<(String, String)> {
    let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sig = vonage_sign(&refs, method);
    p.push(("sig".into(), sig));
    p
}

fn vonage_get(p: &[(String, String)]) -> HookRequest {
    let url = format!("{HOOK}?{}", serde_urlencoded::to_string(p).unwrap());
    hook_req("GET", &url, HeaderMap::new(), b"")
}

#[tokio::test]
async fn direct_vonage_submit_and_signed_receipts_in_every_shape() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "2",
            "messages": [
                {"to": "31600000000", "message-id": "0A0000000123ABCD1", "status": "0",
                 "remaining-balance": "3.14159265", "message-price": "0.03330000", "network": "20416",
                 "client-ref": "42"},
                {"to": "31600000000", "message-id": "0A0000000123ABCD2", "status": "0"}
            ]
        })))
        .mount(&server)
        .await;
    let p = vonage::build(&vonage_cfg(&server.uri(), "md5hash"), ctx(HOOK)).unwrap();
    assert_eq!(p.kind(), "vonage");
    let done = p.submit(&sms(42, "Ваш код 123456")).await.unwrap();
    assert_eq!(done.message_id, "0A0000000123ABCD1");
    let reqs = server.received_requests().await.unwrap();
    let f = form_of(&reqs[0].body);
    assert_eq!(get(&f, "api_key"), Some("abcd1234"));
    assert_eq!(get(&f, "api_secret"), Some("vonage-api-secret"));
    assert_eq!(get(&f, "from"), Some("OTP"));
    assert_eq!(get(&f, "to"), Some("31600000000"));
    assert_eq!(get(&f, "text"), Some("Ваш код 123456"));
    assert_eq!(get(&f, "type"), Some("unicode"));
    assert_eq!(get(&f, "client-ref"), Some("42"));
    assert_eq!(get(&f, "status-report-req"), Some("1"));
    assert_eq!(get(&f, "callback"), Some(HOOK));

    // GET query.
    let reply = p
        .hook(&vonage_get(&with_sig(
            vonage_receipt("delivered", 0),
            "md5hash",
        )))
        .await
        .unwrap();
    let (key, r) = &reply.receipts[0];
    assert_eq!(key, &ReceiptKey::Attempt(42));
    assert!(r.delivered);
    assert_eq!(r.mnc, Some(16));
    assert_eq!(r.at_ms, 1_700_000_000_000);
    // POST form.
    let body =
        serde_urlencoded::to_string(with_sig(vonage_receipt("failed", 10), "md5hash")).unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        "Content-Type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let reply = p
        .hook(&hook_req("POST", HOOK, h, body.as_bytes()))
        .await
        .unwrap();
    let r = &reply.receipts[0].1;
    assert!(!r.delivered);
    assert_eq!(r.reason.as_deref(), Some("failed (err-code 6)"));
    // POST JSON.
    let obj: serde_json::Map<String, serde_json::Value> =
        with_sig(vonage_receipt("expired", 0), "md5hash")
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
    let mut h = HeaderMap::new();
    h.insert("Content-Type", HeaderValue::from_static("application/json"));
    let reply = p
        .hook(&hook_req(
            "POST",
            HOOK,
            h,
            serde_json::to_vec(&obj).unwrap().as_slice(),
        ))
        .await
        .unwrap();
    assert!(!reply.receipts[0].1.delivered);
    // Not final: no receipt.
    for s in ["accepted", "buffered"] {
        let reply = p
            .hook(&vonage_get(&with_sig(vonage_receipt(s, 0), "md5hash")))
            .await
            .unwrap();
        assert!(reply.receipts.is_empty(), "{s}");
    }

    // Missing, wrong or stale signatures: refused.
    assert!(matches!(
        p.hook(&vonage_get(&vonage_receipt("delivered", 0))).await,
        Err(HookError::Forbidden(_))
    ));
    let mut wrong = with_sig(vonage_receipt("failed", 0), "md5hash");
    wrong.iter_mut().find(|(k, _)| k == "status").unwrap().1 = "delivered".into();
    assert!(matches!(
        p.hook(&vonage_get(&wrong)).await,
        Err(HookError::Forbidden(_))
    ));
    assert!(matches!(
        p.hook(&vonage_get(&with_sig(
            vonage_receipt("delivered", 400),
            "md5hash"
        )))
        .await,
        Err(HookError::Forbidden(_))
    ));
    // A timestamp far in the past is stale, not an overflow.
    let mut ancient = vonage_receipt("delivered", 0);
    ancient
        .iter_mut()
        .find(|(k, _)| k == "timestamp")
        .unwrap()
        .1 = i64::MIN.to_string();
    assert!(matches!(
        p.hook(&vonage_get(&with_sig(ancient, "md5hash"))).await,
        Err(HookError::Forbidden(_))
    ));
}

#[tokio::test]
async fn direct_vonage_hmac_signatures_and_refusals() {
    let server = MockServer::start().await;
    let p = vonage::build(&vonage_cfg(&server.uri(), "sha256"), ctx(HOOK)).unwrap();
    let reply = p
        .hook(&vonage_get(&with_sig(
            vonage_receipt("delivered", 0),
            "sha256",
        )))
        .await
        .unwrap();
    assert!(reply.receipts[0].1.delivered);
    // An md5hash signature does not pass a sha256 route.
    assert!(matches!(
        p.hook(&vonage_get(&with_sig(
            vonage_receipt("delivered", 0),
            "md5hash"
        )))
        .await,
        Err(HookError::Forbidden(_))
    ));

    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "1",
            "messages": [{"status": "1", "error-text": "Throughput Rate Exceeded - please wait [ 30 ] and retry"}]
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    assert!(matches!(
        p.submit(&sms(1, "x")).await,
        Err(ProviderError::Retryable(_))
    ));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "1",
            "messages": [{"status": "6", "error-text": "Unroutable message - rejected"}]
        })))
        .mount(&server)
        .await;
    let e = p.submit(&sms(1, "x")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Permanent(t) if t.contains("Unroutable")),
        "{e:?}"
    );
    let f = form_of(&server.received_requests().await.unwrap()[0].body);
    assert_eq!(get(&f, "type"), Some("text"));
}

#[test]
fn env_secrets_that_are_unset_are_problems() {
    let mut cfg = vonage_cfg("https://rest.nexmo.com", "md5hash");
    cfg.api_secret = Secret::new("env:OTPGATE_TEST_VONAGE_UNSET_SECRET");
    let p = cfg.problems("vo").join("\n");
    assert!(p.contains("routes.vo.vonage.api_secret"), "{p}");
    assert!(p.contains("OTPGATE_TEST_VONAGE_UNSET_SECRET"), "{p}");
}

// ---------------------------------------------------------------------------------------------
// End to end: routes from the configuration, callbacks to the server's `/hooks/{route}`.

const US: &str = "14155552671";

async fn spawn_route(route: serde_json::Value) -> TestApp {
    TestApp::spawn_configured(|cfg| {
        cfg.routes = vec![serde_json::from_value(route).expect("route config")];
    })
    .await
}

async fn record(app: &TestApp, vid: &str) -> serde_json::Value {
    app.get(&format!("/v3/otp/verification/record/{vid}")).await
}

/// The one request the upstream got so far (asserting there is exactly one).
async fn only_request(server: &MockServer) -> wiremock::Request {
    let mut reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1, "one request upstream");
    reqs.remove(0)
}

#[tokio::test]
async fn kannel_route_end_to_end_dlr_settles_the_record_and_forged_dlrs_are_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/cgi-bin/sendsms"))
        .respond_with(ResponseTemplate::new(202).set_body_string("0: Accepted for delivery"))
        .mount(&server)
        .await;
    let app = spawn_route(json!({
        "name": "kannel-1", "provider": "kannel", "sender": "OTP",
        "kannel": {
            "url": format!("{}/cgi-bin/sendsms", server.uri()),
            "username": "otp", "password": "otppw", "hook_token": "tok3n",
        }
    }))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let q = query_of(&only_request(&server).await);
    assert_eq!(get(&q, "to"), Some(US));
    assert_eq!(get(&q, "from"), Some("OTP"));
    let attempt = &app.attempts(&vid).await[0];
    assert_eq!(attempt.route, "kannel-1");
    assert_eq!(attempt.gateway_state, gateway::SUCCESS);
    assert_eq!(
        attempt.provider_message_id.as_deref(),
        Some(format!("kannel-{}", attempt.id).as_str())
    );
    let dlr_url = get(&q, "dlr-url").unwrap().to_string();
    assert!(
        dlr_url.starts_with(&format!("{}/hooks/kannel-1?ref={}&", app.base, attempt.id)),
        "{dlr_url}"
    );
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], -1);

    // A forged report (wrong token): 403, nothing changes.
    let forged = kannel_fill(&dlr_url, 1, "stat:DELIVRD").replace("token=tok3n", "token=x");
    let resp = app.client.get(&forged).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], -1);
    // SMSC ack: not final.
    let ack = kannel_fill(&dlr_url, 8, "ACK/");
    assert_eq!(app.client.get(&ack).send().await.unwrap().status(), 200);
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], -1);
    // Kannel's real report: delivered.
    let url = kannel_fill(&dlr_url, 1, "id:77 sub:001 dlvrd:001 stat:DELIVRD err:000");
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    app.drain().await;
    let rec = record(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    assert_eq!(app.attempts(&vid).await[0].report_state, report::SUCCESS);
}

#[tokio::test]
async fn kannel_route_end_to_end_refusal_fails_the_attempt_and_outage_is_retried() {
    let server = MockServer::start().await;
    let app = spawn_route(json!({
        "name": "kannel-1", "provider": "kannel", "sender": "OTP",
        "kannel": {
            "url": format!("{}/cgi-bin/sendsms", server.uri()),
            "username": "otp", "password": "wrong",
        }
    }))
    .await;
    let (app_id, tpl) = app.app_and_template().await;

    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403).set_body_string("Authorization failed for sendsms"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::FAIL);
    assert!(
        a.reason
            .as_deref()
            .unwrap_or_default()
            .contains("Authorization failed"),
        "{a:?}"
    );
    assert!(app.jobs().await.iter().all(|j| j.kind != job_kind::DELIVER));
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], 1);

    // 503 then accepted: the delivery job is retried.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("Sendsms is disabled"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let vid = app.send_ok(&app_id, tpl, "14155552672").await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::PENDING, "{a:?}");
    let jobs = app.jobs().await;
    let deliver = jobs
        .iter()
        .find(|j| j.kind == job_kind::DELIVER)
        .expect("a retry");
    assert!(
        deliver
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("503"),
        "{deliver:?}"
    );
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(202).set_body_string("0: Accepted for delivery"))
        .mount(&server)
        .await;
    app.advance_and_drain(5).await;
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    assert_eq!(app.attempts(&vid).await[0].gateway_state, gateway::SUCCESS);
}

#[tokio::test]
async fn twilio_route_end_to_end_signed_callback_settles_the_record() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM00000000000000000000000000000001", "status": "queued",
        })))
        .mount(&server)
        .await;
    let app = spawn_route(json!({
        "name": "tw", "provider": "twilio",
        "twilio": {"base_url": server.uri(), "account_sid": SID, "auth_token": TOKEN, "from": "+15005550006"}
    }))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let req = only_request(&server).await;
    assert_eq!(basic_auth_of(&req), format!("{SID}:{TOKEN}"));
    let f = form_of(&req.body);
    assert_eq!(get(&f, "To"), Some("+14155552671"));
    let a = &app.attempts(&vid).await[0];
    assert_eq!(
        a.provider_message_id.as_deref(),
        Some("SM00000000000000000000000000000001")
    );
    let callback = get(&f, "StatusCallback").unwrap().to_string();
    assert_eq!(callback, format!("{}/hooks/tw?ref={}", app.base, a.id));

    let params = [
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("MessageStatus", "delivered"),
        ("AccountSid", SID),
    ];
    let post = |sig: Option<String>| {
        let mut rb = app.client.post(&callback).form(&params);
        if let Some(s) = sig {
            rb = rb.header("X-Twilio-Signature", s);
        }
        rb.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 403);
    assert_eq!(
        post(Some(twilio_sign("other", &callback, &params)))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], -1);
    let resp = post(Some(twilio_sign(TOKEN, &callback, &params)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.drain().await;
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], 0);
}

#[tokio::test]
async fn twilio_route_end_to_end_throttling_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "code": 20429, "message": "Too Many Requests", "status": 429,
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM2"})))
        .mount(&server)
        .await;
    let app = spawn_route(json!({
        "name": "tw", "provider": "twilio",
        "twilio": {"base_url": server.uri(), "account_sid": SID, "auth_token": TOKEN, "from": "+15005550006"}
    }))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    assert_eq!(app.attempts(&vid).await[0].gateway_state, gateway::PENDING);
    app.advance_and_drain(5).await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::SUCCESS, "{a:?}");
    assert_eq!(a.provider_message_id.as_deref(), Some("SM2"));
}

#[tokio::test]
async fn twilio_voice_route_end_to_end_call_status_fills_the_call_record() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Calls.json")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "CA00000000000000000000000000000001", "status": "queued",
        })))
        .mount(&server)
        .await;
    let app = spawn_route(json!({
        "name": "tv", "provider": "twilio-voice",
        "twilio": {"base_url": server.uri(), "account_sid": SID, "auth_token": TOKEN, "from": "+15005550006"}
    }))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let r = app
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US, "channel": "call"}),
        )
        .await;
    assert_eq!(r["status"], "0", "{r}");
    let vid = r["data"]["verificationId"].as_str().unwrap().to_string();
    let f = form_of(&only_request(&server).await.body);
    assert!(
        get(&f, "Twiml").unwrap().starts_with("<Response><Say"),
        "{f:?}"
    );
    let callback = get(&f, "StatusCallback").unwrap().to_string();

    let now = {
        use otpgate::clock::Clock;
        app.clock.now()
    };
    let at = |secs: i64| (now + chrono::Duration::seconds(secs)).to_rfc2822();
    let send = |status: &'static str, ts: String, dur: Option<&'static str>| {
        let mut p: Vec<(&str, String)> = vec![
            ("CallSid", "CA00000000000000000000000000000001".into()),
            ("CallStatus", status.into()),
            ("Timestamp", ts),
        ];
        if let Some(d) = dur {
            p.push(("CallDuration", d.into()));
        }
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sig = twilio_sign(TOKEN, &callback, &refs);
        app.client
            .post(&callback)
            .header("X-Twilio-Signature", sig)
            .form(&p)
            .send()
    };
    assert_eq!(send("ringing", at(2), None).await.unwrap().status(), 200);
    assert_eq!(
        send("in-progress", at(6), None).await.unwrap().status(),
        200
    );
    let call = &record(&app, &vid).await["data"]["call"];
    assert_eq!(call["terminationCode"], -1, "in progress: {call}");
    assert_eq!(
        send("completed", at(26), Some("20"))
            .await
            .unwrap()
            .status(),
        200
    );
    app.drain().await;
    let rec = record(&app, &vid).await;
    let call = &rec["data"]["call"];
    assert_eq!(call["terminationCode"], 0, "{rec}");
    assert_eq!(call["terminationReason"], "answered");
    assert_eq!(call["callDuration"], 20);
    for f in ["ringingTime", "answerTime", "hangupTime"] {
        assert!(call[f].is_string(), "{f}: {call}");
    }
    let a = &app.attempts(&vid).await[0];
    let now_ms = now.timestamp_millis() / 1000 * 1000;
    assert_eq!(a.ring_ms, Some(now_ms + 2_000), "{a:?}");
    assert_eq!(a.answer_ms, Some(now_ms + 6_000), "{a:?}");
}

#[tokio::test]
async fn vonage_route_end_to_end_signed_receipt_settles_the_record() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "1",
            "messages": [{"to": US, "message-id": "0A00000000000001", "status": "0"}]
        })))
        .mount(&server)
        .await;
    let app = spawn_route(json!({
        "name": "vo", "provider": "vonage", "sender": "OTP",
        "vonage": {
            "base_url": server.uri(), "api_key": "abcd1234", "api_secret": "vonage-api-secret",
            "signature_secret": SIG_SECRET, "signature_method": "md5hash",
        }
    }))
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let f = form_of(&only_request(&server).await.body);
    let a = &app.attempts(&vid).await[0];
    assert_eq!(get(&f, "client-ref"), Some(a.id.to_string().as_str()));
    assert_eq!(get(&f, "type"), Some("text"));
    let callback = get(&f, "callback").unwrap().to_string();
    assert_eq!(callback, format!("{}/hooks/vo", app.base));
    assert_eq!(a.provider_message_id.as_deref(), Some("0A00000000000001"));

    let mut receipt = vonage_receipt("delivered", 0);
    for (k, v) in receipt.iter_mut() {
        match k.as_str() {
            "client-ref" => *v = a.id.to_string(),
            "messageId" => *v = "0A00000000000001".into(),
            "timestamp" => *v = app.clock_now_secs().to_string(),
            _ => {}
        }
    }
    // Unsigned, or signed for other values: 403, nothing changes.
    let resp = app
        .client
        .post(&callback)
        .json(&to_json(&receipt))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let mut forged = with_sig(receipt.clone(), "md5hash");
    forged
        .iter_mut()
        .find(|(k, _)| k == "network-code")
        .unwrap()
        .1 = "20408".into();
    let resp = app
        .client
        .post(&callback)
        .json(&to_json(&forged))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], -1);

    let signed = with_sig(receipt, "md5hash");
    let resp = app
        .client
        .post(&callback)
        .json(&to_json(&signed))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.drain().await;
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], 0);
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.report_state, report::SUCCESS);
    assert_eq!(a.mnc, Some(16));
}

fn to_json(p: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        p.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}
