//! send, sendRule, resend, verify, records, limits: against the running server.

use otpgate::providers::ProviderError;
use otpgate::providers::memory::Script;
use serde_json::json;

use crate::harness::*;

const US: &str = "14155552671";
const IN: &str = "919856321412";

#[tokio::test]
async fn send_delivers_and_verify_consumes() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let v = app.send(&app_id, tpl, &format!("+{US}")).await;
    assert_eq!(v["status"], "0", "{v}");
    let vid = v["data"]["verificationId"].as_str().unwrap().to_string();
    assert_eq!(vid.len(), 20);
    assert!(vid.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(v["data"]["to"], US, "the leading + is stripped");
    assert_eq!(v["data"]["channel"], "sms");
    assert!(v["data"].get("snaUrl").is_none());

    let sent = app.provider.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, US);
    assert_eq!(sent[0].verification_id, vid);
    let code = app.last_code();
    assert_eq!(code.len(), 4, "default codeLength");
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(app.last_text(), format!("{code} is your verification code"));

    let wrong = if code == "0000" { "1111" } else { "0000" };
    let r = app.verify(&vid, wrong).await;
    assert_eq!(r["status"], "0");
    assert_eq!(r["data"]["matched"], 2);
    let r = app.verify(&vid, &code).await;
    assert_eq!(r["data"]["matched"], 0, "{r}");
    assert_eq!(r["data"]["to"], US);
    assert_eq!(r["data"]["channel"], "sms");
    let r = app.verify(&vid, &code).await;
    assert_eq!(r["data"]["matched"], 4, "already verified: {r}");
}

#[tokio::test]
async fn itnio_base_behaves_identically() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let v = app
        .post(
            "/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US}),
        )
        .await;
    assert_eq!(v["status"], "0", "{v}");
    let vid = v["data"]["verificationId"].as_str().unwrap();
    let r = app
        .post(
            "/otp/verification/verify",
            json!({"verificationId": vid, "code": app.last_code()}),
        )
        .await;
    assert_eq!(r["data"]["matched"], 0);
}

#[tokio::test]
async fn code_follows_template_type_and_length() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    for (code_type, alphabet) in [
        (1, "0123456789"),
        (2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        (3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
        (4, "0123456789ABCDEF"),
    ] {
        let tpl = app
            .template(&app_id, json!({"codeType": code_type, "codeLength": 8}))
            .await;
        let vid = app.send_ok(&app_id, tpl, US).await;
        let code = app.last_code();
        assert_eq!(code.len(), 8);
        assert!(
            code.chars().all(|c| alphabet.contains(c)),
            "{code} for type {code_type}"
        );
        if code_type != 1 {
            // Generated letters are accepted in either case.
            let r = app.verify(&vid, &code.to_lowercase()).await;
            assert_eq!(r["data"]["matched"], 0, "{r}");
        }
    }
}

#[tokio::test]
async fn bad_send_input_answers_22_naming_the_field() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let send = |body: serde_json::Value| {
        let app = &app;
        async move { app.post("/v3/otp/verification/send", body).await }
    };
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl, "to": "123"})).await,
        "-22",
        "to",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl, "to": "1415555267a"})).await,
        "-22",
        "to",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl, "to": "123456789012345"})).await,
        "-22",
        "to",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl, "to": "9991234567890"})).await,
        "-22",
        "not a possible number",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl})).await,
        "-22",
        "to",
    );
    assert_error(
        &send(json!({"appId": app_id, "to": US})).await,
        "-22",
        "templateId",
    );
    assert_error(
        &send(json!({"templateId": tpl, "to": US})).await,
        "-22",
        "appId",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl, "to": US, "channel": "fax"})).await,
        "-22",
        "channel",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl, "to": US, "channel": "sna"})).await,
        "-22",
        "no SNA route",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": "x1", "to": US})).await,
        "-22",
        "templateId",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl, "to": [1]})).await,
        "-22",
        "to",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": tpl, "to": US, "orderId": "x".repeat(65)}))
            .await,
        "-22",
        "orderId",
    );
    assert_error(
        &send(json!({"appId": "nope1234", "templateId": tpl, "to": US})).await,
        "-24",
        "app",
    );
    assert_error(
        &send(json!({"appId": app_id, "templateId": 999_999, "to": US})).await,
        "-24",
        "template",
    );
    // A template of another app of the same tenant.
    let (_, other_tpl) = app.app_and_template().await;
    assert_error(
        &send(json!({"appId": app_id, "templateId": other_tpl, "to": US})).await,
        "-24",
        "template",
    );
    assert_error(
        &app.post_raw("/v3/otp/verification/send", "{\"appId\":")
            .await,
        "-22",
        "JSON",
    );
    assert!(
        app.provider.sent().is_empty(),
        "nothing is sent for a refused request"
    );
}

