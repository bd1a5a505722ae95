//! Send, sendRule, resend, verify and the records of a session.

use super::delivery::{Delivery, DeliveryTarget};
use super::{Service, ServiceError, ServiceResult};
use crate::domain::Channel;
use crate::domain::code::{self, Code, CodeType};
use crate::domain::ids::new_verification_id;
use crate::domain::phone::{PhoneError, PhoneNumber};
use crate::domain::session::VerifyOutcome;
use crate::domain::validate::char_len_between;
use crate::providers::routing::RouteChoice;
use crate::store::{
    App, Attempt, CandidateHash, Flow, NewAttempt, NewSend, NewSession, SendOutcome, SendTarget,
    Session, StoreError, StoredCode, Template, TenantGuard, VerifyLookup,
};

/// A send or sendRule request, fields as received (already typed, not yet checked).
#[derive(Debug, Clone, Default)]
pub struct SendInput {
    pub app_id: Option<String>,
    pub template_id: Option<i64>,
    pub flow_id: Option<i64>,
    pub to: Option<String>,
    pub channel: Option<String>,
    pub order_id: Option<String>,
    /// sendRule: the caller's own code.
    pub code: Option<String>,
}

/// A new session, checked and ready to write (see [`Service::start_session`]).
pub(super) struct NewSessionSend {
    pub tenant_id: i64,
    pub app: App,
    pub template: Option<Template>,
    pub flow: Option<Flow>,
    pub phone: PhoneNumber,
    pub channel: Channel,
    pub order_id: Option<String>,
    pub code: Code,
    pub code_type: i64,
    pub code_length: i64,
    pub case_insensitive: bool,
    /// The verification's kind (`send`, `sendRule`, `sendOtp`).
    pub kind: &'static str,
    /// The session's dialect-specific id ([`Session::external_id`]), if it has one.
    pub external_id: Option<String>,
    /// The cached tenant row the caller was authenticated with ([`NewSend::guard`]).
    pub guard: Option<TenantGuard>,
}

#[derive(Debug, Clone)]
pub struct SendResult {
    pub verification_id: String,
    pub to: String,
    pub channel: Channel,
}

#[derive(Debug, Clone)]
pub struct VerifyResult {
    pub verification_id: String,
    /// `None` when the id is unknown.
    pub to: Option<String>,
    pub channel: Option<String>,
    pub matched: i64,
}

/// A session with everything its records show.
#[derive(Debug, Clone)]
pub struct RecordView {
    pub verification_id: String,
    /// Channel of the verification id asked about (of the first send, for an orderId).
    pub channel: String,
    pub session: Session,
    pub flow_id: Option<i64>,
    pub attempts: Vec<Attempt>,
}

const SEND_ID_TRIES: usize = 3;

fn parse_channel(raw: Option<&str>) -> ServiceResult<Channel> {
    match raw {
        None | Some("") => Ok(Channel::Sms),
        Some(s) => Channel::parse(s)
            .ok_or_else(|| ServiceError::invalid("channel", "must be sms, call or sna")),
    }
}

pub(super) fn code_context(session_id: &str) -> String {
    format!("code:{session_id}")
}

impl Service {
    /// Picks the best route for `channel` and the number and describes the attempt (see
    /// [`Service::describe_attempt`]); no route is the caller's error.
    fn plan(
        &self,
        channel: Channel,
        phone: PhoneNumber,
        template: Option<Template>,
        code: &Code,
        flow_step: Option<i64>,
    ) -> ServiceResult<(DeliveryTarget, NewAttempt)> {
        self.describe_attempt(
            channel,
            phone,
            template,
            code,
            flow_step,
            RouteChoice::First,
        )
        .ok_or_else(|| {
            ServiceError::invalid(
                "channel",
                format!(
                    "{channel}: no {} route on this gateway serves this number",
                    channel.as_str().to_uppercase()
                ),
            )
        })
    }

