//! Apps, templates, task flows and backfill against the running server.

use chrono::DateTime;
use serde_json::{Value, json};

use crate::auth::OtherTenant;
use crate::harness::*;

const US: &str = "14155552671";

const APP_ADD: &str = "/v3/otp/app/add";
const TEMPLATE_ADD: &str = "/v3/otp/template/add";
const FLOW_ADD: &str = "/v3/otp/flow/add";
const BACKFILL_RATE: &str = "/v3/otp/backfillRate";
const POSTBACK: &str = "/v3/otp/postback/backfill";

#[track_caller]
fn assert_ok(v: &Value) {
    assert_eq!(v["status"], "0", "{v}");
}

/// Asserts `-22` naming `field` for each body.
async fn assert_each_invalid(app: &TestApp, path: &str, cases: Vec<(Value, &str)>) {
    for (body, field) in cases {
        let v = app.post(path, body.clone()).await;
        let reason = v["reason"].as_str().unwrap_or_default();
        assert!(
            v["status"] == "-22" && reason.contains(field),
            "{path} {body} should be -22 naming {field}: {v}"
        );
    }
}

fn limit(unit: i64, period: i64, limit: i64) -> Value {
    json!({"enabled": true, "unit": unit, "period": period, "limit": limit})
}

fn disabled_limit() -> Value {
    json!({"enabled": false, "unit": null, "period": null, "limit": null})
}

// ---------------------------------------------------------------- apps

#[tokio::test]
async fn app_add_echoes_the_spec_example() {
    let app = TestApp::spawn().await;
    let body = json!({
        "name": "test_app",
        "codeExpiry": 5,
        "periodTotalSendLimit": {"enabled": true, "unit": 1, "period": 1, "limit": 1},
        "periodPhoneSendLimit": {"enabled": true, "unit": 1, "period": 1, "limit": 1},
    });
    let v = app.post(APP_ADD, body).await;
    assert_ok(&v);
    assert_eq!(v["reason"], "success");
    let d = &v["data"];
    let id = d["appId"].as_str().expect("appId");
    assert_eq!(id.len(), 8, "{d}");
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
    assert_eq!(d["name"], "test_app");
    assert_eq!(d["codeExpiry"], 5);
    assert_eq!(d["periodTotalSendLimit"], limit(1, 1, 1));
    assert_eq!(d["periodPhoneSendLimit"], limit(1, 1, 1));
    let created = d["createTime"].as_str().expect("createTime");
    assert!(created.ends_with("+00:00"), "{created}");
    let t = DateTime::parse_from_rfc3339(created).expect("ISO-8601 createTime");
    assert!(
        (t.timestamp() - app.clock_now_secs()).abs() <= 1,
        "createTime follows the server clock"
    );

    // The ITNIO base answers the same way, with a fresh id.
    let v = app.post("/otp/app/add", json!({"name": "itnio_app"})).await;
    assert_ok(&v);
    assert_ne!(v["data"]["appId"].as_str(), Some(id));
}

#[tokio::test]
async fn app_add_defaults() {
    let app = TestApp::spawn().await;
    for body in [json!({}), json!({"name": "only_a_name"})] {
        let v = app.post(APP_ADD, body.clone()).await;
        assert_ok(&v);
        let d = &v["data"];
        assert_eq!(d["codeExpiry"], 5, "{d}");
        assert_eq!(d["periodTotalSendLimit"], disabled_limit());
        assert_eq!(d["periodPhoneSendLimit"], disabled_limit());
        let name = d["name"].as_str().expect("a name is always given");
        assert!((4..=32).contains(&name.chars().count()), "{name}");
        if let Some(given) = body["name"].as_str() {
            assert_eq!(name, given);
        }
    }
    // Two unnamed apps get distinct names.
    let a = app.post(APP_ADD, json!({})).await;
    let b = app.post(APP_ADD, json!({})).await;
    assert_ok(&b);
    assert_ne!(a["data"]["name"], b["data"]["name"]);
}

