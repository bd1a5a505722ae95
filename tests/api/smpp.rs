//! SMPP routes against an in-process SMSC (the smpp34 crate's server).
//!
//! [`FakeSmsc`] is an SMSC on smpp34 (a second SMPP implementation, independent of the
//! rusmppc client the provider uses). Its switches: refuse binds (`ESME_RINVPASWD`),
//! throttle destinations ending in 429 (`ESME_RTHROTTLED`), refuse those ending in 400
//! (`ESME_RINVDSTADR`), report `UNDELIV` for those ending in 666 (`DELIVRD` otherwise), send
//! the receipt before the `submit_sm_resp`, delay the `submit_sm_resp`, leave the TLVs out of
//! receipts. It records every `submit_sm` and counts the most submits outstanding at once.
//! The ESME reaches it through a TCP relay on the public port: [`FakeSmsc::stop`] drops
//! every connection and the listening socket at once (the SMSC is gone), and
//! [`FakeSmsc::restart`] listens on the same port again.
//!
//! The `smpp_direct_*` tests drive the provider itself; the others go through the HTTP API.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use otpgate::clock::SystemClock;
use otpgate::domain::Channel;
use otpgate::domain::sms;
use otpgate::providers::routing::RouteConfig;
use otpgate::providers::smpp::{self, SmppConfig};
use otpgate::providers::{
    OutboundMessage, Provider, ProviderContext, ProviderError, ReceiptEvent, ReceiptKey,
    ReceiptSink,
};
use otpgate::store::{gateway, job_kind, report};
use serde_json::{Value, json};
use smpp34::server::ESME;
use smpp34::{
    SmppConnectionInformation, SmppError, SmppServer, SmppServerListener, TlvTag, bind_receiver,
    bind_receiver_resp, bind_transceiver, bind_transceiver_resp, bind_transmitter,
    bind_transmitter_resp, submit_sm, submit_sm_resp, unbind, unbind_resp,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// The fake SMSC

/// One `submit_sm` as the SMSC received it.
#[derive(Debug, Clone)]
pub struct SeenSubmit {
    pub message_id: Option<String>,
    pub source_addr: String,
    pub source_addr_ton: u8,
    pub source_addr_npi: u8,
    pub destination_addr: String,
    pub dest_addr_ton: u8,
    pub dest_addr_npi: u8,
    pub esm_class: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub short_message: Vec<u8>,
}

#[derive(Default)]
pub struct Smsc {
    pub reject_binds: AtomicBool,
    pub receipt_first: AtomicBool,
    pub no_tlvs: AtomicBool,
    pub resp_delay_ms: AtomicU64,
    pub dlr_delay_ms: AtomicU64,
    next_id: AtomicU64,
    outstanding: AtomicUsize,
    pub max_outstanding: AtomicUsize,
    pub receipts_acked: AtomicUsize,
    pub unbinds: AtomicUsize,
    /// Bind kinds in order (`transceiver`, `transmitter`, `receiver`), refused ones too.
    pub binds: Mutex<Vec<&'static str>>,
    pub submits: Mutex<Vec<SeenSubmit>>,
    esmes: tokio::sync::Mutex<HashMap<String, Arc<ESME>>>,
}

impl Smsc {
    pub fn submits(&self) -> Vec<SeenSubmit> {
        self.submits.lock().unwrap().clone()
    }

    pub fn binds(&self) -> Vec<&'static str> {
        self.binds.lock().unwrap().clone()
    }

    fn bind(&self, kind: &'static str) -> bool {
        self.binds.lock().unwrap().push(kind);
        !self.reject_binds.load(Ordering::SeqCst)
    }

    /// The session that takes this session's receipts: itself if it can receive, else a
    /// receiver bound with the same system id.
    async fn receiver_for(&self, session_id: &str) -> Option<Arc<ESME>> {
        let esmes = self.esmes.lock().await;
        if let Some(e) = esmes.get(session_id) {
            return Some(e.clone());
        }
        esmes.values().next().cloned()
    }

    async fn send_receipt(&self, esme: &ESME, id: &str, dest: &str, src: &str) {
        let ok = !dest.ends_with("666");
        let d = chrono::Utc::now().format("%y%m%d%H%M").to_string();
        let text = format!(
            "id:{id} sub:001 dlvrd:{} submit date:{d} done date:{d} stat:{} err:{} text:",
            if ok { "001" } else { "000" },
            if ok { "DELIVRD" } else { "UNDELIV" },
            if ok { "000" } else { "001" },
        );
        let mut b = esme
            .deliver_sm()
            .source_addr(dest)
            .destination_addr(src)
            .esm_class(0x04)
            .short_message(text.into_bytes());
        if !self.no_tlvs.load(Ordering::SeqCst) {
            b = b
                .tlv(TlvTag::ReceiptedMessageId, format!("{id}\0").into_bytes())
                .tlv(TlvTag::MessageStateTlv, [if ok { 2 } else { 5 }]);
        }
        if b.send().await.is_ok() {
            self.receipts_acked.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct Listener(Arc<Smsc>);

#[async_trait]
impl SmppServerListener for Listener {
    async fn on_bind_transceiver(
        &self,
        req: bind_transceiver,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> bind_transceiver_resp {
        if self.0.bind("transceiver") {
            req.accept("FAKESMSC".into(), Some(0x34))
        } else {
            req.reject(SmppError::ESME_RINVPASWD)
        }
    }

    async fn on_bind_transmitter(
        &self,
        req: bind_transmitter,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> bind_transmitter_resp {
        if self.0.bind("transmitter") {
            req.accept("FAKESMSC".into(), Some(0x34))
        } else {
            req.reject(SmppError::ESME_RINVPASWD)
        }
    }

    async fn on_bind_receiver(
        &self,
        req: bind_receiver,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> bind_receiver_resp {
        if self.0.bind("receiver") {
            req.accept("FAKESMSC".into(), Some(0x34))
        } else {
            req.reject(SmppError::ESME_RINVPASWD)
        }
    }

    async fn on_unbind(
        &self,
        req: unbind,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> unbind_resp {
        self.0.unbinds.fetch_add(1, Ordering::SeqCst);
        req.accept()
    }

    async fn on_esme_bound(&self, esme: ESME, session_id: &String) {
        if esme.can_receive {
            self.0
                .esmes
                .lock()
                .await
                .insert(session_id.clone(), Arc::new(esme));
        }
    }

    async fn on_esme_unbound(&self, session_id: &String) {
        self.0.esmes.lock().await.remove(session_id);
    }

    async fn on_submit_sm(
        &self,
        req: submit_sm,
        _c: &SmppConnectionInformation,
        session_id: &String,
    ) -> submit_sm_resp {
        let smsc = &self.0;
        let now = smsc.outstanding.fetch_add(1, Ordering::SeqCst) + 1;
        smsc.max_outstanding.fetch_max(now, Ordering::SeqCst);
        let dest = req.destination_addr.clone();
        let src = req.source_addr.clone();
        let refused = if dest.ends_with("429") {
            Some(SmppError::ESME_RTHROTTLED)
        } else if dest.ends_with("400") {
            Some(SmppError::ESME_RINVDSTADR)
        } else {
            None
        };
        let id = refused
            .is_none()
            .then(|| format!("M{}", 7000 + smsc.next_id.fetch_add(1, Ordering::SeqCst)));
        smsc.submits.lock().unwrap().push(SeenSubmit {
            message_id: id.clone(),
            source_addr: req.source_addr.clone(),
            source_addr_ton: req.source_addr_ton,
            source_addr_npi: req.source_addr_npi,
            destination_addr: dest.clone(),
            dest_addr_ton: req.dest_addr_ton,
            dest_addr_npi: req.dest_addr_npi,
            esm_class: req.esm_class,
            data_coding: req.data_coding,
            registered_delivery: req.registered_delivery,
            short_message: req.short_message.clone(),
        });
        let delay = smsc.resp_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let resp = match (refused, id) {
            (Some(_), _) | (None, None) => req.reject(status_or_syserr(refused)),
            (None, Some(id)) => {
                if req.registered_delivery & 1 == 1
                    && let Some(esme) = smsc.receiver_for(session_id).await
                {
                    if smsc.receipt_first.load(Ordering::SeqCst) {
                        // The receipt goes out, and is answered, before the response.
                        smsc.send_receipt(&esme, &id, &dest, &src).await;
                    } else {
                        let smsc = smsc.clone();
                        let id = id.clone();
                        let dlr = smsc.dlr_delay_ms.load(Ordering::SeqCst);
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(dlr)).await;
                            smsc.send_receipt(&esme, &id, &dest, &src).await;
                        });
                    }
                }
                req.accept(id)
            }
        };
        smsc.outstanding.fetch_sub(1, Ordering::SeqCst);
        resp
    }
}

fn status_or_syserr(s: Option<SmppError>) -> SmppError {
    s.unwrap_or(SmppError::ESME_RSYSERR)
}

/// The SMSC behind a relay on `port`.
pub struct FakeSmsc {
    pub port: u16,
    pub smsc: Arc<Smsc>,
    inner_port: u16,
    _server: SmppServer,
    relay: Mutex<Option<Relay>>,
}

struct Relay {
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    fn stop(self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn relay(port: u16, inner: u16) -> (u16, Relay) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("relay cannot listen on {port}: {e}"),
        }
    };
    let port = listener.local_addr().unwrap().port();
    let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    let c = conns.clone();
    let accept = tokio::spawn(async move {
        while let Ok((mut outer, _)) = listener.accept().await {
            let task = tokio::spawn(async move {
                if let Ok(mut inner) = TcpStream::connect(("127.0.0.1", inner)).await {
                    let _ = tokio::io::copy_bidirectional(&mut outer, &mut inner).await;
                }
            });
            c.lock().unwrap().push(task);
        }
    });
    (port, Relay { accept, conns })
}

impl FakeSmsc {
    pub async fn start() -> Self {
        let smsc = Arc::new(Smsc {
            dlr_delay_ms: AtomicU64::new(30),
            ..Smsc::default()
        });
        let inner_port = free_port().await;
        let mut server = SmppServer::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            inner_port,
            Arc::new(Listener(smsc.clone())),
        );
        server.start().await;
        assert!(server.is_alive(), "the fake SMSC listens");
        let (port, r) = relay(0, inner_port).await;
        Self {
            port,
            smsc,
            inner_port,
            _server: server,
            relay: Mutex::new(Some(r)),
        }
    }

    /// The SMSC goes away: the port stops listening and every connection drops.
    pub fn stop(&self) {
        if let Some(r) = self.relay.lock().unwrap().take() {
            r.stop();
        }
    }

    /// The SMSC is back on the same port.
    pub async fn restart(&self) {
        let (_, r) = relay(self.port, self.inner_port).await;
        *self.relay.lock().unwrap() = Some(r);
    }
}

impl Drop for FakeSmsc {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A route configuration for the fake SMSC, with `extra` fields merged in.
pub fn smpp_config(port: u16, extra: Value) -> SmppConfig {
    serde_json::from_value(smpp_json(port, extra)).expect("valid smpp config")
}

/// `[routes.smpp]` for the fake SMSC as JSON, with `extra` fields merged in.
pub fn smpp_json(port: u16, extra: Value) -> Value {
    let mut v = json!({
        "host": "127.0.0.1",
        "port": port,
        "system_id": "otpgate",
        "password": "secret",
        "reconnect_secs": 1,
        "reconnect_max_secs": 2,
        "response_timeout_secs": 3,
    });
    crate::harness::merge(&mut v, extra);
    v
}

fn direct(cfg: &SmppConfig) -> (Arc<dyn Provider>, UnboundedReceiver<ReceiptEvent>) {
    let (receipts, rx) = ReceiptSink::new();
    let ctx = ProviderContext {
        route: "smsc-a".into(),
        clock: Arc::new(SystemClock),
        receipts,
        hook_url: "http://127.0.0.1:9/hooks/smsc-a".into(),
        http: reqwest::Client::new(),
    };
    (smpp::build(cfg, ctx).expect("provider builds"), rx)
}

fn sms_to(to: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        attempt_id: 1,
        verification_id: "v1".into(),
        channel: Channel::Sms,
        to: to.into(),
        sender: Some("OTPGate".into()),
        text: text.into(),
        voice: None,
    }
}

/// Polls `cond` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn up(p: &Arc<dyn Provider>) {
    eventually("the bind", || p.is_up()).await;
}

async fn next_receipt(rx: &mut UnboundedReceiver<ReceiptEvent>) -> ReceiptEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a receipt within 10 s")
        .expect("receipt sink open")
}

