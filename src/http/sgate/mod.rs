//! The SGate payout-API OTP dialect: `POST /openApi/v1/otp/sendOtp`,
//! `GET /openApi/v1/otp/otpDetail`, `POST /openApi/v1/otp/checkOtp`.
//!
//! Every answer carries the five `V-` headers. It is signed with the system key over the
//! request's `api_key`, `url` and `method` and the response body; when the merchant was not
//! authenticated the signature is empty (`shared/spec/sgate-payout.md` §2.3).

pub mod auth;
pub mod body;
pub mod envelope;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use self::auth::SignedRequest;
use self::body::{Fields, OtpBody};
use self::envelope::SgateError;
use crate::domain::ids::{new_request_id, random_alnum};
use crate::domain::sgate::{signing_digest, signing_string};
use crate::http::AppState;
use crate::store::Merchant;

pub const BASE: &str = "/openApi/v1";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{BASE}/otp/sendOtp"), post(send_otp))
        .route(&format!("{BASE}/otp/otpDetail"), get(otp_detail))
        .route(&format!("{BASE}/otp/checkOtp"), post(check_otp))
        // A bug answers in this dialect's envelope, not the Buka one.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send + 'static>| {
                tracing::error!("SGate handler panicked");
                let body = envelope::body::<envelope::Empty>(
                    &Err(SgateError::fault(1000, &"panic")),
                    &new_request_id(),
                );
                // The request is gone: the key is not echoed and nothing is signed.
                let now = chrono::Utc::now().timestamp();
                let nonce = random_alnum(20);
                respond(StatusCode::INTERNAL_SERVER_ERROR, body, "", now, &nonce, "")
            },
        ))
}

/// What every SGate handler receives.
struct Call {
    headers: HeaderMap,
    ip: Option<std::net::IpAddr>,
    url: String,
    method: Method,
    body: String,
    /// Why the body could not be read (too large, cut off): answered 1103, unsigned, since
    /// the signature covers the body.
    body_error: Option<SgateError>,
}

impl Call {
    fn new(headers: HeaderMap, ext: &Extensions, method: Method, uri: &Uri, body: &[u8]) -> Self {
        Self {
            headers,
            ip: ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
            url: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string()),
            method,
            body: String::from_utf8_lossy(body).into_owned(),
            body_error: None,
        }
    }

    /// As [`Call::new`], for a body that may not have been read.
    fn with_body(
        headers: HeaderMap,
        ext: &Extensions,
        method: Method,
        uri: &Uri,
        raw: Result<Bytes, BytesRejection>,
    ) -> Self {
        match raw {
            Ok(bytes) => Self::new(headers, ext, method, uri, &bytes),
            Err(e) => Self {
                body_error: Some(SgateError::invalid(
                    "body",
                    format!("could not be read: {}", e.body_text()),
                )),
                ..Self::new(headers, ext, method, uri, b"")
            },
        }
    }

    fn signed(&self) -> SignedRequest<'_> {
        SignedRequest {
            headers: &self.headers,
            ip: self.ip,
            url: &self.url,
            method: self.method.as_str(),
            body: &self.body,
        }
    }
}

