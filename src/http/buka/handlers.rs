//! Buka endpoint handlers: parse, call the service, shape the answer.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Caller, FastCaller};
use super::body::{BukaJson, opt_int, opt_text};
use super::envelope::{BukaError, reply};
use super::views;
use crate::domain::flow::node_from_parts;
use crate::domain::limits::LimitSetting;
use crate::http::AppState;
use crate::service::{
    AppInput, BackfillRateInput, FlowInput, PostbackInput, SendInput, SendResult, TemplateInput,
};

type Body<T> = Result<BukaJson<T>, BukaError>;
type Id = Result<Path<String>, PathRejection>;

fn path_text(p: Id, field: &str) -> Result<String, BukaError> {
    p.map(|Path(s)| s)
        .map_err(|e| BukaError::param(field, e.body_text()))
}

/// A positive integer id from the path.
fn path_int(p: Id, field: &str) -> Result<i64, BukaError> {
    let s = path_text(p, field)?;
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| BukaError::param(field, "must be a positive integer"))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct LimitBody {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "opt_int")]
    unit: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    period: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    limit: Option<i64>,
}

impl From<LimitBody> for LimitSetting {
    fn from(b: LimitBody) -> Self {
        LimitSetting {
            enabled: b.enabled.unwrap_or(false),
            unit: b.unit,
            period: b.period,
            limit: b.limit,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct AppBody {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    code_expiry: Option<i64>,
    #[serde(default)]
    period_total_send_limit: Option<LimitBody>,
    #[serde(default)]
    period_phone_send_limit: Option<LimitBody>,
}

impl From<AppBody> for AppInput {
    fn from(b: AppBody) -> Self {
        AppInput {
            name: b.name,
            code_expiry: b.code_expiry,
            total_limit: b.period_total_send_limit.map(Into::into),
            phone_limit: b.period_phone_send_limit.map(Into::into),
        }
    }
}

pub(super) async fn app_add(
    State(st): State<AppState>,
    Caller(t): Caller,
    body: Body<AppBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            let app = st.service.create_app(t.id, b.into()).await?;
            Ok(views::app(&app, &st.settings.display_offset))
        }
        .await,
    )
}

async fn update_app(
    st: &AppState,
    tenant_id: i64,
    app_id: String,
    b: AppBody,
) -> Result<Value, BukaError> {
    if let Some(body_id) = &b.app_id
        && !body_id.is_empty()
        && *body_id != app_id
    {
        return Err(BukaError::param(
            "appId",
            "in the body differs from the appId in the path",
        ));
    }
    let app = st.service.update_app(tenant_id, &app_id, b.into()).await?;
    Ok(views::app(&app, &st.settings.display_offset))
}

pub(super) async fn app_update(
    State(st): State<AppState>,
    Caller(t): Caller,
    id: Id,
    body: Body<AppBody>,
) -> Response {
    reply(
        async {
            let app_id = path_text(id, "appId")?;
            let BukaJson(b) = body?;
            update_app(&st, t.id, app_id, b).await
        }
        .await,
    )
}

/// `app/update` with the id in the body only.
pub(super) async fn app_update_body(
    State(st): State<AppState>,
    Caller(t): Caller,
    body: Body<AppBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            let app_id = b
                .app_id
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| BukaError::param("appId", "is required"))?;
            update_app(&st, t.id, app_id, b).await
        }
        .await,
    )
}