fn key(id: &str) -> ReceiptKey {
    ReceiptKey::Message(id.to_string())
}

fn utf16be(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect();
    String::from_utf16(&units).expect("UTF-16BE")
}

// ---------------------------------------------------------------------------------------------
// Direct tests of the provider

#[tokio::test]
async fn smpp_direct_delivered_receipt_is_pushed_under_the_message_id() {
    let smsc = FakeSmsc::start().await;
    let (p, mut rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    assert_eq!(smsc.smsc.binds(), vec!["transceiver"]);
    let text = "482913 is your code {ok} €";
    let sent = p
        .submit(&sms_to("31612345678", text))
        .await
        .expect("accepted");
    assert!(sent.receipt.is_none());
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.route, "smsc-a");
    assert_eq!(ev.key, key(&sent.message_id));
    assert!(ev.receipt.delivered, "{ev:?}");
    assert_eq!(ev.receipt.reason, None);
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - ev.receipt.at_ms).abs() < 120_000, "done date used");

    let seen = smsc.smsc.submits();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.message_id.as_deref(), Some(sent.message_id.as_str()));
    assert_eq!(s.data_coding, 0);
    assert_eq!(s.esm_class, 0);
    assert_eq!(s.registered_delivery, 1);
    assert_eq!(
        (s.source_addr.as_str(), s.source_addr_ton, s.source_addr_npi),
        ("OTPGate", 5, 0)
    );
    assert_eq!(
        (
            s.destination_addr.as_str(),
            s.dest_addr_ton,
            s.dest_addr_npi
        ),
        ("31612345678", 1, 1)
    );
    // Unpacked GSM-7: ASCII letters as themselves, `{` `}` `€` behind the escape.
    let mut expected = b"482913 is your code ".to_vec();
    expected.extend_from_slice(&[0x1B, 0x28, b'o', b'k', 0x1B, 0x29, b' ', 0x1B, 0x65]);
    assert_eq!(s.short_message, expected);
    p.close().await;
}

