//! The OpenAPI document matches the router: every documented operation is served, and
//! health endpoints answer.

use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut count = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            let concrete = path
                .replace("{appId}", "abcd1234")
                .replace("{templateId}", "1")
                .replace("{flowId}", "1")
                .replace("{verificationId}", "12345678901234567890");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .client
                .request(m, format!("{}{}", app.base, concrete))
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{method} {path}");
            let body: Value = resp.json().await.unwrap();
            if path.starts_with("/v3/otp") || path.starts_with("/otp") {
                assert_eq!(
                    body["status"], "-1",
                    "unsigned call to {method} {path}: {body}"
                );
            }
            count += 1;
        }
    }
    // 24 Buka operations under two bases, plus healthz, readyz and openapi.json.
    assert_eq!(count, 24 * 2 + 3);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(format!("{}/v3/otp/nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .delete(format!("{}/v3/otp/verification/send", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ok");
}

#[tokio::test]
async fn oversized_bodies_get_a_buka_error() {
    let app = TestApp::spawn().await;
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(200 * 1024));
    let v = app.post_raw("/v3/otp/app/add", &big).await;
    assert_error(&v, "-22", "body");
}
