//! `/hooks/{route}`: callbacks from upstreams (Kannel DLRs, Twilio status callbacks, Vonage
//! receipts). The route's provider checks the caller and reads the callback; the receipts it
//! carried are applied before the answer, so a `200` means they are stored. An upstream that
//! gets a `503` (the database did not answer) calls again.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::AppState;
use crate::providers::{HookError, HookRequest, ReceiptEvent, ReceiptKey};
use crate::service::ReceiptOutcome;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hooks/{route}", any(hook))
        .route("/hooks/{route}/{*rest}", any(hook))
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.into(),
    )
        .into_response()
}

async fn hook(
    State(st): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let svc = &st.service;
    let route_name = params
        .iter()
        .find(|(k, _)| k == "route")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let subpath = params
        .iter()
        .find(|(k, _)| k == "rest")
        .map(|(_, v)| format!("/{v}"))
        .unwrap_or_default();
    let Some((_, route)) = svc.routing.by_name(route_name) else {
        // Not the caller's text as a label: any path would make a new metric series.
        svc.metrics.hook("(unknown)", "unknown_route");
        return plain(StatusCode::NOT_FOUND, "no such route");
    };
    // Query pairs in the order they were sent (signature schemes may care).
    let query = uri
        .query()
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default();
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| uri.path());
    let req = HookRequest {
        method: method.as_str().to_string(),
        url: format!("{}{}", st.settings.public_base, path_and_query),
        subpath,
        query,
        headers,
        body,
    };
    let reply = match route.provider.hook(&req).await {
        Ok(r) => r,
        Err(e) => {
            let (status, outcome) = match &e {
                HookError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
                HookError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                HookError::NotFound => (StatusCode::NOT_FOUND, "no_hook"),
            };
            tracing::warn!(route.name = route_name, hook.outcome = outcome, error = %e, "hook refused");
            svc.metrics.hook(route_name, outcome);
            return plain(status, e.to_string());
        }
    };
    for (key, receipt) in reply.receipts {
        match svc.apply_receipt(route_name, &key, receipt.clone()).await {
            Ok(ReceiptOutcome::Unknown) => {
                if let ReceiptKey::Message(_) = key {
                    // Its submit may not be recorded yet: hold it like an SMPP receipt.
                    svc.hold_receipt(ReceiptEvent {
                        route: route_name.to_string(),
                        key,
                        receipt,
                    });
                } else {
                    tracing::info!(route.name = route_name, receipt.key = ?key, "hook for an unknown attempt");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(route.name = route_name, error = %e, "could not store a hook's receipt");
                svc.metrics.hook(route_name, "unavailable");
                return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later");
            }
        }
    }
    svc.metrics.hook(route_name, "ok");
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response()
}