    fn stored_code(
        &self,
        session_id: &str,
        code: &Code,
        case_insensitive: bool,
        expires_ms: i64,
    ) -> StoredCode {
        StoredCode {
            hash: self.keys.code_hash(
                session_id,
                &code::normalize_input(code.expose(), case_insensitive),
            ),
            sealed: self.keys.seal(code.expose(), &code_context(session_id)),
            expires_ms,
        }
    }

    /// `verification/send` (generated code) and `verification/sendRule` (`input.code` given).
    /// `guard`: the cached tenant row the caller was authenticated with, if it was (see
    /// [`TenantGuard`]).
    pub async fn send(
        &self,
        tenant_id: i64,
        guard: Option<TenantGuard>,
        input: SendInput,
    ) -> ServiceResult<SendResult> {
        let rule = input.code.is_some();
        let app_id = input
            .app_id
            .as_deref()
            .ok_or_else(|| ServiceError::invalid("appId", "is required"))?;
        if !char_len_between(app_id, 4, 32) {
            return Err(ServiceError::invalid("appId", "must be 4-32 characters"));
        }
        let to_raw = input
            .to
            .as_deref()
            .ok_or_else(|| ServiceError::invalid("to", "is required"))?;
        let phone = PhoneNumber::parse(to_raw).map_err(|e| match e {
            PhoneError::Format => ServiceError::invalid("to", e.to_string()),
            PhoneError::Impossible => ServiceError::invalid("to", format!("{to_raw:?} {e}")),
        })?;
        let channel = parse_channel(input.channel.as_deref())?;
        let order_id = match input.order_id.as_deref() {
            None | Some("") => None,
            Some(o) if o.chars().count() <= 64 => Some(o.to_string()),
            Some(_) => {
                return Err(ServiceError::invalid(
                    "orderId",
                    "must be at most 64 characters",
                ));
            }
        };
        let supplied = match input.code.as_deref() {
            Some(c) if char_len_between(c, 1, 10) && !c.chars().any(char::is_control) => {
                Some(Code::supplied(c))
            }
            Some(_) => return Err(ServiceError::invalid("code", "must be 1-10 characters")),
            None => None,
        };
        if !rule && input.template_id.is_none() {
            return Err(ServiceError::invalid("templateId", "is required"));
        }
        let (app, template) = self
            .store
            .app_with_template(app_id, input.template_id)
            .await?;
        let app = app
            .filter(|a| a.tenant_id == tenant_id)
            .ok_or(ServiceError::NotFound("app"))?;
        // The template must be the tenant's and belong to this app.
        let template = match (input.template_id, template) {
            (None, _) => None,
            (Some(_), Some(t)) if t.tenant_id == tenant_id && t.app_id == app.app_id => Some(t),
            (Some(_), _) => return Err(ServiceError::NotFound("template")),
        };
        let flow: Option<Flow> = match input.flow_id {
            Some(id) => Some(self.flow(tenant_id, id).await?),
            None => None,
        };
        let (code, code_type, code_length, case_insensitive) = match supplied {
            Some(c) => {
                let len = c.expose().chars().count().clamp(4, 10) as i64;
                (c, CodeType::Numeric.as_i64(), len, false)
            }
            None => {
                let t = template
                    .as_ref()
                    .ok_or_else(|| ServiceError::invalid("templateId", "is required"))?;
                let kind = CodeType::from_i64(t.code_type).unwrap_or(CodeType::Numeric);
                let len = t.code_length.clamp(4, 10) as u8;
                (
                    Code::generate(kind, len),
                    t.code_type,
                    t.code_length,
                    kind != CodeType::Numeric,
                )
            }
        };
        self.start_session(NewSessionSend {
            tenant_id,
            app,
            template,
            flow,
            phone,
            channel,
            order_id,
            code,
            code_type,
            code_length,
            case_insensitive,
            kind: if rule { "sendRule" } else { "send" },
            external_id: None,
            guard,
        })
        .await
    }