#[tokio::test]
async fn unknown_id_and_bad_verify_input() {
    let app = TestApp::spawn().await;
    let r = app.verify("12345678901234567890", "1234").await;
    assert_eq!(r["status"], "0");
    assert_eq!(r["data"]["matched"], 3);
    assert_error(
        &app.post("/v3/otp/verification/verify", json!({"code": "1234"}))
            .await,
        "-22",
        "verificationId",
    );
    assert_error(
        &app.post(
            "/v3/otp/verification/verify",
            json!({"verificationId": "12345678901234567890"}),
        )
        .await,
        "-22",
        "code",
    );
    assert_error(
        &app.post(
            "/v3/otp/verification/verify",
            json!({"verificationId": "12345678901234567890", "code": "12345678901"}),
        )
        .await,
        "-22",
        "code",
    );
}

#[tokio::test]
async fn five_wrong_codes_lock_the_session() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let code = app.last_code();
    let wrong = if code == "9999" { "8888" } else { "9999" };
    for i in 0..5 {
        let r = app.verify(&vid, wrong).await;
        assert_eq!(r["status"], "0", "wrong code {i}: {r}");
        assert_eq!(r["data"]["matched"], 2);
    }
    let r = app.verify(&vid, &code).await;
    assert_error(&r, "-23", "verification attempts exceeded");
    assert_eq!(r["data"]["matched"], 2);
    // The record shows the failure; a resend of a locked session is refused.
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["verifications"]["matched"], 2);
    let r = app
        .post(
            "/v3/otp/verification/resend",
            json!({"verificationId": vid}),
        )
        .await;
    assert_eq!(r["status"], "-21", "{r}");
}

#[tokio::test]
async fn codes_expire_after_the_app_code_expiry() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({"codeExpiry": 2})).await;
    let tpl = app.template(&app_id, json!({})).await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let code = app.last_code();
    app.advance(119);
    let vid2 = app.send_ok(&app_id, tpl, IN).await;
    let code2 = app.last_code();
    app.advance(2);
    let r = app.verify(&vid, &code).await;
    assert_eq!(r["data"]["matched"], 5, "expired after 2 minutes: {r}");
    let r = app.verify(&vid2, &code2).await;
    assert_eq!(
        r["data"]["matched"], 0,
        "the later send is still valid: {r}"
    );
}

#[tokio::test]
async fn resend_keeps_the_code_while_valid_and_either_id_verifies_once() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let first = app.send_ok(&app_id, tpl, US).await;
    let code = app.last_code();
    let r = app
        .post(
            "/v3/otp/verification/resend",
            json!({"verificationId": first, "channel": "sms"}),
        )
        .await;
    assert_eq!(r["status"], "0", "{r}");
    let second = r["data"]["verificationId"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(r["data"]["to"], US);
    assert_eq!(app.last_code(), code, "same code while valid");
    assert_eq!(app.provider.sent().len(), 2);
    // The old id verifies the session; then the new one is already used.
    let r = app.verify(&first, &code).await;
    assert_eq!(r["data"]["matched"], 0);
    let r = app.verify(&second, &code).await;
    assert_eq!(r["data"]["matched"], 4);
    let r = app
        .post(
            "/v3/otp/verification/resend",
            json!({"verificationId": second}),
        )
        .await;
    assert_eq!(r["status"], "-21", "resend of a consumed session: {r}");
}

#[tokio::test]
async fn resend_after_expiry_issues_a_fresh_code() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({"codeExpiry": 1})).await;
    let tpl = app.template(&app_id, json!({"codeLength": 10})).await;
    let first = app.send_ok(&app_id, tpl, US).await;
    let old = app.last_code();
    app.advance(61);
    let r = app
        .post(
            "/v3/otp/verification/resend",
            json!({"verificationId": first}),
        )
        .await;
    assert_eq!(r["status"], "0", "{r}");
    let second = r["data"]["verificationId"].as_str().unwrap().to_string();
    let new = app.last_code();
    assert_ne!(new, old, "a fresh 10-digit code");
    assert_eq!(app.verify(&second, &old).await["data"]["matched"], 2);
    assert_eq!(
        app.verify(&first, &new).await["data"]["matched"],
        0,
        "the old id verifies the session's new code"
    );
}