#[tokio::test]
async fn app_add_rejects_bad_fields() {
    let app = TestApp::spawn().await;
    let total = |l: Value| json!({"name": "limited", "periodTotalSendLimit": l});
    let cases = vec![
        (json!({"name": "abc"}), "name"),
        (json!({"name": "a".repeat(33)}), "name"),
        (json!({"name": 1234}), "name"),
        (json!({"codeExpiry": 0}), "codeExpiry"),
        (json!({"codeExpiry": 61}), "codeExpiry"),
        (json!({"codeExpiry": "abc"}), "codeExpiry"),
        (json!({"codeExpiry": 2.5}), "codeExpiry"),
        (total(limit(5, 1, 1)), "periodTotalSendLimit.unit"),
        (total(limit(1, 91, 1)), "periodTotalSendLimit.period"),
        (total(limit(1, 0, 1)), "periodTotalSendLimit.period"),
        (total(limit(1, 1, 0)), "periodTotalSendLimit.limit"),
        (
            total(json!({"enabled": true, "period": 1, "limit": 1})),
            "periodTotalSendLimit.unit",
        ),
        (
            total(json!({"enabled": true, "unit": "x", "period": 1, "limit": 1})),
            "periodTotalSendLimit.unit",
        ),
        (
            json!({"periodPhoneSendLimit": limit(1, 91, 1)}),
            "periodPhoneSendLimit.period",
        ),
    ];
    assert_each_invalid(&app, APP_ADD, cases).await;
    // Boundaries are accepted.
    for body in [
        json!({"name": "abcd", "codeExpiry": 1}),
        json!({"name": "b".repeat(32), "codeExpiry": 60}),
        json!({"name": "wide_limits", "periodTotalSendLimit": limit(4, 90, 10_000_000_000_i64)}),
    ] {
        assert_ok(&app.post(APP_ADD, body).await);
    }
}

