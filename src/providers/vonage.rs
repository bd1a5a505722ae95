//! Vonage-style SMS routes (the SMS API) with their delivery-receipt webhook.
//!
//! Submits are `POST {base_url}/sms/json` (form) with `client-ref=<attempt id>` and
//! `callback=<this route's hook>`; the first part's `message-id` is the message id. A
//! multi-part message gets one receipt per part, each with the same `client-ref`: the first
//! final one settles the attempt.
//!
//! Receipts (GET query, POST form or POST JSON) are believed only with a correct `sig` (Vonage
//! "signed webhooks", which must be enabled on the account) no more than five minutes away
//! from this server's clock. The signed string is every parameter but `sig`, sorted by name,
//! each as `&name=value` with `&` and `=` in names and values replaced by `_`; `md5hash` is
//! the hex MD5 of that string followed by the signature secret, the other methods the hex
//! HMAC of it keyed by the secret. Signatures are compared without regard to case.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::http_util::{self, ct_eq};
use super::{
    HookError, HookReply, HookRequest, OutboundMessage, Provider, ProviderContext, ProviderError,
    Receipt, ReceiptKey, Submitted,
};
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::domain::Channel;
use crate::domain::sms::{Encoding, analyze};

/// `[routes.vonage]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageConfig {
    /// `https://rest.nexmo.com` unless a compatible API lives elsewhere.
    #[serde(default = "default_base")]
    pub base_url: String,
    /// The account's API key.
    pub api_key: String,
    /// The account's API secret (`env:NAME` reads it from the environment).
    pub api_secret: Secret,
    /// The signature secret receipts are signed with (`sig`).
    pub signature_secret: Secret,
    /// `md5hash`, `md5`, `sha1`, `sha256` or `sha512` (as set on the Vonage account).
    #[serde(default = "default_sig")]
    pub signature_method: String,
    /// The sender id or number to send from (else the route's / template's sender).
    pub from: Option<String>,
    /// How long one API request may take in all, seconds (default 15).
    #[serde(default = "http_util::default_timeout")]
    pub timeout_secs: u64,
}

fn default_base() -> String {
    "https://rest.nexmo.com".into()
}
fn default_sig() -> String {
    "md5hash".into()
}

const SECTION: &str = "vonage";

/// Largest distance between a receipt's `timestamp` and this server's clock, seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// How receipts are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigMethod {
    /// MD5 of the string followed by the secret (lower-case hex).
    Md5Hash,
    /// HMAC-MD5 keyed by the secret (upper-case hex).
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl SigMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md5hash" => Some(Self::Md5Hash),
            "md5" => Some(Self::Md5),
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

impl VonageConfig {
    /// What is wrong with this section, each problem naming `routes.<route>.vonage.<field>`.
    pub fn problems(&self, route: &str) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(http_util::url_problem(
            route,
            SECTION,
            "base_url",
            &self.base_url,
        ));
        p.extend(http_util::required_problem(
            route,
            SECTION,
            "api_key",
            &self.api_key,
        ));
        p.extend(http_util::secret_problem(
            route,
            SECTION,
            "api_secret",
            &self.api_secret,
        ));
        p.extend(http_util::secret_problem(
            route,
            SECTION,
            "signature_secret",
            &self.signature_secret,
        ));
        if SigMethod::parse(&self.signature_method).is_none() {
            p.push(format!(
                "routes.{route}.vonage.signature_method = {:?} is unknown: use md5hash, md5, sha1, sha256 or sha512",
                self.signature_method
            ));
        }
        if let Some(f) = &self.from
            && f.trim().is_empty()
        {
            p.push(format!(
                "routes.{route}.vonage.from is empty: remove it or set a sender"
            ));
        }
        p
    }
}

pub fn build(cfg: &VonageConfig, ctx: ProviderContext) -> anyhow::Result<Arc<dyn Provider>> {
    let api_secret = http_util::resolve(&cfg.api_secret, &ctx.route, SECTION, "api_secret")?;
    let signature_secret = http_util::resolve(
        &cfg.signature_secret,
        &ctx.route,
        SECTION,
        "signature_secret",
    )?;
    if signature_secret.is_empty() {
        anyhow::bail!("routes.{}.vonage.signature_secret is empty", ctx.route);
    }
    let method = SigMethod::parse(&cfg.signature_method).ok_or_else(|| {
        anyhow::anyhow!(
            "routes.{}.vonage.signature_method = {:?} is unknown",
            ctx.route,
            cfg.signature_method
        )
    })?;
    Ok(Arc::new(VonageProvider {
        route: ctx.route,
        url: format!("{}/sms/json", cfg.base_url.trim_end_matches('/')),
        api_key: cfg.api_key.clone(),
        api_secret,
        signature_secret,
        method,
        from: cfg.from.clone(),
        hook_url: ctx.hook_url,
        clock: ctx.clock,
        http: ctx.http,
        timeout: std::time::Duration::from_secs(cfg.timeout_secs.max(1)),
    }))
}