#[tokio::test]
async fn resend_errors() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    assert_error(
        &app.post(
            "/v3/otp/verification/resend",
            json!({"verificationId": "12345678901234567890"}),
        )
        .await,
        "-24",
        "verification",
    );
    assert_error(
        &app.post("/v3/otp/verification/resend", json!({})).await,
        "-22",
        "verificationId",
    );
    assert_error(
        &app.post(
            "/v3/otp/verification/resend",
            json!({"verificationId": vid, "channel": "sna"}),
        )
        .await,
        "-22",
        "SNA",
    );
    let other = app.service.create_tenant("other").await.unwrap();
    let r = app
        .envelope(
            app.signed_as(
                &other.tenant.api_key,
                &other.api_secret,
                reqwest::Method::POST,
                "/v3/otp/verification/resend",
            )
            .json(&json!({"verificationId": vid})),
        )
        .await;
    assert_eq!(r["status"], "-24", "another tenant's verification: {r}");
    let r = app
        .envelope(
            app.signed_as(
                &other.tenant.api_key,
                &other.api_secret,
                reqwest::Method::POST,
                "/v3/otp/verification/verify",
            )
            .json(&json!({"verificationId": vid, "code": "1234"})),
        )
        .await;
    assert_eq!(r["status"], "-24", "another tenant cannot verify: {r}");
}

#[tokio::test]
async fn send_rule_delivers_the_callers_code() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let r = app
        .post(
            "/v3/otp/verification/sendRule",
            json!({"appId": app_id, "templateId": tpl, "code": "12345", "to": US, "channel": "sms"}),
        )
        .await;
    assert_eq!(r["status"], "0", "{r}");
    let vid = r["data"]["verificationId"].as_str().unwrap().to_string();
    assert_eq!(app.last_text(), "12345 is your verification code");
    // Without a template, the server's default text is used.
    let r = app
        .post(
            "/otp/verification/sendRule",
            json!({"appId": app_id, "code": "ab9", "to": IN}),
        )
        .await;
    assert_eq!(r["status"], "0", "{r}");
    assert_eq!(app.last_text(), "Your verification code is ab9");
    let vid2 = r["data"]["verificationId"].as_str().unwrap().to_string();
    assert_eq!(
        app.verify(&vid2, "AB9").await["data"]["matched"],
        2,
        "supplied codes compare exactly"
    );
    assert_eq!(app.verify(&vid2, "ab9").await["data"]["matched"], 0);
    assert_eq!(app.verify(&vid, "12345").await["data"]["matched"], 0);
    assert_error(
        &app.post(
            "/v3/otp/verification/sendRule",
            json!({"appId": app_id, "to": US}),
        )
        .await,
        "-22",
        "code",
    );
    assert_error(
        &app.post(
            "/v3/otp/verification/sendRule",
            json!({"appId": app_id, "to": US, "code": "12345678901"}),
        )
        .await,
        "-22",
        "code",
    );
}

#[tokio::test]
async fn order_id_is_unique_per_tenant_and_gives_back_the_first_id() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let body = json!({"appId": app_id, "templateId": tpl, "to": US, "orderId": "order-1"});
    let first = app.post("/v3/otp/verification/send", body.clone()).await;
    assert_eq!(first["status"], "0");
    let again = app.post("/v3/otp/verification/send", body.clone()).await;
    assert_eq!(again["status"], "-20", "{again}");
    assert_eq!(
        again["data"]["verificationId"],
        first["data"]["verificationId"]
    );
    assert_eq!(app.provider.sent().len(), 1, "no second message");
    // sendRule shares the same orderId space.
    let r = app
        .post(
            "/v3/otp/verification/sendRule",
            json!({"appId": app_id, "to": US, "orderId": "order-1", "code": "1234"}),
        )
        .await;
    assert_eq!(r["status"], "-20");
    // Another tenant may use the same orderId.
    let other = app.service.create_tenant("other").await.unwrap();
    let oapp = app
        .envelope(
            app.signed_as(
                &other.tenant.api_key,
                &other.api_secret,
                reqwest::Method::POST,
                "/v3/otp/app/add",
            )
            .json(&json!({"name": "other_app"})),
        )
        .await["data"]["appId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .envelope(
            app.signed_as(
                &other.tenant.api_key,
                &other.api_secret,
                reqwest::Method::POST,
                "/v3/otp/verification/sendRule",
            )
            .json(&json!({"appId": oapp, "to": US, "orderId": "order-1", "code": "1234"})),
        )
        .await;
    assert_eq!(r["status"], "0", "{r}");
}

