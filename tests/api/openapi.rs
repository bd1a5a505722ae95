//! The OpenAPI document matches the router: every documented operation is served, and
//! health endpoints answer.

use serde_json::{Value, json};

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
            let headers = resp.headers().clone();
            let body: Value = resp.json().await.unwrap();
            if path.starts_with("/v3/otp") || path.starts_with("/otp") {
                assert_eq!(
                    body["status"], "-1",
                    "unsigned call to {method} {path}: {body}"
                );
            }
            if path.starts_with("/openApi/v1") {
                // reqwest sends no User-Agent: the first SGate check.
                assert_eq!(body["code"], 1211, "{method} {path}: {body}");
                assert_sgate_headers(&headers, &format!("{method} {path}"));
            }
            count += 1;
        }
    }
    // 24 Buka operations under two bases, the 3 SGate ones, plus healthz, readyz and
    // openapi.json.
    assert_eq!(count, 24 * 2 + 3 + 3);
}

/// The SGate operations: their tag, the six request headers, the bodies and query, the two
/// responses (HTTP 200 for every business outcome, 500 for faults) with the `V-` headers, and
/// the full code list.
#[tokio::test]
async fn sgate_operations_are_documented() {
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
    let schemas = &doc["components"]["schemas"];
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
            None => v.clone(),
        }
    };
    let ops = [
        (
            "post",
            "/openApi/v1/otp/sendOtp",
            Some("SgateSendOtpRequest"),
        ),
        ("get", "/openApi/v1/otp/otpDetail", None),
        (
            "post",
            "/openApi/v1/otp/checkOtp",
            Some("SgateCheckOtpRequest"),
        ),
    ];
    for (method, path, body) in ops {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert_eq!(op["tags"], json!(["sgate"]), "{path}");
        let params = op["parameters"].as_array().expect("parameters");
        for h in [
            "User-Agent",
            "V-Api-Key",
            "V-Api-Version",
            "V-Timestamp",
            "V-Nonce-Str",
            "V-Signature",
        ] {
            let p = params
                .iter()
                .find(|p| p["name"] == h && p["in"] == "header")
                .unwrap_or_else(|| panic!("{path}: header {h}"));
            assert_eq!(p["required"], true, "{path}: {h}");
        }
        match body {
            Some(name) => {
                assert_eq!(
                    op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                    format!("#/components/schemas/{name}"),
                    "{path}"
                );
                assert!(schemas[name]["properties"]["mobile"].is_object(), "{name}");
            }
            None => {
                for q in ["mobile", "sessionid"] {
                    assert!(
                        params
                            .iter()
                            .any(|p| p["name"] == q && p["in"] == "query" && p["required"] == true),
                        "{path}: query {q}"
                    );
                }
                assert!(op["requestBody"].is_null(), "{path}");
            }
        }
        let responses = op["responses"].as_object().expect("responses");
        let mut statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, ["200", "500"], "{path}");
        for (status, r) in responses {
            let schema = &r["content"]["application/json"]["schema"];
            let mut required: Vec<&str> = schema["required"]
                .as_array()
                .expect("required")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            required.sort_unstable();
            assert_eq!(
                required,
                ["code", "data", "message", "requestId", "sensitiveFields"],
                "{path} {status}"
            );
            assert_eq!(schema["properties"]["code"]["type"], "integer");
            for h in [
                "V-Api-Key",
                "V-Api-Version",
                "V-Timestamp",
                "V-Nonce-Str",
                "V-Signature",
            ] {
                assert!(r["headers"][h].is_object(), "{path} {status}: {h}");
            }
        }
        let ok_codes = &responses["200"]["content"]["application/json"]["schema"]["properties"]["code"]
            ["enum"];
        for c in [200, 1102, 1103, 1201, 1208, 1211, 1213, 1609, 1612] {
            assert!(
                ok_codes.as_array().unwrap().contains(&json!(c)),
                "{path}: {c} in {ok_codes}"
            );
        }
        assert_eq!(
            responses["500"]["content"]["application/json"]["schema"]["properties"]["code"]["enum"],
            json!([1000, 1206])
        );
    }
    let sent = resolve(
        &doc["paths"]["/openApi/v1/otp/sendOtp"]["post"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["properties"]["data"]["anyOf"][0],
    );
    assert_eq!(sent["required"], json!(["mobile", "appname", "sessionid"]));
    let detail = resolve(
        &doc["paths"]["/openApi/v1/otp/otpDetail"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["properties"]["data"]["anyOf"][0],
    );
    assert_eq!(
        detail["required"],
        json!([
            "mobile",
            "sessionid",
            "status",
            "reportstatus",
            "created_at"
        ])
    );
    assert_eq!(
        schemas["SgateSendOtpRequest"]["properties"]["appname"]["maxLength"],
        32
    );
    assert_eq!(
        schemas["SgateCheckOtpRequest"]["properties"]["sessionid"]["minLength"],
        32
    );
    assert_eq!(
        schemas["SgateCheckOtpRequest"]["properties"]["code"]["maxLength"],
        6
    );
    assert_eq!(
        schemas["SgateSendOtpRequest"]["properties"]["mobile"]["type"],
        json!(["string", "integer"])
    );

    // The tag documents every code with its meaning.
    let tag = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .find(|t| t["name"] == "sgate")
        .expect("the sgate tag");
    let text = tag["description"].as_str().expect("description");
    for line in [
        "`1211` User Agent verification failed",
        "`1208` Missing request header",
        "`1213` Signature verification failed",
        "`1612` OTP sending number format error",
        "`1000` Failed (HTTP 500)",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
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

/// The five `V-` headers of an unauthenticated SGate answer: no key echoed, no signature.
#[track_caller]
fn assert_sgate_headers(headers: &reqwest::header::HeaderMap, what: &str) {
    let h = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{what}: header {name}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(h("v-api-version"), "1", "{what}");
    assert!(h("v-timestamp").parse::<i64>().is_ok(), "{what}");
    assert!(!h("v-nonce-str").is_empty(), "{what}");
    assert_eq!(h("v-signature"), "", "{what}");
    assert_eq!(h("v-api-key"), "", "{what}");
}

#[tokio::test]
async fn oversized_sgate_bodies_get_an_sgate_envelope() {
    let app = TestApp::spawn().await;
    let big = format!("{{\"mobile\":\"{}\"}}", "5".repeat(200 * 1024));
    for op in ["sendOtp", "checkOtp"] {
        let resp = app
            .client
            .post(format!("{}/openApi/v1/otp/{op}", app.base))
            .header("User-Agent", "test")
            .header("Content-Type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{op}");
        let headers = resp.headers().clone();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], 1103, "{op}: {v}");
        assert!(v["message"].as_str().unwrap().contains("body"), "{v}");
        assert_eq!(v["data"], json!({}), "{v}");
        assert_sgate_headers(&headers, op);
    }
}

#[tokio::test]
async fn oversized_bodies_get_a_buka_error() {
    let app = TestApp::spawn().await;
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(200 * 1024));
    let v = app.post_raw("/v3/otp/app/add", &big).await;
    assert_error(&v, "-22", "body");
}