struct VonageProvider {
    route: String,
    url: String,
    api_key: String,
    api_secret: String,
    signature_secret: String,
    method: SigMethod,
    from: Option<String>,
    hook_url: String,
    clock: SharedClock,
    http: reqwest::Client,
    /// Bound on one request (the shared client has the connect timeout).
    timeout: std::time::Duration,
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    messages: Vec<PartAnswer>,
}

#[derive(Deserialize)]
struct PartAnswer {
    status: Option<String>,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
}

#[async_trait]
impl Provider for VonageProvider {
    fn kind(&self) -> &'static str {
        "vonage"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Sms
    }

    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        let Some(from) = self.from.as_deref().or(msg.sender.as_deref()) else {
            return Err(ProviderError::Permanent(
                "no sender: set routes.<route>.vonage.from or a sender".into(),
            ));
        };
        let kind = match analyze(&msg.text).encoding {
            Encoding::Ucs2 => "unicode",
            Encoding::Gsm7 => "text",
        };
        let client_ref = msg.attempt_id.to_string();
        let form: [(&str, &str); 9] = [
            ("api_key", &self.api_key),
            ("api_secret", &self.api_secret),
            ("from", from),
            ("to", &msg.to),
            ("text", &msg.text),
            ("type", kind),
            ("client-ref", &client_ref),
            ("status-report-req", "1"),
            ("callback", &self.hook_url),
        ];
        http_util::submit(
            self.http.post(&self.url).form(&form).timeout(self.timeout),
            &self.route,
            msg,
            "vonage",
            classify,
        )
        .await
    }

    async fn hook(&self, req: &HookRequest) -> Result<HookReply, HookError> {
        let params = hook_params(req)?;
        let sig = params
            .iter()
            .find(|(k, _)| k == "sig")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if sig.is_empty() {
            tracing::warn!(route.name = %self.route, "vonage receipt without a signature refused");
            return Err(HookError::Forbidden("missing sig".into()));
        }
        let now_secs = self.clock.now().timestamp();
        let ts = params
            .iter()
            .find(|(k, _)| k == "timestamp")
            .and_then(|(_, v)| v.trim().parse::<i64>().ok());
        match ts {
            Some(ts) if now_secs.abs_diff(ts) <= MAX_SKEW_SECS.unsigned_abs() => {}
            _ => {
                tracing::warn!(route.name = %self.route, "vonage receipt with a missing or stale timestamp refused");
                return Err(HookError::Forbidden("missing or stale timestamp".into()));
            }
        }
        if !verify(&params, &sig, &self.signature_secret, self.method) {
            tracing::warn!(route.name = %self.route, "vonage receipt with a wrong signature refused");
            return Err(HookError::Forbidden("wrong sig".into()));
        }
        let p: BTreeMap<&str, &str> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let key = match p.get("client-ref").filter(|r| !r.is_empty()) {
            Some(r) => ReceiptKey::Attempt(
                r.trim()
                    .parse()
                    .map_err(|_| HookError::BadRequest("bad client-ref".into()))?,
            ),
            None => match p.get("messageId").filter(|m| !m.is_empty()) {
                Some(m) => ReceiptKey::Message(m.to_string()),
                None => {
                    return Err(HookError::BadRequest(
                        "no client-ref and no messageId".into(),
                    ));
                }
            },
        };
        let status = p
            .get("status")
            .copied()
            .ok_or_else(|| HookError::BadRequest("no status".into()))?;
        tracing::info!(
            route.name = %self.route,
            receipt.key = ?key,
            receipt.status = status,
            "vonage delivery receipt"
        );
        let at_ms = p
            .get("message-timestamp")
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok())
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or_else(|| http_util::now_ms(&self.clock));
        let mnc = p.get("network-code").and_then(|c| mnc_of(c));
        let err_code = p.get("err-code").copied().unwrap_or_default();
        let receipt = match status {
            "delivered" => Some(Receipt {
                delivered: true,
                at_ms,
                reason: None,
                mnc,
                call: None,
            }),
            "expired" | "failed" | "rejected" => Some(Receipt {
                delivered: false,
                at_ms,
                reason: Some(if err_code.is_empty() {
                    status.to_string()
                } else {
                    format!("{status} (err-code {err_code})")
                }),
                mnc,
                call: None,
            }),
            // accepted, buffered, unknown: not final; the receipt timeout decides otherwise.
            _ => None,
        };
        Ok(HookReply::ok(
            receipt.map(|r| vec![(key, r)]).unwrap_or_default(),
        ))
    }
}

