//! Helpers shared by the HTTP upstreams (Kannel, Twilio, Vonage): configuration checks, callback
//! URLs, constant-time comparison and error classification.

use subtle::ConstantTimeEq;

use super::{OutboundMessage, ProviderError, Submitted};
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::domain::phone::mask_digits;

/// Submits one attempt to an HTTP upstream: sends the request, reads the upstream's answer
/// with `classify` (its message id, or a provider error), and logs the outcome. A transport
/// failure is a retryable provider error.
pub async fn submit(
    rb: reqwest::RequestBuilder,
    route: &str,
    msg: &OutboundMessage,
    upstream: &str,
    classify: impl FnOnce(u16, &str) -> Result<String, ProviderError>,
) -> Result<Submitted, ProviderError> {
    let resp = rb.send().await.map_err(|e| {
        let err = transport_error(e);
        tracing::warn!(route.name = %route, attempt.id = msg.attempt_id, upstream, error = %err, "upstream request failed");
        err
    })?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let result = classify(status, &body);
    match &result {
        Ok(id) => tracing::info!(
            route.name = %route,
            attempt.id = msg.attempt_id,
            to = %mask_digits(&msg.to),
            upstream,
            http.status = status,
            provider.message_id = %id,
            "upstream accepted the {}", msg.channel
        ),
        Err(e) => tracing::warn!(
            route.name = %route,
            attempt.id = msg.attempt_id,
            to = %mask_digits(&msg.to),
            upstream,
            http.status = status,
            error = %e,
            "upstream refused the {}", msg.channel
        ),
    }
    result.map(|message_id| Submitted {
        message_id,
        receipt: None,
        outbox: None,
    })
}

/// Default for `timeout_secs`: how long one request to the upstream may take in all.
pub fn default_timeout() -> u64 {
    15
}

/// What is wrong with a URL setting, if anything: empty, unparsable, or not http(s).
pub fn url_problem(route: &str, section: &str, field: &str, url: &str) -> Option<String> {
    let name = format!("routes.{route}.{section}.{field}");
    if url.trim().is_empty() {
        return Some(format!("{name} is empty: set the upstream's URL"));
    }
    match reqwest::Url::parse(url) {
        Err(e) => Some(format!("{name} = {url:?} is not a URL ({e})")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Some(format!(
            "{name} = {url:?} must be an http:// or https:// URL"
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            Some(format!("{name} = {url:?} has no host"))
        }
        Ok(_) => None,
    }
}

/// What is wrong with a secret setting, if anything: empty, or an `env:` variable that is unset.
pub fn secret_problem(route: &str, section: &str, field: &str, secret: &Secret) -> Option<String> {
    let name = format!("routes.{route}.{section}.{field}");
    match secret.resolve() {
        Err(e) => Some(format!("{name}: {e}")),
        Ok(v) if v.is_empty() => Some(format!("{name} is empty")),
        Ok(_) => None,
    }
}

/// What is wrong with a required text setting, if anything.
pub fn required_problem(route: &str, section: &str, field: &str, value: &str) -> Option<String> {
    value
        .trim()
        .is_empty()
        .then(|| format!("routes.{route}.{section}.{field} is empty"))
}

/// Resolves a secret at build time, naming the setting when it cannot be.
pub fn resolve(secret: &Secret, route: &str, section: &str, field: &str) -> anyhow::Result<String> {
    secret
        .resolve()
        .map_err(|e| anyhow::anyhow!("routes.{route}.{section}.{field}: {e}"))
}

/// `url` with `pairs` appended to its query (URL-encoded), after `?` or `&` as fits.
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let encoded = serde_urlencoded::to_string(pairs).unwrap_or_default();
    if encoded.is_empty() {
        return url.to_string();
    }
    format!("{url}{}{encoded}", query_sep(url))
}

/// `?` when the URL has no query yet, else `&` (nothing when it already ends in one).
pub fn query_sep(url: &str) -> &'static str {
    match url.find('?') {
        None => "?",
        Some(_) if url.ends_with('?') || url.ends_with('&') => "",
        Some(_) => "&",
    }
}

/// Equality of two byte strings in time that does not depend on where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A transport failure (connect error, timeout, reset): the route may take it later.
pub fn transport_error(e: reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // The error's text holds the URL, whose query may hold credentials (Kannel): leave it out.
    ProviderError::Retryable(format!("{what}: {}", e.without_url()))
}

/// Whether an HTTP status means "try again later": throttling, timeouts and server errors.
pub fn status_is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// A short, single-line excerpt of an upstream's answer for records and logs.
pub fn snippet(body: &str) -> String {
    let one_line: String = body
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    one_line
}

/// The clock's time in milliseconds.
pub fn now_ms(clock: &SharedClock) -> i64 {
    clock.now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_appended_with_the_right_separator() {
        assert_eq!(
            with_query("http://h/hooks/r", &[("ref", "1"), ("x", "a b&c")]),
            "http://h/hooks/r?ref=1&x=a+b%26c"
        );
        assert_eq!(
            with_query("http://h/hooks/r?k=v", &[("ref", "1")]),
            "http://h/hooks/r?k=v&ref=1"
        );
        assert_eq!(with_query("http://h/?", &[("ref", "1")]), "http://h/?ref=1");
    }

    #[test]
    fn url_problems_name_the_setting() {
        assert!(url_problem("r", "kannel", "url", "http://127.0.0.1:13013/x").is_none());
        let p = url_problem("r", "kannel", "url", "").unwrap();
        assert!(p.contains("routes.r.kannel.url"), "{p}");
        let p = url_problem("r", "twilio", "base_url", "ftp://x").unwrap();
        assert!(p.contains("http"), "{p}");
        assert!(url_problem("r", "twilio", "base_url", "not a url").is_some());
    }

    #[test]
    fn secret_problems_name_the_variable() {
        let s = Secret::new("env:OTPGATE_TEST_SURELY_UNSET_VAR");
        let p = secret_problem("r", "vonage", "api_secret", &s).unwrap();
        assert!(p.contains("routes.r.vonage.api_secret"), "{p}");
        assert!(p.contains("OTPGATE_TEST_SURELY_UNSET_VAR"), "{p}");
        assert!(secret_problem("r", "vonage", "api_secret", &Secret::new("x")).is_none());
        assert!(secret_problem("r", "vonage", "api_secret", &Secret::new("")).is_some());
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