#[tokio::test]
async fn smpp_direct_source_address_types() {
    let smsc = FakeSmsc::start().await;
    let (p, _rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    for sender in [Some("12345"), Some("+4915112345678"), None] {
        let mut m = sms_to("31612345678", "1234");
        m.sender = sender.map(str::to_string);
        p.submit(&m).await.expect("accepted");
    }
    let seen: Vec<(String, u8, u8)> = smsc
        .smsc
        .submits()
        .into_iter()
        .map(|s| (s.source_addr, s.source_addr_ton, s.source_addr_npi))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("12345".to_string(), 3, 0),
            ("4915112345678".to_string(), 1, 1),
            (String::new(), 0, 0),
        ]
    );
    let mut m = sms_to("31612345678", "1234");
    m.sender = Some("A much too long sender".into());
    assert!(matches!(
        p.submit(&m).await,
        Err(ProviderError::Permanent(_))
    ));
}

#[tokio::test]
async fn smpp_direct_undelivered_receipt_carries_the_reason() {
    let smsc = FakeSmsc::start().await;
    let (p, mut rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    let sent = p.submit(&sms_to("31612345666", "1234")).await.unwrap();
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.key, key(&sent.message_id));
    assert!(!ev.receipt.delivered);
    assert_eq!(ev.receipt.reason.as_deref(), Some("UNDELIV err:001"));
}

