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
    use axum::routing::MethodRouter;
    use handlers::*;
    let table: Vec<(&str, MethodRouter<AppState>)> = vec![
        ("/app/add", post(app_add)),
        ("/app/update", post(app_update_body).put(app_update_body)),
        ("/app/update/{app_id}", post(app_update).put(app_update)),
        ("/app/details/{app_id}", get(app_details)),
        ("/template/add", post(template_add)),
        (
            "/template/update/{template_id}",
            post(template_update).put(template_update),
        ),
        ("/template/details/{template_id}", get(template_details)),
        ("/template/list", get(template_list)),
        ("/verification/send", post(send)),
        ("/verification/sendRule", post(send_rule)),
        ("/verification/resend", post(resend)),
        ("/verification/verify", post(verify)),
        ("/verification/record/{verification_id}", get(record)),
        ("/verification/orderId/record", post(order_record)),
        ("/flow/add", post(flow_add)),
        ("/flow/update/{flow_id}", post(flow_update).put(flow_update)),
        ("/flow/details/{flow_id}", get(flow_details)),
        ("/flow/list", get(flow_list)),
        ("/backfillRate", post(backfill_rate)),
        ("/postback/backfill", post(postback_backfill)),
    ];
    // Full paths under each base rather than `nest`, which rewrites every request's URI.
    let mut out = Router::new();
    for base in BASES {
        for (path, handler) in &table {
            out = out.route(&format!("{base}{path}"), handler.clone());
        }
    }
    out
}
