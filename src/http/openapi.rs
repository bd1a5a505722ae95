//! The OpenAPI 3.1 description of every route and every response it can give, built here by
//! hand so that it documents the dialect exactly as served (including Buka's "HTTP 200 for
//! every outcome" envelope). A test walks it against the running router.

use axum::Json;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::buka::BASES;

fn s(t: &str) -> Value {
    json!({ "type": t })
}
fn nullable(t: &str) -> Value {
    json!({ "type": [t, "null"] })
}
fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}
fn obj(props: Value) -> Value {
    json!({ "type": "object", "properties": props })
}

fn envelope(data: Value) -> Value {
    json!({
        "type": "object",
        "required": ["status", "reason"],
        "properties": {
            "status": { "type": "string", "description": "\"0\" success; otherwise a Buka status code (-1, -2, -16, -18, -20 … -29)" },
            "reason": { "type": "string" },
            "data": { "anyOf": [data, { "type": "null" }, r("ErrorData")] }
        }
    })
}

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
    data: Value,
    path_param: Option<(&'static str, &'static str)>,
}

fn operations() -> Vec<Op> {
    let op = |method, path, summary, body, data, path_param| Op {
        method,
        path,
        summary,
        body,
        data,
        path_param,
    };
    let arr = |name: &str| json!({ "type": "array", "items": r(name) });
    vec![
        op(
            "post",
            "/app/add",
            "Create an app",
            Some("AppRequest"),
            r("App"),
            None,
        ),
        op(
            "put",
            "/app/update/{appId}",
            "Update an app",
            Some("AppRequest"),
            r("App"),
            Some(("appId", "string")),
        ),
        op(
            "post",
            "/app/update/{appId}",
            "Update an app (POST form)",
            Some("AppRequest"),
            r("App"),
            Some(("appId", "string")),
        ),
        op(
            "put",
            "/app/update",
            "Update an app named in the body",
            Some("AppRequest"),
            r("App"),
            None,
        ),
        op(
            "post",
            "/app/update",
            "Update an app named in the body (POST form)",
            Some("AppRequest"),
            r("App"),
            None,
        ),
        op(
            "get",
            "/app/details/{appId}",
            "App details",
            None,
            r("App"),
            Some(("appId", "string")),
        ),
        op(
            "post",
            "/template/add",
            "Create a template",
            Some("TemplateRequest"),
            r("Template"),
            None,
        ),
        op(
            "put",
            "/template/update/{templateId}",
            "Update a template",
            Some("TemplateRequest"),
            r("Template"),
            Some(("templateId", "integer")),
        ),
        op(
            "post",
            "/template/update/{templateId}",
            "Update a template (POST form)",
            Some("TemplateRequest"),
            r("Template"),
            Some(("templateId", "integer")),
        ),
        op(
            "get",
            "/template/details/{templateId}",
            "Template details",
            None,
            r("Template"),
            Some(("templateId", "integer")),
        ),
        op(
            "get",
            "/template/list",
            "Every template of the tenant",
            None,
            arr("Template"),
            None,
        ),
        op(
            "post",
            "/verification/send",
            "Send a generated code",
            Some("SendRequest"),
            r("SendResult"),
            None,
        ),
        op(
            "post",
            "/verification/sendRule",
            "Send a code the caller supplies",
            Some("SendRuleRequest"),
            r("SendResult"),
            None,
        ),
        op(
            "post",
            "/verification/resend",
            "Resend; returns a new verificationId of the same session",
            Some("ResendRequest"),
            r("SendResult"),
            None,
        ),
        op(
            "post",
            "/verification/verify",
            "Check a code",
            Some("VerifyRequest"),
            r("VerifyResult"),
            None,
        ),
        op(
            "get",
            "/verification/record/{verificationId}",
            "Record of a verification",
            None,
            r("Record"),
            Some(("verificationId", "string")),
        ),
        op(
            "post",
            "/verification/orderId/record",
            "Record of the send that used an orderId",
            Some("OrderRecordRequest"),
            r("OrderRecord"),
            None,
        ),
        op(
            "post",
            "/flow/add",
            "Create a task flow",
            Some("FlowRequest"),
            r("Flow"),
            None,
        ),
        op(
            "put",
            "/flow/update/{flowId}",
            "Update a task flow",
            Some("FlowRequest"),
            r("Flow"),
            Some(("flowId", "integer")),
        ),
        op(
            "post",
            "/flow/update/{flowId}",
            "Update a task flow (POST form)",
            Some("FlowRequest"),
            r("Flow"),
            Some(("flowId", "integer")),
        ),
        op(
            "get",
            "/flow/details/{flowId}",
            "Task flow details",
            None,
            r("Flow"),
            Some(("flowId", "integer")),
        ),
        op(
            "get",
            "/flow/list",
            "Every task flow of the tenant",
            None,
            arr("Flow"),
            None,
        ),
        op(
            "post",
            "/backfillRate",
            "Report the conversion rate of an app in a country",
            Some("BackfillRateRequest"),
            json!({"type": "null"}),
            None,
        ),
        op(
            "post",
            "/postback/backfill",
            "Report that one code was typed back",
            Some("PostbackRequest"),
            json!({"type": "null"}),
            None,
        ),
    ]
}

