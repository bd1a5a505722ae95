//! Apps, templates and flows: what a tenant configures before sending.

use super::{Service, ServiceError, ServiceResult};
use crate::domain::code::{CodeType, DEFAULT_CODE_LENGTH, MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use crate::domain::flow::{FlowNode, MAX_NODES};
use crate::domain::ids::new_app_id;
use crate::domain::limits::{LimitSetting, PeriodLimit};
use crate::domain::validate::{char_len_between, is_valid_sender_id};
use crate::store::{App, Flow, StoreError, Template};

/// Languages a voice template may name.
pub const LANGUAGES: &[&str] = &[
    "CN", "EN", "VN", "JP", "ARB", "DE", "IN", "IT", "KR", "RU", "ES", "PT", "IDN", "BD",
];

#[derive(Debug, Clone, Default)]
pub struct AppInput {
    pub name: Option<String>,
    pub code_expiry: Option<i64>,
    pub total_limit: Option<LimitSetting>,
    pub phone_limit: Option<LimitSetting>,
}

#[derive(Debug, Clone, Default)]
pub struct TemplateInput {
    pub app_id: Option<String>,
    pub name: Option<String>,
    pub text: Option<String>,
    pub code_type: Option<i64>,
    pub code_length: Option<i64>,
    pub speech_rate: Option<i64>,
    pub language: Option<String>,
    pub max_duration: Option<i64>,
    pub repeat_cnt: Option<i64>,
    pub sender_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FlowInput {
    pub name: Option<String>,
    pub nodes: Option<Vec<FlowNode>>,
}

fn check_name(name: &str) -> ServiceResult<()> {
    if char_len_between(name, 4, 32) {
        Ok(())
    } else {
        Err(ServiceError::invalid("name", "must be 4-32 characters"))
    }
}

fn check_limit(field: &str, l: &LimitSetting) -> ServiceResult<()> {
    PeriodLimit::from_parts(l.enabled, l.unit, l.period, l.limit)
        .map(|_| ())
        .map_err(|e| ServiceError::invalid(&format!("{field}.{}", e.field), e.reason))
}

fn check_range(field: &str, v: i64, min: i64, max: i64) -> ServiceResult<i64> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ServiceError::invalid(field, format!("must be {min}-{max}")))
    }
}

fn duplicate(what: &'static str) -> impl Fn(StoreError) -> ServiceError {
    move |e| match e {
        StoreError::Conflict(_) => ServiceError::Duplicate(what),
        other => other.into(),
    }
}

impl Service {
    pub async fn create_app(&self, tenant_id: i64, input: AppInput) -> ServiceResult<App> {
        let app_id = new_app_id();
        let name = input.name.unwrap_or_else(|| format!("app-{app_id}"));
        check_name(&name)?;
        let code_expiry = check_range("codeExpiry", input.code_expiry.unwrap_or(5), 1, 60)?;
        let total_limit = input.total_limit.unwrap_or_default();
        let phone_limit = input.phone_limit.unwrap_or_default();
        check_limit("periodTotalSendLimit", &total_limit)?;
        check_limit("periodPhoneSendLimit", &phone_limit)?;
        let app = App {
            app_id,
            tenant_id,
            name,
            code_expiry,
            total_limit,
            phone_limit,
            created_ms: self.now_ms(),
        };
        self.store
            .insert_app(&app)
            .await
            .map_err(duplicate("app name"))?;
        tracing::info!(tenant.id = tenant_id, app.id = %app.app_id, "app created");
        Ok(app)
    }

    /// The tenant's app, or `NotFound` (another tenant's app included).
    pub async fn app(&self, tenant_id: i64, app_id: &str) -> ServiceResult<App> {
        match self.store.get_app(app_id).await? {
            Some(a) if a.tenant_id == tenant_id => Ok(a),
            _ => Err(ServiceError::NotFound("app")),
        }
    }

    /// Updates an app; `name` is required, other absent fields keep their values.
    pub async fn update_app(
        &self,
        tenant_id: i64,
        app_id: &str,
        input: AppInput,
    ) -> ServiceResult<App> {
        let mut app = self.app(tenant_id, app_id).await?;
        let name = input
            .name
            .ok_or_else(|| ServiceError::invalid("name", "is required"))?;
        check_name(&name)?;
        app.name = name;
        if let Some(e) = input.code_expiry {
            app.code_expiry = check_range("codeExpiry", e, 1, 60)?;
        }
        if let Some(l) = input.total_limit {
            check_limit("periodTotalSendLimit", &l)?;
            app.total_limit = l;
        }
        if let Some(l) = input.phone_limit {
            check_limit("periodPhoneSendLimit", &l)?;
            app.phone_limit = l;
        }
        self.store
            .update_app(&app)
            .await
            .map_err(duplicate("app name"))?;
        Ok(app)
    }

    pub async fn create_template(
        &self,
        tenant_id: i64,
        input: TemplateInput,
    ) -> ServiceResult<Template> {
        let app_id = input
            .app_id
            .clone()
            .ok_or_else(|| ServiceError::invalid("appId", "is required"))?;
        let app = self.app(tenant_id, &app_id).await?;
        let mut t = Template {
            template_id: 0,
            tenant_id,
            app_id: app.app_id,
            name: String::new(),
            text: String::new(),
            code_type: CodeType::Numeric.as_i64(),
            code_length: DEFAULT_CODE_LENGTH as i64,
            speech_rate: 50,
            language: "EN".into(),
            max_duration: 59,
            repeat_cnt: 1,
            sender_id: None,
            created_ms: self.now_ms(),
        };
        apply_template(&mut t, input)?;
        t.template_id = self
            .store
            .insert_template(&t)
            .await
            .map_err(duplicate("template name"))?;
        Ok(t)
    }

