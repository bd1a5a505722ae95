//! Twilio-style routes: the Messages API (SMS) and the Calls API (voice), with status
//! callbacks checked by `X-Twilio-Signature`.
//!
//! Submits go to `{base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json` (or `Calls.json`)
//! with HTTP Basic auth `AccountSid:AuthToken`; the answer's `sid` is the message id. The
//! `StatusCallback` is this route's hook with `?ref=<attempt id>`.
//!
//! Callbacks are believed only with a correct `X-Twilio-Signature`:
//! base64(HMAC-SHA1(auth token, URL + every POST parameter's name and value, sorted by name)),
//! over the URL exactly as Twilio called it (`public_url` must be the URL Twilio uses).
//!
//! Calls report `initiated`, `ringing`, `in-progress` (answered) and then a final status.
//! Only the final one carries a receipt; the ring and answer times of the earlier events are
//! kept in memory until then (at most [`CALL_MEMORY`] calls, each for at most an hour). A
//! restart of the node between ringing and the final status loses only those two times: the
//! final receipt still arrives and settles the attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

use super::http_util::{self, ct_eq};
use super::{
    CallReport, HookError, HookReply, HookRequest, OutboundMessage, Provider, ProviderContext,
    ProviderError, Receipt, ReceiptKey, Submitted, termination,
};
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::domain::Channel;

/// `[routes.twilio]`, for `provider = "twilio"` (SMS) and `provider = "twilio-voice"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// `https://api.twilio.com` unless a compatible API lives elsewhere.
    #[serde(default = "default_base")]
    pub base_url: String,
    /// The account (`AC…`) whose API is called; the user name of Basic auth.
    pub account_sid: String,
    /// The account's auth token: the password of Basic auth and the key callbacks are signed
    /// with (`env:NAME` reads it from the environment).
    pub auth_token: Secret,
    /// The number or alphanumeric id to send from (else the route's / template's sender).
    /// Calls need a voice-capable number.
    pub from: Option<String>,
    /// A Messaging Service instead of `from` (SMS only).
    pub messaging_service_sid: Option<String>,
    /// The `<Say voice="…">` of calls, e.g. `Polly.Joanna` (default: Twilio's default voice).
    pub say_voice: Option<String>,
    /// How long one API request may take in all, seconds (default 15).
    #[serde(default = "http_util::default_timeout")]
    pub timeout_secs: u64,
}

fn default_base() -> String {
    "https://api.twilio.com".into()
}

const SECTION: &str = "twilio";

/// Most calls whose ring/answer times are remembered at once.
pub const CALL_MEMORY: usize = 10_000;
/// How long ring/answer times are kept waiting for the call's final status.
const CALL_MEMORY_MS: i64 = 3_600_000;

impl TwilioConfig {
    /// What is wrong with this section, each problem naming `routes.<route>.twilio.<field>`.
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
            "account_sid",
            &self.account_sid,
        ));
        if self.account_sid.contains(['/', '?', '#']) {
            p.push(format!(
                "routes.{route}.twilio.account_sid = {:?} is not an account sid",
                self.account_sid
            ));
        }
        p.extend(http_util::secret_problem(
            route,
            SECTION,
            "auth_token",
            &self.auth_token,
        ));
        if let Some(f) = &self.from
            && f.trim().is_empty()
        {
            p.push(format!(
                "routes.{route}.twilio.from is empty: remove it or set a sender"
            ));
        }
        if let Some(m) = &self.messaging_service_sid
            && m.trim().is_empty()
        {
            p.push(format!(
                "routes.{route}.twilio.messaging_service_sid is empty: remove it or set one"
            ));
        }
        p
    }
}

