//! SMPP 3.4 routes (rusmppc): binds, window, enquire_link, reconnect, receipts.
//!
//! [`build`] starts a background task that owns the connection: it connects, binds (one
//! transceiver, or a transmitter plus a receiver with `bind = "transmitter+receiver"`), lets
//! rusmppc send `enquire_link` every `enquire_link_secs`, answers every `deliver_sm` with a
//! `deliver_sm_resp`, and when the SMSC goes away or refuses the bind it waits
//! `reconnect_secs`, doubling up to `reconnect_max_secs`, and tries again. [`Provider::is_up`]
//! is true while the bind (both binds) stands; a submit while it does not fails at once as
//! retryable (`not bound (…)`).
//!
//! **Submitting.** The text is sent GSM-7 (`data_coding` 0, unpacked septets, one per byte,
//! `0x1B` before extension characters) when every character is in GSM 03.38, else UCS-2
//! (`data_coding` 8, UTF-16BE). A text longer than one SMS becomes a concatenated message:
//! each part its own `submit_sm` with `esm_class` 0x40 and the 6-octet header
//! `05 00 03 ref total seq`, cut as [`crate::domain::sms::analyze`] counts segments (153
//! septets / 67 UTF-16 units per part; an escape pair or a surrogate pair is never split).
//! Every `submit_sm` asks for the SMSC delivery receipt only (`registered_delivery` 1) and
//! holds one slot of the route's window (`window`, a semaphore) until its `submit_sm_resp`
//! arrives or `response_timeout_secs` pass. `ESME_RTHROTTLED` and `ESME_RMSGQFUL` are
//! retryable, every other error status permanent; a missing response or a lost connection is
//! retryable (the SMSC may then have taken the message: a retry can duplicate it).
//!
//! **Multipart message ids and receipts.** A multipart message is submitted part after part;
//! the id returned for the attempt is the **first part's** SMSC message id. The provider keeps
//! a small map from every part's id to that first id and aggregates the parts' receipts: the
//! attempt is reported delivered once every part's receipt says DELIVRD (at the latest part's
//! done date), and failed as soon as one part's receipt says otherwise (the reason names the
//! part). Receipts of single-part messages are forwarded as they come, keyed by their id. A
//! receipt may arrive before its `submit_sm_resp`: the read loop never waits for submits, so
//! it is never dropped; while a multipart submission is in progress, receipts for unknown ids
//! are held in the provider until the submission's part ids are known (then forwarded or
//! aggregated), otherwise they go straight to the receipt sink, which holds receipts for
//! messages whose submission is not recorded yet. A multipart submission that fails half-way
//! is retryable as a whole; the parts already accepted are not recalled. Part maps are kept
//! for two days.
//!
//! **Receipts.** A `deliver_sm` whose `esm_class` says "MC delivery receipt" (0x04) is read
//! from its TLVs (`receipted_message_id` 0x001E, `message_state` 0x0427,
//! `network_error_code` 0x0423), which win when present, and its SMPP 3.4 Appendix B text
//! (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`). `DELIVRD` is
//! delivered; `UNDELIV`, `EXPIRED`, `DELETED`, `REJECTD`, `UNKNOWN` are failed, with a reason
//! such as `UNDELIV err:001`; `ENROUTE`, `ACCEPTD` and `SCHEDULED` are not final and are
//! ignored. The time is the done date (`YYMMDDhhmm[ss]`, taken as UTC; never later than the
//! receipt's arrival, and the arrival when a date without seconds names the current minute)
//! or, without a readable one, the arrival. The MNC is
//! taken from a non-standard `mccmnc:` (MCC+MNC digits) or `mnc:` field of the text when an
//! SMSC adds one; otherwise it is unknown. Other `deliver_sm`s (mobile-originated messages) are
//! acknowledged and dropped.
//!
//! Logs never show the message or receipt text (they hold the code) nor whole numbers.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use futures_util::{Stream, StreamExt};
use rusmpp::pdus::{
    BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm,
};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::{
    OutboundMessage, Provider, ProviderContext, ProviderError, Receipt, ReceiptEvent, ReceiptKey,
    ReceiptSink, Submitted,
};
use crate::clock::SharedClock;
use crate::config::Secret;
use crate::domain::Channel;
use crate::domain::phone::mask_digits;
use crate::domain::sms;

/// `[routes.smpp]`: one SMPP bind (or a transmitter + receiver pair) to an SMSC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    /// The SMSC's host name or IP address.
    pub host: String,
    /// The SMSC's SMPP port (commonly 2775).
    pub port: u16,
    /// The account (`system_id`) to bind with, at most 15 characters.
    pub system_id: String,
    /// The account's password, at most 8 characters; `env:NAME` reads it from the
    /// environment variable `NAME`.
    pub password: Secret,
    /// `system_type` sent with the bind (at most 12 characters); empty by default.
    #[serde(default)]
    pub system_type: String,
    /// `transceiver` (default: one bind for submits and receipts) or `transmitter+receiver`
    /// (two binds: submits on the transmitter, receipts on the receiver).
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Seconds between `enquire_link`s on an idle bind (default 30); an unanswered one
    /// (within `response_timeout_secs`) drops the connection, which is then re-established.
    #[serde(default = "default_enquire_link")]
    pub enquire_link_secs: u64,
    /// First reconnect wait, seconds (default 1); doubles after every failed connect or
    /// bind up to `reconnect_max_secs`, and starts over once a bind succeeds.
    #[serde(default = "default_reconnect")]
    pub reconnect_secs: u64,
    /// Longest reconnect wait, seconds (default 60).
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_secs: u64,
    /// TON/NPI of the source address: derived from the sender when unset (alphanumeric 5/0,
    /// short code of at most 8 digits 3/0, else international 1/1).
    pub source_ton: Option<u8>,
    /// See `source_ton`.
    pub source_npi: Option<u8>,
    /// Most `submit_sm`s waiting for their `submit_sm_resp` at once on this bind (default 10).
    #[serde(default = "default_window")]
    pub window: usize,
    /// How long to wait for a `submit_sm_resp` (and for a free window slot, a TCP connect or a
    /// bind response), seconds (default 10). A submit that gets no answer in time is retryable.
    #[serde(default = "default_response_timeout")]
    pub response_timeout_secs: u64,
}

fn default_bind() -> String {
    "transceiver".into()
}
fn default_enquire_link() -> u64 {
    30
}
fn default_reconnect() -> u64 {
    1
}
fn default_reconnect_max() -> u64 {
    60
}
fn default_window() -> usize {
    10
}
fn default_response_timeout() -> u64 {
    10
}

/// Which binds a route opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BindMode {
    Transceiver,
    TransmitterReceiver,
}

impl BindMode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "transceiver" | "trx" => Some(Self::Transceiver),
            "transmitter+receiver" | "tx+rx" => Some(Self::TransmitterReceiver),
            _ => None,
        }
    }
}