    pub async fn template(&self, tenant_id: i64, template_id: i64) -> ServiceResult<Template> {
        match self.store.get_template(template_id).await? {
            Some(t) if t.tenant_id == tenant_id => Ok(t),
            _ => Err(ServiceError::NotFound("template")),
        }
    }

    /// Updates a template; `name` and `text` are required, other absent fields keep their values.
    pub async fn update_template(
        &self,
        tenant_id: i64,
        template_id: i64,
        input: TemplateInput,
    ) -> ServiceResult<Template> {
        let mut t = self.template(tenant_id, template_id).await?;
        apply_template(&mut t, input)?;
        self.store
            .update_template(&t)
            .await
            .map_err(duplicate("template name"))?;
        Ok(t)
    }

    pub async fn list_templates(&self, tenant_id: i64) -> ServiceResult<Vec<Template>> {
        Ok(self.store.list_templates(tenant_id).await?)
    }

    pub async fn create_flow(&self, tenant_id: i64, input: FlowInput) -> ServiceResult<Flow> {
        let (name, nodes) = check_flow(input)?;
        let mut f = Flow {
            flow_id: 0,
            tenant_id,
            name,
            nodes,
            created_ms: self.now_ms(),
        };
        f.flow_id = self
            .store
            .insert_flow(&f)
            .await
            .map_err(duplicate("flow name"))?;
        Ok(f)
    }

    pub async fn flow(&self, tenant_id: i64, flow_id: i64) -> ServiceResult<Flow> {
        match self.store.get_flow(flow_id).await? {
            Some(f) if f.tenant_id == tenant_id => Ok(f),
            _ => Err(ServiceError::NotFound("flow")),
        }
    }

    pub async fn update_flow(
        &self,
        tenant_id: i64,
        flow_id: i64,
        input: FlowInput,
    ) -> ServiceResult<Flow> {
        let mut f = self.flow(tenant_id, flow_id).await?;
        let (name, nodes) = check_flow(input)?;
        f.name = name;
        f.nodes = nodes;
        self.store
            .update_flow(&f)
            .await
            .map_err(duplicate("flow name"))?;
        Ok(f)
    }

    pub async fn list_flows(&self, tenant_id: i64) -> ServiceResult<Vec<Flow>> {
        Ok(self.store.list_flows(tenant_id).await?)
    }
}

fn check_flow(input: FlowInput) -> ServiceResult<(String, Vec<FlowNode>)> {
    let name = input
        .name
        .ok_or_else(|| ServiceError::invalid("name", "is required"))?;
    check_name(&name)?;
    let nodes = input
        .nodes
        .ok_or_else(|| ServiceError::invalid("flow", "is required"))?;
    if nodes.is_empty() || nodes.len() > MAX_NODES {
        return Err(ServiceError::invalid(
            "flow",
            format!("must have 1-{MAX_NODES} nodes"),
        ));
    }
    Ok((name, nodes))
}

/// Applies template fields, checking each; `name` and `text` are required.
fn apply_template(t: &mut Template, input: TemplateInput) -> ServiceResult<()> {
    let name = input
        .name
        .ok_or_else(|| ServiceError::invalid("name", "is required"))?;
    check_name(&name)?;
    let text = input
        .text
        .ok_or_else(|| ServiceError::invalid("text", "is required"))?;
    if !char_len_between(&text, 1, 256) {
        return Err(ServiceError::invalid("text", "must be 1-256 characters"));
    }
    if !text.contains("##code##") {
        return Err(ServiceError::invalid("text", "must contain ##code##"));
    }
    t.name = name;
    t.text = text;
    if let Some(v) = input.code_type {
        t.code_type = CodeType::from_i64(v)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "codeType",
                    "must be 1 (numeric), 2 (alpha), 3 (alphanumeric) or 4 (hex)",
                )
            })?
            .as_i64();
    }
    if let Some(v) = input.code_length {
        t.code_length = check_range(
            "codeLength",
            v,
            MIN_CODE_LENGTH as i64,
            MAX_CODE_LENGTH as i64,
        )?;
    }
    if let Some(v) = input.speech_rate {
        t.speech_rate = check_range("speechRate", v, 0, 100)?;
    }
    if let Some(v) = input.language {
        if !LANGUAGES.contains(&v.as_str()) {
            return Err(ServiceError::invalid(
                "language",
                format!("must be one of {}", LANGUAGES.join(", ")),
            ));
        }
        t.language = v;
    }
    if let Some(v) = input.max_duration {
        t.max_duration = check_range("maxDuration", v, 5, 599)?;
    }
    if let Some(v) = input.repeat_cnt {
        t.repeat_cnt = check_range("repeatCnt", v, 1, 10)?;
    }
    if let Some(v) = input.sender_id {
        if v.is_empty() {
            t.sender_id = None;
        } else if is_valid_sender_id(&v) {
            t.sender_id = Some(v);
        } else {
            return Err(ServiceError::invalid(
                "senderId",
                "must be up to 11 letters, digits and spaces, or up to 15 digits",
            ));
        }
    }
    Ok(())
}