/// `voice` false: SMS through Messages; true: calls that speak the code.
pub fn build(
    cfg: &TwilioConfig,
    voice: bool,
    ctx: ProviderContext,
) -> anyhow::Result<Arc<dyn Provider>> {
    let auth_token = http_util::resolve(&cfg.auth_token, &ctx.route, SECTION, "auth_token")?;
    let api = format!(
        "{}/2010-04-01/Accounts/{}",
        cfg.base_url.trim_end_matches('/'),
        cfg.account_sid.trim()
    );
    Ok(Arc::new(TwilioProvider {
        voice,
        route: ctx.route,
        api,
        account_sid: cfg.account_sid.trim().to_string(),
        auth_token,
        from: cfg.from.clone(),
        messaging_service_sid: cfg.messaging_service_sid.clone(),
        say_voice: cfg.say_voice.clone(),
        hook_url: ctx.hook_url,
        clock: ctx.clock,
        http: ctx.http,
        timeout: std::time::Duration::from_secs(cfg.timeout_secs.max(1)),
        calls: Mutex::new(HashMap::new()),
    }))
}

struct TwilioProvider {
    voice: bool,
    route: String,
    /// `{base}/2010-04-01/Accounts/{sid}`.
    api: String,
    account_sid: String,
    auth_token: String,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    say_voice: Option<String>,
    hook_url: String,
    clock: SharedClock,
    http: reqwest::Client,
    /// Bound on one request (the shared client has the connect timeout).
    timeout: std::time::Duration,
    /// Ring/answer times of calls in progress, by attempt reference.
    calls: Mutex<HashMap<String, CallTimes>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct CallTimes {
    seen_ms: i64,
    ringing_ms: Option<i64>,
    answer_ms: Option<i64>,
}

/// Twilio's error answer.
#[derive(Deserialize)]
struct ApiError {
    code: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    sid: Option<String>,
}

impl TwilioProvider {
    fn callback(&self, attempt_id: i64) -> String {
        http_util::with_query(&self.hook_url, &[("ref", &attempt_id.to_string())])
    }

    fn sender<'a>(&'a self, msg: &'a OutboundMessage) -> Option<&'a str> {
        self.from.as_deref().or(msg.sender.as_deref())
    }

    async fn post(
        &self,
        resource: &str,
        form: &[(&str, String)],
        msg: &OutboundMessage,
    ) -> Result<Submitted, ProviderError> {
        http_util::submit(
            self.http
                .post(format!("{}/{resource}", self.api))
                .basic_auth(&self.account_sid, Some(&self.auth_token))
                .form(form)
                .timeout(self.timeout),
            &self.route,
            msg,
            "twilio",
            classify,
        )
        .await
    }

    async fn submit_sms(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        let mut form: Vec<(&str, String)> = vec![
            ("To", format!("+{}", msg.to)),
            ("Body", msg.text.clone()),
            ("StatusCallback", self.callback(msg.attempt_id)),
        ];
        match (&self.messaging_service_sid, self.sender(msg)) {
            (Some(mss), _) => form.push(("MessagingServiceSid", mss.clone())),
            (None, Some(from)) => form.push(("From", from.to_string())),
            (None, None) => {
                return Err(ProviderError::Permanent(
                    "no sender: set routes.<route>.twilio.from or a sender".into(),
                ));
            }
        }
        self.post("Messages.json", &form, msg).await
    }

    async fn submit_call(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        let Some(from) = self.sender(msg) else {
            return Err(ProviderError::Permanent(
                "no caller id: set routes.<route>.twilio.from".into(),
            ));
        };
        let (language, repeat, max_duration) = match &msg.voice {
            Some(v) => (v.language.as_str(), v.repeat_cnt, v.max_duration),
            None => ("", 1, 0),
        };
        let mut form: Vec<(&str, String)> = vec![
            ("To", format!("+{}", msg.to)),
            ("From", from.to_string()),
            (
                "Twiml",
                twiml(&msg.text, language, self.say_voice.as_deref(), repeat),
            ),
            ("StatusCallback", self.callback(msg.attempt_id)),
            ("StatusCallbackMethod", "POST".into()),
        ];
        for event in ["initiated", "ringing", "answered", "completed"] {
            form.push(("StatusCallbackEvent", event.into()));
        }
        if max_duration > 0 {
            form.push(("TimeLimit", max_duration.to_string()));
        }
        self.post("Calls.json", &form, msg).await
    }