impl SmppConfig {
    /// What is wrong with this section, each problem naming `routes.<route>.smpp.<field>`.
    pub fn problems(&self, route: &str) -> Vec<String> {
        let at = |field: &str| format!("routes.{route}.smpp.{field}");
        let mut out = Vec::new();
        if self.host.trim().is_empty() {
            out.push(format!("{}: must name the SMSC host", at("host")));
        }
        if self.port == 0 {
            out.push(format!("{}: must be a port number (1-65535)", at("port")));
        }
        if self.system_id.is_empty() || self.system_id.len() > 15 || !self.system_id.is_ascii() {
            out.push(format!(
                "{}: must be 1 to 15 ASCII characters",
                at("system_id")
            ));
        }
        match self.password.resolve() {
            Ok(p) if p.len() > 8 || !p.is_ascii() => out.push(format!(
                "{}: SMPP 3.4 passwords are at most 8 ASCII characters",
                at("password")
            )),
            Ok(_) => {}
            Err(e) => out.push(format!("{}: {e}", at("password"))),
        }
        if self.system_type.len() > 12 || !self.system_type.is_ascii() {
            out.push(format!(
                "{}: at most 12 ASCII characters",
                at("system_type")
            ));
        }
        if BindMode::parse(&self.bind).is_none() {
            out.push(format!(
                "{}: `transceiver` or `transmitter+receiver`, not {:?}",
                at("bind"),
                self.bind
            ));
        }
        if self.enquire_link_secs == 0 {
            out.push(format!("{}: must be at least 1", at("enquire_link_secs")));
        }
        if self.reconnect_secs == 0 {
            out.push(format!("{}: must be at least 1", at("reconnect_secs")));
        }
        if self.reconnect_max_secs < self.reconnect_secs {
            out.push(format!(
                "{}: must not be less than reconnect_secs",
                at("reconnect_max_secs")
            ));
        }
        if self.window == 0 {
            out.push(format!("{}: must be at least 1", at("window")));
        }
        if self.response_timeout_secs == 0 {
            out.push(format!(
                "{}: must be at least 1",
                at("response_timeout_secs")
            ));
        }
        out
    }

    fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs.max(1))
    }
}

/// Starts the bind in the background and returns the route's provider.
///
/// Must be called inside a tokio runtime. The connection task stops when the provider is
/// closed ([`Provider::close`], which unbinds) or dropped.
pub fn build(cfg: &SmppConfig, ctx: ProviderContext) -> anyhow::Result<Arc<dyn Provider>> {
    Ok(Arc::new(SmppProvider::start(cfg, ctx)?))
}

/// An SMPP route.
pub struct SmppProvider {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What the connection task and the submitters share.
struct Shared {
    cfg: SmppConfig,
    mode: BindMode,
    route: String,
    clock: SharedClock,
    receipts: ReceiptSink,
    link: RwLock<Link>,
    up: AtomicBool,
    window: Semaphore,
    tracker: Mutex<Tracker>,
    next_ref: AtomicU32,
}

/// The bind as submitters see it.
struct Link {
    /// The client that carries `submit_sm` (the transceiver or the transmitter) while bound.
    submitter: Option<Client>,
    /// Why there is none, for the `not bound (…)` error.
    down: String,
}

impl SmppProvider {
    fn start(cfg: &SmppConfig, ctx: ProviderContext) -> anyhow::Result<Self> {
        let problems = cfg.problems(&ctx.route);
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.join("; "));
        }
        let mode = BindMode::parse(&cfg.bind)
            .ok_or_else(|| anyhow::anyhow!("routes.{}.smpp.bind: unknown bind", ctx.route))?;
        let password = cfg.password.resolve().map_err(anyhow::Error::msg)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("SMPP routes are started inside the server runtime"))?;
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            mode,
            route: ctx.route.clone(),
            clock: ctx.clock.clone(),
            receipts: ctx.receipts.clone(),
            link: RwLock::new(Link {
                submitter: None,
                down: format!("connecting to {}:{}", cfg.host, cfg.port),
            }),
            up: AtomicBool::new(false),
            window: Semaphore::new(cfg.window.max(1)),
            tracker: Mutex::new(Tracker::default()),
            next_ref: AtomicU32::new(rand::random::<u8>().into()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = runtime.spawn(run(shared.clone(), password, stop_rx));
        Ok(Self {
            shared,
            stop,
            task: Mutex::new(Some(task)),
        })
    }
}