#[tokio::test]
async fn malformed_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let raws = [
        "{",
        "",
        "  ",
        "[]",
        "[{\"name\":\"in_array\"}]",
        "null",
        "\"text\"",
        "42",
    ];
    let mut wrong = Vec::new();
    for path in [APP_ADD, TEMPLATE_ADD, FLOW_ADD, BACKFILL_RATE] {
        for raw in raws {
            let v = app.post_raw(path, raw).await;
            let reason = v["reason"].as_str().unwrap_or_default();
            if v["status"] != "-22" || !reason.contains("body") {
                wrong.push(format!("{path} with body {raw:?}: {v}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "each should be -22 naming the body:\n{}",
        wrong.join("\n")
    );
    assert_eq!(app.get("/v3/otp/flow/list").await["data"], json!([]));
}

#[tokio::test]
async fn app_names_are_unique_per_tenant() {
    let app = TestApp::spawn().await;
    assert_ok(&app.post(APP_ADD, json!({"name": "dupe_app"})).await);
    let v = app.post(APP_ADD, json!({"name": "dupe_app"})).await;
    assert_error(&v, "-20", "already exists");
    let other = OtherTenant::create(&app).await;
    assert_ok(&other.post(APP_ADD, json!({"name": "dupe_app"})).await);
}

#[tokio::test]
async fn app_details() {
    let app = TestApp::spawn().await;
    let added = app
        .post(APP_ADD, json!({"name": "detailed", "codeExpiry": 9}))
        .await;
    let id = added["data"]["appId"].as_str().unwrap();
    for base in ["/v3/otp", "/otp"] {
        let v = app.get(&format!("{base}/app/details/{id}")).await;
        assert_ok(&v);
        assert_eq!(v["data"], added["data"]);
    }
    let v = app.get("/v3/otp/app/details/zzzzzzzz").await;
    assert_error(&v, "-24", "does not exist");
}

async fn details(app: &TestApp, path: &str) -> Value {
    let v = app.get(path).await;
    assert_ok(&v);
    v["data"].clone()
}

#[tokio::test]
async fn app_update_put_and_post_keep_absent_fields() {
    let app = TestApp::spawn().await;
    let added = app
        .post(
            APP_ADD,
            json!({"name": "before", "codeExpiry": 7, "periodTotalSendLimit": limit(2, 3, 4)}),
        )
        .await;
    let id = added["data"]["appId"].as_str().unwrap().to_string();
    let path = format!("/v3/otp/app/update/{id}");

    let v = app.put(&path, json!({"name": "after_put"})).await;
    assert_ok(&v);
    let d = &v["data"];
    assert_eq!(d["appId"], id.as_str());
    assert_eq!(d["name"], "after_put");
    assert_eq!(d["codeExpiry"], 7, "absent codeExpiry kept");
    assert_eq!(
        d["periodTotalSendLimit"],
        limit(2, 3, 4),
        "absent limit kept"
    );
    assert_eq!(d["createTime"], added["data"]["createTime"]);

    // The spec's update example: a disabled limit with null values.
    let body = json!({
        "name": "after_post",
        "codeExpiry": 9,
        "periodTotalSendLimit": {"enabled": true, "unit": 1, "period": 1, "limit": 1},
        "periodPhoneSendLimit": {"enabled": false, "unit": null, "period": null, "limit": null},
    });
    let v = app.post(&path, body).await;
    assert_ok(&v);
    assert_eq!(v["data"]["name"], "after_post");
    assert_eq!(v["data"]["codeExpiry"], 9);
    assert_eq!(v["data"]["periodTotalSendLimit"], limit(1, 1, 1));
    assert_eq!(v["data"]["periodPhoneSendLimit"], disabled_limit());
    assert_eq!(
        details(&app, &format!("/otp/app/details/{id}")).await,
        v["data"]
    );

    // Renaming to its own current name is not a duplicate; the ITNIO base works too.
    let v = app
        .put(
            &format!("/otp/app/update/{id}"),
            json!({"name": "after_post"}),
        )
        .await;
    assert_ok(&v);
}

#[tokio::test]
async fn app_update_rules() {
    let app = TestApp::spawn().await;
    let id = app.app(json!({"codeExpiry": 3})).await;
    let other_id = app.app(json!({"name": "taken_name"})).await;
    let path = format!("/v3/otp/app/update/{id}");

    let v = app.put(&path, json!({"codeExpiry": 10})).await;
    assert_error(&v, "-22", "name");
    let v = app
        .put(&path, json!({"name": "ok_name", "appId": other_id}))
        .await;
    assert_error(&v, "-22", "appId");
    let v = app
        .put(&path, json!({"name": "ok_name", "codeExpiry": 61}))
        .await;
    assert_error(&v, "-22", "codeExpiry");
    let v = app
        .put(
            &path,
            json!({"name": "ok_name", "periodPhoneSendLimit": limit(9, 1, 1)}),
        )
        .await;
    assert_error(&v, "-22", "periodPhoneSendLimit.unit");
    let v = app.put(&path, json!({"name": "taken_name"})).await;
    assert_error(&v, "-20", "already exists");
    let v = app
        .put("/v3/otp/app/update/zzzzzzzz", json!({"name": "ok_name"}))
        .await;
    assert_error(&v, "-24", "does not exist");
    let v = app.post_raw(&path, "{").await;
    assert_error(&v, "-22", "body");
    // None of the refused updates changed anything.
    let d = details(&app, &format!("/v3/otp/app/details/{id}")).await;
    assert_eq!(d["codeExpiry"], 3, "{d}");
    assert!(d["name"].as_str().unwrap().starts_with("app_"), "{d}");

    // A body appId equal to the path's is fine.
    let v = app
        .put(&path, json!({"name": "ok_name", "appId": id}))
        .await;
    assert_ok(&v);
    assert_eq!(v["data"]["name"], "ok_name");
}

#[tokio::test]
async fn app_update_with_the_id_in_the_body_only() {
    let app = TestApp::spawn().await;
    let id = app.app(json!({})).await;
    let v = app
        .put(
            "/v3/otp/app/update",
            json!({"appId": id, "name": "body_id_app", "codeExpiry": 15}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(v["data"]["appId"], id.as_str());
    assert_eq!(v["data"]["name"], "body_id_app");
    assert_eq!(v["data"]["codeExpiry"], 15);
    let v = app
        .post(
            "/otp/app/update",
            json!({"appId": id, "name": "body_id_post"}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(v["data"]["codeExpiry"], 15);
    let v = app
        .put("/v3/otp/app/update", json!({"name": "no_id_given"}))
        .await;
    assert_error(&v, "-22", "appId");
}

// ---------------------------------------------------------------- templates

fn template_body(app_id: &str, name: &str) -> Value {
    json!({"appId": app_id, "name": name, "text": "##code## is your code"})
}

/// `base` with the fields of `extra` set.
fn with(mut base: Value, extra: Value) -> Value {
    merge(&mut base, extra);
    base
}

/// `base` without `field`.
fn without(mut base: Value, field: &str) -> Value {
    base.as_object_mut().expect("an object").remove(field);
    base
}

#[tokio::test]
async fn template_add_echoes_the_spec_example() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    let body = json!({
        "appId": app_id,
        "name": "name",
        "text": "##code## is your verification,expires in 5 minutes! ",
        "codeType": 1,
        "codeLength": 4,
        "speechRate": 50,
        "language": "EN",
        "maxDuration": 59,
        "repeatCnt": 1,
        "senderId": "senderId",
    });
    let v = app.post(TEMPLATE_ADD, body.clone()).await;
    assert_ok(&v);
    let d = &v["data"];
    assert!(d["templateId"].as_i64().is_some_and(|n| n > 0), "{d}");
    for (k, expected) in body.as_object().unwrap() {
        assert_eq!(&d[k], expected, "field {k}: {d}");
    }
}

#[tokio::test]
async fn template_add_defaults() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    let v = app
        .post(TEMPLATE_ADD, template_body(&app_id, "plain"))
        .await;
    assert_ok(&v);
    let d = &v["data"];
    assert_eq!(d["appId"], app_id.as_str());
    assert_eq!(d["name"], "plain");
    assert_eq!(d["text"], "##code## is your code");
    assert_eq!(d["codeType"], 1);
    assert_eq!(d["codeLength"], 4);
    assert_eq!(d["speechRate"], 50);
    assert_eq!(d["language"], "EN");
    assert_eq!(d["maxDuration"], 59);
    assert_eq!(d["repeatCnt"], 1);
    assert!(d["senderId"].is_null(), "{d}");
    // Ids are unique and increasing per server.
    let second = app.template(&app_id, json!({})).await;
    assert!(second > d["templateId"].as_i64().unwrap());
}

#[tokio::test]
async fn template_add_rejects_bad_fields() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    let good = template_body(&app_id, "good_tpl");
    let bad = |extra: Value| with(good.clone(), extra);
    let long_text = format!("##code##{}", "x".repeat(249));
    assert_eq!(long_text.chars().count(), 257);
    let cases = vec![
        (bad(json!({"text": "your code is {code}"})), "text"),
        (bad(json!({"text": long_text})), "text"),
        (without(good.clone(), "text"), "text"),
        (without(good.clone(), "appId"), "appId"),
        (without(good.clone(), "name"), "name"),
        (bad(json!({"name": "abc"})), "name"),
        (bad(json!({"codeType": 5})), "codeType"),
        (bad(json!({"codeType": 0})), "codeType"),
        (bad(json!({"codeLength": 3})), "codeLength"),
        (bad(json!({"codeLength": 11})), "codeLength"),
        (bad(json!({"codeLength": "four"})), "codeLength"),
        (bad(json!({"speechRate": 101})), "speechRate"),
        (bad(json!({"speechRate": -1})), "speechRate"),
        (bad(json!({"language": "XX"})), "language"),
        (bad(json!({"maxDuration": 4})), "maxDuration"),
        (bad(json!({"maxDuration": 600})), "maxDuration"),
        (bad(json!({"repeatCnt": 0})), "repeatCnt"),
        (bad(json!({"repeatCnt": 11})), "repeatCnt"),
        (bad(json!({"senderId": "bad-char!"})), "senderId"),
    ];
    assert_each_invalid(&app, TEMPLATE_ADD, cases).await;
    assert_eq!(app.get("/v3/otp/template/list").await["data"], json!([]));
}

#[tokio::test]
async fn template_add_accepts_boundaries() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    let text = format!("##code##{}", "y".repeat(248));
    let body = with(
        template_body(&app_id, &"n".repeat(32)),
        json!({
            "text": text,
            "codeType": 4,
            "codeLength": 10,
            "speechRate": 0,
            "language": "CN",
            "maxDuration": 599,
            "repeatCnt": 10,
            "senderId": "+14155552671",
        }),
    );
    let v = app.post(TEMPLATE_ADD, body.clone()).await;
    assert_ok(&v);
    assert_eq!(v["data"]["text"].as_str().unwrap().chars().count(), 256);
    assert_eq!(v["data"]["codeType"], 4);
    assert_eq!(v["data"]["senderId"], "+14155552671");
    let body = with(
        template_body(&app_id, "low_bounds"),
        json!({"codeLength": 4, "speechRate": 100, "maxDuration": 5, "repeatCnt": 1, "language": "BD"}),
    );
    assert_ok(&app.post(TEMPLATE_ADD, body).await);
}

#[tokio::test]
async fn template_add_needs_an_existing_app_and_a_fresh_name() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    let v = app
        .post(TEMPLATE_ADD, template_body("zzzzzzzz", "orphan"))
        .await;
    assert_error(&v, "-24", "does not exist");
    assert_ok(
        &app.post(TEMPLATE_ADD, template_body(&app_id, "dupe_tpl"))
            .await,
    );
    let v = app
        .post(TEMPLATE_ADD, template_body(&app_id, "dupe_tpl"))
        .await;
    assert_error(&v, "-20", "already exists");
}

#[tokio::test]
async fn ids_given_as_numeric_strings_are_accepted() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow_id = add_flow(&app, "string_id_flow").await;
    let v = app
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl.to_string(), "flowId": flow_id.to_string(), "to": US}),
        )
        .await;
    assert_ok(&v);
    let v = app
        .post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": "abc", "to": US}),
        )
        .await;
    assert_error(&v, "-22", "templateId");
}

