//! The front doors. Each dialect maps its wire format to service calls, and service errors to
//! its own codes and envelope, and does nothing else. A new dialect is a new module here plus
//! one `merge` in [`router`].

pub mod buka;
pub mod hooks;
pub mod openapi;
pub mod sgate;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::FixedOffset;
use serde_json::json;

use crate::service::Service;

/// What the HTTP layer needs besides the service.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timestamp_tolerance_secs: i64,
    pub display_offset: FixedOffset,
    pub max_body_bytes: usize,
    /// `public_url` without a trailing slash: hook signatures are computed over it.
    pub public_base: String,
}

#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub settings: Arc<HttpSettings>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(buka::routes())
        .merge(sgate::routes())
        .merge(hooks::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Ready when the database answers.
async fn readyz(State(st): State<AppState>) -> Response {
    match st.service.store.ping().await {
        Ok(()) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness: database did not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

/// Prometheus text: the service's counters plus the queue, read from the store now.
async fn metrics(State(st): State<AppState>) -> Response {
    let svc = &st.service;
    let now = svc.clock.now().timestamp_millis();
    let stats = match svc.store.job_stats(now).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "metrics: could not read the job queue");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "# the job queue could not be read\n",
            )
                .into_response();
        }
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        svc.metrics.render(stats, now, &svc.routing.status()),
    )
        .into_response()
}

/// A bug must not become a dropped connection or a 5xx: log it, answer the Buka `-18`.
fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = what, "request handler panicked");
    axum::Json(json!({"status": "-18", "reason": "system exception", "data": null})).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"status": "-24", "reason": "no such endpoint", "data": null})),
    )
        .into_response()
}