#[tokio::test]
async fn smpp_direct_receipt_text_alone_is_enough() {
    let smsc = FakeSmsc::start().await;
    smsc.smsc.no_tlvs.store(true, Ordering::SeqCst);
    let (p, mut rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    let sent = p.submit(&sms_to("31612345666", "1234")).await.unwrap();
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.key, key(&sent.message_id));
    assert_eq!(ev.receipt.reason.as_deref(), Some("UNDELIV err:001"));
    let sent = p.submit(&sms_to("31612345678", "1234")).await.unwrap();
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.key, key(&sent.message_id));
    assert!(ev.receipt.delivered);
}

#[tokio::test]
async fn smpp_direct_throttled_is_retryable_and_other_refusals_permanent() {
    let smsc = FakeSmsc::start().await;
    let (p, _rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    match p.submit(&sms_to("31612345429", "1234")).await {
        Err(ProviderError::Retryable(why)) => assert!(why.contains("ESME_RTHROTTLED"), "{why}"),
        other => panic!("throttling is retryable: {other:?}"),
    }
    match p.submit(&sms_to("31612345400", "1234")).await {
        Err(ProviderError::Permanent(why)) => assert!(why.contains("ESME_RINVDSTADR"), "{why}"),
        other => panic!("a bad destination is permanent: {other:?}"),
    }
    assert!(p.is_up(), "refusals do not drop the bind");
    p.submit(&sms_to("31612345678", "1234")).await.unwrap();
}

#[tokio::test]
async fn smpp_direct_bind_rejected_keeps_the_route_down_until_the_smsc_accepts() {
    let smsc = FakeSmsc::start().await;
    smsc.smsc.reject_binds.store(true, Ordering::SeqCst);
    let (p, _rx) = direct(&smpp_config(smsc.port, json!({})));
    eventually("two bind attempts (a retry after backoff)", || {
        smsc.smsc.binds().len() >= 2
    })
    .await;
    assert!(!p.is_up());
    let t = Instant::now();
    match p.submit(&sms_to("31612345678", "1234")).await {
        Err(ProviderError::Retryable(why)) => {
            assert!(why.starts_with("not bound"), "{why}");
            assert!(why.contains("ESME_RINVPASWD"), "{why}");
        }
        other => panic!("not bound is retryable: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "fails fast, not after a timeout"
    );
    assert!(smsc.smsc.submits().is_empty());
    smsc.smsc.reject_binds.store(false, Ordering::SeqCst);
    up(&p).await;
    p.submit(&sms_to("31612345678", "1234")).await.unwrap();
}

#[tokio::test]
async fn smpp_direct_reconnects_after_the_smsc_restarts() {
    let smsc = FakeSmsc::start().await;
    let (p, mut rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    p.submit(&sms_to("31612345678", "1234")).await.unwrap();
    next_receipt(&mut rx).await;

    smsc.stop();
    eventually("the route to notice", || !p.is_up()).await;
    let t = Instant::now();
    match p.submit(&sms_to("31612345678", "1234")).await {
        Err(ProviderError::Retryable(why)) => assert!(why.starts_with("not bound"), "{why}"),
        other => panic!("down is retryable: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "fails fast, not after a timeout"
    );

    smsc.restart().await;
    up(&p).await;
    let sent = p.submit(&sms_to("31612345678", "1234")).await.unwrap();
    assert_eq!(next_receipt(&mut rx).await.key, key(&sent.message_id));
    assert_eq!(smsc.smsc.binds().len(), 2, "bound again");
}

#[tokio::test]
async fn smpp_direct_receipt_before_the_submit_response() {
    let smsc = FakeSmsc::start().await;
    smsc.smsc.receipt_first.store(true, Ordering::SeqCst);
    let (p, mut rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    let sent = p.submit(&sms_to("31612345678", "1234")).await.unwrap();
    // The SMSC got its deliver_sm_resp before it answered the submit_sm.
    assert_eq!(smsc.smsc.receipts_acked.load(Ordering::SeqCst), 1);
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.key, key(&sent.message_id));
    assert!(ev.receipt.delivered);
}

#[tokio::test]
async fn smpp_direct_ucs2_multipart() {
    let smsc = FakeSmsc::start().await;
    let (p, mut rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    let text = format!("Ваш код 482913. {}", "Никому его не сообщайте. ".repeat(4));
    let info = sms::analyze(&text);
    assert_eq!(info.encoding, sms::Encoding::Ucs2);
    assert!(info.segments >= 2);
    let sent = p.submit(&sms_to("79161234567", &text)).await.unwrap();
    let seen = smsc.smsc.submits();
    assert_eq!(seen.len(), info.segments);
    assert_eq!(
        sent.message_id,
        seen[0].message_id.clone().unwrap(),
        "the first part's id"
    );
    let reference = seen[0].short_message[3];
    let mut body = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.data_coding, 8);
        assert_eq!(s.esm_class, 0x40);
        assert_eq!(s.registered_delivery, 1);
        assert_eq!(
            &s.short_message[..6],
            &[
                0x05,
                0x00,
                0x03,
                reference,
                info.segments as u8,
                i as u8 + 1
            ]
        );
        assert!(s.short_message.len() - 6 <= 134);
        body.extend_from_slice(&s.short_message[6..]);
    }
    assert_eq!(utf16be(&body), text);
    // One receipt for the attempt, once every part is delivered.
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.key, key(&sent.message_id));
    assert!(ev.receipt.delivered);
    eventually("every part's receipt answered", || {
        smsc.smsc.receipts_acked.load(Ordering::SeqCst) == info.segments
    })
    .await;
    assert!(rx.try_recv().is_err(), "no receipt per part");
}

#[tokio::test]
async fn smpp_direct_gsm7_multipart_keeps_the_escape_pair_whole() {
    let smsc = FakeSmsc::start().await;
    smsc.smsc.receipt_first.store(true, Ordering::SeqCst);
    let (p, mut rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    let text = format!("{}€{}", "a".repeat(152), "b".repeat(160));
    assert_eq!(sms::analyze(&text).segments, 3);
    let sent = p.submit(&sms_to("31612345678", &text)).await.unwrap();
    let seen = smsc.smsc.submits();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!((s.data_coding, s.esm_class), (0, 0x40));
        assert!(s.short_message.len() <= 6 + 153);
    }
    assert_eq!(&seen[0].short_message[6..], "a".repeat(152).as_bytes());
    assert_eq!(&seen[1].short_message[6..8], &[0x1B, 0x65]);
    // Receipts came before each response; they still make one delivered receipt.
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.key, key(&sent.message_id));
    assert!(ev.receipt.delivered, "{ev:?}");
}

#[tokio::test]
async fn smpp_direct_one_undelivered_part_fails_the_message() {
    let smsc = FakeSmsc::start().await;
    let (p, mut rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    let sent = p
        .submit(&sms_to("31612345666", &"x".repeat(200)))
        .await
        .unwrap();
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.key, key(&sent.message_id));
    assert!(!ev.receipt.delivered);
    let reason = ev.receipt.reason.unwrap();
    assert!(reason.starts_with("UNDELIV err:001 (part "), "{reason}");
    assert!(reason.ends_with(" of 2)"), "{reason}");
}

#[tokio::test]
async fn smpp_direct_window_bounds_outstanding_submits() {
    let smsc = FakeSmsc::start().await;
    smsc.smsc.resp_delay_ms.store(150, Ordering::SeqCst);
    let (p, _rx) = direct(&smpp_config(smsc.port, json!({"window": 3})));
    up(&p).await;
    let sends = (0..12).map(|i| {
        let p = p.clone();
        async move { p.submit(&sms_to(&format!("3161234{i:04}"), "1234")).await }
    });
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(smsc.smsc.submits().len(), 12);
    assert_eq!(
        smsc.smsc.max_outstanding.load(Ordering::SeqCst),
        3,
        "the window is used and never exceeded"
    );
}

#[tokio::test]
async fn smpp_direct_a_missing_response_is_retryable_after_the_timeout() {
    let smsc = FakeSmsc::start().await;
    let (p, _rx) = direct(&smpp_config(smsc.port, json!({"response_timeout_secs": 1})));
    up(&p).await;
    smsc.smsc.resp_delay_ms.store(5_000, Ordering::SeqCst);
    let t = Instant::now();
    match p.submit(&sms_to("31612345678", "1234")).await {
        Err(ProviderError::Retryable(why)) => assert!(why.contains("no submit_sm_resp"), "{why}"),
        other => panic!("a timeout is retryable: {other:?}"),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn smpp_direct_transmitter_and_receiver_binds() {
    let smsc = FakeSmsc::start().await;
    let (p, mut rx) = direct(&smpp_config(
        smsc.port,
        json!({"bind": "transmitter+receiver"}),
    ));
    up(&p).await;
    assert_eq!(smsc.smsc.binds(), vec!["transmitter", "receiver"]);
    let sent = p.submit(&sms_to("31612345678", "1234")).await.unwrap();
    let ev = next_receipt(&mut rx).await;
    assert_eq!(ev.key, key(&sent.message_id));
    assert!(ev.receipt.delivered);
}

#[tokio::test]
async fn smpp_direct_close_unbinds() {
    let smsc = FakeSmsc::start().await;
    let (p, _rx) = direct(&smpp_config(smsc.port, json!({})));
    up(&p).await;
    p.close().await;
    assert!(!p.is_up());
    assert_eq!(smsc.smsc.unbinds.load(Ordering::SeqCst), 1);
    assert!(matches!(
        p.submit(&sms_to("31612345678", "1234")).await,
        Err(ProviderError::Retryable(_))
    ));
}

#[tokio::test]
async fn smpp_direct_config_problems_are_named() {
    let cfg = smpp_config(
        0,
        json!({"password": "far-too-long", "bind": "both", "window": 0}),
    );
    let problems = cfg.problems("eu");
    for field in ["port", "password", "bind", "window"] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("routes.eu.smpp.{field}:"))),
            "{field}: {problems:?}"
        );
    }
    assert!(smpp_config(2775, json!({})).problems("eu").is_empty());
    let unknown = serde_json::from_value::<SmppConfig>(json!({
        "host": "h", "port": 1, "system_id": "s", "password": "p", "colour": "red"
    }));
    assert!(unknown.is_err(), "unknown fields are refused");
}

