//! The OpenAPI 3.1 description of every route and every response it can give, built here by
//! hand so that it documents the dialect exactly as served (including Buka's "HTTP 200 for
//! every outcome" envelope). A test walks it against the running router.

use axum::Json;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::buka::BASES;
use super::sgate::BASE as SGATE_BASE;
use super::sgate::envelope::{CODES as SGATE_CODES, FAULT_CODES as SGATE_FAULT_CODES, meaning};
use crate::domain::sgate::{APP_NAME_MAX_CHARS, MOBILE_MAX_CHARS, TEST_NUMBERS};

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

/// The SGate codes with their meanings, one Markdown list line each.
fn sgate_code_list() -> String {
    SGATE_CODES
        .iter()
        .map(|&c| {
            let status = if SGATE_FAULT_CODES.contains(&c) {
                "HTTP 500"
            } else {
                "HTTP 200"
            };
            format!("- `{c}` {} ({status})", meaning(c))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn sgate_tag_description() -> String {
    let tests: Vec<String> = TEST_NUMBERS
        .iter()
        .map(|(n, sid)| format!("`{n}` → `{sid}`"))
        .collect();
    format!(
        "The SGate payout-API OTP dialect under `{SGATE_BASE}`. Every request carries `User-Agent` \
         and the five `V-` headers; `V-Signature` is the Base64 MD5withRSA signature, with the \
         merchant's private key, of the lowercase MD5 hex of \
         `{{\"api_key\":…,\"timestamp\":…,\"nonce_str\":…,\"url\":…,\"method\":…,\"body\":…}}` \
         (one line, no spaces, `/` and non-ASCII unescaped; `url` is the path with its query, \
         `body` the raw JSON body, `\"\"` for GET). Every answer is the envelope \
         `{{code, message, data, sensitiveFields, requestId}}` with the same five `V-` headers, \
         signed the same way with the system key (`otpgate merchant system-key`) over the \
         request's `api_key`, `url` and `method` and the response body; the signature is empty \
         when the merchant was not authenticated.\n\n\
         Business failures, bad input and failed authentication included, are HTTP 200 with a \
         `code`; faults on the gateway's side are HTTP 500. The checks run in this order: \
         `User-Agent` (1211), a missing `V-` header (1208), `V-Api-Version` (1210), the key \
         (1201), the IP allow-list (1205), the timestamp window (1204), the nonce (1209), the \
         signature (1213); then a missing field (1102) or a badly formed one (1103).\n\n\
         Codes:\n{}\n\n\
         Sandbox merchants: the test numbers send nothing, always answer their fixed `sessionid` \
         and verify with `123456` any number of times: {}.",
        sgate_code_list(),
        tests.join(", ")
    )
}

/// The envelope every SGate answer has; `codes` are the ones this status can carry.
fn sgate_envelope(data: Value, codes: &[i64]) -> Value {
    json!({
        "type": "object",
        "required": ["code", "message", "data", "sensitiveFields", "requestId"],
        "properties": {
            "code": {
                "type": "integer",
                "enum": codes,
                "description": "200 success; otherwise the SGate code of the failure (see the tag)"
            },
            "message": { "type": "string", "description": "\"Request succeeded.\", or the code's meaning and what exactly failed" },
            "data": data,
            "sensitiveFields": { "type": "object", "description": "Names of RSA-encrypted fields; always {} for OTP calls" },
            "requestId": { "type": "string", "pattern": "^[0-9A-F]{32}$", "description": "Unique per request" }
        }
    })
}

/// The five `V-` headers of every SGate answer.
fn sgate_response_headers() -> Value {
    let h = |description: &str, schema: Value| json!({ "description": description, "required": true, "schema": schema });
    json!({
        "V-Api-Key": h("The request's V-Api-Key, echoed (empty when it was missing or unusable)", s("string")),
        "V-Api-Version": h("Always 1", json!({ "type": "string", "const": "1" })),
        "V-Timestamp": h("Unix seconds of the answer", json!({ "type": "string", "pattern": "^[0-9]+$" })),
        "V-Nonce-Str": h("A fresh random string", json!({ "type": "string", "minLength": 1 })),
        "V-Signature": h(
            "Base64 MD5withRSA signature with the system key over the request's api_key, url and method, this V-Timestamp and V-Nonce-Str, and the response body; empty when the merchant was not authenticated",
            s("string"),
        )
    })
}

/// The request headers of every SGate call. They are documented as required; a call without
/// one is still answered HTTP 200, with code 1211 or 1208.
fn sgate_request_headers() -> Vec<Value> {
    let h = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "header", "required": true, "description": description, "schema": schema });
    vec![
        h(
            "User-Agent",
            "Any non-empty value; missing: code 1211",
            s("string"),
        ),
        h(
            "V-Api-Key",
            "The merchant's API key (`otpgate merchant create`); unknown or disabled: 1201",
            s("string"),
        ),
        h(
            "V-Api-Version",
            "1; anything else: 1210",
            json!({ "type": "string", "examples": ["1"] }),
        ),
        h(
            "V-Timestamp",
            "Unix seconds, the signed `timestamp`; outside the server's tolerance window: 1204, not a number: 1209",
            json!({ "type": "string", "examples": ["1717560142"] }),
        ),
        h(
            "V-Nonce-Str",
            "Random string of at most 128 characters, the signed `nonce_str`; reused within the window: 1209",
            s("string"),
        ),
        h(
            "V-Signature",
            "Base64 MD5withRSA signature of the request (see the tag); not verifying: 1213",
            s("string"),
        ),
    ]
}

/// `sendOtp`, `otpDetail` and `checkOtp`.
fn sgate_paths(paths: &mut Map<String, Value>) {
    let empty = || r("SgateEmpty");
    let ok_codes: Vec<i64> = SGATE_CODES
        .iter()
        .copied()
        .filter(|c| !SGATE_FAULT_CODES.contains(c))
        .collect();
    let op = |id: &str, summary: &str, description: &str, data: Value| {
        json!({
            "summary": summary,
            "description": description,
            "tags": ["sgate"],
            "operationId": format!("sgate_{id}"),
            "parameters": sgate_request_headers(),
            "responses": {
                "200": {
                    "description": "Success (code 200) and every business failure, authentication and bad input included (another code; data is {})",
                    "headers": sgate_response_headers(),
                    "content": { "application/json": { "schema": sgate_envelope(data, &ok_codes) } }
                },
                "500": {
                    "description": "A fault on the gateway's side: code 1000, or 1206 when the answer could not be signed (data is {})",
                    "headers": sgate_response_headers(),
                    "content": { "application/json": { "schema": sgate_envelope(empty(), &SGATE_FAULT_CODES) } }
                }
            }
        })
    };
    let body = |schema: &str| {
        json!({
            "required": true,
            "description": "Raw JSON, signed exactly as sent. Missing or empty fields: 1102; fields of the wrong type, length or form: 1103 (mobile: 1612)",
            "content": { "application/json": { "schema": r(schema) } }
        })
    };

    let mut send = op(
        "sendOtp",
        "Send an OTP by SMS",
        "Sends a 6-digit code valid 5 minutes to a Saudi mobile, in the `stcpay` text with the product name. One send per minute per effective number (1212). `appname` must be one of the merchant's product names (1603 when it has none, 1604 otherwise); `type` other than stcpay: 1605; no SMS route for the number: 1601.",
        json!({ "anyOf": [r("SgateSent"), empty()] }),
    );
    send["requestBody"] = body("SgateSendOtpRequest");
    paths.insert(format!("{SGATE_BASE}/otp/sendOtp"), json!({ "post": send }));

    let mut detail = op(
        "otpDetail",
        "The state of a send",
        "The message-gateway and delivery-report states of the send with this `sessionid`. Unknown sessionid: 1610; the session of another number: 1608. The request is signed with `url` = the path and the query exactly as sent, and `body` = \"\".",
        json!({ "anyOf": [r("SgateDetail"), empty()] }),
    );
    let params = detail["parameters"].as_array_mut().expect("parameters");
    params.push(json!({
        "name": "mobile", "in": "query", "required": true,
        "description": format!("The number the OTP was sent to, in any of the four formats (at most {MOBILE_MAX_CHARS} characters; URL-encode the +)"),
        "schema": s("string"),
        "example": "512345678"
    }));
    params.push(json!({
        "name": "sessionid", "in": "query", "required": true,
        "description": "The sendOtp sessionid (32 characters; otherwise 1103)",
        "schema": s("string"),
        "example": "10290d703f8254593ff93533f00af153"
    }));
    paths.insert(
        format!("{SGATE_BASE}/otp/otpDetail"),
        json!({ "get": detail }),
    );

    let mut check = op(
        "checkOtp",
        "Check a code",
        "Code 200 when the code is right; the code is then used up (sandbox test numbers excepted). Wrong code: 1609; expired or already used: 1607; five wrong codes spent: 1606; unknown sessionid: 1610; the session of another number: 1608; not yet handed to the SMS route: 1611.",
        empty(),
    );
    check["requestBody"] = body("SgateCheckOtpRequest");
    paths.insert(
        format!("{SGATE_BASE}/otp/checkOtp"),
        json!({ "post": check }),
    );
}

fn sgate_schemas() -> Value {
    let mobile = json!({
        "type": ["string", "integer"],
        "maxLength": MOBILE_MAX_CHARS,
        "minimum": 0,
        "description": format!("5xxxxxxxx, 05xxxxxxxx, 9665xxxxxxxx or +9665xxxxxxxx (at most {MOBILE_MAX_CHARS} characters), as a string or a JSON number; any other form: 1612. Echoed as sent."),
        "examples": ["+966512345678", 512345678]
    });
    json!({
        "SgateEmpty": { "type": "object", "maxProperties": 0 },
        "SgateSendOtpRequest": {
            "type": "object",
            "required": ["mobile", "appname"],
            "examples": [{ "mobile": "+966512345678", "appname": "TestApp" }],
            "properties": {
                "mobile": mobile,
                "appname": { "type": "string", "maxLength": APP_NAME_MAX_CHARS, "description": "One of the merchant's product names (the SMS's {APP_NAME})" },
                "type": { "type": "string", "description": "Optional; only `stcpay` (the default)", "examples": ["stcpay"] }
            }
        },
        "SgateCheckOtpRequest": {
            "type": "object",
            "required": ["mobile", "code", "sessionid"],
            "examples": [{ "mobile": "512345678", "code": "123456", "sessionid": "10290d703f8254593ff93533f00af153" }],
            "properties": {
                "mobile": mobile,
                "code": { "type": ["string", "integer"], "minLength": 6, "maxLength": 6, "description": "The 6-digit code (a string: it can start with 0)", "examples": ["123456"] },
                "sessionid": { "type": "string", "minLength": 32, "maxLength": 32, "description": "The sendOtp sessionid", "examples": ["10290d703f8254593ff93533f00af153"] }
            }
        },
        "SgateSent": {
            "type": "object",
            "required": ["mobile", "appname", "sessionid"],
            "properties": {
                "mobile": { "type": "string", "description": "As sent" },
                "appname": s("string"),
                "sessionid": { "type": "string", "pattern": "^[0-9a-f]{32}$" }
            }
        },
        "SgateDetail": {
            "type": "object",
            "required": ["mobile", "sessionid", "status", "reportstatus", "created_at"],
            "properties": {
                "mobile": { "type": "string", "description": "As sent" },
                "sessionid": s("string"),
                "status": { "type": "string", "enum": ["unknown", "create", "pending", "sending", "success", "fail"], "description": "Message-gateway state" },
                "reportstatus": { "type": "string", "enum": ["unknown", "pending", "success", "fail"], "description": "Delivery-report state" },
                "created_at": { "type": "integer", "description": "Unix seconds of the send" }
            }
        }
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
    sgate_paths(&mut paths);
    paths.insert(
        "/openapi.json".into(),
        json!({ "get": { "summary": "This document", "tags": ["operator"], "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": { "schema": { "type": "object" } } } } } } }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "otpgate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted OTP gateway. The Buka dialect is served under /v3/otp and the ITNIO base /otp with identical behaviour. Every Buka outcome is HTTP 200 with {status, reason, data}. The SGate payout-API OTP dialect is served under /openApi/v1 (tag sgate)."
        },
        "tags": [
            { "name": "buka", "description": "The Buka OTP v3 dialect under /v3/otp" },
            { "name": "itnio", "description": "The same operations under the ITNIO base /otp" },
            { "name": "sgate", "description": sgate_tag_description() },
            { "name": "operator", "description": "Health and this document" }
        ],
        "paths": paths,
        "components": {
            "schemas": schemas_all(),
            "securitySchemes": {
                "ApiKey": { "type": "apiKey", "in": "header", "name": "Api-Key" },
                "Timestamp": { "type": "apiKey", "in": "header", "name": "Timestamp", "description": "Unix time in seconds" },
                "Sign": { "type": "apiKey", "in": "header", "name": "Sign", "description": "md5(apiKey + apiSecret + Timestamp), hex" }
            }
        }
    })
}

fn schemas_all() -> Value {
    let mut all = schemas();
    if let (Some(a), Value::Object(b)) = (all.as_object_mut(), sgate_schemas()) {
        a.extend(b);
    }
    all
}

pub async fn serve() -> impl IntoResponse {
    Json(document())
}