pub(super) async fn app_details(State(st): State<AppState>, Caller(t): Caller, id: Id) -> Response {
    reply(
        async {
            let app = st.service.app(t.id, &path_text(id, "appId")?).await?;
            Ok(views::app(&app, &st.settings.display_offset))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct TemplateBody {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    code_type: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    code_length: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    speech_rate: Option<i64>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    max_duration: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    repeat_cnt: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    sender_id: Option<String>,
}

impl From<TemplateBody> for TemplateInput {
    fn from(b: TemplateBody) -> Self {
        TemplateInput {
            app_id: b.app_id,
            name: b.name,
            text: b.text,
            code_type: b.code_type,
            code_length: b.code_length,
            speech_rate: b.speech_rate,
            language: b.language,
            max_duration: b.max_duration,
            repeat_cnt: b.repeat_cnt,
            sender_id: b.sender_id,
        }
    }
}

pub(super) async fn template_add(
    State(st): State<AppState>,
    Caller(t): Caller,
    body: Body<TemplateBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            let tpl = st.service.create_template(t.id, b.into()).await?;
            Ok(views::template(&tpl))
        }
        .await,
    )
}

pub(super) async fn template_update(
    State(st): State<AppState>,
    Caller(t): Caller,
    id: Id,
    body: Body<TemplateBody>,
) -> Response {
    reply(
        async {
            let template_id = path_int(id, "templateId")?;
            let BukaJson(mut b) = body?;
            // The owning app does not change on update.
            b.app_id = None;
            let tpl = st
                .service
                .update_template(t.id, template_id, b.into())
                .await?;
            Ok(views::template(&tpl))
        }
        .await,
    )
}

pub(super) async fn template_details(
    State(st): State<AppState>,
    Caller(t): Caller,
    id: Id,
) -> Response {
    reply(
        async {
            let tpl = st
                .service
                .template(t.id, path_int(id, "templateId")?)
                .await?;
            Ok(views::template(&tpl))
        }
        .await,
    )
}

pub(super) async fn template_list(State(st): State<AppState>, Caller(t): Caller) -> Response {
    reply(
        async {
            let list = st.service.list_templates(t.id).await?;
            Ok(Value::Array(list.iter().map(views::template).collect()))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct NodeBody {
    #[serde(default, deserialize_with = "opt_int")]
    waiting_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    status: Option<i64>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    channel_cut: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct FlowBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, alias = "flowDTOList")]
    flow: Option<Vec<NodeBody>>,
}

fn flow_input(b: FlowBody) -> Result<FlowInput, BukaError> {
    let nodes = match b.flow {
        None => None,
        Some(list) => Some(
            list.into_iter()
                .enumerate()
                .map(|(i, n)| {
                    node_from_parts(
                        n.waiting_time,
                        n.status,
                        n.channel.as_deref(),
                        n.channel_cut,
                    )
                    .map_err(|(field, reason)| {
                        BukaError::param(&format!("flow[{i}].{field}"), reason)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(FlowInput {
        name: b.name,
        nodes,
    })
}

pub(super) async fn flow_add(
    State(st): State<AppState>,
    Caller(t): Caller,
    body: Body<FlowBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            let f = st.service.create_flow(t.id, flow_input(b)?).await?;
            Ok(views::flow(&f))
        }
        .await,
    )
}

pub(super) async fn flow_update(
    State(st): State<AppState>,
    Caller(t): Caller,
    id: Id,
    body: Body<FlowBody>,
) -> Response {
    reply(
        async {
            let flow_id = path_int(id, "flowId")?;
            let BukaJson(b) = body?;
            let f = st
                .service
                .update_flow(t.id, flow_id, flow_input(b)?)
                .await?;
            Ok(views::flow(&f))
        }
        .await,
    )
}

pub(super) async fn flow_details(
    State(st): State<AppState>,
    Caller(t): Caller,
    id: Id,
) -> Response {
    reply(
        async {
            let f = st.service.flow(t.id, path_int(id, "flowId")?).await?;
            Ok(views::flow(&f))
        }
        .await,
    )
}

pub(super) async fn flow_list(State(st): State<AppState>, Caller(t): Caller) -> Response {
    reply(
        async {
            let list = st.service.list_flows(t.id).await?;
            Ok(Value::Array(list.iter().map(views::flow).collect()))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct SendBody {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    template_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    flow_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    to: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    order_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    code: Option<String>,
}

fn send_view(r: &SendResult) -> Value {
    json!({"verificationId": r.verification_id, "to": r.to, "channel": r.channel.as_str()})
}

fn send_input(b: SendBody, with_code: bool) -> SendInput {
    SendInput {
        app_id: b.app_id,
        template_id: b.template_id,
        flow_id: b.flow_id,
        to: b.to,
        channel: b.channel,
        order_id: b.order_id,
        code: if with_code { b.code } else { None },
    }
}

/// Sends as `caller` (see [`FastCaller::run`]).
async fn send_as(
    st: &AppState,
    caller: &FastCaller,
    input: SendInput,
) -> Result<SendResult, BukaError> {
    caller
        .run(st, |tenant_id, guard| {
            st.service.send(tenant_id, guard, input.clone())
        })
        .await
}

pub(super) async fn send(
    State(st): State<AppState>,
    caller: FastCaller,
    body: Body<SendBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            let r = send_as(&st, &caller, send_input(b, false)).await?;
            Ok(send_view(&r))
        }
        .await,
    )
}

pub(super) async fn send_rule(
    State(st): State<AppState>,
    caller: FastCaller,
    body: Body<SendBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            if b.code.as_deref().is_none_or(str::is_empty) {
                return Err(BukaError::param("code", "is required"));
            }
            let r = send_as(&st, &caller, send_input(b, true)).await?;
            Ok(send_view(&r))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResendBody {
    #[serde(default, deserialize_with = "opt_text")]
    verification_id: Option<String>,
    #[serde(default)]
    channel: Option<String>,
}

fn required(v: Option<String>, field: &str) -> Result<String, BukaError> {
    v.filter(|s| !s.is_empty())
        .ok_or_else(|| BukaError::param(field, "is required"))
}

pub(super) async fn resend(
    State(st): State<AppState>,
    caller: FastCaller,
    body: Body<ResendBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            let id = required(b.verification_id, "verificationId")?;
            let channel = b.channel.as_deref();
            let r = caller
                .run(&st, |tenant_id, guard| {
                    st.service.resend(tenant_id, guard, &id, channel)
                })
                .await?;
            Ok(send_view(&r))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct VerifyBody {
    #[serde(default, deserialize_with = "opt_text")]
    verification_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    code: Option<String>,
}

pub(super) async fn verify(
    State(st): State<AppState>,
    caller: FastCaller,
    body: Body<VerifyBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            let id = required(b.verification_id, "verificationId")?;
            let code = required(b.code, "code")?;
            let r = caller
                .run(&st, |tenant_id, guard| {
                    st.service.verify(tenant_id, guard, &id, &code)
                })
                .await?;
            Ok(json!({"verificationId": r.verification_id, "to": r.to, "channel": r.channel, "matched": r.matched}))
        }
        .await,
    )
}

pub(super) async fn record(State(st): State<AppState>, Caller(t): Caller, id: Id) -> Response {
    reply(
        async {
            let vid = path_text(id, "verificationId")?;
            let view = st.service.record(t.id, &vid).await?;
            Ok(views::record(&view, &st.settings.display_offset))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderRecordBody {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    order_id: Option<String>,
}

pub(super) async fn order_record(
    State(st): State<AppState>,
    Caller(t): Caller,
    body: Body<OrderRecordBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            let order_id = required(b.order_id, "orderId")?;
            let app_id = b.app_id.filter(|s| !s.is_empty());
            let view = st
                .service
                .order_record(t.id, app_id.as_deref(), &order_id)
                .await?;
            Ok(views::order_record(&view, &st.settings.display_offset))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct BackfillRateBody {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    mcc: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    backfill_number: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    backfill_cardinal_number: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    backfill_now: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    callback_time: Option<String>,
}

pub(super) async fn backfill_rate(
    State(st): State<AppState>,
    Caller(t): Caller,
    body: Body<BackfillRateBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            st.service
                .backfill_rate(
                    t.id,
                    BackfillRateInput {
                        app_id: b.app_id,
                        mcc: b.mcc,
                        backfill_number: b.backfill_number,
                        backfill_cardinal_number: b.backfill_cardinal_number,
                        backfill_now: b.backfill_now,
                        callback_time: b.callback_time,
                    },
                )
                .await?;
            Ok(Value::Null)
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct PostbackBody {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    verification_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    number: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    time: Option<String>,
}

pub(super) async fn postback_backfill(
    State(st): State<AppState>,
    Caller(t): Caller,
    body: Body<PostbackBody>,
) -> Response {
    reply(
        async {
            let BukaJson(b) = body?;
            st.service
                .postback(
                    t.id,
                    PostbackInput {
                        app_id: b.app_id,
                        verification_id: b.verification_id,
                        number: b.number,
                        time: b.time,
                    },
                )
                .await?;
            Ok(Value::Null)
        }
        .await,
    )
}