#[tokio::test]
async fn record_shows_the_sms_attempt() {
    let app = TestApp::spawn_with(|c| {
        c.console.price_per_segment = "0.045".into();
        c.console.sender = "ACME".into();
    })
    .await;
    let app_id = app.app(json!({})).await;
    // Cyrillic forces UCS-2: 80 characters make two 67-unit parts.
    let text = format!("##code## {}", "ж".repeat(75));
    let tpl = app
        .template(&app_id, json!({"text": text, "senderId": "MyBank"}))
        .await;
    let r = app
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": IN, "orderId": "o-77"}),
        )
        .await;
    let vid = r["data"]["verificationId"].as_str().unwrap().to_string();
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["status"], "0", "{rec}");
    let d = &rec["data"];
    assert_eq!(d["verificationId"], vid);
    assert_eq!(d["verifications"]["matched"], -1);
    assert_eq!(d["verifications"]["oriReceiver"], IN);
    assert_eq!(d["verifications"]["channel"], "sms");
    assert_eq!(d["verifications"]["orderId"], "o-77");
    assert!(d["verifications"]["verifiedDate"].is_null());
    let sms = &d["sms"];
    for f in ["submitTm", "sendTm", "doneTm"] {
        let t = sms[f]
            .as_str()
            .unwrap_or_else(|| panic!("{f} is a time: {sms}"));
        assert!(t.ends_with("+00:00") && t.len() == 25, "{f} = {t}");
    }
    assert_eq!(sms["mcc"], 404);
    assert!(sms.get("mnc").is_some());
    assert_eq!(sms["sender"], "MyBank");
    assert_eq!(sms["chargeCnt"], 2);
    assert_eq!(sms["pay"], "0.090000");
    assert_eq!(sms["status"], 0);
    assert_eq!(sms["reason"], "");
    assert!(d.get("call").is_none());
    assert_eq!(d["sna"], json!([]));

    let code = app.last_code();
    app.verify(&vid, &code).await;
    let rec = app.get(&format!("/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["verifications"]["matched"], 0);
    assert!(rec["data"]["verifications"]["verifiedDate"].is_string());

    assert_error(
        &app.get("/v3/otp/verification/record/12345678901234567890")
            .await,
        "-24",
        "verification",
    );
}

#[tokio::test]
async fn display_offset_applies_to_times() {
    let app = TestApp::spawn_with(|c| c.display_offset = "+08:00".into()).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert!(
        rec["data"]["sms"]["submitTm"]
            .as_str()
            .unwrap()
            .ends_with("+08:00"),
        "{rec}"
    );
    let det = app.get(&format!("/v3/otp/app/details/{app_id}")).await;
    assert!(
        det["data"]["createTime"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );
}

#[tokio::test]
async fn failed_submit_shows_in_the_record() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    app.provider
        .push_script(Script::Fail(ProviderError::Permanent(
            "number barred".into(),
        )));
    let vid = app.send_ok(&app_id, tpl, US).await;
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
    assert_eq!(rec["data"]["sms"]["reason"], "number barred");
    assert_eq!(rec["data"]["sms"]["pay"], "0.000000");
}

#[tokio::test]
async fn order_record_lists_every_attempt() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow = app
        .post(
            "/v3/otp/flow/add",
            json!({"name": "fallback", "flow": [{"waitingTime": 30, "status": 1, "channel": "call"}]}),
        )
        .await["data"]["flowId"]
        .as_i64()
        .unwrap();
    let r = app
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "to": US, "orderId": "ord-9", "flowId": flow}),
        )
        .await;
    let vid = r["data"]["verificationId"].as_str().unwrap().to_string();
    app.post(
        "/v3/otp/verification/resend",
        json!({"verificationId": vid, "channel": "call"}),
    )
    .await;
    let spoken = app.last_text();
    let code = app.provider.sent()[0]
        .text
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let digits: Vec<String> = code.chars().map(String::from).collect();
    assert!(
        spoken.starts_with(&digits.join(", ")),
        "the call spells the code: {spoken}"
    );
    assert!(app.provider.sent()[1].voice.is_some());

    let rec = app
        .post(
            "/v3/otp/verification/orderId/record",
            json!({"appId": app_id, "orderId": "ord-9"}),
        )
        .await;
    assert_eq!(rec["status"], "0", "{rec}");
    let d = &rec["data"];
    assert_eq!(d["orderId"], "ord-9");
    assert_eq!(d["flowId"], flow);
    assert_eq!(d["sms"].as_array().unwrap().len(), 1);
    assert_eq!(d["call"].as_array().unwrap().len(), 1);
    let call = &d["call"][0];
    assert_eq!(call["terminationCode"], 0);
    assert_eq!(call["billPeriodstring"], "60+60");
    assert_eq!(call["cost"], call["costEur"]);
    assert_eq!(d["verifications"]["channel"], "sms");
    // record/{id} gives the latest of each channel as single objects.
    let rec = app.get(&format!("/v3/otp/verification/record/{vid}")).await;
    assert!(
        rec["data"]["sms"].is_object() && rec["data"]["call"].is_object(),
        "{rec}"
    );

    assert_error(
        &app.post(
            "/v3/otp/verification/orderId/record",
            json!({"appId": app_id, "orderId": "nope"}),
        )
        .await,
        "-24",
        "order",
    );
    assert_error(
        &app.post(
            "/v3/otp/verification/orderId/record",
            json!({"appId": app_id}),
        )
        .await,
        "-22",
        "orderId",
    );
    let (other_app, _) = app.app_and_template().await;
    assert_error(
        &app.post(
            "/v3/otp/verification/orderId/record",
            json!({"appId": other_app, "orderId": "ord-9"}),
        )
        .await,
        "-24",
        "order",
    );
}