impl Drop for SmppProvider {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[async_trait]
impl Provider for SmppProvider {
    fn kind(&self) -> &'static str {
        "smpp"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Sms
    }

    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        if msg.channel != Channel::Sms {
            return Err(ProviderError::Permanent(format!(
                "SMPP routes carry SMS only, not {}",
                msg.channel.as_str()
            )));
        }
        self.shared.submit(msg).await
    }

    fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().map(|mut t| t.take()).unwrap_or_default();
        if let Some(task) = task {
            let grace = self.shared.cfg.response_timeout() + Duration::from_secs(1);
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!(route.name = %self.shared.route, "SMPP connection did not close in time");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Submitting

impl Shared {
    fn submitter(&self) -> Result<Client, ProviderError> {
        let link = self.link.read().map_err(|_| {
            ProviderError::Retryable("not bound (connection state unavailable)".into())
        })?;
        match &link.submitter {
            Some(c) if self.up.load(Ordering::SeqCst) => Ok(c.clone()),
            _ => Err(ProviderError::Retryable(format!(
                "not bound ({})",
                link.down
            ))),
        }
    }

    fn set_bound(&self, submitter: Client) {
        if let Ok(mut link) = self.link.write() {
            link.submitter = Some(submitter);
            link.down.clear();
        }
        self.up.store(true, Ordering::SeqCst);
    }

    fn set_down(&self, why: String) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut link) = self.link.write() {
            link.submitter = None;
            link.down = why;
        }
    }

    async fn submit(&self, msg: &OutboundMessage) -> Result<Submitted, ProviderError> {
        let (source, source_ton, source_npi) = source_address(msg.sender.as_deref(), &self.cfg)?;
        if msg.to.is_empty() || msg.to.len() > 20 || !msg.to.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProviderError::Permanent(
                "the destination must be 1 to 20 digits".into(),
            ));
        }
        let client = self.submitter()?;
        let encoded = sms::encode_parts(&msg.text);
        let total = encoded.parts.len();
        let Ok(total_u8) = u8::try_from(total) else {
            return Err(ProviderError::Permanent(format!(
                "the text needs {total} SMS parts; at most 255 can be concatenated"
            )));
        };
        let multipart = total > 1;
        let reference = (self.next_ref.fetch_add(1, Ordering::Relaxed) & 0xFF) as u8;
        let base = SubmitSm::builder()
            .service_type(ServiceType::default())
            .source_addr_ton(Ton::from(source_ton))
            .source_addr_npi(Npi::from(source_npi))
            .source_addr(c_octets(&source, "source address")?)
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(c_octets(&msg.to, "destination")?)
            .esm_class(EsmClass::from(if multipart { 0x40 } else { 0x00 }))
            .registered_delivery(RegisteredDelivery::from(1u8))
            .data_coding(DataCoding::from(encoded.encoding.data_coding()));

        let mut guard = multipart.then(|| MultipartGuard::begin(self, total));
        let mut first_id = None;
        for (i, payload) in encoded.parts.iter().enumerate() {
            let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let mut bytes = Vec::with_capacity(payload.len() + 6);
            if multipart {
                bytes.extend_from_slice(&sms::concat_udh(reference, total_u8, seq));
            }
            bytes.extend_from_slice(payload);
            let short_message = OctetString::from_vec(bytes).map_err(|e| {
                ProviderError::Permanent(format!("the message does not fit a submit_sm: {e}"))
            })?;
            let pdu = base.clone().short_message(short_message).build();
            let id = self.submit_one(&client, pdu, msg, seq, total).await?;
            if let Some(g) = guard.as_mut() {
                g.part_accepted(i, &id);
            }
            first_id.get_or_insert(id);
        }
        if let Some(g) = guard.take() {
            g.finish(true);
        }
        let message_id = first_id.unwrap_or_default();
        tracing::debug!(
            route.name = %self.route,
            smpp.message_id = %message_id,
            smpp.parts = total,
            smpp.data_coding = encoded.encoding.data_coding(),
            phone = %mask_digits(&msg.to),
            attempt.id = msg.attempt_id,
            "submit_sm accepted"
        );
        Ok(Submitted {
            message_id,
            receipt: None,
            outbox: None,
        })
    }

    /// One `submit_sm`, holding a window slot until its response.
    async fn submit_one(
        &self,
        client: &Client,
        pdu: SubmitSm,
        msg: &OutboundMessage,
        part: u8,
        total: usize,
    ) -> Result<String, ProviderError> {
        let wait = self.cfg.response_timeout();
        let _slot = match tokio::time::timeout(wait, self.window.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(ProviderError::Retryable("route closed".into())),
            Err(_) => {
                return Err(ProviderError::Retryable(format!(
                    "window full: {} submits waited over {} s",
                    self.cfg.window, self.cfg.response_timeout_secs
                )));
            }
        };
        // rusmppc enforces the response timeout itself; this outer one also bounds the write.
        let answer = tokio::time::timeout(wait + Duration::from_secs(1), client.submit_sm(pdu))
            .await
            .unwrap_or(Err(rusmppc::error::Error::ResponseTimeout {
                sequence_number: 0,
                timeout: wait,
            }));
        match answer {
            Ok(resp) => Ok(resp.message_id().as_str().to_string()),
            Err(e) => {
                let err = classify(e, self.cfg.response_timeout_secs);
                tracing::warn!(
                    route.name = %self.route,
                    smpp.part = part,
                    smpp.parts = total,
                    phone = %mask_digits(&msg.to),
                    attempt.id = msg.attempt_id,
                    error = %err,
                    "submit_sm failed"
                );
                Err(err)
            }
        }
    }
}

/// Source address and its TON/NPI (configuration overrides the derived pair).
fn source_address(
    sender: Option<&str>,
    cfg: &SmppConfig,
) -> Result<(String, u8, u8), ProviderError> {
    let sender = sender.map(str::trim).unwrap_or_default();
    let (addr, ton, npi) = if sender.is_empty() {
        (String::new(), 0, 0)
    } else {
        let digits = sender.strip_prefix('+').unwrap_or(sender);
        if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.is_empty() {
            if digits.len() > 20 {
                return Err(ProviderError::Permanent(
                    "a numeric sender has at most 20 digits".into(),
                ));
            }
            if digits.len() <= 8 {
                (digits.to_string(), 3, 0)
            } else {
                (digits.to_string(), 1, 1)
            }
        } else {
            if !sender.is_ascii() || sender.len() > 11 {
                return Err(ProviderError::Permanent(
                    "an alphanumeric sender is at most 11 ASCII characters".into(),
                ));
            }
            (sender.to_string(), 5, 0)
        }
    };
    Ok((
        addr,
        cfg.source_ton.unwrap_or(ton),
        cfg.source_npi.unwrap_or(npi),
    ))
}

fn c_octets<const MIN: usize, const MAX: usize>(
    s: &str,
    what: &str,
) -> Result<COctetString<MIN, MAX>, ProviderError> {
    COctetString::from_string(s.to_string())
        .map_err(|e| ProviderError::Permanent(format!("invalid {what}: {e}")))
}

/// The SMPP name of a command status, e.g. `ESME_RTHROTTLED`.
pub fn status_name(status: CommandStatus) -> String {
    match status {
        CommandStatus::Other(code) => format!("0x{code:08X}"),
        s => {
            let debug = format!("{s:?}");
            match debug.strip_prefix("Esme") {
                Some(rest) => format!("ESME_{}", rest.to_ascii_uppercase()),
                None => debug.to_ascii_uppercase(),
            }
        }
    }
}

