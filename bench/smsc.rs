//! A fast SMPP 3.4 SMSC for the delivery benchmark (`bench/smpp.sh`), on the smpp34 crate's
//! server (a codec independent of the rusmppc client otpgate uses, and of Kannel's).
//!
//! It accepts every bind (transceiver, transmitter, receiver), answers every `submit_sm`
//! with a fresh message id, and when the submit asks for a receipt (`registered_delivery & 1`)
//! sends a `stat:DELIVRD` `deliver_sm` receipt (Appendix B text plus the
//! `receipted_message_id` and `message_state` TLVs) on a receiver-capable bind of the same
//! ESME. Counters go to `--stats FILE` every 20 ms as `submits receipts_acked` so the
//! benchmark script can wait for a number.
//!
//! cargo run --release --example smsc -- --listen 127.0.0.1:2775 --stats /tmp/smsc.stats

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use smpp34::server::ESME;
use smpp34::{
    SmppConnectionInformation, SmppServer, SmppServerListener, TlvTag, bind_receiver,
    bind_receiver_resp, bind_transceiver, bind_transceiver_resp, bind_transmitter,
    bind_transmitter_resp, submit_sm, submit_sm_resp,
};
use tokio::sync::Mutex;

#[derive(Default)]
struct Smsc {
    submits: AtomicU64,
    receipts_acked: AtomicU64,
    next_id: AtomicU64,
    /// The system id each session bound with.
    systems: Mutex<HashMap<String, String>>,
    /// Receiver-capable sessions, by session id and by system id.
    sessions: Mutex<HashMap<String, Arc<ESME>>>,
    by_system: Mutex<HashMap<String, Arc<ESME>>>,
}

impl Smsc {
    async fn bound(&self, session_id: &str, system_id: &str) {
        self.systems
            .lock()
            .await
            .insert(session_id.to_string(), system_id.to_string());
    }

    /// The session itself if it can receive, else a receiver bind of the same system.
    async fn receiver_for(&self, session_id: &str) -> Option<Arc<ESME>> {
        if let Some(e) = self.sessions.lock().await.get(session_id) {
            return Some(e.clone());
        }
        let system = self.systems.lock().await.get(session_id).cloned()?;
        self.by_system.lock().await.get(&system).cloned()
    }

    async fn send_receipt(&self, esme: &ESME, id: &str, dest: &str, src: &str) {
        let d = chrono::Utc::now().format("%y%m%d%H%M").to_string();
        let text = format!(
            "id:{id} sub:001 dlvrd:001 submit date:{d} done date:{d} stat:DELIVRD err:000 text:"
        );
        let sent = esme
            .deliver_sm()
            .source_addr(dest)
            .destination_addr(src)
            .esm_class(0x04)
            .short_message(text.into_bytes())
            .tlv(TlvTag::ReceiptedMessageId, format!("{id}\0").into_bytes())
            .tlv(TlvTag::MessageStateTlv, [2u8])
            .send()
            .await;
        if sent.is_ok() {
            self.receipts_acked.fetch_add(1, Ordering::Relaxed);
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
        session_id: &String,
    ) -> bind_transceiver_resp {
        self.0.bound(session_id, &req.system_id).await;
        req.accept("BENCHSMSC".into(), Some(0x34))
    }

    async fn on_bind_transmitter(
        &self,
        req: bind_transmitter,
        _c: &SmppConnectionInformation,
        session_id: &String,
    ) -> bind_transmitter_resp {
        self.0.bound(session_id, &req.system_id).await;
        req.accept("BENCHSMSC".into(), Some(0x34))
    }

    async fn on_bind_receiver(
        &self,
        req: bind_receiver,
        _c: &SmppConnectionInformation,
        session_id: &String,
    ) -> bind_receiver_resp {
        self.0.bound(session_id, &req.system_id).await;
        req.accept("BENCHSMSC".into(), Some(0x34))
    }

    async fn on_esme_bound(&self, esme: ESME, session_id: &String) {
        if esme.can_receive {
            let esme = Arc::new(esme);
            self.0
                .by_system
                .lock()
                .await
                .insert(esme.system_id.clone(), esme.clone());
            self.0
                .sessions
                .lock()
                .await
                .insert(session_id.clone(), esme);
        }
    }

    async fn on_esme_unbound(&self, session_id: &String) {
        self.0.systems.lock().await.remove(session_id);
        if let Some(e) = self.0.sessions.lock().await.remove(session_id) {
            let mut by_system = self.0.by_system.lock().await;
            if by_system
                .get(&e.system_id)
                .is_some_and(|x| x.session_id == e.session_id)
            {
                by_system.remove(&e.system_id);
            }
        }
    }

    async fn on_submit_sm(
        &self,
        req: submit_sm,
        _c: &SmppConnectionInformation,
        session_id: &String,
    ) -> submit_sm_resp {
        let smsc = self.0.clone();
        smsc.submits.fetch_add(1, Ordering::Relaxed);
        let id = format!("B{}", smsc.next_id.fetch_add(1, Ordering::Relaxed));
        if req.registered_delivery & 1 == 1
            && let Some(esme) = smsc.receiver_for(session_id).await
        {
            let (id, dest, src) = (
                id.clone(),
                req.destination_addr.clone(),
                req.source_addr.clone(),
            );
            tokio::spawn(async move {
                // After the response, as most SMSCs do.
                tokio::time::sleep(Duration::from_millis(2)).await;
                smsc.send_receipt(&esme, &id, &dest, &src).await;
            });
        }
        req.accept(id)
    }
}

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:2775".to_string();
    let mut stats: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--stats" => stats = args.next(),
            other => {
                eprintln!("usage: smsc [--listen ADDR] [--stats FILE] (unknown {other})");
                std::process::exit(2);
            }
        }
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("--listen {listen}: {e}");
            std::process::exit(2);
        }
    };
    let smsc = Arc::new(Smsc::default());
    let mut server = SmppServer::new(addr.ip(), addr.port(), Arc::new(Listener(smsc.clone())));
    server.start().await;
    eprintln!("bench SMSC listening on {addr}");
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(path) = &stats {
            let line = format!(
                "{} {}\n",
                smsc.submits.load(Ordering::Relaxed),
                smsc.receipts_acked.load(Ordering::Relaxed)
            );
            let tmp = format!("{path}.tmp");
            if std::fs::write(&tmp, line).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}