#[tokio::test]
async fn period_total_limit_is_a_sliding_window() {
    let app = TestApp::spawn().await;
    let app_id = app
        .app(json!({"periodTotalSendLimit": {"enabled": true, "unit": 3, "period": 1, "limit": 2}}))
        .await;
    let tpl = app.template(&app_id, json!({})).await;
    app.send_ok(&app_id, tpl, US).await;
    app.advance(30);
    let vid = app.send_ok(&app_id, tpl, IN).await;
    assert_error(
        &app.send(&app_id, tpl, "447911123456").await,
        "-27",
        "total",
    );
    // Resends count too.
    assert_error(
        &app.post(
            "/v3/otp/verification/resend",
            json!({"verificationId": vid}),
        )
        .await,
        "-27",
        "total",
    );
    app.advance(31);
    // The first send has left the 60-second window; the second has not.
    app.send_ok(&app_id, tpl, "447911123456").await;
    assert_error(&app.send(&app_id, tpl, US).await, "-27", "total");
    assert_eq!(app.provider.sent().len(), 3);
}

#[tokio::test]
async fn period_phone_limit_counts_one_number() {
    let app = TestApp::spawn().await;
    let app_id = app
        .app(json!({"periodPhoneSendLimit": {"enabled": true, "unit": 2, "period": 1, "limit": 1}}))
        .await;
    let tpl = app.template(&app_id, json!({})).await;
    app.send_ok(&app_id, tpl, US).await;
    assert_error(&app.send(&app_id, tpl, US).await, "-28", "phone");
    app.send_ok(&app_id, tpl, IN).await;
    app.advance(3601);
    app.send_ok(&app_id, tpl, US).await;
}

#[tokio::test]
async fn another_tenants_objects_are_not_found_for_records() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let other = app.service.create_tenant("other").await.unwrap();
    let r = app
        .envelope(app.signed_as(
            &other.tenant.api_key,
            &other.api_secret,
            reqwest::Method::GET,
            &format!("/v3/otp/verification/record/{vid}"),
        ))
        .await;
    assert_eq!(r["status"], "-24", "{r}");
}

#[tokio::test]
async fn a_limit_counts_the_sends_made_while_it_is_enabled() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    app.send_ok(&app_id, tpl, US).await;
    let on = json!({"name": "limited_app", "periodPhoneSendLimit": {"enabled": true, "unit": 2, "period": 1, "limit": 1}});
    assert_eq!(
        app.put(&format!("/v3/otp/app/update/{app_id}"), on).await["status"],
        "0"
    );
    // The send before the limit was enabled does not count; the next one does.
    app.send_ok(&app_id, tpl, US).await;
    assert_error(&app.send(&app_id, tpl, US).await, "-28", "phone");
}