/// Maps a failed `submit_sm` to retryable or permanent.
fn classify(e: rusmppc::error::Error, timeout_secs: u64) -> ProviderError {
    use rusmppc::error::Error as E;
    match e {
        E::UnexpectedResponse { response } => {
            let status = response.status();
            let code = u32::from(status);
            let text = format!("{} (0x{code:08X})", status_name(status));
            match status {
                CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => {
                    ProviderError::Retryable(text)
                }
                CommandStatus::EsmeRok => ProviderError::Retryable(format!(
                    "unexpected answer to submit_sm: {:?}",
                    response.id()
                )),
                _ => ProviderError::Permanent(text),
            }
        }
        E::ResponseTimeout { .. } => {
            ProviderError::Retryable(format!("no submit_sm_resp within {timeout_secs} s"))
        }
        E::Encode(e) => ProviderError::Permanent(format!("submit_sm not encodable: {e}")),
        E::ConnectionClosed | E::ConnectionClosedByPeer => {
            ProviderError::Retryable("not bound (connection lost)".into())
        }
        other => ProviderError::Retryable(format!("SMPP connection error: {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Multipart receipts

/// How long part-id maps of multipart messages are kept.
const GROUP_TTL: Duration = Duration::from_secs(2 * 24 * 3600);
/// Most multipart messages tracked at once; the oldest go first.
const MAX_GROUPS: usize = 100_000;

/// Part ids of multipart messages, and receipts held while their ids are not known yet.
#[derive(Default)]
struct Tracker {
    next_group: u64,
    groups: HashMap<u64, Group>,
    part_of: HashMap<String, u64>,
    /// Multipart submissions between their first `submit_sm` and their last response.
    in_flight: usize,
    /// Receipts for unknown ids that came while a multipart submission was in flight.
    held: Vec<(String, Receipt)>,
}

struct Group {
    born: Instant,
    total: usize,
    /// Part ids by part index, as their responses arrive.
    parts: Vec<Option<String>>,
    delivered: HashSet<String>,
    latest_at: i64,
    mnc: Option<i64>,
    /// Every part submitted.
    complete: bool,
    /// The aggregate verdict is known (and forwarded once complete).
    verdict: Option<Receipt>,
    forwarded: bool,
}

type Out = Vec<(String, Receipt)>;

impl Group {
    fn primary(&self) -> Option<String> {
        self.parts.first().cloned().flatten()
    }

    fn part_no(&self, id: &str) -> usize {
        self.parts
            .iter()
            .position(|p| p.as_deref() == Some(id))
            .map_or(0, |i| i + 1)
    }

    /// Takes a part's receipt into the verdict.
    fn apply(&mut self, id: &str, r: Receipt) {
        if self.verdict.is_some() {
            return;
        }
        if r.delivered {
            if !self.delivered.insert(id.to_string()) {
                return; // a repeated receipt
            }
            self.latest_at = self.latest_at.max(r.at_ms);
            self.mnc = self.mnc.or(r.mnc);
            if self.delivered.len() >= self.total {
                self.verdict = Some(Receipt {
                    delivered: true,
                    at_ms: self.latest_at,
                    reason: None,
                    mnc: self.mnc,
                    call: None,
                });
            }
        } else {
            let reason = r.reason.unwrap_or_else(|| "not delivered".into());
            self.verdict = Some(Receipt {
                reason: Some(format!(
                    "{reason} (part {} of {})",
                    self.part_no(id),
                    self.total
                )),
                ..r
            });
        }
    }

    /// The verdict to forward, once, when the submission is complete.
    fn take_out(&mut self) -> Option<(String, Receipt)> {
        if !self.complete || self.forwarded {
            return None;
        }
        let verdict = self.verdict.clone()?;
        self.forwarded = true;
        Some((self.primary()?, verdict))
    }
}

impl Tracker {
    fn begin(&mut self, total: usize) -> u64 {
        self.prune();
        self.in_flight += 1;
        self.next_group += 1;
        let key = self.next_group;
        self.groups.insert(
            key,
            Group {
                born: Instant::now(),
                total,
                parts: vec![None; total],
                delivered: HashSet::new(),
                latest_at: 0,
                mnc: None,
                complete: false,
                verdict: None,
                forwarded: false,
            },
        );
        key
    }

    fn prune(&mut self) {
        let old: Vec<u64> = self
            .groups
            .iter()
            .filter(|(_, g)| g.complete && g.born.elapsed() > GROUP_TTL)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.remove(k);
        }
        while self.groups.len() >= MAX_GROUPS {
            let Some(oldest) = self
                .groups
                .iter()
                .filter(|(_, g)| g.complete)
                .min_by_key(|(_, g)| g.born)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.remove(oldest);
        }
    }

    fn remove(&mut self, key: u64) {
        if let Some(g) = self.groups.remove(&key) {
            for id in g.parts.into_iter().flatten() {
                self.part_of.remove(&id);
            }
        }
    }

    fn part_accepted(&mut self, key: u64, index: usize, id: &str) {
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        if let Some(slot) = g.parts.get_mut(index) {
            *slot = Some(id.to_string());
        }
        self.part_of.insert(id.to_string(), key);
        let mut early = Vec::new();
        self.held.retain(|(held_id, r)| {
            if held_id == id {
                early.push(r.clone());
                false
            } else {
                true
            }
        });
        for r in early {
            g.apply(id, r);
        }
    }

    fn finish(&mut self, key: u64, ok: bool) -> Out {
        self.in_flight = self.in_flight.saturating_sub(1);
        let mut out = Vec::new();
        if ok {
            if let Some(g) = self.groups.get_mut(&key) {
                g.complete = true;
                out.extend(g.take_out());
            }
        } else {
            self.remove(key);
        }
        if self.in_flight == 0 {
            out.append(&mut self.held);
        }
        out
    }

    fn receipt(&mut self, id: String, r: Receipt) -> Out {
        if let Some(key) = self.part_of.get(&id).copied()
            && let Some(g) = self.groups.get_mut(&key)
        {
            g.apply(&id, r);
            return g.take_out().into_iter().collect();
        }
        if self.in_flight > 0 {
            self.held.push((id, r));
            return Vec::new();
        }
        vec![(id, r)]
    }
}

/// A multipart submission's entry in the tracker; dropped unfinished (an error, or the caller
/// gave up), it withdraws the part ids.
struct MultipartGuard<'a> {
    shared: &'a Shared,
    key: u64,
    done: bool,
}

impl<'a> MultipartGuard<'a> {
    fn begin(shared: &'a Shared, total: usize) -> Self {
        let key = shared
            .tracker
            .lock()
            .map(|mut t| t.begin(total))
            .unwrap_or(0);
        Self {
            shared,
            key,
            done: false,
        }
    }

    fn part_accepted(&mut self, index: usize, id: &str) {
        if let Ok(mut t) = self.shared.tracker.lock() {
            t.part_accepted(self.key, index, id);
        }
    }

    fn finish(mut self, ok: bool) {
        self.done = true;
        let out = self
            .shared
            .tracker
            .lock()
            .map(|mut t| t.finish(self.key, ok))
            .unwrap_or_default();
        self.shared.forward(out);
    }
}

impl Drop for MultipartGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let out = self
                .shared
                .tracker
                .lock()
                .map(|mut t| t.finish(self.key, false))
                .unwrap_or_default();
            self.shared.forward(out);
        }
    }
}

impl Shared {
    fn forward(&self, out: Out) {
        for (id, receipt) in out {
            tracing::debug!(
                route.name = %self.route,
                smpp.message_id = %id,
                receipt.delivered = receipt.delivered,
                "SMPP receipt forwarded"
            );
            if !self.receipts.push(ReceiptEvent {
                route: self.route.clone(),
                key: ReceiptKey::Message(id),
                receipt,
            }) {
                tracing::warn!(route.name = %self.route, "receipt sink closed; receipt dropped");
            }
        }
    }

    fn on_receipt(&self, id: String, receipt: Receipt) {
        let out = self
            .tracker
            .lock()
            .map(|mut t| t.receipt(id.clone(), receipt.clone()))
            .unwrap_or_else(|_| vec![(id, receipt)]);
        self.forward(out);
    }
}

// ---------------------------------------------------------------------------------------------
// Receipt parsing

/// The receipt TLVs of a `deliver_sm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptTlvs {
    /// `receipted_message_id` (0x001E).
    pub receipted_message_id: Option<String>,
    /// `message_state` (0x0427).
    pub message_state: Option<u8>,
    /// The error of `network_error_code` (0x0423).
    pub network_error: Option<u16>,
}

/// What a delivery receipt says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedReceipt {
    /// A final state.
    Final {
        message_id: String,
        receipt: Receipt,
    },
    /// ENROUTE, ACCEPTD and the like: more news will come.
    Interim { message_id: String, stat: String },
    /// Not a receipt this provider can read.
    Unreadable(String),
}