    /// Starts a new session: plans its first attempt on the best route, writes the session,
    /// its verification id, the attempt and its deliver job in one store call, and starts the
    /// delivery. Every dialect's send ends here.
    pub(super) async fn start_session(&self, s: NewSessionSend) -> ServiceResult<SendResult> {
        // The first node runs after the first attempt, if the flow has any.
        let next_step = s
            .flow
            .as_ref()
            .filter(|f| !f.nodes.is_empty())
            .map(|f| (f.flow_id, 0));
        let (target, attempt) = self.plan(
            s.channel,
            s.phone,
            s.template,
            &s.code,
            next_step.map(|(_, step)| step),
        )?;
        let to = target.phone.digits().to_string();
        let verification_id = self
            .commit_send(
                |verification_id, now_ms| NewSend {
                    tenant_id: s.tenant_id,
                    app_id: s.app.app_id.clone(),
                    phone: to.clone(),
                    verification_id: verification_id.to_string(),
                    kind: s.kind,
                    order_id: s.order_id.clone(),
                    total_limit: s.app.total_limit.active(),
                    phone_limit: s.app.phone_limit.active(),
                    target: SendTarget::New(NewSession {
                        app_id: s.app.app_id.clone(),
                        template_id: target.template.as_ref().map(|t| t.template_id),
                        flow_id: s.flow.as_ref().map(|f| f.flow_id),
                        phone: to.clone(),
                        region: target.phone.region().map(str::to_string),
                        // A new session's id is its first verification id.
                        code: self.stored_code(
                            verification_id,
                            &s.code,
                            s.case_insensitive,
                            s.app.code_expires_ms(now_ms),
                        ),
                        code_type: s.code_type,
                        code_length: s.code_length,
                        case_insensitive: s.case_insensitive,
                        // 128 random bits: a clash is not a practical concern.
                        external_id: s.external_id.clone(),
                    }),
                    attempt: attempt.clone(),
                    now_ms,
                    claim: None,
                    guard: s.guard.clone(),
                },
                &s.code,
                &target,
                next_step,
            )
            .await?;
        Ok(SendResult {
            verification_id,
            to,
            channel: s.channel,
        })
    }