// ---------------------------------------------------------------------------------------------
// Through the HTTP API: `[[routes]]` with `provider = "smpp"`

use crate::harness::TestApp;

const NL: &str = "31612345678";

/// A server whose first route is `smsc-a` on the fake SMSC (with `extra` in its
/// `[routes.smpp]`), then `more` routes; it waits for the bind (unless the SMSC refuses it).
async fn smpp_app(smsc: &FakeSmsc, extra: Value, more: Vec<Value>) -> TestApp {
    let mut routes = vec![json!({
        "name": "smsc-a",
        "provider": "smpp",
        "priority": 1,
        "sender": "OTPGate",
        "sms_price": {"default": "0.05"},
        "smpp": smpp_json(smsc.port, extra),
    })];
    routes.extend(more);
    let routes: Vec<RouteConfig> = routes
        .into_iter()
        .map(|r| serde_json::from_value(r).expect("route configuration"))
        .collect();
    let app = TestApp::spawn_configured(move |cfg| cfg.routes = routes).await;
    if !smsc.smsc.reject_binds.load(Ordering::SeqCst) {
        route_up(&app, "smsc-a", true).await;
    }
    app
}

fn route_provider(app: &TestApp, name: &str) -> Arc<dyn Provider> {
    app.service
        .routing
        .by_name(name)
        .expect("route exists")
        .1
        .provider
        .clone()
}