    /// Checks `X-Twilio-Signature`; the parameters are the form body's.
    fn check_signature(
        &self,
        req: &HookRequest,
        params: &[(String, String)],
    ) -> Result<(), HookError> {
        let given = req
            .headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if given.is_empty() {
            tracing::warn!(route.name = %self.route, "twilio callback without a signature refused");
            return Err(HookError::Forbidden("missing X-Twilio-Signature".into()));
        }
        let expected = signature(&self.auth_token, &req.url, params);
        if !ct_eq(given.trim().as_bytes(), expected.as_bytes()) {
            tracing::warn!(route.name = %self.route, "twilio callback with a wrong signature refused");
            return Err(HookError::Forbidden("wrong X-Twilio-Signature".into()));
        }
        Ok(())
    }

    /// The attempt reference of a callback: `?ref=` (ours), else the SID Twilio gave.
    fn key(req: &HookRequest, sid: Option<&String>) -> Result<ReceiptKey, HookError> {
        match req.query_param("ref") {
            Some(r) => r
                .trim()
                .parse()
                .map(ReceiptKey::Attempt)
                .map_err(|_| HookError::BadRequest("bad ref".into())),
            None => sid
                .filter(|s| !s.is_empty())
                .map(|s| ReceiptKey::Message(s.clone()))
                .ok_or_else(|| HookError::BadRequest("no ref and no sid".into())),
        }
    }

    fn message_status(
        &self,
        req: &HookRequest,
        p: &HashMap<String, String>,
    ) -> Result<HookReply, HookError> {
        let key = Self::key(req, p.get("MessageSid").or(p.get("SmsSid")))?;
        let status = p
            .get("MessageStatus")
            .or(p.get("SmsStatus"))
            .map(String::as_str)
            .ok_or_else(|| HookError::BadRequest("no MessageStatus".into()))?;
        tracing::info!(route.name = %self.route, receipt.key = ?key, receipt.status = status, "twilio message status");
        let at_ms = http_util::now_ms(&self.clock);
        let receipt = match status {
            "delivered" => Some(Receipt {
                delivered: true,
                at_ms,
                reason: None,
                mnc: None,
                call: None,
            }),
            "undelivered" | "failed" => Some(Receipt {
                delivered: false,
                at_ms,
                reason: Some(match p.get("ErrorCode").filter(|c| !c.is_empty()) {
                    Some(code) => format!("{status} (Twilio error {code})"),
                    None => status.to_string(),
                }),
                mnc: None,
                call: None,
            }),
            _ => None,
        };
        Ok(HookReply::ok(
            receipt.map(|r| vec![(key, r)]).unwrap_or_default(),
        ))
    }

    fn call_status(
        &self,
        req: &HookRequest,
        p: &HashMap<String, String>,
    ) -> Result<HookReply, HookError> {
        let key = Self::key(req, p.get("CallSid"))?;
        let status = p
            .get("CallStatus")
            .map(String::as_str)
            .ok_or_else(|| HookError::BadRequest("no CallStatus".into()))?;
        let now = http_util::now_ms(&self.clock);
        let at_ms = p
            .get("Timestamp")
            .and_then(|t| chrono::DateTime::parse_from_rfc2822(t).ok())
            .map(|t| t.timestamp_millis())
            .unwrap_or(now);
        tracing::info!(route.name = %self.route, receipt.key = ?key, call.status = status, "twilio call status");
        let memo = match &key {
            ReceiptKey::Attempt(a) => format!("a{a}"),
            ReceiptKey::Message(m) => format!("m{m}"),
        };
        let code = match status {
            "ringing" => {
                self.remember(&memo, now, |t| {
                    t.ringing_ms.get_or_insert(at_ms);
                });
                return Ok(HookReply::ok(Vec::new()));
            }
            "in-progress" | "answered" => {
                self.remember(&memo, now, |t| {
                    t.answer_ms.get_or_insert(at_ms);
                });
                return Ok(HookReply::ok(Vec::new()));
            }
            "completed" => termination::ANSWERED,
            "busy" => termination::BUSY,
            "no-answer" => termination::NO_ANSWER,
            "failed" | "canceled" => termination::FAILED,
            // queued, initiated and anything new: not final.
            _ => return Ok(HookReply::ok(Vec::new())),
        };
        let times = self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&memo)
            .unwrap_or_default();
        let duration_secs = p
            .get("CallDuration")
            .and_then(|d| d.trim().parse::<i64>().ok())
            .unwrap_or(0)
            .max(0);
        let answered = code == termination::ANSWERED;
        let answer_ms = if answered {
            times.answer_ms.or(Some(at_ms - duration_secs * 1000))
        } else {
            None
        };
        let reason = (!answered).then(|| {
            let base = termination::reason(code).to_string();
            match p.get("ErrorCode").filter(|c| !c.is_empty()) {
                Some(c) => format!("{base} (Twilio error {c})"),
                None => base,
            }
        });
        let receipt = Receipt {
            delivered: answered,
            at_ms,
            reason,
            mnc: None,
            call: Some(CallReport {
                termination_code: code,
                ringing_ms: times.ringing_ms,
                answer_ms,
                duration_secs: if answered { duration_secs } else { 0 },
            }),
        };
        Ok(HookReply::ok(vec![(key, receipt)]))
    }