/// The parameters of a receipt: the JSON or form body of a POST, else the query.
fn hook_params(req: &HookRequest) -> Result<Vec<(String, String)>, HookError> {
    let body = req.body.trim_ascii();
    if body.is_empty() {
        return Ok(req.query.clone());
    }
    let json = req
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
        || body.starts_with(b"{");
    if json {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|_| HookError::BadRequest("unreadable JSON".into()))?;
        Ok(v.into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect())
    } else {
        serde_urlencoded::from_bytes(body)
            .map_err(|_| HookError::BadRequest("unreadable form".into()))
    }
}

/// The MNC in an MCCMNC network code (`23410` → 10).
pub fn mnc_of(network_code: &str) -> Option<i64> {
    let c = network_code.trim();
    if c.len() < 5 || c.len() > 6 || !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    c[3..].parse().ok()
}

/// The `/sms/json` answer: the first part's message id, or why not.
fn classify(status: u16, body: &str) -> Result<String, ProviderError> {
    if !(200..300).contains(&status) {
        let text = format!(
            "vonage answered HTTP {status}: {}",
            http_util::snippet(body)
        );
        return Err(if http_util::status_is_retryable(status) {
            ProviderError::Retryable(text)
        } else {
            ProviderError::Permanent(text)
        });
    }
    let answer: SendAnswer = serde_json::from_str(body).map_err(|_| {
        ProviderError::Permanent(format!(
            "vonage answered HTTP {status} with unreadable JSON: {}",
            http_util::snippet(body)
        ))
    })?;
    let Some(first) = answer.messages.first() else {
        return Err(ProviderError::Permanent(
            "vonage answered without messages".into(),
        ));
    };
    match first.status.as_deref() {
        Some("0") => first
            .message_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProviderError::Permanent("vonage answered without a message-id".into())),
        code => {
            let code = code.unwrap_or("?");
            let text = format!(
                "vonage: {} (status {code})",
                first.error_text.as_deref().unwrap_or("refused")
            );
            // 1 throttled, 5 internal error: both documented as "try again".
            if matches!(code, "1" | "5") {
                Err(ProviderError::Retryable(text))
            } else {
                Err(ProviderError::Permanent(text))
            }
        }
    }
}