    /// Writes a send in one store transaction (drawing a new id on the rare clash of its
    /// random part), with its attempt and that attempt's deliver job claimed by this process,
    /// then starts the delivery in its own task and answers: the send is durable from here.
    /// When every delivery slot is busy, the job is written unclaimed instead and the workers
    /// take it as slots free up: the queue, not memory, absorbs a burst.
    async fn commit_send(
        &self,
        build: impl Fn(&str, i64) -> NewSend,
        fresh: &Code,
        target: &DeliveryTarget,
        next_step: Option<(i64, i64)>,
    ) -> ServiceResult<String> {
        for _ in 0..SEND_ID_TRIES {
            let now_ms = self.now_ms();
            let slot = self.delivery_slot();
            let mut send = build(&new_verification_id(now_ms), now_ms);
            if slot.is_some() {
                send.claim = Some(self.new_claim(now_ms));
            } else {
                send.attempt.sending = None;
            }
            match self.store.create_send(&send).await {
                Ok(SendOutcome::Created {
                    session_id,
                    attempt_id,
                    code_sealed,
                    job,
                }) => {
                    // The session keeps the code this send sealed, or (a resend while the
                    // code is valid) the one it had.
                    let sealed_here = match &send.target {
                        SendTarget::New(n) => &n.code.sealed,
                        SendTarget::Resend { fresh, .. } => &fresh.sealed,
                    };
                    let code = if *sealed_here == code_sealed {
                        fresh.clone()
                    } else {
                        self.open_code(&code_sealed, &session_id)?
                    };
                    tracing::info!(
                        verification.id = %send.verification_id,
                        session.id = %session_id,
                        app.id = %send.app_id,
                        phone = %target.phone,
                        channel = %target.channel,
                        route.name = %send.attempt.route,
                        send.kind = send.kind,
                        "send accepted"
                    );
                    self.metrics.send(send.kind);
                    let (Some(job), Some(slot)) = (job, slot) else {
                        self.metrics
                            .attempt(target.channel.as_str(), crate::store::gateway::PENDING);
                        return Ok(send.verification_id);
                    };
                    self.metrics
                        .attempt(target.channel.as_str(), crate::store::gateway::SENDING);
                    let svc = self.clone();
                    let delivery = Delivery {
                        job,
                        attempt_id,
                        verification_id: send.verification_id.clone(),
                        session_id,
                        next_step,
                        code,
                        target: target.clone(),
                    };
                    self.spawn_tracked(async move {
                        svc.deliver(delivery).await;
                        drop(slot);
                    });
                    return Ok(send.verification_id);
                }
                Ok(other) => return Err(outcome_error(other)),
                Err(StoreError::Conflict(c))
                    if c.contains("verification") || c.contains("sessions") =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal(anyhow::anyhow!(
            "could not allocate a unique verification id"
        )))
    }

    /// `verification/resend`: a new verification id joined to the same session.
    pub async fn resend(
        &self,
        tenant_id: i64,
        guard: Option<TenantGuard>,
        verification_id: &str,
        channel: Option<&str>,
    ) -> ServiceResult<SendResult> {
        let channel = parse_channel(channel)?;
        let (_, session) = self.session_of(tenant_id, verification_id).await?;
        let app: App = self.app(tenant_id, &session.app_id).await?;
        let template: Option<Template> = match session.template_id {
            Some(id) => self.store.get_template(id).await?,
            None => None,
        };
        let phone = PhoneNumber::parse_international(&session.phone).map_err(|e| {
            ServiceError::Internal(anyhow::anyhow!("stored number unreadable: {e}"))
        })?;
        let kind = CodeType::from_i64(session.code_type).unwrap_or(CodeType::Numeric);
        let fresh = Code::generate(kind, session.code_length.clamp(4, 10) as u8);
        let (target, attempt) = self.plan(channel, phone, template, &fresh, None)?;
        let verification_id = self
            .commit_send(
                |verification_id, now_ms| NewSend {
                    tenant_id,
                    app_id: app.app_id.clone(),
                    phone: session.phone.clone(),
                    verification_id: verification_id.to_string(),
                    kind: "resend",
                    order_id: None,
                    total_limit: app.total_limit.active(),
                    phone_limit: app.phone_limit.active(),
                    target: SendTarget::Resend {
                        session_id: session.id.clone(),
                        fresh: self.stored_code(
                            &session.id,
                            &fresh,
                            session.case_insensitive,
                            app.code_expires_ms(now_ms),
                        ),
                    },
                    attempt: attempt.clone(),
                    now_ms,
                    claim: None,
                    guard: guard.clone(),
                },
                &fresh,
                &target,
                None,
            )
            .await?;
        Ok(SendResult {
            verification_id,
            to: session.phone.clone(),
            channel,
        })
    }

    /// The verification id's session, if it is the tenant's.
    pub(super) async fn session_of(
        &self,
        tenant_id: i64,
        verification_id: &str,
    ) -> ServiceResult<(crate::store::Verification, Session)> {
        match self.store.verification_session(verification_id).await? {
            Some((v, s)) if v.tenant_id == tenant_id => Ok((v, s)),
            _ => Err(ServiceError::NotFound("verification")),
        }
    }

    /// `verification/verify`.
    pub async fn verify(
        &self,
        tenant_id: i64,
        guard: Option<TenantGuard>,
        verification_id: &str,
        code: &str,
    ) -> ServiceResult<VerifyResult> {
        if !char_len_between(code, 1, 10) {
            return Err(ServiceError::invalid("code", "must be 1-10 characters"));
        }
        let (outcome, v, session) = match self
            .check_code(verification_id, tenant_id, guard, code)
            .await?
        {
            VerifyLookup::Unknown => {
                return Ok(VerifyResult {
                    verification_id: verification_id.to_string(),
                    to: None,
                    channel: None,
                    matched: 3,
                });
            }
            VerifyLookup::Foreign => return Err(ServiceError::NotFound("verification")),
            VerifyLookup::Checked {
                outcome,
                verification,
                session,
            } => (outcome, verification, session),
        };
        tracing::info!(
            verification.id = %verification_id,
            session.id = %session.id,
            verify.matched = outcome.matched(),
            verify.wrong_attempts = session.wrong_attempts,
            "verify"
        );
        if outcome == VerifyOutcome::Locked {
            return Err(ServiceError::AttemptsExceeded {
                verification_id: verification_id.to_string(),
                to: session.phone,
                channel: v.channel,
            });
        }
        Ok(VerifyResult {
            verification_id: verification_id.to_string(),
            to: Some(session.phone),
            channel: Some(v.channel),
            matched: outcome.matched(),
        })
    }

    /// Checks a typed code against the session of `verification_id` in one store call, and
    /// counts the outcome. Every dialect's verify goes through here.
    pub(super) async fn check_code(
        &self,
        verification_id: &str,
        tenant_id: i64,
        guard: Option<TenantGuard>,
        code: &str,
    ) -> ServiceResult<VerifyLookup> {
        let keys = self.keys.clone();
        let typed = code.to_string();
        let hash: CandidateHash = Box::new(move |s: &Session| {
            keys.code_hash(&s.id, &code::normalize_input(&typed, s.case_insensitive))
        });
        let lookup = self
            .store
            .verify(verification_id, tenant_id, guard, hash, self.now_ms())
            .await?;
        self.metrics.verify(match &lookup {
            VerifyLookup::Unknown | VerifyLookup::Foreign => "unknown",
            VerifyLookup::Checked { outcome, .. } => match outcome {
                VerifyOutcome::Matched => "matched",
                VerifyOutcome::NotSubmitted => "not_submitted",
                VerifyOutcome::Wrong { locked_now: false } => "wrong",
                VerifyOutcome::Wrong { locked_now: true } | VerifyOutcome::Locked => "locked",
                VerifyOutcome::AlreadyVerified => "already_verified",
                VerifyOutcome::Expired => "expired",
            },
        });
        Ok(lookup)
    }

    /// The record of the session a verification id belongs to.
    pub async fn record(&self, tenant_id: i64, verification_id: &str) -> ServiceResult<RecordView> {
        let (v, session) = self.session_of(tenant_id, verification_id).await?;
        let attempts = self.store.attempts_for_session(&session.id).await?;
        Ok(RecordView {
            verification_id: v.verification_id,
            channel: v.channel,
            flow_id: session.flow_id,
            session,
            attempts,
        })
    }

    /// The record of the send that used `order_id`; when `app_id` is given it must match.
    pub async fn order_record(
        &self,
        tenant_id: i64,
        app_id: Option<&str>,
        order_id: &str,
    ) -> ServiceResult<RecordView> {
        if let Some(app_id) = app_id {
            self.app(tenant_id, app_id).await?;
        }
        let session = match self.store.session_by_order(tenant_id, order_id).await? {
            Some(s) if app_id.is_none_or(|a| a == s.app_id) => s,
            _ => return Err(ServiceError::NotFound("order")),
        };
        let attempts = self.store.attempts_for_session(&session.id).await?;
        Ok(RecordView {
            verification_id: session.id.clone(),
            channel: session.channel.clone(),
            flow_id: session.flow_id,
            session,
            attempts,
        })
    }
}

fn outcome_error(outcome: SendOutcome) -> ServiceError {
    match outcome {
        SendOutcome::DuplicateOrder { verification_id } => {
            ServiceError::DuplicateOrder { verification_id }
        }
        SendOutcome::TotalLimit => ServiceError::TotalLimit,
        SendOutcome::PhoneLimit => ServiceError::PhoneLimit,
        SendOutcome::SessionClosed => ServiceError::Rejected(
            "the verification is already verified, or locked after too many wrong codes".into(),
        ),
        SendOutcome::SessionMissing => ServiceError::NotFound("verification"),
        SendOutcome::Created { .. } => {
            ServiceError::Internal(anyhow::anyhow!("unexpected send outcome"))
        }
    }
}