/// Reads a delivery receipt from its text (SMPP 3.4 Appendix B) and TLVs, the TLVs winning.
/// `now_ms` is the time when the receipt has no readable done date.
pub fn parse_receipt(text: &str, tlvs: &ReceiptTlvs, now_ms: i64) -> ParsedReceipt {
    let head = receipt_head(text);
    let message_id = tlvs
        .receipted_message_id
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| receipt_field(head, "id:").map(str::to_string));
    let Some(message_id) = message_id else {
        return ParsedReceipt::Unreadable("no message id".into());
    };
    let stat = match tlvs.message_state {
        Some(state) => match state_name(state) {
            Some(name) => name.to_string(),
            None => return ParsedReceipt::Unreadable(format!("message_state {state}")),
        },
        None => match receipt_field(head, "stat:") {
            Some(s) => s.to_ascii_uppercase(),
            None => return ParsedReceipt::Unreadable("no stat".into()),
        },
    };
    let delivered = match stat.as_str() {
        "DELIVRD" | "DELIVERED" => true,
        "UNDELIV" | "UNDELIVERABLE" | "EXPIRED" | "DELETED" | "REJECTD" | "REJECTED"
        | "UNKNOWN" | "SKIPPED" => false,
        "ENROUTE" | "ACCEPTD" | "ACCEPTED" | "SCHEDULED" | "BUFFRED" | "BUFFERED" => {
            return ParsedReceipt::Interim { message_id, stat };
        }
        _ => return ParsedReceipt::Unreadable(format!("stat {stat}")),
    };
    let err = match tlvs.network_error {
        Some(code) => Some(format!("{code:03}")),
        None => receipt_field(head, "err:").map(str::to_string),
    };
    let at_ms = match receipt_field(head, "done date:").and_then(parse_receipt_date) {
        // A receipt is never dated after it arrived (the SMSC's clock may run ahead), and a
        // done date without seconds covers a whole minute: when the receipt arrives within
        // that minute, its arrival is the closer estimate.
        Some((at, _)) if at > now_ms => now_ms,
        Some((at, false)) if now_ms - at < 60_000 => now_ms,
        Some((at, _)) => at,
        None => now_ms,
    };
    let mnc = receipt_field(head, "mccmnc:")
        .filter(|s| (5..=6).contains(&s.len()))
        .and_then(|s| s.get(3..))
        .or_else(|| receipt_field(head, "mnc:"))
        .and_then(|s| s.parse::<i64>().ok());
    let reason = (!delivered).then(|| match &err {
        Some(e) => format!("{stat} err:{e}"),
        None => stat.clone(),
    });
    ParsedReceipt::Final {
        message_id,
        receipt: Receipt {
            delivered,
            at_ms,
            reason,
            mnc,
            call: None,
        },
    }
}

/// The Appendix B stat word of a `message_state` value.
fn state_name(state: u8) -> Option<&'static str> {
    Some(match state {
        0 => "SCHEDULED",
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        7 => "UNKNOWN",
        8 => "REJECTD",
        9 => "SKIPPED",
        _ => return None,
    })
}

/// The receipt text before its free-form `text:` field.
fn receipt_head(text: &str) -> &str {
    match find_key(text, "text:") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Where `key` starts in `s` (ASCII case-insensitive) at the start or after whitespace.
fn find_key(s: &str, key: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower.get(from..)?.find(key) {
        let at = from + pos;
        if at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace() {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// The value after `key` up to the next whitespace, if not empty.
fn receipt_field<'a>(head: &'a str, key: &str) -> Option<&'a str> {
    let at = find_key(head, key)?;
    let rest = head.get(at + key.len()..)?;
    let end = rest
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|v| !v.is_empty())
}

/// `YYMMDDhhmm` or `YYMMDDhhmmss` as UTC milliseconds, and whether it has seconds.
fn parse_receipt_date(s: &str) -> Option<(i64, bool)> {
    if !(s.len() == 10 || s.len() == 12) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| s.get(i..i + 2).and_then(|d| d.parse::<u32>().ok());
    let date = NaiveDate::from_ymd_opt(2000 + i32::try_from(n(0)?).ok()?, n(2)?, n(4)?)?;
    let secs = if s.len() == 12 { n(10)? } else { 0 };
    let time = date.and_hms_opt(n(6)?, n(8)?, secs)?;
    Some((
        Utc.from_utc_datetime(&time).timestamp_millis(),
        s.len() == 12,
    ))
}

/// The receipt of a `deliver_sm`, if it is one (esm_class message type 0x04).
fn receipt_of(d: &DeliverSm, now_ms: i64) -> Option<ParsedReceipt> {
    if u8::from(d.esm_class) & 0x3C != 0x04 {
        return None;
    }
    let mut body: Vec<u8> = d.short_message().to_vec();
    let mut tlvs = ReceiptTlvs::default();
    for tlv in d.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => {
                tlvs.receipted_message_id = Some(id.as_str().to_string());
            }
            Some(TlvValue::MessageState(s)) => tlvs.message_state = Some(u8::from(*s)),
            Some(TlvValue::NetworkErrorCode(n)) => tlvs.network_error = Some(n.error_code),
            Some(TlvValue::MessagePayload(p)) if body.is_empty() => body = p.value.to_vec(),
            _ => {}
        }
    }
    Some(parse_receipt(
        &String::from_utf8_lossy(&body),
        &tlvs,
        now_ms,
    ))
}

// ---------------------------------------------------------------------------------------------
// The connection task

type Events = Pin<Box<dyn Stream<Item = Event> + Send + Sync>>;

/// One TCP connection with its bind.
struct Conn {
    client: Client,
    events: Events,
    kind: &'static str,
}

/// The binds of one session: the transceiver, or the transmitter and the receiver.
struct Session {
    main: Conn,
    receiver: Option<Conn>,
}

/// Why a session could not be opened.
enum OpenError {
    /// The SMSC answered the bind with an error status.
    Rejected(String),
    Other(String),
}

