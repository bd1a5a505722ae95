//! The SGate OTP use cases: sendOtp, otpDetail, checkOtp (`shared/spec/sgate-payout.md` §2.6,
//! §2.7, and the SGate decisions of `shared/spec/README.md`).
//!
//! A send is an ordinary engine session (template = the product's `stcpay` text, the app's
//! one-per-minute phone limit, SMS on the best route) that also carries the 32-hex `sessionid`.
//! In a sandbox merchant the six test numbers send nothing and always verify with `123456`.

use super::verification::NewSessionSend;
use super::{Service, ServiceError, ServiceResult};
use crate::crypto::ct_eq_str;
use crate::domain::Channel;
use crate::domain::code::{Code, CodeType};
use crate::domain::ids::new_external_session_id;
use crate::domain::phone::PhoneNumber;
use crate::domain::session::VerifyOutcome;
use crate::domain::sgate;
use crate::store::{Merchant, VerifyLookup};

/// Why an SGate OTP call failed, one variant per contract code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OtpFailure {
    /// 1612
    #[error("mobile must be 5xxxxxxxx, 05xxxxxxxx, 9665xxxxxxxx or +9665xxxxxxxx")]
    BadMobile,
    /// 1603
    #[error("no product name is configured for this merchant")]
    NoProducts,
    /// 1604
    #[error("appname is not one of this merchant's product names")]
    UnknownProduct,
    /// 1605
    #[error("type must be stcpay")]
    BadType,
    /// 1212
    #[error("an OTP was sent to this number less than a minute ago")]
    TooSoon,
    /// 1601
    #[error("no SMS route on this gateway serves this number")]
    NoRoute,
    /// 1610
    #[error("no OTP with this sessionid")]
    UnknownSession,
    /// 1608
    #[error("mobile is not the number this sessionid was sent to")]
    NumberMismatch,
    /// 1609
    #[error("wrong code")]
    WrongCode,
    /// 1607
    #[error("the code has expired or was already used")]
    ExpiredOrUsed,
    /// 1606
    #[error("too many wrong codes: this OTP is locked")]
    Locked,
    /// 1611
    #[error("the OTP has not been handed to the SMS route yet")]
    Sending,
}

impl From<OtpFailure> for ServiceError {
    fn from(f: OtpFailure) -> Self {
        ServiceError::Otp(f)
    }
}

/// What `otpDetail` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpDetail {
    pub session_id: String,
    /// Gateway state: unknown, create, pending, sending, success, fail.
    pub status: String,
    /// Report state: unknown, pending, success, fail.
    pub report_status: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// The effective number of `mobile`, or 1612.
fn effective(mobile: &str) -> ServiceResult<&str> {
    Ok(sgate::effective_number(mobile).ok_or(OtpFailure::BadMobile)?)
}

/// The sandbox test number whose fixed session this is, checked against the caller's number.
/// `None` when the merchant is not in sandbox or the session is not a test one.
fn test_session(
    merchant: &Merchant,
    effective: &str,
    session_id: &str,
) -> ServiceResult<Option<&'static str>> {
    if !merchant.sandbox {
        return Ok(None);
    }
    match sgate::test_number_of_session(session_id) {
        Some(n) if n == effective => Ok(Some(n)),
        Some(_) => Err(OtpFailure::NumberMismatch.into()),
        None => Ok(None),
    }
}