async fn route_up(app: &TestApp, name: &str, up: bool) {
    let p = route_provider(app, name);
    eventually(&format!("route {name} up = {up}"), || p.is_up() == up).await;
}

async fn record(app: &TestApp, vid: &str) -> Value {
    app.get(&format!("/v3/otp/verification/record/{vid}")).await
}

/// Polls the record every 20 ms for up to 10 s until the SMS has its receipt.
async fn settled(app: &TestApp, vid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rec = record(app, vid).await;
        if rec["data"]["sms"]["status"] != -1 {
            return rec;
        }
        assert!(
            Instant::now() < deadline,
            "no receipt applied within 10 s: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn smpp_delivered_receipt_reports_success() {
    let smsc = FakeSmsc::start().await;
    let app = smpp_app(&smsc, json!({}), vec![]).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL).await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.route, "smsc-a");
    assert_eq!(a.provider, "smpp");
    assert_eq!(a.gateway_state, gateway::SUCCESS);
    let seen = smsc.smsc.submits();
    assert_eq!(seen.len(), 1);
    assert_eq!(a.provider_message_id, seen[0].message_id);
    assert_eq!(seen[0].destination_addr, NL);
    assert_eq!(seen[0].source_addr, "OTPGate");
    assert_eq!(seen[0].registered_delivery, 1);
    // The code travels in the text and nowhere else.
    let text = String::from_utf8(seen[0].short_message.clone()).unwrap();
    assert!(text.ends_with(" is your verification code"), "{text}");

    let rec = settled(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    assert_eq!(rec["data"]["sms"]["chargeCnt"], 1, "{rec}");
    assert!(rec["data"]["sms"]["doneTm"].is_string(), "{rec}");
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.report_state, report::SUCCESS);
    // The code the SMSC carried verifies.
    let code = text.split_whitespace().next().unwrap();
    assert_eq!(app.verify(&vid, code).await["data"]["matched"], 0);
}

