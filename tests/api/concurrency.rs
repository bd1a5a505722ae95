//! Limits and single-use rules hold under concurrent requests.

use futures::future::join_all;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn hundred_concurrent_sends_against_a_phone_limit_of_one_let_one_through() {
    let app = TestApp::spawn().await;
    let app_id = app
        .app(json!({"periodPhoneSendLimit": {"enabled": true, "unit": 1, "period": 1, "limit": 1}}))
        .await;
    let tpl = app.template(&app_id, json!({})).await;
    let results = join_all((0..100).map(|_| app.send(&app_id, tpl, "14155552671"))).await;
    let ok = results.iter().filter(|v| v["status"] == "0").count();
    let limited = results.iter().filter(|v| v["status"] == "-28").count();
    assert_eq!(ok, 1, "exactly one send passes");
    assert_eq!(limited, 99, "every other send is limited");
    assert_eq!(app.provider.sent().len(), 1);
}

#[tokio::test]
async fn twenty_concurrent_correct_verifies_match_once() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, "14155552671").await;
    let code = app.last_code();
    let results = join_all((0..20).map(|_| app.verify(&vid, &code))).await;
    let matched: Vec<i64> = results
        .iter()
        .map(|v| v["data"]["matched"].as_i64().unwrap())
        .collect();
    assert_eq!(
        matched.iter().filter(|m| **m == 0).count(),
        1,
        "{matched:?}"
    );
    assert_eq!(
        matched.iter().filter(|m| **m == 4).count(),
        19,
        "{matched:?}"
    );
}

#[tokio::test]
async fn concurrent_duplicates_of_one_order_id_send_one_message() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let body = json!({"appId": app_id, "templateId": tpl, "to": "14155552671", "orderId": "dup-1"});
    let results =
        join_all((0..30).map(|_| app.post("/v3/otp/verification/send", body.clone()))).await;
    let ok: Vec<_> = results.iter().filter(|v| v["status"] == "0").collect();
    assert_eq!(ok.len(), 1);
    let id = &ok[0]["data"]["verificationId"];
    for v in results.iter().filter(|v| v["status"] != "0") {
        assert_eq!(v["status"], "-20", "{v}");
        assert_eq!(&v["data"]["verificationId"], id);
    }
    assert_eq!(app.provider.sent().len(), 1);
}

#[tokio::test]
async fn concurrent_wrong_codes_never_exceed_the_budget() {
    let app = TestApp::spawn().await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, "14155552671").await;
    let code = app.last_code();
    let wrong = if code == "0000" { "1111" } else { "0000" };
    let results = join_all((0..12).map(|_| app.verify(&vid, wrong))).await;
    let counted = results
        .iter()
        .filter(|v| v["status"] == "0" && v["data"]["matched"] == 2)
        .count();
    let locked = results.iter().filter(|v| v["status"] == "-23").count();
    assert_eq!(counted, 5, "exactly five wrong codes are counted");
    assert_eq!(locked, 7);
    assert_eq!(app.verify(&vid, &code).await["status"], "-23");
}