/// The string Vonage signs: `&name=value` for every parameter but `sig`, sorted by name, with
/// `&` and `=` in names and values replaced by `_`. `skip_empty` leaves out parameters with an
/// empty value (one of Vonage's libraries does).
pub fn signing_string(params: &[(String, String)], skip_empty: bool) -> String {
    let clean = |s: &str| s.replace(['&', '='], "_");
    let sorted: BTreeMap<&str, &str> = params
        .iter()
        .filter(|(k, v)| k != "sig" && !(skip_empty && v.trim().is_empty()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted
        .into_iter()
        .map(|(k, v)| format!("&{}={}", clean(k), clean(v)))
        .collect()
}

/// The signature of a signing string with this secret and method (hex; lower-case for
/// md5hash, upper-case for the HMACs, as Vonage sends them).
pub fn sign(signing: &str, secret: &str, method: SigMethod) -> String {
    fn hmac_hex<M: Mac + KeyInit>(key: &str, data: &str) -> String {
        match <M as KeyInit>::new_from_slice(key.as_bytes()) {
            Ok(mut m) => {
                m.update(data.as_bytes());
                hex::encode_upper(m.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }
    match method {
        SigMethod::Md5Hash => {
            let mut h = Md5::new();
            h.update(signing.as_bytes());
            h.update(secret.as_bytes());
            hex::encode(h.finalize())
        }
        SigMethod::Md5 => hmac_hex::<Hmac<Md5>>(secret, signing),
        SigMethod::Sha1 => hmac_hex::<Hmac<Sha1>>(secret, signing),
        SigMethod::Sha256 => hmac_hex::<Hmac<Sha256>>(secret, signing),
        SigMethod::Sha512 => hmac_hex::<Hmac<Sha512>>(secret, signing),
    }
}

/// Whether `sig` signs these parameters (case-insensitive, constant time). Both ways Vonage's
/// libraries build the string are accepted: with and without empty-valued parameters.
pub fn verify(params: &[(String, String)], sig: &str, secret: &str, method: SigMethod) -> bool {
    let given = sig.trim().to_ascii_lowercase();
    let mut ok = false;
    for skip_empty in [false, true] {
        let expected =
            sign(&signing_string(params, skip_empty), secret, method).to_ascii_lowercase();
        ok |= ct_eq(given.as_bytes(), expected.as_bytes());
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn md5hash_matches_vonages_library_vector() {
        // The vector of Vonage's Python library tests (secret "secret").
        let p = pairs(&[
            ("a", "1"),
            ("b", "2"),
            ("timestamp", "1461605396"),
            ("sig", "6af838ef94998832dbfc29020b564830"),
        ]);
        assert_eq!(signing_string(&p, false), "&a=1&b=2&timestamp=1461605396");
        assert_eq!(
            sign(&signing_string(&p, false), "secret", SigMethod::Md5Hash),
            "6af838ef94998832dbfc29020b564830"
        );
        assert!(verify(
            &p,
            "6AF838EF94998832DBFC29020B564830",
            "secret",
            SigMethod::Md5Hash
        ));
        assert!(!verify(
            &p,
            "6af838ef94998832dbfc29020b564831",
            "secret",
            SigMethod::Md5Hash
        ));
        assert!(!verify(
            &p,
            "6af838ef94998832dbfc29020b564830",
            "other",
            SigMethod::Md5Hash
        ));
    }

    #[test]
    fn hmac_methods_give_upper_case_hex() {
        let s = "&a=1&b=2&timestamp=1461605396";
        // Computed independently with Python's hmac module.
        assert_eq!(
            sign(s, "secret", SigMethod::Md5),
            "C15C21CED558C93A226C305F58F902F2"
        );
        assert_eq!(
            sign(s, "secret", SigMethod::Sha1),
            "3E19A4E6880FDC2C1426BFD0587C98B9532F0210"
        );
        assert_eq!(
            sign(s, "secret", SigMethod::Sha256),
            "A321E824B9B816BE7C3F28859A31749A098713D39F613C80D455BBAFFAE1CD24"
        );
        assert_eq!(
            sign(s, "secret", SigMethod::Sha512),
            "812A18F76680FA0FE1B8BD9EE1625466CEB1BD96242E4D050D2CFD9A7B40166C63ED26EC9702168781B6EDCF1633DB8FF95AF9341701004EEC3FCF9550572EE8"
        );
        for (m, len) in [
            (SigMethod::Md5, 32),
            (SigMethod::Sha1, 40),
            (SigMethod::Sha256, 64),
            (SigMethod::Sha512, 128),
        ] {
            let sig = sign(s, "secret", m);
            assert_eq!(sig.len(), len);
            assert_eq!(sig, sig.to_ascii_uppercase());
        }
    }

    #[test]
    fn ampersands_and_equals_in_values_become_underscores() {
        let p = pairs(&[("text", "a&b=c"), ("sig", "x"), ("empty", "")]);
        assert_eq!(signing_string(&p, false), "&empty=&text=a_b_c");
        assert_eq!(signing_string(&p, true), "&text=a_b_c");
    }

    #[test]
    fn network_codes_give_the_mnc() {
        assert_eq!(mnc_of("23410"), Some(10));
        assert_eq!(mnc_of("310260"), Some(260));
        assert_eq!(mnc_of("2341"), None);
        assert_eq!(mnc_of("abcde"), None);
    }

    #[test]
    fn send_answers_are_classified() {
        let ok = r#"{"message-count":"2","messages":[{"to":"447700900000","message-id":"0A0000000123ABCD1","status":"0"},{"to":"447700900000","message-id":"0A0000000123ABCD2","status":"0"}]}"#;
        assert_eq!(classify(200, ok), Ok("0A0000000123ABCD1".into()));
        let throttled =
            r#"{"message-count":"1","messages":[{"status":"1","error-text":"Throttled"}]}"#;
        assert!(
            matches!(classify(200, throttled), Err(ProviderError::Retryable(t)) if t.contains("Throttled"))
        );
        let bad =
            r#"{"message-count":"1","messages":[{"status":"3","error-text":"Invalid to number"}]}"#;
        assert!(
            matches!(classify(200, bad), Err(ProviderError::Permanent(t)) if t.contains("Invalid to number"))
        );
        assert!(matches!(
            classify(503, ""),
            Err(ProviderError::Retryable(_))
        ));
        assert!(matches!(
            classify(401, ""),
            Err(ProviderError::Permanent(_))
        ));
    }

    #[test]
    fn problems_name_the_fields() {
        let cfg: VonageConfig = serde_json::from_value(serde_json::json!({
            "base_url": "mailto:x", "api_key": "", "api_secret": "env:OTPGATE_SURELY_UNSET_VONAGE",
            "signature_secret": "", "signature_method": "sha3"
        }))
        .unwrap();
        let p = cfg.problems("vo").join("\n");
        for f in [
            "base_url",
            "api_key",
            "api_secret",
            "signature_secret",
            "signature_method",
        ] {
            assert!(p.contains(&format!("routes.vo.vonage.{f}")), "{f}: {p}");
        }
        let ok: VonageConfig = serde_json::from_value(serde_json::json!({
            "api_key": "k", "api_secret": "s", "signature_secret": "sig"
        }))
        .unwrap();
        assert!(ok.problems("vo").is_empty());
    }
}