#[tokio::test]
async fn smpp_undelivered_receipt_fails_with_the_reason() {
    let smsc = FakeSmsc::start().await;
    let app = smpp_app(&smsc, json!({}), vec![]).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, "31612345666").await;
    let rec = settled(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
    assert_eq!(rec["data"]["sms"]["reason"], "UNDELIV err:001", "{rec}");
    assert_eq!(app.attempts(&vid).await[0].report_state, report::FAIL);
}

#[tokio::test]
async fn smpp_throttled_submit_is_retried_after_a_backoff() {
    let smsc = FakeSmsc::start().await;
    let app = smpp_app(&smsc, json!({}), vec![]).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, "31612345429").await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::PENDING, "{a:?}");
    assert!(
        a.reason
            .as_deref()
            .unwrap_or_default()
            .contains("ESME_RTHROTTLED"),
        "{a:?}"
    );
    let jobs = app.jobs().await;
    assert!(
        jobs.iter().any(|j| j.kind == job_kind::DELIVER),
        "a retry is queued: {jobs:?}"
    );
    assert_eq!(record(&app, &vid).await["data"]["sms"]["status"], -1);
    // The retry is sent (and throttled again): the SMSC saw a second submit_sm.
    app.advance_and_drain(2).await;
    assert_eq!(smsc.smsc.submits().len(), 2);
}

#[tokio::test]
async fn smpp_throttled_submit_moves_to_the_next_route() {
    let smsc = FakeSmsc::start().await;
    let app = smpp_app(
        &smsc,
        json!({}),
        vec![json!({"name": "backup", "provider": "console", "priority": 2})],
    )
    .await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, "31612345429").await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.route, "backup");
    assert_eq!(a.gateway_state, gateway::SUCCESS);
    assert_eq!(smsc.smsc.submits().len(), 1, "the SMSC was tried first");
}

#[tokio::test]
async fn smpp_bind_rejected_route_is_down_and_submits_are_retryable() {
    let smsc = FakeSmsc::start().await;
    smsc.smsc.reject_binds.store(true, Ordering::SeqCst);
    let app = smpp_app(&smsc, json!({"password": "bad"}), vec![]).await;
    eventually("a refused bind", || !smsc.smsc.binds().is_empty()).await;
    assert!(!route_provider(&app, "smsc-a").is_up());
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("otpgate_route_up{route=\"smsc-a\"} 0"),
        "{metrics}"
    );
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL).await;
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.gateway_state, gateway::PENDING, "{a:?}");
    let reason = a.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("not bound"), "{reason}");
    assert!(reason.contains("ESME_RINVPASWD"), "{reason}");
    assert!(smsc.smsc.submits().is_empty());
}

#[tokio::test]
async fn smpp_reconnects_after_the_smsc_restarts() {
    let smsc = FakeSmsc::start().await;
    let app = smpp_app(&smsc, json!({}), vec![]).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, NL).await;
    assert_eq!(settled(&app, &vid).await["data"]["sms"]["status"], 0);

    smsc.stop();
    route_up(&app, "smsc-a", false).await;
    let down = app.send_ok(&app_id, tpl, NL).await;
    let a = &app.attempts(&down).await[0];
    assert_eq!(a.gateway_state, gateway::PENDING, "{a:?}");
    assert!(
        a.reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("not bound"),
        "{a:?}"
    );

    smsc.restart().await;
    route_up(&app, "smsc-a", true).await;
    // The waiting retry goes out over the new bind, and so does a new send.
    app.advance_and_drain(2).await;
    assert_eq!(settled(&app, &down).await["data"]["sms"]["status"], 0);
    let later = app.send_ok(&app_id, tpl, NL).await;
    assert_eq!(settled(&app, &later).await["data"]["sms"]["status"], 0);
    assert_eq!(smsc.smsc.binds().len(), 2);
}

#[tokio::test]
async fn smpp_receipt_before_the_submit_response_is_applied() {
    let smsc = FakeSmsc::start().await;
    smsc.smsc.receipt_first.store(true, Ordering::SeqCst);
    let app = smpp_app(&smsc, json!({}), vec![]).await;
    let (app_id, tpl) = app.app_and_template().await;
    let vid = app.send_ok(&app_id, tpl, "31612345666").await;
    assert_eq!(smsc.smsc.receipts_acked.load(Ordering::SeqCst), 1);
    let rec = settled(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 1, "{rec}");
    assert_eq!(rec["data"]["sms"]["reason"], "UNDELIV err:001");
}