#[tokio::test]
async fn template_update_put_and_post() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    let tpl = app
        .template(
            &app_id,
            json!({"codeLength": 6, "senderId": "OTPGATE", "language": "DE"}),
        )
        .await;
    let path = format!("/v3/otp/template/update/{tpl}");

    let v = app
        .put(
            &path,
            json!({"name": "renamed_put", "text": "Code: ##code##"}),
        )
        .await;
    assert_ok(&v);
    let d = &v["data"];
    assert_eq!(d["templateId"], tpl);
    assert_eq!(d["appId"], app_id.as_str());
    assert_eq!(d["name"], "renamed_put");
    assert_eq!(d["text"], "Code: ##code##");
    assert_eq!(d["codeLength"], 6, "absent fields keep their values");
    assert_eq!(d["senderId"], "OTPGATE");
    assert_eq!(d["language"], "DE");

    let v = app
        .post(
            &format!("/otp/template/update/{tpl}"),
            json!({"name": "renamed_post", "text": "##code##", "codeType": 3, "repeatCnt": 2}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(v["data"]["codeType"], 3);
    assert_eq!(v["data"]["repeatCnt"], 2);
    assert_eq!(v["data"]["codeLength"], 6);
    assert_eq!(
        details(&app, &format!("/v3/otp/template/details/{tpl}")).await,
        v["data"]
    );
}

#[tokio::test]
async fn template_update_rules() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    let tpl = app.template(&app_id, json!({"name": "first_tpl"})).await;
    app.template(&app_id, json!({"name": "second_tpl"})).await;
    let path = format!("/v3/otp/template/update/{tpl}");

    let v = app.put(&path, json!({"text": "##code##"})).await;
    assert_error(&v, "-22", "name");
    let v = app.put(&path, json!({"name": "first_tpl"})).await;
    assert_error(&v, "-22", "text");
    let v = app
        .put(&path, json!({"name": "first_tpl", "text": "no code"}))
        .await;
    assert_error(&v, "-22", "text");
    let v = app
        .put(
            &path,
            json!({"name": "first_tpl", "text": "##code##", "codeLength": 11}),
        )
        .await;
    assert_error(&v, "-22", "codeLength");
    let v = app
        .put(&path, json!({"name": "second_tpl", "text": "##code##"}))
        .await;
    assert_error(&v, "-20", "already exists");
    let body = json!({"name": "first_tpl", "text": "##code##"});
    let v = app
        .put("/v3/otp/template/update/999999", body.clone())
        .await;
    assert_error(&v, "-24", "does not exist");
    let v = app.put("/v3/otp/template/update/abc", body).await;
    assert_error(&v, "-22", "templateId");
    let d = details(&app, &format!("/v3/otp/template/details/{tpl}")).await;
    assert_eq!(d["name"], "first_tpl");
    assert_eq!(d["codeLength"], 4, "refused updates change nothing");
}