    /// Updates the remembered times of a call, keeping the memory bounded: entries older than
    /// an hour go, and when it is still full the oldest entry makes room.
    fn remember(&self, memo: &str, now: i64, update: impl FnOnce(&mut CallTimes)) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if !calls.contains_key(memo) && calls.len() >= CALL_MEMORY {
            calls.retain(|_, t| now - t.seen_ms < CALL_MEMORY_MS);
            if calls.len() >= CALL_MEMORY
                && let Some(oldest) = calls
                    .iter()
                    .min_by_key(|(_, t)| t.seen_ms)
                    .map(|(k, _)| k.clone())
            {
                calls.remove(&oldest);
            }
        }
        let entry = calls.entry(memo.to_string()).or_insert(CallTimes {
            seen_ms: now,
            ..CallTimes::default()
        });
        if now - entry.seen_ms >= CALL_MEMORY_MS {
            *entry = CallTimes {
                seen_ms: now,
                ..CallTimes::default()
            };
        }
        update(entry);
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn kind(&self) -> &'static str {
        if self.voice { "twilio-voice" } else { "twilio" }
    }

    fn supports(&self, channel: Channel) -> bool {
        if self.voice {
            channel == Channel::Call
        } else {
            channel == Channel::Sms
        }
    }

    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        if self.voice {
            self.submit_call(msg).await
        } else {
            self.submit_sms(msg).await
        }
    }

    async fn hook(&self, req: &HookRequest) -> Result<HookReply, HookError> {
        let params: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&req.body).unwrap_or_default();
        self.check_signature(req, &params)?;
        let p: HashMap<String, String> = params.into_iter().collect();
        if p.contains_key("CallStatus") {
            self.call_status(req, &p)
        } else {
            self.message_status(req, &p)
        }
    }
}

/// The API's answer: the new resource's SID, or why not.
fn classify(status: u16, body: &str) -> Result<String, ProviderError> {
    if (200..300).contains(&status) {
        return match serde_json::from_str::<Created>(body)
            .ok()
            .and_then(|c| c.sid)
        {
            Some(sid) if !sid.is_empty() => Ok(sid),
            // It may have been sent: no retry, but no success either.
            _ => Err(ProviderError::Permanent(format!(
                "twilio answered HTTP {status} without a sid: {}",
                http_util::snippet(body)
            ))),
        };
    }
    let text = match serde_json::from_str::<ApiError>(body) {
        Ok(ApiError {
            code,
            message: Some(m),
        }) => match code {
            Some(c) => format!("twilio: {m} (code {c}, HTTP {status})"),
            None => format!("twilio: {m} (HTTP {status})"),
        },
        _ => format!(
            "twilio answered HTTP {status}: {}",
            http_util::snippet(body)
        ),
    };
    if http_util::status_is_retryable(status) {
        Err(ProviderError::Retryable(text))
    } else {
        Err(ProviderError::Permanent(text))
    }
}

