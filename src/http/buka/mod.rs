//! The Buka / ITNIO "OTP v3" dialect, served under both `/v3/otp/…` and `/otp/…`.
//!
//! Every outcome is HTTP 200 with `{"status","reason","data"}`; [`envelope`] maps service
//! errors to Buka status codes in one place. Reading order: `auth` (headers and signature),
//! `body` (lenient typed JSON with field-naming errors), `views` (objects as the wire shows
//! them), then the handlers in `handlers`.

mod auth;
mod body;
pub mod envelope;
mod handlers;
mod views;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;

/// Base paths the dialect answers under.
pub const BASES: [&str; 2] = ["/v3/otp", "/otp"];

pub fn routes() -> Router<AppState> {
    use handlers::*;
    let r = Router::new()
        .route("/app/add", post(app_add))
        .route("/app/update", post(app_update_body).put(app_update_body))
        .route("/app/update/{app_id}", post(app_update).put(app_update))
        .route("/app/details/{app_id}", get(app_details))
        .route("/template/add", post(template_add))
        .route(
            "/template/update/{template_id}",
            post(template_update).put(template_update),
        )
        .route("/template/details/{template_id}", get(template_details))
        .route("/template/list", get(template_list))
        .route("/verification/send", post(send))
        .route("/verification/sendRule", post(send_rule))
        .route("/verification/resend", post(resend))
        .route("/verification/verify", post(verify))
        .route("/verification/record/{verification_id}", get(record))
        .route("/verification/orderId/record", post(order_record))
        .route("/flow/add", post(flow_add))
        .route("/flow/update/{flow_id}", post(flow_update).put(flow_update))
        .route("/flow/details/{flow_id}", get(flow_details))
        .route("/flow/list", get(flow_list))
        .route("/backfillRate", post(backfill_rate))
        .route("/postback/backfill", post(postback_backfill));
    let mut out = Router::new();
    for base in BASES {
        out = out.nest(base, r.clone());
    }
    out
}