#[tokio::test]
async fn smpp_ucs2_multipart_through_the_api() {
    let smsc = FakeSmsc::start().await;
    let app = smpp_app(&smsc, json!({}), vec![]).await;
    let app_id = app.app(json!({})).await;
    let tpl = app
        .template(
            &app_id,
            json!({"text": format!("##code## — ваш код подтверждения. {}", "Никому его не сообщайте. ".repeat(3))}),
        )
        .await;
    let vid = app.send_ok(&app_id, tpl, NL).await;
    let seen = smsc.smsc.submits();
    let n = seen.len();
    assert!(n >= 2, "{n} parts");
    let reference = seen[0].short_message[3];
    let mut body = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        assert_eq!((s.data_coding, s.esm_class), (8, 0x40));
        assert_eq!(
            &s.short_message[..6],
            &[5, 0, 3, reference, n as u8, i as u8 + 1]
        );
        body.extend_from_slice(&s.short_message[6..]);
    }
    let text = utf16be(&body);
    assert_eq!(sms::analyze(&text).segments, n);
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.encoding.as_deref(), Some("UCS-2"));
    assert_eq!(a.segments, Some(n as i64));
    assert_eq!(
        a.provider_message_id, seen[0].message_id,
        "the first part's id"
    );
    let rec = settled(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    assert_eq!(rec["data"]["sms"]["chargeCnt"], n, "{rec}");
    let code = text.split_whitespace().next().unwrap();
    assert_eq!(app.verify(&vid, code).await["data"]["matched"], 0);
}

#[tokio::test]
async fn smpp_gsm7_multipart_through_the_api() {
    let smsc = FakeSmsc::start().await;
    let app = smpp_app(&smsc, json!({}), vec![]).await;
    let app_id = app.app(json!({})).await;
    let tpl = app
        .template(
            &app_id,
            json!({"text": format!("##code## is your code [{}]", "x".repeat(160))}),
        )
        .await;
    let vid = app.send_ok(&app_id, tpl, NL).await;
    let seen = smsc.smsc.submits();
    assert_eq!(seen.len(), 2);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!((s.data_coding, s.esm_class), (0, 0x40));
        assert_eq!(s.short_message[5], i as u8 + 1);
    }
    let a = &app.attempts(&vid).await[0];
    assert_eq!(a.encoding.as_deref(), Some("GSM-7"));
    let rec = settled(&app, &vid).await;
    assert_eq!(rec["data"]["sms"]["status"], 0, "{rec}");
    assert_eq!(rec["data"]["sms"]["chargeCnt"], 2, "{rec}");
}

#[tokio::test]
async fn smpp_window_holds_with_a_slow_smsc() {
    let smsc = FakeSmsc::start().await;
    smsc.smsc.resp_delay_ms.store(150, Ordering::SeqCst);
    let app = smpp_app(&smsc, json!({"window": 2}), vec![]).await;
    let (app_id, tpl) = app.app_and_template().await;
    let sends = (0..6).map(|i| {
        let app = &app;
        let app_id = app_id.clone();
        async move { app.send_ok(&app_id, tpl, &format!("316123450{i:02}")).await }
    });
    let vids = futures::future::join_all(sends).await;
    for vid in &vids {
        assert_eq!(settled(&app, vid).await["data"]["sms"]["status"], 0);
    }
    assert_eq!(smsc.smsc.submits().len(), 6);
    let most = smsc.smsc.max_outstanding.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "at most the window: {most}");
}

/// A peer that answers `bind_transceiver` and then falls silent (a hung SMSC: the TCP
/// connection stays open). Counts the connections it accepted.
async fn silent_smsc() -> (u16, Arc<AtomicUsize>, JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut header = [0u8; 16];
                if s.read_exact(&mut header).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes(header[0..4].try_into().unwrap()) as usize;
                let mut body = vec![0u8; len.saturating_sub(16)];
                if s.read_exact(&mut body).await.is_err() {
                    return;
                }
                // bind_transceiver_resp, ESME_ROK, same sequence number, system_id "HUNG".
                let mut resp = Vec::new();
                resp.extend_from_slice(&21u32.to_be_bytes());
                resp.extend_from_slice(&0x8000_0009u32.to_be_bytes());
                resp.extend_from_slice(&0u32.to_be_bytes());
                resp.extend_from_slice(&header[12..16]);
                resp.extend_from_slice(b"HUNG\0");
                let _ = s.write_all(&resp).await;
                // Read and never answer, until the client hangs up.
                let mut sink = [0u8; 512];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    (port, accepted, task)
}

#[tokio::test]
async fn smpp_direct_a_hung_smsc_is_detected_by_enquire_link() {
    let (port, accepted, task) = silent_smsc().await;
    let (p, _rx) = direct(&smpp_config(
        port,
        json!({"enquire_link_secs": 1, "response_timeout_secs": 1}),
    ));
    up(&p).await;
    // The unanswered enquire_link drops the bind, and the route binds anew.
    eventually("the unanswered enquire_link to drop the bind", || {
        !p.is_up()
    })
    .await;
    eventually("a new connection", || accepted.load(Ordering::SeqCst) >= 2).await;
    task.abort();
}