fn schemas() -> Value {
    let limit = obj(json!({
        "enabled": s("boolean"),
        "unit": { "type": ["integer", "null"], "description": "1 day, 2 hour, 3 minute, 4 second" },
        "period": { "type": ["integer", "null"], "description": "1-90" },
        "limit": { "type": ["integer", "null"], "description": "1-10000000000" }
    }));
    let int_or_string = json!({ "type": ["integer", "string", "null"] });
    let text = json!({ "type": ["string", "integer", "null"] });
    let sms = obj(json!({
        "submitTm": s("string"), "sendTm": nullable("string"), "doneTm": nullable("string"),
        "mcc": nullable("integer"), "mnc": nullable("integer"), "sender": nullable("string"),
        "chargeCnt": s("integer"), "pay": s("string"),
        "status": { "type": "integer", "description": "-1 pending, 0 delivered, 1 failed" },
        "reason": s("string")
    }));
    let call = obj(json!({
        "terminationCode": s("integer"), "terminationReason": s("string"),
        "submitTime": s("string"), "callTime": nullable("string"), "ringingTime": nullable("string"),
        "answerTime": nullable("string"), "hangupTime": nullable("string"),
        "callDuration": s("integer"), "chargedDuration": s("integer"), "displayNum": nullable("string"),
        "billPeriodstring": nullable("string"), "code": s("string"), "rate": s("string"),
        "cost": s("string"), "costEur": s("string")
    }));
    let verifications = obj(json!({
        "matched": { "type": "integer", "description": "-1 not yet verified, 0 verified, 1 sending, 2 failed" },
        "verifiedDate": nullable("string"), "oriReceiver": s("string"), "channel": s("string"),
        "orderId": nullable("string")
    }));
    json!({
        "ErrorData": obj(json!({
            "verificationId": s("string"), "to": s("string"), "channel": s("string"), "matched": s("integer")
        })),
        "Limit": limit,
        "App": obj(json!({
            "appId": s("string"), "name": s("string"), "codeExpiry": s("integer"), "createTime": s("string"),
            "periodTotalSendLimit": r("Limit"), "periodPhoneSendLimit": r("Limit")
        })),
        "AppRequest": obj(json!({
            "appId": text, "name": { "type": ["string", "null"], "minLength": 4, "maxLength": 32 },
            "codeExpiry": { "type": ["integer", "null"], "minimum": 1, "maximum": 60 },
            "periodTotalSendLimit": r("Limit"), "periodPhoneSendLimit": r("Limit")
        })),
        "Template": obj(json!({
            "templateId": s("integer"), "appId": s("string"), "name": s("string"), "text": s("string"),
            "codeType": s("integer"), "codeLength": s("integer"), "speechRate": s("integer"),
            "language": s("string"), "maxDuration": s("integer"), "repeatCnt": s("integer"),
            "senderId": nullable("string")
        })),
        "TemplateRequest": obj(json!({
            "appId": text, "name": nullable("string"), "text": { "type": ["string", "null"], "description": "1-256 characters containing ##code##" },
            "codeType": int_or_string, "codeLength": int_or_string, "speechRate": int_or_string,
            "language": nullable("string"), "maxDuration": int_or_string, "repeatCnt": int_or_string,
            "senderId": text
        })),
        "FlowNode": obj(json!({
            "waitingTime": s("integer"), "status": s("integer"), "channel": s("string"), "channelCut": s("integer")
        })),
        "FlowNodeRequest": obj(json!({
            "waitingTime": int_or_string, "status": int_or_string, "channel": nullable("string"), "channelCut": int_or_string
        })),
        "Flow": obj(json!({ "flowId": s("integer"), "name": s("string"), "flow": { "type": "array", "items": r("FlowNode") } })),
        "FlowRequest": obj(json!({ "name": nullable("string"), "flow": { "type": ["array", "null"], "items": r("FlowNodeRequest") } })),
        "SendRequest": obj(json!({
            "appId": text, "templateId": int_or_string, "flowId": int_or_string, "to": text,
            "channel": { "type": ["string", "null"], "description": "sms | call | sna" }, "orderId": text
        })),
        "SendRuleRequest": obj(json!({
            "appId": text, "templateId": int_or_string, "code": text, "flowId": int_or_string, "to": text,
            "channel": nullable("string"), "orderId": text
        })),
        "SendResult": obj(json!({ "verificationId": s("string"), "to": s("string"), "channel": s("string"), "snaUrl": s("string") })),
        "ResendRequest": obj(json!({ "verificationId": text, "channel": nullable("string") })),
        "VerifyRequest": obj(json!({ "verificationId": text, "code": text })),
        "VerifyResult": obj(json!({
            "verificationId": s("string"), "to": nullable("string"), "channel": nullable("string"),
            "matched": { "type": "integer", "description": "0 success, 1 not yet submitted, 2 wrong code, 3 unknown id, 4 already verified, 5 expired" }
        })),
        "SmsRecord": sms,
        "CallRecord": call,
        "SnaRecord": obj(json!({
            "postVerificationTime": s("string"), "verificationBackTime": s("string"),
            "mcc": s("integer"), "mnc": s("integer"), "status": s("integer"), "reason": s("string")
        })),
        "Verifications": verifications,
        "Record": obj(json!({
            "verificationId": s("string"), "verifications": r("Verifications"),
            "sms": r("SmsRecord"), "call": r("CallRecord"), "sna": { "type": "array", "items": r("SnaRecord") }
        })),
        "OrderRecordRequest": obj(json!({ "appId": text, "orderId": text })),
        "OrderRecord": obj(json!({
            "orderId": nullable("string"), "flowId": nullable("integer"), "verifications": r("Verifications"),
            "sms": { "type": "array", "items": r("SmsRecord") }, "call": { "type": "array", "items": r("CallRecord") },
            "sna": { "type": "array", "items": r("SnaRecord") }
        })),
        "BackfillRateRequest": obj(json!({
            "appId": text, "mcc": text, "backfillNumber": text, "backfillCardinalNumber": text,
            "backfillNow": text, "callbackTime": text
        })),
        "PostbackRequest": obj(json!({ "appId": text, "verificationId": text, "number": text, "time": text })),
        "Health": obj(json!({ "status": s("string") })),
        "NotFound": obj(json!({ "status": s("string"), "reason": s("string"), "data": { "type": "null" } }))
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for base in BASES {
        for op in operations() {
            let full = format!("{base}{}", op.path);
            let mut o = json!({
                "summary": op.summary,
                "tags": [if base == "/v3/otp" { "buka" } else { "itnio" }],
                "operationId": format!("{}{}_{}", if base == "/v3/otp" { "buka" } else { "itnio" }, op.path.replace(['/', '{', '}'], "_"), op.method),
                "security": [{ "ApiKey": [], "Timestamp": [], "Sign": [] }],
                "responses": {
                    "200": {
                        "description": "Every outcome, errors included: status \"0\" or a Buka status code",
                        "content": { "application/json": { "schema": envelope(op.data.clone()) } }
                    }
                }
            });
            if let Some(body) = op.body {
                o["requestBody"] = json!({
                    "required": true,
                    "content": { "application/json": { "schema": r(body) } }
                });
            }
            if let Some((name, ty)) = op.path_param {
                let schema = if ty == "integer" {
                    json!({ "type": "integer", "minimum": 1, "maximum": 9_007_199_254_740_991_i64 })
                } else {
                    json!({ "type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$" })
                };
                o["parameters"] =
                    json!([{ "name": name, "in": "path", "required": true, "schema": schema }]);
            }
            let entry = paths.entry(full).or_insert_with(|| json!({}));
            entry[op.method] = o;
        }
    }
    let health = |summary: &str, codes: Value| json!({ "get": { "summary": summary, "tags": ["operator"], "responses": codes } });
    let ok = json!({ "description": "OK", "content": { "application/json": { "schema": r("Health") } } });
    paths.insert("/healthz".into(), health("Liveness", json!({ "200": ok })));
    paths.insert(
        "/readyz".into(),
        health(
            "Readiness: the database answers",
            json!({ "200": ok, "503": { "description": "The database does not answer", "content": { "application/json": { "schema": r("Health") } } } }),
        ),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({ "get": { "summary": "This document", "tags": ["operator"], "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": { "schema": { "type": "object" } } } } } } }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "otpgate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted OTP gateway. The Buka dialect is served under /v3/otp and the ITNIO base /otp with identical behaviour. Every Buka outcome is HTTP 200 with {status, reason, data}."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "ApiKey": { "type": "apiKey", "in": "header", "name": "Api-Key" },
                "Timestamp": { "type": "apiKey", "in": "header", "name": "Timestamp", "description": "Unix time in seconds" },
                "Sign": { "type": "apiKey", "in": "header", "name": "Sign", "description": "md5(apiKey + apiSecret + Timestamp), hex" }
            }
        }
    })
}

pub async fn serve() -> impl IntoResponse {
    Json(document())
}