/// `X-Twilio-Signature` of a request: base64(HMAC-SHA1(auth token, URL + sorted name+value
/// of every POST parameter)).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = match Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The TwiML a call runs: the text said `repeat` times (1 to 10), a pause between.
pub fn twiml(text: &str, language: &str, voice: Option<&str>, repeat: i64) -> String {
    let mut attrs = String::new();
    if !language.trim().is_empty() {
        attrs.push_str(&format!(" language=\"{}\"", xml_escape(language.trim())));
    }
    if let Some(v) = voice.filter(|v| !v.trim().is_empty()) {
        attrs.push_str(&format!(" voice=\"{}\"", xml_escape(v.trim())));
    }
    let say = format!("<Say{attrs}>{}</Say>", xml_escape(text));
    let n = repeat.clamp(1, 10) as usize;
    let mut out = String::from("<Response>");
    for i in 0..n {
        if i > 0 {
            out.push_str("<Pause length=\"1\"/>");
        }
        out.push_str(&say);
    }
    out.push_str("</Response>");
    out
}

/// Escapes text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
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
    fn signature_matches_twilios_documented_example() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // Order of the body does not matter; the URL and the token do.
        let mut rev = params.clone();
        rev.reverse();
        assert_eq!(
            signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &rev),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert_ne!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=3",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn twiml_escapes_and_repeats() {
        let t = twiml("1, 2 <3> & \"4\"", "en-US", Some("Polly.Joanna"), 2);
        assert_eq!(
            t,
            "<Response><Say language=\"en-US\" voice=\"Polly.Joanna\">1, 2 &lt;3&gt; &amp; &quot;4&quot;</Say>\
             <Pause length=\"1\"/><Say language=\"en-US\" voice=\"Polly.Joanna\">1, 2 &lt;3&gt; &amp; &quot;4&quot;</Say></Response>"
        );
        assert_eq!(
            twiml("x", "\"><Hangup/>", None, 0),
            "<Response><Say language=\"&quot;&gt;&lt;Hangup/&gt;\">x</Say></Response>"
        );
        assert_eq!(twiml("x", "", None, 99).matches("<Say>").count(), 10);
    }

    #[test]
    fn api_answers_are_classified() {
        assert_eq!(
            classify(201, r#"{"sid":"SM123","status":"queued"}"#),
            Ok("SM123".into())
        );
        let e = classify(
            400,
            r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}"#,
        );
        assert!(
            matches!(&e, Err(ProviderError::Permanent(t)) if t.contains("21211") && t.contains("not a valid")),
            "{e:?}"
        );
        assert!(matches!(
            classify(429, r#"{"code":20429,"message":"Too Many Requests"}"#),
            Err(ProviderError::Retryable(_))
        ));
        assert!(matches!(
            classify(503, "<html>down</html>"),
            Err(ProviderError::Retryable(_))
        ));
        assert!(matches!(
            classify(201, "{}"),
            Err(ProviderError::Permanent(_))
        ));
    }

    #[test]
    fn problems_name_the_fields() {
        let cfg: TwilioConfig = serde_json::from_value(serde_json::json!({
            "base_url": "", "account_sid": "", "auth_token": "env:OTPGATE_SURELY_UNSET_TWILIO"
        }))
        .unwrap();
        let p = cfg.problems("tw").join("\n");
        assert!(p.contains("routes.tw.twilio.base_url"), "{p}");
        assert!(p.contains("routes.tw.twilio.account_sid"), "{p}");
        assert!(p.contains("routes.tw.twilio.auth_token"), "{p}");
        let ok: TwilioConfig = serde_json::from_value(serde_json::json!({
            "account_sid": "AC1", "auth_token": "t"
        }))
        .unwrap();
        assert!(ok.problems("tw").is_empty());
        assert_eq!(ok.base_url, "https://api.twilio.com");
    }
}