impl OpenError {
    fn text(&self) -> String {
        match self {
            OpenError::Rejected(s) => format!("bind rejected: {s}"),
            OpenError::Other(s) => s.clone(),
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn run(shared: Arc<Shared>, password: String, mut stop: watch::Receiver<bool>) {
    let cfg = &shared.cfg;
    let base = Duration::from_secs(cfg.reconnect_secs.max(1));
    let max = Duration::from_secs(cfg.reconnect_max_secs.max(cfg.reconnect_secs).max(1));
    let mut delay = base;
    loop {
        let opened = tokio::select! {
            r = open_session(&shared, &password) => r,
            _ = stopped(&mut stop) => break,
        };
        match opened {
            Ok(mut session) => {
                delay = base;
                shared.set_bound(session.main.client.clone());
                tracing::info!(
                    route.name = %shared.route,
                    smpp.host = %cfg.host,
                    smpp.port = cfg.port,
                    smpp.bind = %cfg.bind,
                    "SMPP bound"
                );
                let ended = serve(&shared, &mut session, &mut stop).await;
                match ended {
                    None => {
                        shared.set_down("route closed".into());
                        unbind(&session, cfg.response_timeout()).await;
                        break;
                    }
                    Some(why) => {
                        shared.set_down(format!("{why}; reconnecting"));
                        tracing::warn!(
                            route.name = %shared.route,
                            smpp.host = %cfg.host,
                            smpp.port = cfg.port,
                            reason = %why,
                            "SMPP connection lost; reconnecting in {} s",
                            delay.as_secs()
                        );
                        close_session(&session).await;
                    }
                }
            }
            Err(e) => {
                let text = e.text();
                shared.set_down(format!("{text}; retrying in {} s", delay.as_secs()));
                match &e {
                    OpenError::Rejected(status) => tracing::error!(
                        route.name = %shared.route,
                        smpp.host = %cfg.host,
                        smpp.port = cfg.port,
                        smpp.system_id = %cfg.system_id,
                        smpp.status = %status,
                        "SMPP bind rejected; retrying in {} s",
                        delay.as_secs()
                    ),
                    OpenError::Other(why) => tracing::warn!(
                        route.name = %shared.route,
                        smpp.host = %cfg.host,
                        smpp.port = cfg.port,
                        reason = %why,
                        "SMPP connect failed; retrying in {} s",
                        delay.as_secs()
                    ),
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(&mut stop) => break,
                }
                delay = (delay * 2).min(max);
                continue;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => break,
        }
    }
    shared.set_down("route closed".into());
    shared.window.close();
}

async fn open_session(shared: &Shared, password: &str) -> Result<Session, OpenError> {
    match shared.mode {
        BindMode::Transceiver => Ok(Session {
            main: open_conn(shared, password, "transceiver").await?,
            receiver: None,
        }),
        BindMode::TransmitterReceiver => {
            let main = open_conn(shared, password, "transmitter").await?;
            match open_conn(shared, password, "receiver").await {
                Ok(rx) => Ok(Session {
                    main,
                    receiver: Some(rx),
                }),
                Err(e) => {
                    let _ = tokio::time::timeout(shared.cfg.response_timeout(), async {
                        let _ = main.client.unbind().await;
                        let _ = main.client.close().await;
                    })
                    .await;
                    Err(e)
                }
            }
        }
    }
}

async fn open_conn(shared: &Shared, password: &str, kind: &'static str) -> Result<Conn, OpenError> {
    let cfg = &shared.cfg;
    let wait = cfg.response_timeout();
    let stream = tokio::time::timeout(
        wait,
        tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| OpenError::Other(format!("TCP connect timed out after {} s", wait.as_secs())))?
    .map_err(|e| OpenError::Other(format!("TCP connect failed: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (client, events) = ConnectionBuilder::new()
        .disable_interface_version_check()
        .max_command_length(64 * 1024)
        .enquire_link_interval(Duration::from_secs(cfg.enquire_link_secs.max(1)))
        .enquire_link_response_timeout(wait)
        .response_timeout(wait)
        .connected(stream);
    let bad = |what: &str| OpenError::Other(format!("invalid {what} for a bind"));
    let system_id =
        COctetString::from_string(cfg.system_id.clone()).map_err(|_| bad("system_id"))?;
    let pass = COctetString::from_string(password.to_string()).map_err(|_| bad("password"))?;
    let system_type =
        COctetString::from_string(cfg.system_type.clone()).map_err(|_| bad("system_type"))?;
    let bound = match kind {
        "transmitter" => client
            .bind_transmitter(
                BindTransmitter::builder()
                    .system_id(system_id)
                    .password(pass)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(COctetString::empty())
                    .build(),
            )
            .await
            .map(|_| ()),
        "receiver" => client
            .bind_receiver(
                BindReceiver::builder()
                    .system_id(system_id)
                    .password(pass)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(COctetString::empty())
                    .build(),
            )
            .await
            .map(|_| ()),
        _ => client
            .bind_transceiver(
                BindTransceiver::builder()
                    .system_id(system_id)
                    .password(pass)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(COctetString::empty())
                    .build(),
            )
            .await
            .map(|_| ()),
    };
    match bound {
        Ok(()) => Ok(Conn {
            client,
            events: Box::pin(events),
            kind,
        }),
        Err(e) => {
            let _ = client.close().await;
            Err(match e {
                rusmppc::error::Error::UnexpectedResponse { response } => {
                    OpenError::Rejected(status_name(response.status()))
                }
                other => OpenError::Other(format!("bind_{kind} failed: {other}")),
            })
        }
    }
}

async fn next_event(conn: &mut Option<Conn>) -> Option<Event> {
    match conn {
        Some(c) => c.events.next().await,
        None => std::future::pending().await,
    }
}

/// Reads both connections until one ends (`Some(why)`) or the route stops (`None`).
async fn serve(
    shared: &Shared,
    session: &mut Session,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    loop {
        let (from_receiver, event) = tokio::select! {
            e = session.main.events.next() => (false, e),
            e = next_event(&mut session.receiver) => (true, e),
            _ = stopped(stop) => return None,
        };
        let conn = match (from_receiver, &session.receiver) {
            (true, Some(rx)) => rx,
            _ => &session.main,
        };
        match event {
            None => return Some(format!("the SMSC closed the {} connection", conn.kind)),
            Some(Event::Error(e)) => {
                tracing::warn!(
                    route.name = %shared.route,
                    smpp.bind = conn.kind,
                    error = %e,
                    "SMPP connection error"
                );
            }
            Some(Event::Incoming(command)) => {
                if let Some(why) = incoming(shared, conn, command).await {
                    return Some(why);
                }
            }
        }
    }
}

/// Handles a command from the SMSC; `Some(why)` ends the session.
async fn incoming(shared: &Shared, conn: &Conn, command: Command) -> Option<String> {
    let seq = command.sequence_number();
    match command.pdu() {
        Some(Pdu::DeliverSm(d)) => {
            let now_ms = shared.clock.now().timestamp_millis();
            match receipt_of(d, now_ms) {
                Some(ParsedReceipt::Final {
                    message_id,
                    receipt,
                }) => shared.on_receipt(message_id, receipt),
                Some(ParsedReceipt::Interim { message_id, stat }) => tracing::debug!(
                    route.name = %shared.route,
                    smpp.message_id = %message_id,
                    smpp.stat = %stat,
                    "interim SMPP receipt ignored"
                ),
                Some(ParsedReceipt::Unreadable(why)) => tracing::warn!(
                    route.name = %shared.route,
                    reason = %why,
                    "unreadable SMPP receipt ignored"
                ),
                None => tracing::debug!(
                    route.name = %shared.route,
                    "deliver_sm that is not a delivery receipt ignored"
                ),
            }
            if let Err(e) = conn
                .client
                .deliver_sm_resp(seq, DeliverSmResp::default())
                .await
            {
                return Some(format!("deliver_sm_resp not sent: {e}"));
            }
            None
        }
        _ => match command.id() {
            CommandId::Unbind => {
                let _ = conn.client.unbind_resp(seq).await;
                Some("the SMSC unbound".into())
            }
            CommandId::EnquireLink => {
                let _ = conn.client.enquire_link_resp(seq).await;
                None
            }
            id if u32::from(id) & 0x8000_0000 == 0 => {
                let _ = conn
                    .client
                    .status(CommandStatus::EsmeRinvcmdid)
                    .generic_nack(seq)
                    .await;
                None
            }
            _ => None,
        },
    }
}

async fn unbind(session: &Session, wait: Duration) {
    let conns = std::iter::once(&session.main).chain(session.receiver.as_ref());
    for conn in conns {
        let _ = tokio::time::timeout(wait, conn.client.unbind()).await;
        let _ = tokio::time::timeout(wait, conn.client.close()).await;
    }
}

async fn close_session(session: &Session) {
    let conns = std::iter::once(&session.main).chain(session.receiver.as_ref());
    for conn in conns {
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.client.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::pdus::SubmitSmResp;

    /// 2025-01-01T00:00:00Z, after every done date below.
    const NOW: i64 = 1_735_689_600_000;

    fn no_tlvs() -> ReceiptTlvs {
        ReceiptTlvs::default()
    }

    fn final_of(p: ParsedReceipt) -> (String, Receipt) {
        match p {
            ParsedReceipt::Final {
                message_id,
                receipt,
            } => (message_id, receipt),
            other => panic!("not final: {other:?}"),
        }
    }

    #[test]
    fn appendix_b_delivered() {
        let text = "id:7000123 sub:001 dlvrd:001 submit date:2403151200 done date:2403151201 \
                    stat:DELIVRD err:000 text:482913 is your code";
        let (id, r) = final_of(parse_receipt(text, &no_tlvs(), NOW));
        assert_eq!(id, "7000123");
        assert!(r.delivered);
        assert_eq!(r.reason, None);
        assert_eq!(r.mnc, None);
        let done = Utc.with_ymd_and_hms(2024, 3, 15, 12, 1, 0).unwrap();
        assert_eq!(r.at_ms, done.timestamp_millis());
    }

    #[test]
    fn appendix_b_failures_carry_stat_and_err() {
        for (stat, err) in [
            ("UNDELIV", "001"),
            ("EXPIRED", "000"),
            ("DELETED", "000"),
            ("REJECTD", "011"),
            ("UNKNOWN", "999"),
        ] {
            let text = format!(
                "id:abc sub:001 dlvrd:000 submit date:2403151200 done date:240315120130 \
                 stat:{stat} err:{err} text:"
            );
            let (id, r) = final_of(parse_receipt(&text, &no_tlvs(), NOW));
            assert_eq!(id, "abc");
            assert!(!r.delivered);
            assert_eq!(r.reason, Some(format!("{stat} err:{err}")));
            let done = Utc.with_ymd_and_hms(2024, 3, 15, 12, 1, 30).unwrap();
            assert_eq!(r.at_ms, done.timestamp_millis(), "seconds are read too");
        }
    }

    #[test]
    fn receipts_are_never_dated_after_they_arrive() {
        let text = |date: &str| format!("id:1 stat:DELIVRD done date:{date} text:");
        // The SMSC's clock runs ahead.
        let (_, r) = final_of(parse_receipt(&text("2501010005"), &no_tlvs(), NOW));
        assert_eq!(r.at_ms, NOW);
        // Minute precision, arriving within that minute: the arrival.
        let (_, r) = final_of(parse_receipt(&text("2412312359"), &no_tlvs(), NOW - 1));
        assert_eq!(r.at_ms, NOW - 1);
        // With seconds, the date itself.
        let (_, r) = final_of(parse_receipt(&text("241231235930"), &no_tlvs(), NOW - 1));
        assert_eq!(r.at_ms, NOW - 30_000);
    }

    #[test]
    fn interim_states_are_not_final() {
        for stat in ["ENROUTE", "ACCEPTD"] {
            let text = format!("id:1 sub:001 dlvrd:000 stat:{stat} err:000 text:");
            assert_eq!(
                parse_receipt(&text, &no_tlvs(), NOW),
                ParsedReceipt::Interim {
                    message_id: "1".into(),
                    stat: stat.into()
                }
            );
        }
        let tlvs = ReceiptTlvs {
            message_state: Some(1),
            ..no_tlvs()
        };
        assert!(matches!(
            parse_receipt("id:1 stat:DELIVRD", &tlvs, NOW),
            ParsedReceipt::Interim { .. }
        ));
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let text = "id:text-id sub:001 dlvrd:001 submit date:2403151200 done date:2403151201 \
                    stat:DELIVRD err:000 text:";
        let tlvs = ReceiptTlvs {
            receipted_message_id: Some("tlv-id".into()),
            message_state: Some(5),
            network_error: Some(27),
        };
        let (id, r) = final_of(parse_receipt(text, &tlvs, NOW));
        assert_eq!(id, "tlv-id");
        assert!(!r.delivered);
        assert_eq!(r.reason.as_deref(), Some("UNDELIV err:027"));
        // The done date still comes from the text.
        assert_ne!(r.at_ms, NOW);
        // TLVs alone, no text at all.
        let (id, r) = final_of(parse_receipt(
            "",
            &ReceiptTlvs {
                receipted_message_id: Some("only".into()),
                message_state: Some(2),
                network_error: None,
            },
            NOW,
        ));
        assert_eq!(id, "only");
        assert!(r.delivered);
        assert_eq!(r.at_ms, NOW, "no done date: now");
    }

    #[test]
    fn the_free_text_cannot_fake_fields() {
        let text = "id:9 sub:001 dlvrd:000 submit date:2403151200 done date:2403151201 \
                    stat:UNDELIV err:001 text:stat:DELIVRD id:1 err:000";
        let (id, r) = final_of(parse_receipt(text, &no_tlvs(), NOW));
        assert_eq!(id, "9");
        assert_eq!(r.reason.as_deref(), Some("UNDELIV err:001"));
        // A key inside another word is not the key.
        let text = "msgid:1 id:2 stat:DELIVRD";
        assert_eq!(final_of(parse_receipt(text, &no_tlvs(), NOW)).0, "2");
    }

    #[test]
    fn keys_are_case_insensitive_and_bad_dates_fall_back_to_now() {
        let text = "ID:77 Sub:001 Dlvrd:001 Submit date:x Done date:2413991299 Stat:delivrd Err:0";
        let (id, r) = final_of(parse_receipt(text, &no_tlvs(), NOW));
        assert_eq!(id, "77");
        assert!(r.delivered);
        assert_eq!(r.at_ms, NOW);
    }

    #[test]
    fn unreadable_receipts() {
        assert!(matches!(
            parse_receipt("sub:001 stat:DELIVRD", &no_tlvs(), NOW),
            ParsedReceipt::Unreadable(_)
        ));
        assert!(matches!(
            parse_receipt("id:1 sub:001", &no_tlvs(), NOW),
            ParsedReceipt::Unreadable(_)
        ));
        assert!(matches!(
            parse_receipt("id:1 stat:WHATEVER", &no_tlvs(), NOW),
            ParsedReceipt::Unreadable(_)
        ));
    }

    #[test]
    fn mnc_from_an_optional_text_field() {
        let (_, r) = final_of(parse_receipt(
            "id:1 stat:DELIVRD err:000 mccmnc:20408 text:",
            &no_tlvs(),
            NOW,
        ));
        assert_eq!(r.mnc, Some(8));
        let (_, r) = final_of(parse_receipt(
            "id:1 stat:DELIVRD mnc:260 text:",
            &no_tlvs(),
            NOW,
        ));
        assert_eq!(r.mnc, Some(260));
    }

    #[test]
    fn a_receipt_deliver_sm_is_read_from_its_pdu() {
        let d = DeliverSm::builder()
            .esm_class(EsmClass::from(0x04))
            .short_message(
                OctetString::from_vec(
                    b"id:5 sub:001 dlvrd:000 stat:UNDELIV err:002 text:".to_vec(),
                )
                .unwrap(),
            )
            .push_tlv(
                rusmpp::tlvs::MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                    COctetString::from_string("5".into()).unwrap(),
                ),
            )
            .build();
        let (id, r) = final_of(receipt_of(&d, NOW).expect("a receipt"));
        assert_eq!(id, "5");
        assert_eq!(r.reason.as_deref(), Some("UNDELIV err:002"));
        let mo = DeliverSm::builder().esm_class(EsmClass::from(0x00)).build();
        assert!(
            receipt_of(&mo, NOW).is_none(),
            "a mobile-originated message"
        );
    }

    #[test]
    fn status_names_and_classes() {
        assert_eq!(
            status_name(CommandStatus::EsmeRthrottled),
            "ESME_RTHROTTLED"
        );
        assert_eq!(status_name(CommandStatus::EsmeRinvpaswd), "ESME_RINVPASWD");
        assert_eq!(status_name(CommandStatus::Other(0x400)), "0x00000400");
        let refused = |status| {
            classify(
                rusmppc::error::Error::UnexpectedResponse {
                    response: Box::new(Command::new(status, 3, SubmitSmResp::default())),
                },
                10,
            )
        };
        assert_eq!(
            refused(CommandStatus::EsmeRthrottled),
            ProviderError::Retryable("ESME_RTHROTTLED (0x00000058)".into())
        );
        assert_eq!(
            refused(CommandStatus::EsmeRmsgqful),
            ProviderError::Retryable("ESME_RMSGQFUL (0x00000014)".into())
        );
        assert_eq!(
            refused(CommandStatus::EsmeRinvdstadr),
            ProviderError::Permanent("ESME_RINVDSTADR (0x0000000B)".into())
        );
        assert!(matches!(
            classify(
                rusmppc::error::Error::ResponseTimeout {
                    sequence_number: 1,
                    timeout: Duration::from_secs(10)
                },
                10
            ),
            ProviderError::Retryable(s) if s == "no submit_sm_resp within 10 s"
        ));
        assert!(matches!(
            classify(rusmppc::error::Error::ConnectionClosed, 10),
            ProviderError::Retryable(_)
        ));
    }

    fn receipt(delivered: bool, at_ms: i64) -> Receipt {
        Receipt {
            delivered,
            at_ms,
            reason: (!delivered).then(|| "UNDELIV err:001".to_string()),
            mnc: None,
            call: None,
        }
    }

    #[test]
    fn multipart_is_delivered_when_every_part_is() {
        let mut t = Tracker::default();
        let g = t.begin(3);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            t.part_accepted(g, i, id);
        }
        assert!(t.finish(g, true).is_empty());
        assert!(t.receipt("b".into(), receipt(true, 20)).is_empty());
        assert!(t.receipt("a".into(), receipt(true, 30)).is_empty());
        assert!(
            t.receipt("a".into(), receipt(true, 31)).is_empty(),
            "a repeat"
        );
        let out = t.receipt("c".into(), receipt(true, 10));
        assert_eq!(out, vec![("a".to_string(), receipt(true, 30))]);
        assert!(
            t.receipt("b".into(), receipt(false, 40)).is_empty(),
            "settled"
        );
        // Receipts of other messages pass straight through.
        assert_eq!(
            t.receipt("z".into(), receipt(true, 1)),
            vec![("z".to_string(), receipt(true, 1))]
        );
    }

    #[test]
    fn multipart_fails_with_its_first_failed_part() {
        let mut t = Tracker::default();
        let g = t.begin(2);
        t.part_accepted(g, 0, "a");
        t.part_accepted(g, 1, "b");
        t.finish(g, true);
        let out = t.receipt("b".into(), receipt(false, 5));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "a");
        assert_eq!(
            out[0].1.reason.as_deref(),
            Some("UNDELIV err:001 (part 2 of 2)")
        );
        assert!(t.receipt("a".into(), receipt(true, 6)).is_empty());
    }

    #[test]
    fn receipts_before_the_responses_of_a_multipart_message() {
        let mut t = Tracker::default();
        let g = t.begin(2);
        // Part one's receipt before its response, and a single-part message's receipt.
        assert!(t.receipt("a".into(), receipt(true, 1)).is_empty());
        assert!(t.receipt("single".into(), receipt(true, 2)).is_empty());
        t.part_accepted(g, 0, "a");
        assert!(t.receipt("b".into(), receipt(true, 3)).is_empty());
        t.part_accepted(g, 1, "b");
        // Complete: the verdict and the held receipt go out.
        let out = t.finish(g, true);
        assert_eq!(
            out,
            vec![
                ("a".to_string(), receipt(true, 3)),
                ("single".to_string(), receipt(true, 2))
            ]
        );
        assert_eq!(t.in_flight, 0);
    }

    #[test]
    fn a_failed_multipart_submission_is_forgotten() {
        let mut t = Tracker::default();
        let g = t.begin(2);
        t.part_accepted(g, 0, "a");
        assert!(t.receipt("a".into(), receipt(false, 1)).is_empty());
        assert!(t.finish(g, false).is_empty());
        assert!(t.groups.is_empty() && t.part_of.is_empty());
        // A later receipt for the orphan part passes through as unknown.
        assert_eq!(t.receipt("a".into(), receipt(true, 2)).len(), 1);
    }

    #[test]
    fn source_address_override() {
        let mut cfg: SmppConfig = serde_json::from_value(serde_json::json!({
            "host": "h", "port": 1, "system_id": "s", "password": "p"
        }))
        .unwrap();
        assert_eq!(cfg.window, 10);
        assert_eq!(cfg.response_timeout_secs, 10);
        assert_eq!(
            source_address(Some("Bank"), &cfg).unwrap(),
            ("Bank".into(), 5, 0)
        );
        cfg.source_ton = Some(2);
        cfg.source_npi = Some(9);
        assert_eq!(
            source_address(Some("31612345678"), &cfg).unwrap(),
            ("31612345678".into(), 2, 9)
        );
    }
}