impl Service {
    /// `sendOtp`: answers the new session's `sessionid`.
    pub async fn sgate_send(
        &self,
        merchant: &Merchant,
        mobile: &str,
        app_name: &str,
        otp_type: Option<&str>,
    ) -> ServiceResult<String> {
        let eff = effective(mobile)?;
        if otp_type.is_some_and(|t| !t.eq_ignore_ascii_case(sgate::OTP_TYPE)) {
            return Err(OtpFailure::BadType.into());
        }
        if merchant.products.is_empty() {
            return Err(OtpFailure::NoProducts.into());
        }
        let product = merchant
            .products
            .iter()
            .find(|p| p.name == app_name)
            .ok_or(OtpFailure::UnknownProduct)?;
        if merchant.sandbox
            && let Some(session_id) = sgate::test_session(eff)
        {
            self.store
                .record_sandbox_send(merchant.tenant.id, eff, self.now_ms())
                .await?;
            tracing::info!(
                tenant.id = merchant.tenant.id,
                sgate.session = session_id,
                "sandbox test number: nothing sent"
            );
            return Ok(session_id.to_string());
        }
        let phone = PhoneNumber::parse_international(&sgate::international(eff))
            .map_err(|_| OtpFailure::BadMobile)?;
        let (app, template) = self
            .store
            .app_with_template(&merchant.app_id, Some(product.template_id))
            .await?;
        let (Some(app), Some(template)) = (app, template) else {
            return Err(ServiceError::Internal(anyhow::anyhow!(
                "merchant {} has lost its app or the template of {:?}",
                merchant.tenant.id,
                product.name
            )));
        };
        let session_id = new_external_session_id();
        self.start_session(NewSessionSend {
            tenant_id: merchant.tenant.id,
            app,
            template: Some(template),
            flow: None,
            phone,
            channel: Channel::Sms,
            order_id: None,
            code: Code::generate(CodeType::Numeric, sgate::CODE_LENGTH as u8),
            code_type: CodeType::Numeric.as_i64(),
            code_length: sgate::CODE_LENGTH,
            case_insensitive: false,
            kind: "sendOtp",
            external_id: Some(session_id.clone()),
            guard: None,
        })
        .await
        .map_err(|e| match e {
            ServiceError::PhoneLimit => OtpFailure::TooSoon.into(),
            ServiceError::Invalid { field, .. } if field == "channel" => OtpFailure::NoRoute.into(),
            other => other,
        })?;
        Ok(session_id)
    }

    /// `otpDetail`: the latest attempt's gateway and report states.
    pub async fn sgate_detail(
        &self,
        merchant: &Merchant,
        mobile: &str,
        session_id: &str,
    ) -> ServiceResult<OtpDetail> {
        let eff = effective(mobile)?;
        if let Some(number) = test_session(merchant, eff, session_id)? {
            let at_ms = self
                .store
                .sandbox_send(merchant.tenant.id, number)
                .await?
                .ok_or(OtpFailure::UnknownSession)?;
            return Ok(OtpDetail {
                session_id: session_id.to_string(),
                status: "success".into(),
                report_status: "success".into(),
                created_at: at_ms.div_euclid(1000),
            });
        }
        let session = self.sgate_session(merchant, eff, session_id).await?;
        let attempts = self.store.attempts_for_session(&session.id).await?;
        let (status, report_status) = attempts
            .last()
            .map(|a| (a.gateway_state.clone(), a.report_state.clone()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        Ok(OtpDetail {
            session_id: session_id.to_string(),
            status,
            report_status,
            created_at: session.created_ms.div_euclid(1000),
        })
    }

    /// `checkOtp`: consumes the session on the right code.
    pub async fn sgate_check(
        &self,
        merchant: &Merchant,
        mobile: &str,
        code: &str,
        session_id: &str,
    ) -> ServiceResult<()> {
        let eff = effective(mobile)?;
        if test_session(merchant, eff, session_id)?.is_some() {
            return if ct_eq_str(code, sgate::TEST_CODE) {
                Ok(())
            } else {
                Err(OtpFailure::WrongCode.into())
            };
        }
        let session = self.sgate_session(merchant, eff, session_id).await?;
        let outcome = match self
            .check_code(&session.id, merchant.tenant.id, None, code)
            .await?
        {
            VerifyLookup::Checked { outcome, .. } => outcome,
            VerifyLookup::Unknown | VerifyLookup::Foreign => {
                return Err(OtpFailure::UnknownSession.into());
            }
        };
        tracing::info!(
            tenant.id = merchant.tenant.id,
            session.id = %session.id,
            verify.matched = outcome.matched(),
            "checkOtp"
        );
        match outcome {
            VerifyOutcome::Matched => Ok(()),
            // The code that spends the budget is still just wrong; the next call is 1606.
            VerifyOutcome::Wrong { .. } => Err(OtpFailure::WrongCode.into()),
            VerifyOutcome::Locked => Err(OtpFailure::Locked.into()),
            VerifyOutcome::AlreadyVerified | VerifyOutcome::Expired => {
                Err(OtpFailure::ExpiredOrUsed.into())
            }
            VerifyOutcome::NotSubmitted => Err(OtpFailure::Sending.into()),
        }
    }

    /// The merchant's session with this `sessionid`, sent to this effective number.
    async fn sgate_session(
        &self,
        merchant: &Merchant,
        effective: &str,
        session_id: &str,
    ) -> ServiceResult<crate::store::Session> {
        let session = self
            .store
            .session_by_external(session_id)
            .await?
            .filter(|s| s.tenant_id == merchant.tenant.id)
            .ok_or(OtpFailure::UnknownSession)?;
        if session.phone != sgate::international(effective) {
            return Err(OtpFailure::NumberMismatch.into());
        }
        Ok(session)
    }
}