/// Authenticates, runs `op` for the merchant, and answers with the signed envelope.
async fn answer<T, F, Fut>(st: AppState, call: Call, op: F) -> Response
where
    T: Serialize,
    F: FnOnce(AppState, Merchant, Call) -> Fut,
    Fut: std::future::Future<Output = Result<T, SgateError>>,
{
    let request_id = new_request_id();
    let api_key = auth::api_key(&call.headers).to_string();
    let url = call.url.clone();
    let method = call.method.clone();
    let (authenticated, result) = match call.body_error.clone() {
        Some(e) => (false, Err(e)),
        None => match auth::authenticate(&st, &call.signed()).await {
            Ok(merchant) => (true, op(st.clone(), merchant, call).await),
            Err(e) => (false, Err(e)),
        },
    };
    if let Err(e) = &result {
        tracing::info!(sgate.code = e.code, sgate.request_id = %request_id, http.path = %url_path(&url), "SGate call refused");
    }
    let mut text = envelope::body(&result, &request_id);
    let mut status = result.as_ref().err().map_or(200, |e| e.http_status);
    let timestamp = st.service.clock.now().timestamp();
    let nonce = random_alnum(20);
    let mut signature = String::new();
    if authenticated {
        let signed = signing_string(&api_key, timestamp, &nonce, &url, method.as_str(), &text);
        match st.service.system_signer().await.and_then(|k| {
            k.sign_md5(signing_digest(&signed).as_bytes())
                .map_err(|e| crate::service::ServiceError::Internal(e.into()))
        }) {
            Ok(sig) => signature = sig,
            Err(e) => {
                // The answer cannot be signed: say so, unsigned, rather than send it bare.
                let err = SgateError::fault(1206, &format!("{e:#}"));
                status = err.http_status;
                text = envelope::body::<envelope::Empty>(&Err(err), &request_id);
            }
        }
    }
    respond(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        text,
        &api_key,
        timestamp,
        &nonce,
        &signature,
    )
}

/// The JSON answer with the five `V-` headers.
fn respond(
    status: StatusCode,
    text: String,
    api_key: &str,
    timestamp: i64,
    nonce: &str,
    signature: &str,
) -> Response {
    let mut response = (status, [("content-type", "application/json")], text).into_response();
    let h = response.headers_mut();
    for (name, value) in [
        ("v-api-key", api_key),
        ("v-api-version", "1"),
        ("v-timestamp", &timestamp.to_string()),
        ("v-nonce-str", nonce),
        ("v-signature", signature),
    ] {
        // A caller's key that is not a valid header value is echoed as empty.
        h.insert(
            name,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        );
    }
    response
}

/// The path of a url, for logs (the query carries a phone number).
fn url_path(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[derive(Serialize)]
struct Sent {
    mobile: String,
    appname: String,
    sessionid: String,
}

async fn send_otp(
    State(st): State<AppState>,
    ext: Extensions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = Call::with_body(headers, &ext, method, &uri, raw);
    answer(st, call, |st, merchant, call| async move {
        let mut f = Fields::json(&call.body)?;
        let b = OtpBody {
            mobile: f.mobile()?,
            appname: f.text("appname", Some(crate::domain::sgate::APP_NAME_MAX_CHARS))?,
            otp_type: f.optional_text("type")?,
        };
        let sessionid = st
            .service
            .sgate_send(&merchant, &b.mobile, &b.appname, b.otp_type.as_deref())
            .await?;
        Ok(Sent {
            mobile: b.mobile,
            appname: b.appname,
            sessionid,
        })
    })
    .await
}

#[derive(Serialize)]
struct Detail {
    mobile: String,
    sessionid: String,
    status: String,
    reportstatus: String,
    created_at: i64,
}

async fn otp_detail(
    State(st): State<AppState>,
    ext: Extensions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // GET signs an empty body whatever was sent.
    let call = Call::new(headers, &ext, method, &uri, b"");
    let query = uri.query().unwrap_or("").to_string();
    answer(st, call, |st, merchant, _| async move {
        let mut f = Fields::query(&query)?;
        let mobile = f.mobile()?;
        let sessionid = f.session_id()?;
        let d = st
            .service
            .sgate_detail(&merchant, &mobile, &sessionid)
            .await?;
        Ok(Detail {
            mobile,
            sessionid: d.session_id,
            status: d.status,
            reportstatus: d.report_status,
            created_at: d.created_at,
        })
    })
    .await
}

async fn check_otp(
    State(st): State<AppState>,
    ext: Extensions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = Call::with_body(headers, &ext, method, &uri, raw);
    answer(st, call, |st, merchant, call| async move {
        let mut f = Fields::json(&call.body)?;
        let mobile = f.mobile()?;
        let code = f.code()?;
        let sessionid = f.session_id()?;
        st.service
            .sgate_check(&merchant, &mobile, &code, &sessionid)
            .await?;
        Ok(envelope::Empty {})
    })
    .await
}