#[tokio::test]
async fn template_details_and_list() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let tpl2 = app.template(&app_id, json!({})).await;
    let other = OtherTenant::create(&app).await;
    let theirs = other.post(APP_ADD, json!({"name": "their_app"})).await;
    let their_app = theirs["data"]["appId"].as_str().unwrap();
    assert_ok(
        &other
            .post(TEMPLATE_ADD, template_body(their_app, "their_tpl"))
            .await,
    );

    let d = details(&app, &format!("/otp/template/details/{tpl}")).await;
    assert_eq!(d["templateId"], tpl);
    assert_eq!(d["appId"], app_id.as_str());
    for (path, status, field) in [
        ("/v3/otp/template/details/abc", "-22", "templateId"),
        ("/v3/otp/template/details/0", "-22", "templateId"),
        ("/v3/otp/template/details/-3", "-22", "templateId"),
        ("/v3/otp/template/details/999999", "-24", "does not exist"),
    ] {
        assert_error(&app.get(path).await, status, field);
    }

    let list = app.get("/v3/otp/template/list").await;
    assert_ok(&list);
    let mut ids: Vec<i64> = list["data"]
        .as_array()
        .expect("list is an array")
        .iter()
        .map(|t| t["templateId"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![tpl, tpl2], "only this tenant's templates: {list}");
    assert!(list["data"].as_array().unwrap().contains(&d));
    assert_eq!(
        other.get("/otp/template/list").await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// ---------------------------------------------------------------- flows

fn node(waiting: i64, status: i64, channel: &str) -> Value {
    json!({"waitingTime": waiting, "status": status, "channel": channel})
}

/// Adds a one-node flow and returns its id.
async fn add_flow(app: &TestApp, name: &str) -> i64 {
    let v = app
        .post(
            FLOW_ADD,
            json!({"name": name, "flow": [node(30, 1, "sms")]}),
        )
        .await;
    assert_ok(&v);
    v["data"]["flowId"].as_i64().expect("flowId")
}

#[tokio::test]
async fn flow_add_echoes_the_spec_example() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "测试任务流", "flow": [{"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 0}]});
    let v = app.post(FLOW_ADD, body.clone()).await;
    assert_ok(&v);
    let d = &v["data"];
    assert!(d["flowId"].as_i64().is_some_and(|n| n > 0), "{d}");
    assert_eq!(d["name"], "测试任务流");
    assert_eq!(d["flow"], body["flow"]);
}

#[tokio::test]
async fn flow_nodes_keep_order_and_default_channel_cut() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "three_steps", "flow": [
        node(30, 1, "sms"),
        {"waitingTime": 120, "status": 2, "channel": "call", "channelCut": 1},
        node(60, 2, "sms"),
    ]});
    let v = app.post("/otp/flow/add", body).await;
    assert_ok(&v);
    let expected = json!([
        {"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 0},
        {"waitingTime": 120, "status": 2, "channel": "call", "channelCut": 1},
        {"waitingTime": 60, "status": 2, "channel": "sms", "channelCut": 0},
    ]);
    assert_eq!(v["data"]["flow"], expected);
}

#[tokio::test]
async fn flow_add_rejects_bad_fields() {
    let app = TestApp::spawn().await;
    let one = |n: Value| json!({"name": "bad_flow", "flow": [n]});
    let cases = vec![
        (one(node(29, 1, "sms")), "flow[0].waitingTime"),
        (one(node(121, 1, "sms")), "flow[0].waitingTime"),
        (
            one(json!({"status": 1, "channel": "sms"})),
            "flow[0].waitingTime",
        ),
        (one(node(30, 3, "sms")), "flow[0].status"),
        (one(node(30, 1, "sna")), "flow[0].channel"),
        (
            one(json!({"waitingTime": 30, "status": 1})),
            "flow[0].channel",
        ),
        (
            one(json!({"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 2})),
            "flow[0].channelCut",
        ),
        (
            json!({"name": "bad_flow", "flow": [node(30, 1, "sms"), node(30, 0, "call")]}),
            "flow[1].status",
        ),
        (json!({"name": "bad_flow", "flow": []}), "flow"),
        (json!({"name": "bad_flow"}), "flow"),
        (json!({"name": "bad_flow", "flow": "sms"}), "flow"),
        (json!({"flow": [node(30, 1, "sms")]}), "name"),
        (json!({"name": "abc", "flow": [node(30, 1, "sms")]}), "name"),
    ];
    assert_each_invalid(&app, FLOW_ADD, cases).await;
    assert_eq!(app.get("/v3/otp/flow/list").await["data"], json!([]));
}

#[tokio::test]
async fn flow_add_accepts_the_legacy_list_key() {
    let app = TestApp::spawn().await;
    let v = app
        .post(
            FLOW_ADD,
            json!({"name": "legacy_flow", "flowDTOList": [node(45, 2, "call")]}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(
        v["data"]["flow"],
        json!([{"waitingTime": 45, "status": 2, "channel": "call", "channelCut": 0}])
    );
}

#[tokio::test]
async fn flow_names_are_unique() {
    let app = TestApp::spawn().await;
    add_flow(&app, "dupe_flow").await;
    let v = app
        .post(
            FLOW_ADD,
            json!({"name": "dupe_flow", "flow": [node(30, 2, "call")]}),
        )
        .await;
    assert_error(&v, "-20", "already exists");
}

#[tokio::test]
async fn flow_update_details_and_list() {
    let app = TestApp::spawn().await;
    let id = add_flow(&app, "flow_one").await;
    let id2 = add_flow(&app, "flow_two").await;
    let path = format!("/v3/otp/flow/update/{id}");

    let v = app
        .put(
            &path,
            json!({"name": "flow_one_put", "flow": [node(90, 2, "call")]}),
        )
        .await;
    assert_ok(&v);
    assert_eq!(v["data"]["flowId"], id);
    assert_eq!(v["data"]["name"], "flow_one_put");
    assert_eq!(v["data"]["flow"][0]["channel"], "call");

    let body =
        json!({"name": "flow_one_post", "flowDTOList": [node(30, 1, "sms"), node(60, 2, "call")]});
    let v = app.post(&format!("/otp/flow/update/{id}"), body).await;
    assert_ok(&v);
    assert_eq!(v["data"]["flow"].as_array().unwrap().len(), 2);
    let d = details(&app, &format!("/v3/otp/flow/details/{id}")).await;
    assert_eq!(d, v["data"]);

    let v = app
        .put(
            &path,
            json!({"name": "flow_two", "flow": [node(30, 1, "sms")]}),
        )
        .await;
    assert_error(&v, "-20", "already exists");
    let v = app
        .put(
            &path,
            json!({"name": "flow_one_x", "flow": [node(30, 1, "email")]}),
        )
        .await;
    assert_error(&v, "-22", "flow[0].channel");
    let v = app.put(&path, json!({"name": "flow_one_x"})).await;
    assert_error(&v, "-22", "flow");
    let v = app
        .put(
            "/v3/otp/flow/update/999999",
            json!({"name": "nowhere", "flow": [node(30, 1, "sms")]}),
        )
        .await;
    assert_error(&v, "-24", "does not exist");
    assert_error(
        &app.get("/v3/otp/flow/details/999999").await,
        "-24",
        "does not exist",
    );
    assert_error(&app.get("/v3/otp/flow/details/abc").await, "-22", "flowId");
    assert_eq!(
        details(&app, &format!("/otp/flow/details/{id}")).await,
        d,
        "refused updates change nothing"
    );

    let list = app.get("/otp/flow/list").await;
    assert_ok(&list);
    let list = list["data"].as_array().expect("list is an array").clone();
    assert_eq!(list.len(), 2);
    assert!(list.contains(&d));
    assert!(
        list.iter()
            .any(|f| f["flowId"] == id2 && f["name"] == "flow_two")
    );
}

#[tokio::test]
async fn send_with_a_flow() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let flow_id = add_flow(&app, "send_flow").await;
    let send = |flow: Value| {
        app.post(
            "/v3/otp/verification/send",
            json!({"appId": app_id, "templateId": tpl, "flowId": flow, "to": US}),
        )
    };
    let v = send(json!(flow_id)).await;
    assert_ok(&v);
    assert_eq!(v["data"]["channel"], "sms");
    let v = send(json!(999_999)).await;
    assert_error(&v, "-24", "does not exist");
    let v = send(json!(null)).await;
    assert_ok(&v);
}

// ---------------------------------------------------------------- backfill

fn rate_body(app_id: &str) -> Value {
    json!({
        "appId": app_id,
        "mcc": 460,
        "backfillNumber": "100",
        "backfillCardinalNumber": "1000",
        "backfillNow": "10",
        "callbackTime": "2023-01-29T09:59:58+08:00",
    })
}

#[tokio::test]
async fn backfill_rate_accepts_the_spec_example_and_upserts() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    for _ in 0..2 {
        let v = app.post(BACKFILL_RATE, rate_body(&app_id)).await;
        assert_ok(&v);
        assert!(v["data"].is_null(), "{v}");
    }
    let minimal = json!({"appId": app_id, "mcc": "460", "backfillNow": "99.5", "callbackTime": "2023-02-01T00:00:00+08:00"});
    assert_ok(&app.post("/otp/backfillRate", minimal).await);
}

#[tokio::test]
async fn backfill_rate_rejects_bad_fields() {
    let app = TestApp::spawn().await;
    let app_id = app.app(json!({})).await;
    let good = rate_body(&app_id);
    let bad = |extra: Value| with(good.clone(), extra);
    let mut cases: Vec<(Value, &str)> = ["appId", "mcc", "backfillNow", "callbackTime"]
        .into_iter()
        .map(|field| (without(good.clone(), field), field))
        .collect();
    cases.extend([
        (bad(json!({"backfillNow": "101"})), "backfillNow"),
        (bad(json!({"backfillNow": "1.234"})), "backfillNow"),
        (bad(json!({"backfillNow": "ten"})), "backfillNow"),
        (bad(json!({"callbackTime": "yesterday"})), "callbackTime"),
        (bad(json!({"mcc": "abc"})), "mcc"),
    ]);
    assert_each_invalid(&app, BACKFILL_RATE, cases).await;
    let v = app
        .post(BACKFILL_RATE, bad(json!({"appId": "zzzzzzzz"})))
        .await;
    assert_error(&v, "-24", "does not exist");
}

fn postback_body(app_id: &str, vid: &str) -> Value {
    json!({"appId": app_id, "verificationId": vid, "number": US, "time": "1681184764000"})
}

#[tokio::test]
async fn postback_backfill() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, US).await;
    let v = app.post(POSTBACK, postback_body(&app_id, &vid)).await;
    assert_ok(&v);
    assert!(v["data"].is_null(), "{v}");
    assert_ok(
        &app.post("/otp/postback/backfill", postback_body(&app_id, &vid))
            .await,
    );

    let no_time = without(postback_body(&app_id, &vid), "time");
    assert_error(&app.post(POSTBACK, no_time).await, "-22", "time");

    let v = app
        .post(POSTBACK, postback_body(&app_id, "12345678901234567890"))
        .await;
    assert_error(&v, "-24", "does not exist");

    let (other_app, other_tpl) = app.app_and_template().await;
    let other_vid = app.send_ok(&other_app, other_tpl, US).await;
    let v = app.post(POSTBACK, postback_body(&app_id, &other_vid)).await;
    assert_error(&v, "-24", "does not exist");
}
