//! The store contract: what every `Store` backend must do, tested through the trait alone.
//!
//! Each check is an `async fn(&dyn Store)`; `contract!` runs all of them against a backend,
//! each check on a fresh, empty database: a SQLite file, or a PostgreSQL schema of its own on
//! the server at `OTPGATE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`). Without
//! that server the PostgreSQL checks skip, except under `CI=true`, where they fail.

use std::sync::Arc;

#[path = "common/pg_schema.rs"]
mod pg_schema;

use otpgate::domain::limits::{LimitSetting, PeriodLimit};
use otpgate::domain::session::VerifyOutcome;
use otpgate::store::postgres::PgStore;
use otpgate::store::sqlite::SqliteStore;
use otpgate::store::*;

/// A fresh, migrated store, and what removes its database afterwards (fields drop in order:
/// the store first).
struct Opened {
    store: SharedStore,
    /// Removes the database when it goes: a SQLite file's directory, or a [`SchemaGuard`].
    _keep: Box<dyn std::any::Any + Send>,
}

async fn open_sqlite() -> Option<Opened> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let store = SqliteStore::connect(&url).await.expect("open sqlite");
    store.migrate().await.expect("migrate");
    Some(Opened {
        store: Arc::new(store),
        _keep: Box::new(dir),
    })
}

/// A store on a schema of its own; `None` (skip) when there is no server, outside CI.
async fn open_postgres() -> Option<Opened> {
    let (url, guard) = pg_schema::fresh_schema("contract").await?;
    let store = PgStore::connect(&url).await.expect("open postgres");
    Some(Opened {
        store: Arc::new(store),
        _keep: Box::new(guard),
    })
}

macro_rules! contract {
    ($backend:ident, $open:expr, [$($check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(opened) = $open.await else { return };
                    super::$check(&*opened.store).await;
                }
            )*
        }
    };
}

/// Every check, against one backend.
macro_rules! all_checks {
    ($backend:ident, $open:expr) => {
        contract!(
            $backend,
            $open,
            [
                tenants_by_kind,
                merchants_and_their_products,
                nonces_are_single_use_within_their_window,
                the_first_system_key_wins,
                sandbox_sends_keep_the_latest,
                order_ids_are_unique_per_tenant,
                a_tenant_guard_holds_only_while_the_row_reads_the_same,
                the_phone_limit_counts_atomically,
                the_total_limit_counts_atomically,
                sessions_are_found_by_external_id,
                resend_reuses_a_valid_code_and_refreshes_an_expired_one,
                verify_consumes_once_and_locks_after_five_wrong_codes,
                jobs_are_claimed_leased_and_finished_under_their_claim,
                jobs_are_unique_by_key,
                apps_are_updated_in_place_and_unique_by_name_per_tenant,
                templates_are_updated_in_place_and_unique_by_name_per_app,
                flows_are_updated_in_place_and_unique_by_name_per_tenant,
                a_failed_merchant_insert_leaves_nothing_behind,
                the_outbox_lists_newest_first,
                backfill_rates_and_postbacks_are_upserts,
                racing_writers_of_nonces_keys_and_products_agree,
                concurrent_sends_of_one_order_create_one_session,
                start_attempt_moves_a_waiting_attempt_once,
                flow_steps_fire_under_their_claim_while_the_session_is_open,
                receipts_apply_under_their_guard_and_are_found_by_message,
                a_job_outcome_records_its_attempt_and_follow_ups_under_its_claim,
                a_deliver_claim_held_on_its_attempt_finishes_or_moves_to_the_queue,
                job_stats_count_the_due_free_jobs,
                recovered_claims_are_freed_and_no_longer_hold,
                concurrent_claimers_never_share_a_job,
                a_receipt_racing_its_timeout_settles_once,
            ]
        );
    };
}

all_checks!(sqlite, super::open_sqlite());
all_checks!(postgres, super::open_postgres());

const T0: i64 = 1_800_000_000_000;

fn new_tenant(key: &str) -> NewTenant {
    NewTenant {
        name: format!("tenant {key}"),
        api_key: key.to_string(),
        secret_enc: "sealed".into(),
        created_ms: T0,
    }
}

fn app(app_id: &str, tenant_id: i64, phone_limit: Option<(i64, i64, i64)>) -> App {
    App {
        app_id: app_id.to_string(),
        tenant_id,
        name: format!("app {app_id}"),
        code_expiry: 5,
        total_limit: LimitSetting::default(),
        phone_limit: match phone_limit {
            Some((unit, period, limit)) => LimitSetting {
                enabled: true,
                unit: Some(unit),
                period: Some(period),
                limit: Some(limit),
            },
            None => LimitSetting::default(),
        },
        created_ms: T0,
    }
}

fn template(name: &str) -> Template {
    Template {
        template_id: 0,
        tenant_id: 0,
        app_id: String::new(),
        name: name.to_string(),
        text: format!("##code## for {name}"),
        code_type: 1,
        code_length: 6,
        speech_rate: 50,
        language: "EN".into(),
        max_duration: 59,
        repeat_cnt: 1,
        sender_id: None,
        created_ms: T0,
    }
}

/// A tenant with one app (limit `phone_limit` = (unit, period, limit) per number).
async fn tenant_with_app(
    s: &dyn Store,
    key: &str,
    phone_limit: Option<(i64, i64, i64)>,
) -> (i64, App) {
    let t = s.insert_tenant(&new_tenant(key)).await.expect("tenant");
    let a = app(&format!("A{key}"), t.id, phone_limit);
    s.insert_app(&a).await.expect("app");
    (t.id, a)
}

/// The stand-in for the keyed hash: the store only compares what it is given.
fn hash(session_id: &str, code: &str) -> String {
    format!("{session_id}|{code}")
}

fn send(
    tenant_id: i64,
    app: &App,
    phone: &str,
    verification_id: &str,
    order_id: Option<&str>,
    now_ms: i64,
) -> NewSend {
    NewSend {
        tenant_id,
        app_id: app.app_id.clone(),
        phone: phone.to_string(),
        verification_id: verification_id.to_string(),
        kind: "send",
        order_id: order_id.map(str::to_string),
        total_limit: app.total_limit.active(),
        phone_limit: app.phone_limit.active(),
        target: SendTarget::New(NewSession {
            app_id: app.app_id.clone(),
            template_id: None,
            flow_id: None,
            phone: phone.to_string(),
            region: Some("SA".into()),
            code: StoredCode {
                hash: hash(verification_id, "123456"),
                sealed: format!("sealed-{verification_id}"),
                expires_ms: now_ms + 300_000,
            },
            code_type: 1,
            code_length: 6,
            case_insensitive: false,
            external_id: None,
        }),
        attempt: NewAttempt {
            channel: "sms".into(),
            route: "r1".into(),
            provider: "memory".into(),
            sender: None,
            mcc: Some(420),
            flow_step: None,
            sending: Some(SendingInfo::default()),
        },
        now_ms,
        claim: Some(NewClaim {
            owner: "node-a".into(),
            lease_until_ms: now_ms + 60_000,
        }),
        guard: None,
    }
}

fn created(outcome: SendOutcome) -> (String, i64) {
    match outcome {
        SendOutcome::Created {
            session_id,
            attempt_id,
            ..
        } => (session_id, attempt_id),
        other => panic!("expected a new session, got {other:?}"),
    }
}

async fn tenants_by_kind(s: &dyn Store) {
    let t = s.insert_tenant(&new_tenant("buka-key")).await.unwrap();
    assert_eq!(t.kind, tenant_kind::BUKA);
    assert!(t.enabled && t.allow_ips.is_empty());
    let found = s.tenant_by_key("buka-key").await.unwrap().unwrap();
    assert_eq!(found.id, t.id);
    assert!(s.tenant_by_key("nope").await.unwrap().is_none());
    // A kind's commands do not reach the other kind's keys.
    assert!(
        !s.set_tenant_enabled(tenant_kind::SGATE, "buka-key", false)
            .await
            .unwrap()
    );
    assert!(
        s.set_tenant_enabled(tenant_kind::BUKA, "buka-key", false)
            .await
            .unwrap()
    );
    assert!(!s.tenant_by_key("buka-key").await.unwrap().unwrap().enabled);
    let allow = vec!["10.0.0.0/8".to_string(), "192.168.1.5".to_string()];
    assert!(
        s.set_tenant_allow_ips(tenant_kind::BUKA, "buka-key", &allow)
            .await
            .unwrap()
    );
    assert_eq!(
        s.tenant_by_key("buka-key")
            .await
            .unwrap()
            .unwrap()
            .allow_ips,
        allow
    );
    // Merchants are tenants of their own kind and are not counted as Buka tenants.
    let m = s
        .insert_merchant(&NewMerchant {
            tenant: new_tenant("sgate-key"),
            public_key: "PEM".into(),
            sandbox: true,
            app: app("Msgate01", 0, Some((3, 1, 1))),
            templates: vec![],
        })
        .await
        .unwrap();
    assert_eq!(m.tenant.kind, tenant_kind::SGATE);
    assert_eq!(s.count_tenants().await.unwrap(), 1);
    assert_eq!(s.list_tenants().await.unwrap().len(), 2);
    let dup = s.insert_tenant(&new_tenant("buka-key")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
}

async fn merchants_and_their_products(s: &dyn Store) {
    let m = s
        .insert_merchant(&NewMerchant {
            tenant: new_tenant("m1"),
            public_key: "PEM-1".into(),
            sandbox: true,
            app: app("Mapp0001", 0, Some((3, 1, 1))),
            templates: vec![template("Shop"), template("Wallet")],
        })
        .await
        .unwrap();
    assert_eq!(m.app_id, "Mapp0001");
    let names: Vec<_> = m.products.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Shop", "Wallet"]);
    // The app and the templates belong to the merchant's tenant.
    let (a, t) = s
        .app_with_template("Mapp0001", Some(m.products[1].template_id))
        .await
        .unwrap();
    assert_eq!(a.unwrap().tenant_id, m.tenant.id);
    let t = t.unwrap();
    assert_eq!((t.tenant_id, t.name.as_str()), (m.tenant.id, "Wallet"));
    let shop_id = m.products[0].template_id;

    let by_key = s.merchant_by_key("m1").await.unwrap().unwrap();
    assert_eq!(by_key.products, m.products);
    assert!(by_key.sandbox);
    assert!(s.merchant_by_key("nope").await.unwrap().is_none());
    // A Buka tenant's key is not a merchant.
    s.insert_tenant(&new_tenant("plain")).await.unwrap();
    assert!(s.merchant_by_key("plain").await.unwrap().is_none());

    // Replacing the names keeps the template of a name that stays.
    let u = s
        .update_merchant(
            "m1",
            &MerchantUpdate {
                public_key: Some("PEM-2".into()),
                sandbox: Some(false),
                templates: Some(vec![template("Pay"), template("Shop")]),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.public_key, "PEM-2");
    assert!(!u.sandbox);
    let names: Vec<_> = u.products.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Pay", "Shop"]);
    assert_eq!(u.products[1].template_id, shop_id);
    // An update that changes nothing keeps everything.
    let same = s
        .update_merchant("m1", &MerchantUpdate::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.products, u.products);
    assert_eq!(same.public_key, "PEM-2");
    assert!(
        s.update_merchant("nope", &MerchantUpdate::default())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.list_merchants().await.unwrap().len(), 1);
}

async fn nonces_are_single_use_within_their_window(s: &dyn Store) {
    assert!(s.remember_nonce(1, "n1", T0, T0 + 600_000).await.unwrap());
    assert!(
        !s.remember_nonce(1, "n1", T0 + 1, T0 + 600_000)
            .await
            .unwrap()
    );
    assert!(s.nonce_seen(1, "n1", T0 + 2).await.unwrap());
    // Per tenant.
    assert!(!s.nonce_seen(2, "n1", T0).await.unwrap());
    assert!(s.remember_nonce(2, "n1", T0, T0 + 600_000).await.unwrap());
    // Once expired, it is forgotten.
    assert!(!s.nonce_seen(1, "n1", T0 + 600_000).await.unwrap());
    assert!(
        s.remember_nonce(1, "n1", T0 + 600_001, T0 + 1_200_000)
            .await
            .unwrap()
    );
    assert!(!s.nonce_seen(1, "never", T0).await.unwrap());
}

async fn the_first_system_key_wins(s: &dyn Store) {
    assert!(s.system_key("sgate").await.unwrap().is_none());
    let first = s
        .insert_system_key("sgate", "sealed-1", "PUB-1", T0)
        .await
        .unwrap();
    assert_eq!(first, ("sealed-1".to_string(), "PUB-1".to_string()));
    let second = s
        .insert_system_key("sgate", "sealed-2", "PUB-2", T0)
        .await
        .unwrap();
    assert_eq!(second, first);
    assert_eq!(s.system_key("sgate").await.unwrap(), Some(first));
}

async fn sandbox_sends_keep_the_latest(s: &dyn Store) {
    assert_eq!(s.sandbox_send(1, "512345678").await.unwrap(), None);
    s.record_sandbox_send(1, "512345678", T0).await.unwrap();
    s.record_sandbox_send(1, "512345678", T0 + 5).await.unwrap();
    assert_eq!(s.sandbox_send(1, "512345678").await.unwrap(), Some(T0 + 5));
    assert_eq!(s.sandbox_send(2, "512345678").await.unwrap(), None);
}

/// A send or verify carrying a [`TenantGuard`] runs only while the tenant row is enabled with
/// the same sealed secret and allow-list; otherwise it fails with `TenantChanged` and writes
/// nothing.
async fn a_tenant_guard_holds_only_while_the_row_reads_the_same(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "tg", None).await;
    let tenant = s.tenant_by_key("tg").await.unwrap().unwrap();
    let guard = TenantGuard::of(&tenant);
    let guarded = |vid: &str| {
        let mut ns = send(t, &a, "966512345678", vid, None, T0);
        ns.guard = Some(guard.clone());
        ns
    };
    let verify_guarded = |g: TenantGuard| {
        s.verify(
            "tg-1",
            t,
            Some(g),
            Box::new(|session: &Session| hash(&session.id, "000000")),
            T0,
        )
    };
    created(s.create_send(&guarded("tg-1")).await.unwrap());
    assert!(matches!(
        verify_guarded(guard.clone()).await.unwrap(),
        VerifyLookup::Checked {
            outcome: VerifyOutcome::Wrong { .. },
            ..
        }
    ));

    assert!(
        s.set_tenant_enabled(tenant_kind::BUKA, "tg", false)
            .await
            .unwrap()
    );
    assert!(matches!(
        s.create_send(&guarded("tg-2")).await,
        Err(StoreError::TenantChanged)
    ));
    assert!(s.verification_session("tg-2").await.unwrap().is_none());
    assert!(matches!(
        verify_guarded(guard.clone()).await,
        Err(StoreError::TenantChanged)
    ));
    assert!(
        s.set_tenant_enabled(tenant_kind::BUKA, "tg", true)
            .await
            .unwrap()
    );

    let allow = vec!["10.0.0.0/8".to_string()];
    assert!(
        s.set_tenant_allow_ips(tenant_kind::BUKA, "tg", &allow)
            .await
            .unwrap()
    );
    assert!(matches!(
        s.create_send(&guarded("tg-3")).await,
        Err(StoreError::TenantChanged)
    ));
    assert!(matches!(
        verify_guarded(guard.clone()).await,
        Err(StoreError::TenantChanged)
    ));
    // The guard of the row as it now reads holds again.
    let now = TenantGuard::of(&s.tenant_by_key("tg").await.unwrap().unwrap());
    assert_eq!(now.allow_ips, "10.0.0.0/8");
    let (_, session) = s.verification_session("tg-1").await.unwrap().unwrap();
    assert_eq!(
        session.wrong_attempts, 1,
        "refused verifies counted nothing"
    );
    assert!(matches!(
        verify_guarded(now.clone()).await.unwrap(),
        VerifyLookup::Checked { .. }
    ));
    let mut ns = send(t, &a, "966512345679", "tg-4", None, T0);
    ns.guard = Some(now);
    created(s.create_send(&ns).await.unwrap());
    assert!(s.verification_session("tg-3").await.unwrap().is_none());
}

async fn order_ids_are_unique_per_tenant(s: &dyn Store) {
    let (t1, a1) = tenant_with_app(s, "o1", None).await;
    let (t2, a2) = tenant_with_app(s, "o2", None).await;
    created(
        s.create_send(&send(t1, &a1, "966512345678", "v1", Some("order-1"), T0))
            .await
            .unwrap(),
    );
    let again = s
        .create_send(&send(t1, &a1, "966512345679", "v2", Some("order-1"), T0))
        .await
        .unwrap();
    assert_eq!(
        again,
        SendOutcome::DuplicateOrder {
            verification_id: "v1".into()
        }
    );
    assert!(s.verification_session("v2").await.unwrap().is_none());
    // Another tenant may use the same orderId.
    created(
        s.create_send(&send(t2, &a2, "966512345678", "v3", Some("order-1"), T0))
            .await
            .unwrap(),
    );
    assert_eq!(
        s.session_by_order(t1, "order-1").await.unwrap().unwrap().id,
        "v1"
    );
}

async fn the_total_limit_counts_atomically(s: &dyn Store) {
    // At most 3 sends of the app per hour, whatever the number: 30 at once to 30 numbers.
    let t = s.insert_tenant(&new_tenant("tot")).await.unwrap();
    let mut a = app("Atotal01", t.id, None);
    a.total_limit = LimitSetting {
        enabled: true,
        unit: Some(2),
        period: Some(1),
        limit: Some(3),
    };
    s.insert_app(&a).await.unwrap();
    warm_up(s).await;
    let results = futures::future::join_all((0..30).map(|i| {
        let ns = send(
            t.id,
            &a,
            &format!("9665000001{i:02}"),
            &format!("t{i:02}"),
            None,
            T0,
        );
        async move { s.create_send(&ns).await.unwrap() }
    }))
    .await;
    let ok = results
        .iter()
        .filter(|r| matches!(r, SendOutcome::Created { .. }))
        .count();
    assert_eq!(ok, 3, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, SendOutcome::Created { .. } | SendOutcome::TotalLimit))
    );
    // The hour slides.
    created(
        s.create_send(&send(t.id, &a, "966500000199", "t99", None, T0 + 3_600_001))
            .await
            .unwrap(),
    );
}

async fn the_phone_limit_counts_atomically(s: &dyn Store) {
    // One send per minute per number, 40 at once.
    let (t, a) = tenant_with_app(s, "lim", Some((3, 1, 1))).await;
    assert_eq!(
        a.phone_limit.active(),
        Some(PeriodLimit {
            unit: 3,
            period: 1,
            limit: 1
        })
    );
    warm_up(s).await;
    let results = futures::future::join_all((0..40).map(|i| {
        let ns = send(t, &a, "966500000009", &format!("c{i:02}"), None, T0);
        async move { s.create_send(&ns).await.unwrap() }
    }))
    .await;
    let ok = results
        .iter()
        .filter(|r| matches!(r, SendOutcome::Created { .. }))
        .count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, SendOutcome::Created { .. } | SendOutcome::PhoneLimit))
    );
    // Another number is not limited; the window slides.
    created(
        s.create_send(&send(t, &a, "966500000008", "d1", None, T0))
            .await
            .unwrap(),
    );
    assert_eq!(
        s.create_send(&send(t, &a, "966500000009", "d2", None, T0 + 59_000))
            .await
            .unwrap(),
        SendOutcome::PhoneLimit
    );
    created(
        s.create_send(&send(t, &a, "966500000009", "d3", None, T0 + 60_001))
            .await
            .unwrap(),
    );
}

async fn sessions_are_found_by_external_id(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "ext", None).await;
    let mut ns = send(t, &a, "966512345678", "x1", None, T0);
    if let SendTarget::New(n) = &mut ns.target {
        n.external_id = Some("0123456789abcdef0123456789abcdef".into());
    }
    let (session_id, attempt_id) = created(s.create_send(&ns).await.unwrap());
    let found = s
        .session_by_external("0123456789abcdef0123456789abcdef")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, session_id);
    assert_eq!(found.tenant_id, t);
    assert_eq!(
        found.external_id.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert!(
        s.session_by_external("ffffffffffffffffffffffffffffffff")
            .await
            .unwrap()
            .is_none()
    );
    // The attempt was written handed over (`sending`), with its claimed deliver job.
    let attempts = s.attempts_for_session(&session_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].id, attempt_id);
    assert_eq!(attempts[0].gateway_state, gateway::SENDING);
    // An external id is unique.
    let mut dup = send(t, &a, "966512345679", "x2", None, T0);
    if let SendTarget::New(n) = &mut dup.target {
        n.external_id = Some("0123456789abcdef0123456789abcdef".into());
    }
    assert!(matches!(
        s.create_send(&dup).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn resend_reuses_a_valid_code_and_refreshes_an_expired_one(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "rs", None).await;
    let (session_id, _) = created(
        s.create_send(&send(t, &a, "966512345678", "r1", None, T0))
            .await
            .unwrap(),
    );
    let resend = |verification_id: &str, now_ms: i64| {
        let mut ns = send(t, &a, "966512345678", verification_id, None, now_ms);
        ns.kind = "resend";
        ns.target = SendTarget::Resend {
            session_id: session_id.clone(),
            fresh: StoredCode {
                hash: hash(&session_id, "999999"),
                sealed: format!("fresh-{verification_id}"),
                expires_ms: now_ms + 300_000,
            },
        };
        ns
    };
    match s.create_send(&resend("r2", T0 + 1_000)).await.unwrap() {
        SendOutcome::Created { code_sealed, .. } => assert_eq!(code_sealed, "sealed-r1"),
        other => panic!("{other:?}"),
    }
    match s.create_send(&resend("r3", T0 + 301_000)).await.unwrap() {
        SendOutcome::Created { code_sealed, .. } => assert_eq!(code_sealed, "fresh-r3"),
        other => panic!("{other:?}"),
    }
    let mut missing = resend("r4", T0);
    missing.target = SendTarget::Resend {
        session_id: "no-such-session".into(),
        fresh: StoredCode {
            hash: String::new(),
            sealed: String::new(),
            expires_ms: 0,
        },
    };
    assert_eq!(
        s.create_send(&missing).await.unwrap(),
        SendOutcome::SessionMissing
    );
    // Every verification id of a resend belongs to the first one's session.
    let (v, session) = s.verification_session("r3").await.unwrap().unwrap();
    assert_eq!((v.kind.as_str(), session.id), ("resend", session_id));
}

async fn verify_with(
    s: &dyn Store,
    id: &str,
    tenant: i64,
    code: &str,
    now_ms: i64,
) -> VerifyLookup {
    let code = code.to_string();
    s.verify(
        id,
        tenant,
        None,
        Box::new(move |session: &Session| hash(&session.id, &code)),
        now_ms,
    )
    .await
    .unwrap()
}

fn outcome(l: VerifyLookup) -> VerifyOutcome {
    match l {
        VerifyLookup::Checked { outcome, .. } => outcome,
        other => panic!("expected a checked verify, got {other:?}"),
    }
}

async fn verify_consumes_once_and_locks_after_five_wrong_codes(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "vf", None).await;
    let (t_other, _) = tenant_with_app(s, "vf-other", None).await;
    created(
        s.create_send(&send(t, &a, "966512345678", "v-ok", None, T0))
            .await
            .unwrap(),
    );
    assert!(matches!(
        verify_with(s, "v-ok", t_other, "123456", T0).await,
        VerifyLookup::Foreign
    ));
    assert!(matches!(
        verify_with(s, "v-none", t, "123456", T0).await,
        VerifyLookup::Unknown
    ));
    // Twenty correct verifies at once: exactly one consumes the session.
    warm_up(s).await;
    let results = futures::future::join_all(
        (0..20).map(|_| async { outcome(verify_with(s, "v-ok", t, "123456", T0 + 1).await) }),
    )
    .await;
    assert_eq!(
        results
            .iter()
            .filter(|o| **o == VerifyOutcome::Matched)
            .count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|o| matches!(o, VerifyOutcome::Matched | VerifyOutcome::AlreadyVerified))
    );

    created(
        s.create_send(&send(t, &a, "966512345679", "v-lock", None, T0))
            .await
            .unwrap(),
    );
    for i in 1..=5 {
        let o = outcome(verify_with(s, "v-lock", t, "000000", T0 + i).await);
        assert_eq!(o, VerifyOutcome::Wrong { locked_now: i == 5 }, "try {i}");
    }
    assert_eq!(
        outcome(verify_with(s, "v-lock", t, "123456", T0 + 10).await),
        VerifyOutcome::Locked
    );

    created(
        s.create_send(&send(t, &a, "966512345670", "v-exp", None, T0))
            .await
            .unwrap(),
    );
    assert_eq!(
        outcome(verify_with(s, "v-exp", t, "123456", T0 + 300_001).await),
        VerifyOutcome::Expired
    );
}

async fn jobs_are_claimed_leased_and_finished_under_their_claim(s: &dyn Store) {
    s.ensure_jobs(
        &[
            NewJob::receipt_timeout(1, T0 + 1_000),
            NewJob::receipt_timeout(2, T0 + 5_000),
        ],
        T0,
    )
    .await
    .unwrap();
    assert_eq!(s.next_due_ms().await.unwrap(), Some(T0 + 1_000));
    assert!(
        s.claim_jobs("a", T0, T0 + 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = s
        .claim_jobs("a", T0 + 1_000, T0 + 61_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let job = claimed[0].clone();
    assert_eq!(job.attempt_id, Some(1));
    assert_eq!(job.owner.as_deref(), Some("a"));
    // Held: nobody else gets it until the lease lapses.
    assert!(
        s.claim_jobs("b", T0 + 2_000, T0 + 62_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stats = s.job_stats(T0 + 2_000).await.unwrap();
    assert_eq!((stats.total, stats.due), (2, 0));
    // The lease lapses: b takes it over, and a's outcome no longer counts.
    let taken = s
        .claim_jobs("b", T0 + 61_001, T0 + 121_001, 1)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, job.id);
    let stale = JobOutcome {
        outbox: None,
        job: job.claim(),
        now_ms: T0 + 61_002,
        attempt: None,
        follow_ups: vec![],
        next: JobNext::Delete,
    };
    assert!(!s.finish_job(&stale).await.unwrap());
    let current = JobOutcome {
        job: taken[0].claim(),
        ..stale
    };
    assert!(s.finish_job(&current).await.unwrap());
    assert_eq!(s.list_jobs(10).await.unwrap().len(), 1);
    // A retry frees the job for later; release hands back what a worker holds.
    let second = s
        .claim_jobs("c", T0 + 5_000, T0 + 65_000, 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(s.release_claims("c").await.unwrap(), 1);
    let again = s
        .claim_jobs("d", T0 + 5_000, T0 + 65_000, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert!(
        s.finish_job(&JobOutcome {
            outbox: None,
            job: again[0].claim(),
            now_ms: T0 + 5_000,
            attempt: None,
            follow_ups: vec![],
            next: JobNext::Retry {
                due_ms: T0 + 9_000,
                error: "throttled".into(),
            },
        })
        .await
        .unwrap()
    );
    let listed = s.list_jobs(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].due_ms, T0 + 9_000);
    assert_eq!(listed[0].owner, None);
    assert_eq!(listed[0].last_error.as_deref(), Some("throttled"));
}

async fn jobs_are_unique_by_key(s: &dyn Store) {
    let job = NewJob::flow("session-1", 7, 0, T0 + 30_000);
    s.ensure_jobs(&[job.clone(), job.clone()], T0)
        .await
        .unwrap();
    s.ensure_jobs(std::slice::from_ref(&job), T0).await.unwrap();
    let listed = s.list_jobs(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "flow:session-1:0");
    assert_eq!(listed[0].step, Some(0));
}

fn conflict<T: std::fmt::Debug>(r: StoreResult<T>) {
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
}

async fn apps_are_updated_in_place_and_unique_by_name_per_tenant(s: &dyn Store) {
    let (t1, mut a) = tenant_with_app(s, "ap1", None).await;
    let (t2, _) = tenant_with_app(s, "ap2", None).await;
    let got = s.get_app(&a.app_id).await.unwrap().unwrap();
    assert_eq!(
        (got.tenant_id, got.name.as_str(), got.code_expiry),
        (t1, a.name.as_str(), 5)
    );
    assert_eq!(got.phone_limit, LimitSetting::default());
    assert!(s.get_app("Anothere").await.unwrap().is_none());

    // An update is seen by the next read (no stale copy survives it).
    a.name = "renamed app".into();
    a.code_expiry = 10;
    a.total_limit = LimitSetting {
        enabled: true,
        unit: Some(1),
        period: Some(1),
        limit: Some(1000),
    };
    s.update_app(&a).await.unwrap();
    let got = s.get_app(&a.app_id).await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.code_expiry), ("renamed app", 10));
    assert_eq!(got.total_limit, a.total_limit);
    assert_eq!(got.created_ms, T0);
    let (via_send, none) = s.app_with_template(&a.app_id, None).await.unwrap();
    assert_eq!(via_send.unwrap().total_limit, a.total_limit);
    assert!(none.is_none());

    // Names are unique per tenant, on insert and on rename; another tenant may reuse one.
    conflict(
        s.insert_app(&App {
            app_id: "Adupname".into(),
            ..a.clone()
        })
        .await,
    );
    assert!(s.get_app("Adupname").await.unwrap().is_none());
    s.insert_app(&App {
        app_id: "Aother02".into(),
        tenant_id: t2,
        ..a.clone()
    })
    .await
    .unwrap();
    let mut second = app("Asecond1", t1, None);
    s.insert_app(&second).await.unwrap();
    second.name = "renamed app".into();
    conflict(s.update_app(&second).await);
    assert_eq!(
        s.get_app("Asecond1").await.unwrap().unwrap().name,
        "app Asecond1"
    );
    // So are app ids.
    conflict(s.insert_app(&app("Asecond1", t2, None)).await);
}

async fn templates_are_updated_in_place_and_unique_by_name_per_app(s: &dyn Store) {
    let (t1, a) = tenant_with_app(s, "tp1", None).await;
    let (t2, b) = tenant_with_app(s, "tp2", None).await;
    let under = |tenant_id: i64, app: &App, name: &str| Template {
        tenant_id,
        app_id: app.app_id.clone(),
        ..template(name)
    };
    let mut login = under(t1, &a, "Login");
    login.template_id = s.insert_template(&login).await.unwrap();
    let mut pay = under(t1, &a, "Pay");
    pay.sender_id = Some("ACME".into());
    pay.template_id = s.insert_template(&pay).await.unwrap();
    assert_ne!(login.template_id, pay.template_id);
    let other = s.insert_template(&under(t2, &b, "Login")).await.unwrap();

    let got = s.get_template(pay.template_id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.tenant_id,
            got.app_id.as_str(),
            got.name.as_str(),
            got.text.as_str()
        ),
        (t1, a.app_id.as_str(), "Pay", "##code## for Pay")
    );
    assert_eq!(got.sender_id.as_deref(), Some("ACME"));
    assert_eq!(
        (
            got.code_type,
            got.code_length,
            got.speech_rate,
            got.language.as_str(),
            got.max_duration,
            got.repeat_cnt,
            got.created_ms
        ),
        (1, 6, 50, "EN", 59, 1, T0)
    );
    assert!(s.get_template(other + 1000).await.unwrap().is_none());

    // An update is seen by the next read, whichever call reads it.
    pay.text = "Your code: ##code##".into();
    pay.code_length = 4;
    pay.sender_id = None;
    s.update_template(&pay).await.unwrap();
    let got = s.get_template(pay.template_id).await.unwrap().unwrap();
    assert_eq!(
        (got.text.as_str(), got.code_length, got.sender_id),
        ("Your code: ##code##", 4, None)
    );
    let (app_row, t) = s
        .app_with_template(&a.app_id, Some(pay.template_id))
        .await
        .unwrap();
    assert_eq!(app_row.unwrap().app_id, a.app_id);
    assert_eq!(t.unwrap().text, "Your code: ##code##");
    // The app and the template are looked up independently.
    let (none, t) = s
        .app_with_template("Anothere", Some(login.template_id))
        .await
        .unwrap();
    assert!(none.is_none());
    assert_eq!(t.unwrap().name, "Login");
    let (app_row, none) = s
        .app_with_template(&a.app_id, Some(other + 1000))
        .await
        .unwrap();
    assert!(app_row.is_some() && none.is_none());

    // Names are unique per app, on insert and on rename.
    conflict(s.insert_template(&under(t1, &a, "Login")).await);
    login.name = "Pay".into();
    conflict(s.update_template(&login).await);
    assert_eq!(
        s.get_template(login.template_id)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Login"
    );

    // A tenant's templates, oldest first.
    let listed: Vec<_> = s
        .list_templates(t1)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.template_id, t.name))
        .collect();
    assert_eq!(
        listed,
        [
            (login.template_id, "Login".to_string()),
            (pay.template_id, "Pay".to_string())
        ]
    );
    assert_eq!(s.list_templates(t2).await.unwrap().len(), 1);
    assert!(s.list_templates(t2 + 1000).await.unwrap().is_empty());
}

async fn flows_are_updated_in_place_and_unique_by_name_per_tenant(s: &dyn Store) {
    use otpgate::domain::flow::{FlowChannel, FlowNode};
    let (t1, _) = tenant_with_app(s, "fl1", None).await;
    let (t2, _) = tenant_with_app(s, "fl2", None).await;
    let node = |waiting_time: i64, channel: FlowChannel| FlowNode {
        waiting_time,
        status: 1,
        channel,
        channel_cut: 0,
    };
    let flow = |tenant_id: i64, name: &str, nodes: Vec<FlowNode>| Flow {
        flow_id: 0,
        tenant_id,
        name: name.to_string(),
        nodes,
        created_ms: T0,
    };
    let mut first = flow(t1, "Fallback", vec![node(30, FlowChannel::Sms)]);
    first.flow_id = s.insert_flow(&first).await.unwrap();
    let second = s
        .insert_flow(&flow(t1, "Voice", vec![node(60, FlowChannel::Call)]))
        .await
        .unwrap();
    assert!(second > first.flow_id);
    // Another tenant may reuse a name.
    let other = s.insert_flow(&flow(t2, "Fallback", vec![])).await.unwrap();

    let got = s.get_flow(first.flow_id).await.unwrap().unwrap();
    assert_eq!(
        (got.tenant_id, got.name.as_str(), got.created_ms),
        (t1, "Fallback", T0)
    );
    assert_eq!(got.nodes, first.nodes);
    assert!(s.get_flow(other + 1000).await.unwrap().is_none());

    // An update is seen by the next read.
    first.name = "Fallback 2".into();
    first.nodes = vec![node(45, FlowChannel::Call), node(120, FlowChannel::Sms)];
    s.update_flow(&first).await.unwrap();
    let got = s.get_flow(first.flow_id).await.unwrap().unwrap();
    assert_eq!(got.name, "Fallback 2");
    assert_eq!(got.nodes, first.nodes);

    // Names are unique per tenant, on insert and on rename.
    conflict(s.insert_flow(&flow(t1, "Voice", vec![])).await);
    first.name = "Voice".into();
    conflict(s.update_flow(&first).await);

    let listed: Vec<_> = s
        .list_flows(t1)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.flow_id, f.name, f.nodes.len()))
        .collect();
    assert_eq!(
        listed,
        [
            (first.flow_id, "Fallback 2".to_string(), 2),
            (second, "Voice".to_string(), 1)
        ]
    );
    assert_eq!(s.list_flows(t2).await.unwrap().len(), 1);
}

async fn a_failed_merchant_insert_leaves_nothing_behind(s: &dyn Store) {
    let merchant = |key: &str, app_id: &str| NewMerchant {
        tenant: new_tenant(key),
        public_key: "PEM".into(),
        sandbox: false,
        app: app(app_id, 0, None),
        templates: vec![template("Shop"), template("Shop")],
    };
    let m = s
        .insert_merchant(&merchant("mk1", "Mfirst01"))
        .await
        .unwrap();
    // A repeated name is one product template.
    assert_eq!(m.products.len(), 2);
    assert_eq!(m.products[0], m.products[1]);
    assert_eq!(s.list_templates(m.tenant.id).await.unwrap().len(), 1);

    // The app id is taken: the tenant row written before it is undone too.
    conflict(s.insert_merchant(&merchant("mk2", "Mfirst01")).await);
    assert!(s.tenant_by_key("mk2").await.unwrap().is_none());
    // The key is taken: nothing of the second merchant is written.
    conflict(s.insert_merchant(&merchant("mk1", "Msecond1")).await);
    assert!(s.get_app("Msecond1").await.unwrap().is_none());
    assert_eq!(s.list_merchants().await.unwrap().len(), 1);
    assert_eq!(s.list_tenants().await.unwrap().len(), 1);

    // Merchant commands reach merchants, and are seen on the next read.
    assert!(
        !s.set_tenant_enabled(tenant_kind::BUKA, "mk1", false)
            .await
            .unwrap()
    );
    assert!(
        s.set_tenant_enabled(tenant_kind::SGATE, "mk1", false)
            .await
            .unwrap()
    );
    let allow = vec!["203.0.113.7".to_string()];
    assert!(
        s.set_tenant_allow_ips(tenant_kind::SGATE, "mk1", &allow)
            .await
            .unwrap()
    );
    let m = s.merchant_by_key("mk1").await.unwrap().unwrap();
    assert!(!m.tenant.enabled);
    assert_eq!(m.tenant.allow_ips, allow);
    assert!(!m.sandbox);
    assert_eq!(m.public_key, "PEM");
}

async fn the_outbox_lists_newest_first(s: &dyn Store) {
    assert!(s.list_outbox(10).await.unwrap().is_empty());
    // Rows are written with a job's outcome, as the console provider's deliveries write them.
    let jobs: Vec<_> = (0..3).map(|i| NewJob::receipt_timeout(i, T0)).collect();
    s.ensure_jobs(&jobs, T0).await.unwrap();
    let mut claimed = s.claim_jobs("w", T0, T0 + 60_000, 10).await.unwrap();
    claimed.sort_by_key(|j| j.attempt_id);
    assert_eq!(claimed.len(), 3);
    for (i, job) in (0..3).zip(&claimed) {
        assert!(
            s.finish_job(&JobOutcome {
                outbox: Some(OutboxEntry {
                    id: 0,
                    at_ms: T0 + i,
                    channel: "sms".into(),
                    to: format!("96650000000{i}"),
                    sender: (i == 1).then(|| "ACME".to_string()),
                    text: format!("code {i}"),
                    verification_id: format!("v{i}"),
                    attempt_id: (i != 2).then_some(i + 10),
                }),
                job: job.claim(),
                now_ms: T0 + i,
                attempt: None,
                follow_ups: vec![],
                next: JobNext::Delete,
            })
            .await
            .unwrap()
        );
    }
    let listed = s.list_outbox(2).await.unwrap();
    let texts: Vec<_> = listed.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["code 2", "code 1"]);
    assert!(listed[0].id > listed[1].id);
    let e = &listed[1];
    assert_eq!(
        (
            e.at_ms,
            e.channel.as_str(),
            e.to.as_str(),
            e.sender.as_deref(),
            e.verification_id.as_str(),
            e.attempt_id
        ),
        (T0 + 1, "sms", "966500000001", Some("ACME"), "v1", Some(11))
    );
    assert_eq!(listed[0].attempt_id, None);
    assert_eq!(listed[0].sender, None);
    assert_eq!(s.list_outbox(10).await.unwrap().len(), 3);
}

/// The trait has no reader for these: what is checked is that a repeat overwrites instead of
/// conflicting.
async fn backfill_rates_and_postbacks_are_upserts(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "bf", None).await;
    let rate = BackfillRate {
        tenant_id: t,
        app_id: a.app_id.clone(),
        mcc: 420,
        backfill_number: Some(90),
        backfill_base: Some(100),
        rate_bp: 9000,
        callback_ms: T0,
        received_ms: T0,
    };
    s.upsert_backfill_rate(&rate).await.unwrap();
    s.upsert_backfill_rate(&BackfillRate {
        backfill_number: None,
        backfill_base: None,
        rate_bp: 8550,
        received_ms: T0 + 1,
        ..rate.clone()
    })
    .await
    .unwrap();
    s.upsert_backfill_rate(&BackfillRate { mcc: 424, ..rate })
        .await
        .unwrap();
    let postback = Postback {
        verification_id: "pb1".into(),
        tenant_id: t,
        app_id: a.app_id.clone(),
        number: Some("966512345678".into()),
        backfill_ms: T0,
        received_ms: T0,
    };
    s.record_postback(&postback).await.unwrap();
    s.record_postback(&Postback {
        number: None,
        received_ms: T0 + 1,
        ..postback
    })
    .await
    .unwrap();
}

async fn racing_writers_of_nonces_keys_and_products_agree(s: &dyn Store) {
    // Expired nonces for the sweeps to find while the race runs.
    for i in 0..80 {
        assert!(
            s.remember_nonce(1, &format!("old{i}"), T0, T0 + 10)
                .await
                .unwrap()
        );
    }
    let now = T0 + 1_000;
    // One nonce, twenty requests at once: one is recorded, the rest are replays. The same
    // for an expired nonce being reused, and for fresh nonces reusing the expired ones.
    for nonce in ["fresh", "old0"] {
        let results = futures::future::join_all(
            (0..20).map(|_| async move { s.remember_nonce(1, nonce, now, now + 600_000).await }),
        )
        .await;
        let recorded = results.iter().filter(|r| matches!(r, Ok(true))).count();
        assert_eq!(recorded, 1, "{nonce}: {results:?}");
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert!(s.nonce_seen(1, nonce, now).await.unwrap());
    }
    let results = futures::future::join_all((1..80).map(|i| async move {
        s.remember_nonce(1, &format!("old{i}"), now, now + 600_000)
            .await
    }))
    .await;
    assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");

    // Server keys generated at once: every caller gets the same one.
    let keys = futures::future::join_all((0..10).map(|i| async move {
        s.insert_system_key("race", &format!("sealed-{i}"), &format!("PUB-{i}"), T0)
            .await
            .unwrap()
    }))
    .await;
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert_eq!(s.system_key("race").await.unwrap().as_ref(), Some(&keys[0]));

    // Updates of one merchant naming the same new product: one template for it, no conflict.
    s.insert_merchant(&NewMerchant {
        tenant: new_tenant("race-m"),
        public_key: "PEM".into(),
        sandbox: true,
        app: app("Mrace001", 0, None),
        templates: vec![template("Shop")],
    })
    .await
    .unwrap();
    let updated = futures::future::join_all((0..8).map(|_| async {
        s.update_merchant(
            "race-m",
            &MerchantUpdate {
                templates: Some(vec![template("Shop"), template("Wallet")]),
                ..Default::default()
            },
        )
        .await
    }))
    .await;
    let updated: Vec<Merchant> = updated
        .into_iter()
        .map(|r| r.expect("update").expect("merchant"))
        .collect();
    assert!(updated.iter().all(|m| m.products == updated[0].products));
    let m = s.merchant_by_key("race-m").await.unwrap().unwrap();
    assert_eq!(m.products, updated[0].products);
    assert_eq!(s.list_templates(m.tenant.id).await.unwrap().len(), 2);
}

/// Opens the store's connections before a concurrency check, so that its calls do run at
/// once instead of one after the other while a pool connects.
async fn warm_up(s: &dyn Store) {
    futures::future::join_all((0..16).map(|_| s.ping())).await;
}

/// A send whose attempt waits in the queue: `pending`, its deliver job free and due at once.
fn queued(tenant_id: i64, app: &App, phone: &str, verification_id: &str, now_ms: i64) -> NewSend {
    let mut ns = send(tenant_id, app, phone, verification_id, None, now_ms);
    ns.attempt.sending = None;
    ns.claim = None;
    ns
}

async fn attempt(s: &dyn Store, session_id: &str, id: i64) -> Attempt {
    s.attempts_for_session(session_id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("attempt {id} of {session_id}"))
}

async fn job_keys(s: &dyn Store) -> Vec<String> {
    s.list_jobs(100)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect()
}

async fn concurrent_sends_of_one_order_create_one_session(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "ord", None).await;
    warm_up(s).await;
    let results = futures::future::join_all((0..12).map(|i| {
        let ns = send(
            t,
            &a,
            "966512345678",
            &format!("po{i:02}"),
            Some("order-x"),
            T0,
        );
        async move { s.create_send(&ns).await.unwrap() }
    }))
    .await;
    let winners: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            SendOutcome::Created { session_id, .. } => Some(session_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        match r {
            SendOutcome::Created { .. } => {}
            SendOutcome::DuplicateOrder { verification_id } => {
                assert_eq!(verification_id, &winners[0])
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        s.session_by_order(t, "order-x").await.unwrap().unwrap().id,
        winners[0]
    );
}

async fn start_attempt_moves_a_waiting_attempt_once(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "st", None).await;
    let (session_id, id) = created(
        s.create_send(&queued(t, &a, "966512345678", "s1", T0))
            .await
            .unwrap(),
    );
    let waiting = attempt(s, &session_id, id).await;
    assert_eq!(
        (
            waiting.gateway_state.as_str(),
            waiting.report_state.as_str()
        ),
        (gateway::PENDING, report::UNKNOWN)
    );
    assert_eq!(waiting.send_ms, None);
    let jobs = s.list_jobs(10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].key, format!("deliver:{id}"));
    assert_eq!((jobs[0].owner.as_deref(), jobs[0].due_ms), (None, T0));
    let (session, _) = s.session_with_attempts(&session_id).await.unwrap().unwrap();
    assert!(!session.submitted);

    match s.start_attempt(id, T0 + 10).await.unwrap() {
        StartAttempt::Ready { attempt, session } => {
            assert_eq!(attempt.id, id);
            assert_eq!(attempt.gateway_state, gateway::SENDING);
            assert_eq!(attempt.report_state, report::PENDING);
            assert_eq!(attempt.send_ms, Some(T0 + 10));
            assert_eq!(session.id, session_id);
        }
        other => panic!("{other:?}"),
    }
    let (session, attempts) = s.session_with_attempts(&session_id).await.unwrap().unwrap();
    assert!(session.submitted);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].gateway_state, gateway::SENDING);
    // Picked up again while `sending` (its worker vanished): not sent a second time.
    match s.start_attempt(id, T0 + 20).await.unwrap() {
        StartAttempt::Interrupted { attempt, session } => {
            assert_eq!((attempt.id, session.id.as_str()), (id, session_id.as_str()))
        }
        other => panic!("{other:?}"),
    }
    // Once the route has answered there is nothing to do; nor for an unknown attempt.
    let answered = AttemptUpdate {
        gateway_state: Some(gateway::SUCCESS.into()),
        ..AttemptUpdate::default()
    };
    assert!(
        s.apply_receipt(id, AttemptGuard::Any, &answered)
            .await
            .unwrap()
    );
    assert!(matches!(
        s.start_attempt(id, T0 + 30).await.unwrap(),
        StartAttempt::Settled
    ));
    assert!(matches!(
        s.start_attempt(id + 1_000, T0 + 30).await.unwrap(),
        StartAttempt::Settled
    ));

    // A waiting attempt of an expired session is not sent, and stays as it was.
    let (s2, id2) = created(
        s.create_send(&queued(t, &a, "966512345679", "s2", T0))
            .await
            .unwrap(),
    );
    match s.start_attempt(id2, T0 + 300_000).await.unwrap() {
        StartAttempt::Closed { attempt } => assert_eq!(attempt.id, id2),
        other => panic!("{other:?}"),
    }
    assert_eq!(attempt(s, &s2, id2).await.gateway_state, gateway::PENDING);

    // Nor one of a session verified before it went out.
    let (s3, id3) = created(
        s.create_send(&queued(t, &a, "966512345670", "s3", T0))
            .await
            .unwrap(),
    );
    assert!(matches!(
        s.start_attempt(id3, T0 + 1).await.unwrap(),
        StartAttempt::Ready { .. }
    ));
    let mut resend = queued(t, &a, "966512345670", "s3-resend", T0 + 2);
    resend.kind = "resend";
    resend.target = SendTarget::Resend {
        session_id: s3.clone(),
        fresh: StoredCode {
            hash: hash(&s3, "999999"),
            sealed: "fresh".into(),
            expires_ms: T0 + 300_002,
        },
    };
    let (_, id4) = created(s.create_send(&resend).await.unwrap());
    assert_eq!(
        outcome(verify_with(s, "s3", t, "123456", T0 + 3).await),
        VerifyOutcome::Matched
    );
    match s.start_attempt(id4, T0 + 4).await.unwrap() {
        StartAttempt::Closed { attempt } => assert_eq!(attempt.id, id4),
        other => panic!("{other:?}"),
    }
    assert_eq!(attempt(s, &s3, id4).await.gateway_state, gateway::PENDING);
}

async fn flow_steps_fire_under_their_claim_while_the_session_is_open(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "fl", None).await;
    let (session_id, first) = created(
        s.create_send(&send(t, &a, "966512345678", "f1", None, T0))
            .await
            .unwrap(),
    );
    s.ensure_jobs(&[NewJob::flow(&session_id, first, 1, T0 + 30_000)], T0)
        .await
        .unwrap();
    // The first attempt's deliver job is still held by node-a: only the flow job is taken.
    let claimed = s
        .claim_jobs("node-b", T0 + 30_000, T0 + 90_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].kind, job_kind::FLOW);
    let flow = claimed[0].clone();
    let fire = |job: JobRef, now_ms: i64| FlowFire {
        job,
        session_id: session_id.clone(),
        verification_id: "f1".into(),
        attempt: NewAttempt {
            channel: "voice".into(),
            route: "r2".into(),
            provider: "memory".into(),
            sender: None,
            mcc: Some(420),
            flow_step: Some(2),
            sending: Some(SendingInfo::default()),
        },
        now_ms,
        claim: NewClaim {
            owner: "node-b".into(),
            lease_until_ms: now_ms + 60_000,
        },
    };
    // Under a claim that is not the current one: nothing happens.
    let mut stale = flow.claim();
    stale.tries += 1;
    assert_eq!(
        s.fire_flow_step(&fire(stale, T0 + 30_001)).await.unwrap(),
        FlowFired::Lost
    );
    assert!(job_keys(s).await.contains(&flow.key));
    assert_eq!(s.attempts_for_session(&session_id).await.unwrap().len(), 1);

    let (attempt_id, job) = match s
        .fire_flow_step(&fire(flow.claim(), T0 + 30_001))
        .await
        .unwrap()
    {
        FlowFired::Created {
            attempt_id,
            job,
            code_sealed,
        } => {
            assert_eq!(code_sealed, "sealed-f1");
            (attempt_id, job)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!((job.owner.as_str(), job.tries), ("node-b", 1));
    let attempts = s.attempts_for_session(&session_id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    let new = &attempts[1];
    assert_eq!(new.id, attempt_id);
    assert_eq!(
        (
            new.verification_id.as_str(),
            new.channel.as_str(),
            new.route.as_str()
        ),
        ("f1", "voice", "r2")
    );
    assert_eq!(new.gateway_state, gateway::SENDING);
    assert_eq!(new.flow_step, Some(2));
    // The new attempt's deliver job is held on the attempt, not queued.
    assert_eq!(job.id, JobId::Attempt(attempt_id));
    assert_eq!(
        (new.claim_owner.as_deref(), new.claim_lease_ms),
        (Some("node-b"), Some(T0 + 90_001))
    );
    let jobs = s.list_jobs(10).await.unwrap();
    assert!(!jobs.iter().any(|j| j.key == flow.key), "{jobs:?}");
    assert!(
        !jobs.iter().any(|j| j.kind == job_kind::DELIVER),
        "{jobs:?}"
    );
    // The flow job is gone: firing it again finds no claim.
    assert_eq!(
        s.fire_flow_step(&fire(flow.claim(), T0 + 30_002))
            .await
            .unwrap(),
        FlowFired::Lost
    );

    // The session is verified before the next node: the node's job goes, nothing else.
    s.ensure_jobs(&[NewJob::flow(&session_id, attempt_id, 2, T0 + 40_000)], T0)
        .await
        .unwrap();
    assert_eq!(
        outcome(verify_with(s, "f1", t, "123456", T0 + 35_000).await),
        VerifyOutcome::Matched
    );
    let claimed = s
        .claim_jobs("node-c", T0 + 40_000, T0 + 100_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].step, Some(2));
    assert_eq!(
        s.fire_flow_step(&fire(claimed[0].claim(), T0 + 40_000))
            .await
            .unwrap(),
        FlowFired::Closed
    );
    assert!(!job_keys(s).await.contains(&claimed[0].key));
    assert_eq!(s.attempts_for_session(&session_id).await.unwrap().len(), 2);
}

async fn receipts_apply_under_their_guard_and_are_found_by_message(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "rc", None).await;
    let (s1, id) = created(
        s.create_send(&send(t, &a, "966512345678", "rc1", None, T0))
            .await
            .unwrap(),
    );
    let receipt_key = format!("receipt:{id}");
    s.ensure_jobs(&[NewJob::receipt_timeout(id, T0 + 600_000)], T0)
        .await
        .unwrap();
    // The attempt is `sending`: a guard on other gateway states changes nothing.
    let accepted = AttemptUpdate {
        gateway_state: Some(gateway::SUCCESS.into()),
        provider_message_id: Some("m-1".into()),
        ..AttemptUpdate::default()
    };
    assert!(
        !s.apply_receipt(
            id,
            AttemptGuard::Gateway(&[gateway::CREATE, gateway::PENDING]),
            &accepted
        )
        .await
        .unwrap()
    );
    let before = attempt(s, &s1, id).await;
    assert_eq!(before.gateway_state, gateway::SENDING);
    assert_eq!(before.provider_message_id, None);
    assert!(job_keys(s).await.contains(&receipt_key));
    // A guard that holds: applied, and the receipt timeout goes.
    assert!(
        s.apply_receipt(
            id,
            AttemptGuard::Gateway(&[gateway::PENDING, gateway::SENDING]),
            &accepted
        )
        .await
        .unwrap()
    );
    assert!(!job_keys(s).await.contains(&receipt_key));
    assert_eq!(
        attempt(s, &s1, id).await.provider_message_id.as_deref(),
        Some("m-1")
    );

    // Found by route and message id (the latest attempt carrying it), or by route and id.
    let found = s.attempt_by_message("r1", "m-1").await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert!(s.attempt_by_message("r2", "m-1").await.unwrap().is_none());
    assert!(s.attempt_by_message("r1", "m-x").await.unwrap().is_none());
    assert_eq!(
        s.attempt_on_route("r1", id).await.unwrap().map(|a| a.id),
        Some(id)
    );
    assert!(s.attempt_on_route("r2", id).await.unwrap().is_none());
    assert!(
        s.attempt_on_route("r1", id + 1_000)
            .await
            .unwrap()
            .is_none()
    );

    // Attempts still waiting for a receipt, by id: those with a message id only.
    let (_, no_message) = created(
        s.create_send(&send(t, &a, "966512345679", "rc2", None, T0))
            .await
            .unwrap(),
    );
    let (s3, id3) = created(
        s.create_send(&send(t, &a, "966512345670", "rc3", None, T0))
            .await
            .unwrap(),
    );
    let tagged = |m: &str| AttemptUpdate {
        provider_message_id: Some(m.into()),
        ..AttemptUpdate::default()
    };
    assert!(
        s.apply_receipt(id3, AttemptGuard::Any, &tagged("m-3"))
            .await
            .unwrap()
    );
    assert_eq!(
        s.pending_receipts("r1", 10).await.unwrap(),
        vec![(id, "m-1".to_string()), (id3, "m-3".to_string())]
    );
    assert_eq!(
        s.pending_receipts("r1", 1).await.unwrap(),
        vec![(id, "m-1".to_string())]
    );
    assert!(s.pending_receipts("r2", 10).await.unwrap().is_empty());
    assert!(
        s.apply_receipt(no_message, AttemptGuard::Any, &tagged("m-1"))
            .await
            .unwrap()
    );
    assert_eq!(
        s.attempt_by_message("r1", "m-1").await.unwrap().unwrap().id,
        no_message
    );

    // A receipt settles an unconfirmed attempt once.
    s.ensure_jobs(&[NewJob::receipt_timeout(id, T0 + 600_000)], T0)
        .await
        .unwrap();
    let delivered = AttemptUpdate {
        report_state: Some(report::SUCCESS.into()),
        done_ms: Some(T0 + 5_000),
        ..AttemptUpdate::default()
    };
    let failed = AttemptUpdate {
        report_state: Some(report::FAIL.into()),
        reason: Some("rejected".into()),
        ..AttemptUpdate::default()
    };
    assert!(
        s.apply_receipt(id, AttemptGuard::Unconfirmed, &delivered)
            .await
            .unwrap()
    );
    assert!(!job_keys(s).await.contains(&receipt_key));
    let settled = attempt(s, &s1, id).await;
    assert!(settled.delivered());
    // What the update leaves out stays.
    assert_eq!(settled.gateway_state, gateway::SUCCESS);
    assert_eq!(settled.provider_message_id.as_deref(), Some("m-1"));
    assert_eq!(settled.done_ms, Some(T0 + 5_000));
    assert!(
        !s.apply_receipt(id, AttemptGuard::Unconfirmed, &failed)
            .await
            .unwrap()
    );
    assert!(attempt(s, &s1, id).await.delivered());

    // Failed only by the receipt timeout, a late receipt still tells the truth; failed by a
    // receipt, it is settled.
    let timed_out = AttemptUpdate {
        report_state: Some(report::FAIL.into()),
        reason: Some(report::NO_DELIVERY_REPORT.into()),
        ..AttemptUpdate::default()
    };
    assert!(
        s.apply_receipt(id3, AttemptGuard::Any, &timed_out)
            .await
            .unwrap()
    );
    assert!(
        s.apply_receipt(id3, AttemptGuard::Unconfirmed, &delivered)
            .await
            .unwrap()
    );
    assert!(attempt(s, &s3, id3).await.delivered());
    assert!(
        s.apply_receipt(no_message, AttemptGuard::Any, &failed)
            .await
            .unwrap()
    );
    assert!(
        !s.apply_receipt(no_message, AttemptGuard::Unconfirmed, &delivered)
            .await
            .unwrap()
    );
}

async fn a_job_outcome_records_its_attempt_and_follow_ups_under_its_claim(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "fj", None).await;
    let (session_id, id) = created(
        s.create_send(&queued(t, &a, "966512345678", "fj1", T0))
            .await
            .unwrap(),
    );
    let claimed = s.claim_jobs("w", T0, T0 + 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].key, format!("deliver:{id}"));
    assert_eq!(claimed[0].tries, 1);
    let done = JobOutcome {
        outbox: None,
        job: claimed[0].claim(),
        now_ms: T0 + 5,
        attempt: Some((
            id,
            AttemptGuard::Gateway(&[gateway::PENDING, gateway::SENDING]),
            AttemptUpdate {
                gateway_state: Some(gateway::SUCCESS.into()),
                report_state: Some(report::PENDING.into()),
                provider_message_id: Some("m-9".into()),
                send_ms: Some(T0 + 5),
                ..AttemptUpdate::default()
            },
        )),
        follow_ups: vec![
            NewJob::receipt_timeout(id, T0 + 600_000),
            NewJob::flow(&session_id, id, 1, T0 + 30_000),
        ],
        next: JobNext::Delete,
    };
    // Under a claim that is not the current one, nothing at all is written.
    let mut stale = done.clone();
    stale.job.tries += 1;
    assert!(!s.finish_job(&stale).await.unwrap());
    let (session, attempts) = s.session_with_attempts(&session_id).await.unwrap().unwrap();
    assert!(!session.submitted);
    assert_eq!(attempts[0].gateway_state, gateway::PENDING);
    assert_eq!(job_keys(s).await, vec![format!("deliver:{id}")]);

    assert!(s.finish_job(&done).await.unwrap());
    let (session, attempts) = s.session_with_attempts(&session_id).await.unwrap().unwrap();
    assert!(session.submitted, "handed to its route");
    assert_eq!(attempts[0].gateway_state, gateway::SUCCESS);
    assert_eq!(attempts[0].provider_message_id.as_deref(), Some("m-9"));
    assert_eq!(attempts[0].send_ms, Some(T0 + 5));
    assert_eq!(
        job_keys(s).await,
        vec![format!("flow:{session_id}:1"), format!("receipt:{id}")]
    );
    // Follow-ups are unique by key like every job; and a finished job's claim is gone.
    assert!(!s.finish_job(&done).await.unwrap());
    assert_eq!(s.list_jobs(10).await.unwrap().len(), 2);

    // An outcome whose attempt guard no longer holds still records the job's own outcome.
    let flow = s
        .claim_jobs("w", T0 + 30_000, T0 + 90_000, 10)
        .await
        .unwrap();
    assert_eq!(flow.len(), 1);
    assert!(
        s.finish_job(&JobOutcome {
            outbox: None,
            job: flow[0].claim(),
            now_ms: T0 + 30_000,
            attempt: Some((
                id,
                AttemptGuard::Gateway(&[gateway::PENDING]),
                AttemptUpdate {
                    gateway_state: Some(gateway::FAIL.into()),
                    ..AttemptUpdate::default()
                },
            )),
            follow_ups: vec![],
            next: JobNext::Reschedule {
                due_ms: T0 + 50_000,
            },
        })
        .await
        .unwrap()
    );
    assert_eq!(
        attempt(s, &session_id, id).await.gateway_state,
        gateway::SUCCESS
    );
    let jobs = s.list_jobs(10).await.unwrap();
    assert_eq!(jobs[0].key, format!("flow:{session_id}:1"));
    assert_eq!(
        (
            jobs[0].due_ms,
            jobs[0].owner.as_deref(),
            jobs[0].lease_ms,
            jobs[0].tries
        ),
        (T0 + 50_000, None, None, 1)
    );
    assert_eq!(jobs[0].last_error, None);
}

/// The outcome a deliver job records when its route took the attempt.
fn handed_over(job: JobRef, attempt_id: i64, now_ms: i64, next: JobNext) -> JobOutcome {
    JobOutcome {
        outbox: None,
        job,
        now_ms,
        attempt: Some((
            attempt_id,
            AttemptGuard::Gateway(&[gateway::SENDING]),
            AttemptUpdate {
                gateway_state: Some(gateway::SUCCESS.into()),
                provider_message_id: Some(format!("m-{attempt_id}")),
                ..AttemptUpdate::default()
            },
        )),
        follow_ups: vec![NewJob::receipt_timeout(attempt_id, now_ms + 600_000)],
        next,
    }
}

/// A send handed to its route at once keeps its deliver job's claim on the attempt row: no
/// queue row is written or deleted. The claim finishes like a queued one, only once, and only
/// by its holder; a retry, a stopping worker or a lapsed lease moves it into the queue.
async fn a_deliver_claim_held_on_its_attempt_finishes_or_moves_to_the_queue(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "ac", None).await;
    let claimed_send =
        |vid: &'static str, now_ms: i64| send(t, &a, "966512345678", vid, None, now_ms);
    let job_of = |o: SendOutcome| match o {
        SendOutcome::Created {
            session_id,
            attempt_id,
            job: Some(job),
            ..
        } => (session_id, attempt_id, job),
        other => panic!("expected a claimed send, got {other:?}"),
    };

    // Written claimed: the attempt holds the claim, the queue has nothing.
    let (s1, a1, j1) = job_of(s.create_send(&claimed_send("ac1", T0)).await.unwrap());
    assert_eq!(j1.id, JobId::Attempt(a1));
    assert_eq!((j1.owner.as_str(), j1.tries), ("node-a", 1));
    let held = attempt(s, &s1, a1).await;
    assert_eq!(held.gateway_state, gateway::SENDING);
    assert_eq!(
        (held.claim_owner.as_deref(), held.claim_lease_ms),
        (Some("node-a"), Some(T0 + 60_000))
    );
    assert!(s.list_jobs(10).await.unwrap().is_empty());
    let stats = s.job_stats(T0 + 1).await.unwrap();
    assert_eq!((stats.total, stats.in_flight, stats.due), (1, 1, 0));
    assert!(
        s.claim_jobs("node-b", T0 + 1, T0 + 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Another owner's outcome writes nothing.
    let mut other = handed_over(j1.clone(), a1, T0 + 5, JobNext::Delete);
    other.job.owner = "node-b".into();
    assert!(!s.finish_job(&other).await.unwrap());
    assert_eq!(attempt(s, &s1, a1).await.gateway_state, gateway::SENDING);
    assert!(s.list_jobs(10).await.unwrap().is_empty());

    // The holder's outcome: the attempt is updated and its claim cleared in one go.
    let done = handed_over(j1.clone(), a1, T0 + 5, JobNext::Delete);
    assert!(s.finish_job(&done).await.unwrap());
    let after = attempt(s, &s1, a1).await;
    assert_eq!(after.gateway_state, gateway::SUCCESS);
    assert_eq!(after.provider_message_id, Some(format!("m-{a1}")));
    assert_eq!((after.claim_owner, after.claim_lease_ms), (None, None));
    assert_eq!(job_keys(s).await, vec![format!("receipt:{a1}")]);
    assert_eq!(s.job_stats(T0 + 6).await.unwrap().in_flight, 0);
    // Once only.
    assert!(!s.finish_job(&done).await.unwrap());

    // An outcome whose attempt guard fails still ends the claim (and writes its follow-ups).
    let (s2, a2, j2) = job_of(s.create_send(&claimed_send("ac2", T0 + 10)).await.unwrap());
    let mut guarded = handed_over(j2, a2, T0 + 15, JobNext::Delete);
    if let Some((_, guard, _)) = &mut guarded.attempt {
        *guard = AttemptGuard::Gateway(&[gateway::PENDING]);
    }
    assert!(s.finish_job(&guarded).await.unwrap());
    let kept = attempt(s, &s2, a2).await;
    assert_eq!(
        kept.gateway_state,
        gateway::SENDING,
        "the guard held it back"
    );
    assert_eq!(kept.claim_owner, None);
    assert!(job_keys(s).await.contains(&format!("receipt:{a2}")));

    // A retry moves the job into the queue, free, with its error and its try counted.
    let (s3, a3, j3) = job_of(s.create_send(&claimed_send("ac3", T0 + 20)).await.unwrap());
    let retry = JobOutcome {
        outbox: None,
        job: j3,
        now_ms: T0 + 25,
        attempt: Some((
            a3,
            AttemptGuard::Gateway(&[gateway::SENDING]),
            AttemptUpdate {
                gateway_state: Some(gateway::PENDING.into()),
                reason: Some("throttled".into()),
                ..AttemptUpdate::default()
            },
        )),
        follow_ups: vec![],
        next: JobNext::Retry {
            due_ms: T0 + 2_025,
            error: "throttled".into(),
        },
    };
    assert!(s.finish_job(&retry).await.unwrap());
    let waiting = attempt(s, &s3, a3).await;
    assert_eq!(
        (waiting.gateway_state.as_str(), waiting.claim_owner),
        (gateway::PENDING, None)
    );
    let jobs = s.list_jobs(10).await.unwrap();
    let queued = jobs
        .iter()
        .find(|j| j.key == format!("deliver:{a3}"))
        .expect("the retry is queued");
    assert_eq!(
        (
            queued.kind.as_str(),
            queued.session_id.as_deref(),
            queued.attempt_id,
            queued.due_ms,
            queued.owner.as_deref(),
            queued.tries,
            queued.last_error.as_deref()
        ),
        (
            job_kind::DELIVER,
            Some(s3.as_str()),
            Some(a3),
            T0 + 2_025,
            None,
            1,
            Some("throttled")
        )
    );
    let again = s
        .claim_jobs("node-a", T0 + 2_025, T0 + 62_025, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].key.clone(), again[0].tries),
        (format!("deliver:{a3}"), 2)
    );
    assert!(
        s.finish_job(&JobOutcome {
            outbox: None,
            job: again[0].claim(),
            now_ms: T0 + 2_030,
            attempt: None,
            follow_ups: vec![],
            next: JobNext::Delete,
        })
        .await
        .unwrap()
    );

    // A lapsed lease: the next claim of due jobs moves the job into the queue and takes it;
    // the old holder's outcome then writes nothing.
    let (s4, a4, j4) = job_of(s.create_send(&claimed_send("ac4", T0 + 30)).await.unwrap());
    let stats = s.job_stats(T0 + 60_030).await.unwrap();
    assert_eq!(
        (stats.in_flight, stats.due, stats.oldest_due_ms),
        (1, 1, Some(T0 + 30))
    );
    let taken = s
        .claim_jobs("node-b", T0 + 60_030, T0 + 120_030, 10)
        .await
        .unwrap();
    let taken: Vec<_> = taken
        .into_iter()
        .filter(|j| j.kind == job_kind::DELIVER)
        .collect();
    assert_eq!(taken.len(), 1);
    assert_eq!(
        (
            taken[0].key.clone(),
            taken[0].attempt_id,
            taken[0].session_id.clone(),
            taken[0].owner.as_deref(),
            taken[0].tries,
            taken[0].due_ms
        ),
        (
            format!("deliver:{a4}"),
            Some(a4),
            Some(s4.clone()),
            Some("node-b"),
            2,
            T0 + 30
        )
    );
    assert_eq!(attempt(s, &s4, a4).await.claim_owner, None);
    assert!(
        !s.finish_job(&handed_over(j4, a4, T0 + 60_031, JobNext::Delete))
            .await
            .unwrap()
    );
    assert_eq!(attempt(s, &s4, a4).await.gateway_state, gateway::SENDING);
    // The worker that took it finds the attempt interrupted.
    assert!(matches!(
        s.start_attempt(a4, T0 + 60_032).await.unwrap(),
        StartAttempt::Interrupted { .. }
    ));

    // A stopping worker hands its attempt claims to the queue, free and due at once.
    let (_, a5, j5) = job_of(s.create_send(&claimed_send("ac5", T0 + 40)).await.unwrap());
    assert_eq!(s.release_claims("node-a").await.unwrap(), 1);
    let freed = s.list_jobs(20).await.unwrap();
    let freed = freed
        .iter()
        .find(|j| j.key == format!("deliver:{a5}"))
        .expect("the released claim is queued");
    assert_eq!((freed.owner.as_deref(), freed.due_ms), (None, T0 + 40));
    assert!(
        !s.finish_job(&handed_over(j5, a5, T0 + 45, JobNext::Delete))
            .await
            .unwrap()
    );
    assert_eq!(s.job_stats(T0 + 50).await.unwrap().in_flight, 0);
}

async fn job_stats_count_the_due_free_jobs(s: &dyn Store) {
    assert_eq!(s.job_stats(T0).await.unwrap(), JobStats::default());
    assert_eq!(s.next_due_ms().await.unwrap(), None);
    s.ensure_jobs(
        &[
            NewJob::receipt_timeout(1, T0 + 1_000),
            NewJob::receipt_timeout(2, T0 + 2_000),
            NewJob::receipt_timeout(3, T0 + 9_000),
        ],
        T0,
    )
    .await
    .unwrap();
    let stats = |total, due, oldest| JobStats {
        total,
        due,
        oldest_due_ms: oldest,
        in_flight: 0,
    };
    assert_eq!(
        s.job_stats(T0 + 5_000).await.unwrap(),
        stats(3, 2, Some(T0 + 1_000))
    );
    let claimed = s.claim_jobs("w", T0 + 5_000, T0 + 6_000, 1).await.unwrap();
    assert_eq!(claimed[0].due_ms, T0 + 1_000);
    assert_eq!(
        s.job_stats(T0 + 5_000).await.unwrap(),
        stats(3, 1, Some(T0 + 2_000))
    );
    assert_eq!(s.next_due_ms().await.unwrap(), Some(T0 + 2_000));
    // Once the lease lapses the held job counts as due again.
    assert_eq!(
        s.job_stats(T0 + 6_000).await.unwrap(),
        stats(3, 2, Some(T0 + 1_000))
    );
    assert_eq!(
        s.job_stats(T0 + 10_000).await.unwrap(),
        stats(3, 3, Some(T0 + 1_000))
    );
}

/// Both backends free the claims whose lease has lapsed. What each does with a claim under a
/// live lease differs by design (SQLite: one process per database, every claim found at
/// start-up is an orphan; PostgreSQL: it may be another node's, and is kept — see
/// `postgres_only`), so here only the count is checked against what was freed.
async fn recovered_claims_are_freed_and_no_longer_hold(s: &dyn Store) {
    s.ensure_jobs(
        &[
            NewJob::receipt_timeout(1, T0),
            NewJob::receipt_timeout(2, T0 + 1),
        ],
        T0,
    )
    .await
    .unwrap();
    let gone = s.claim_jobs("gone", T0 + 1, T0 + 60_000, 10).await.unwrap();
    assert_eq!(gone.len(), 2);
    s.ensure_jobs(&[NewJob::receipt_timeout(3, T0 + 2)], T0)
        .await
        .unwrap();
    assert_eq!(s.recover_claims(T0 + 120_000).await.unwrap(), 2);
    let jobs = s.list_jobs(10).await.unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(
        jobs.iter()
            .all(|j| j.owner.is_none() && j.lease_ms.is_none())
    );
    assert_eq!(s.next_due_ms().await.unwrap(), Some(T0));
    // The freed claims no longer hold.
    for j in &gone {
        assert!(
            !s.finish_job(&JobOutcome {
                outbox: None,
                job: j.claim(),
                now_ms: T0 + 120_000,
                attempt: None,
                follow_ups: vec![],
                next: JobNext::Delete,
            })
            .await
            .unwrap()
        );
    }
    // Nothing held: nothing to free.
    assert_eq!(s.recover_claims(T0 + 120_000).await.unwrap(), 0);
    // Live claims: whatever a backend frees, it counts.
    let live = s
        .claim_jobs("live", T0 + 120_000, T0 + 180_000, 10)
        .await
        .unwrap();
    assert_eq!(live.len(), 3);
    let freed = s.recover_claims(T0 + 130_000).await.unwrap();
    let free_now = s
        .list_jobs(10)
        .await
        .unwrap()
        .iter()
        .filter(|j| j.owner.is_none())
        .count();
    assert_eq!(freed as usize, free_now);
}

async fn concurrent_claimers_never_share_a_job(s: &dyn Store) {
    let jobs: Vec<NewJob> = (0..60)
        .map(|i| NewJob::receipt_timeout(i, T0 + i))
        .collect();
    s.ensure_jobs(&jobs, T0).await.unwrap();
    warm_up(s).await;
    let per_worker = futures::future::join_all((0..6).map(|w| async move {
        let owner = format!("w{w}");
        let mut got = Vec::new();
        loop {
            let claimed = s
                .claim_jobs(&owner, T0 + 1_000, T0 + 61_000, 4)
                .await
                .unwrap();
            if claimed.is_empty() {
                return (owner, got);
            }
            for j in &claimed {
                assert_eq!(j.owner.as_deref(), Some(owner.as_str()));
            }
            got.extend(claimed.into_iter().map(|j| j.id));
        }
    }))
    .await;
    let mut all: Vec<i64> = per_worker
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    all.sort_unstable();
    let claimed = all.len();
    all.dedup();
    assert_eq!(all.len(), claimed, "a job was claimed twice");
    assert_eq!(claimed, 60);
    // Each job is held by the one worker that got it, claimed once.
    let listed = s.list_jobs(100).await.unwrap();
    for (owner, ids) in &per_worker {
        for id in ids {
            let j = listed.iter().find(|j| j.id == *id).unwrap();
            assert_eq!(
                (j.owner.as_deref(), j.tries),
                (Some(owner.as_str()), 1),
                "{j:?}"
            );
        }
    }
}

/// A receipt and its timeout, recorded at once: neither fails, and the receipt wins.
async fn a_receipt_racing_its_timeout_settles_once(s: &dyn Store) {
    let (t, a) = tenant_with_app(s, "race", None).await;
    warm_up(s).await;
    for i in 0..16 {
        let (session_id, id) = created(
            s.create_send(&send(
                t,
                &a,
                &format!("9665123456{i:02}"),
                &format!("race{i}"),
                None,
                T0,
            ))
            .await
            .unwrap(),
        );
        s.ensure_jobs(&[NewJob::receipt_timeout(id, T0 + 1_000)], T0)
            .await
            .unwrap();
        let timeout = s
            .claim_jobs("w", T0 + 1_000, T0 + 61_000, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.key == format!("receipt:{id}"))
            .expect("the receipt timeout");
        let timed_out = JobOutcome {
            outbox: None,
            job: timeout.claim(),
            now_ms: T0 + 1_000,
            attempt: Some((
                id,
                AttemptGuard::Unconfirmed,
                AttemptUpdate {
                    report_state: Some(report::FAIL.into()),
                    reason: Some(report::NO_DELIVERY_REPORT.into()),
                    done_ms: Some(T0 + 1_000),
                    ..AttemptUpdate::default()
                },
            )),
            follow_ups: vec![],
            next: JobNext::Delete,
        };
        let delivered = AttemptUpdate {
            report_state: Some(report::SUCCESS.into()),
            done_ms: Some(T0 + 1_001),
            ..AttemptUpdate::default()
        };
        let (finished, applied) = tokio::join!(
            s.finish_job(&timed_out),
            s.apply_receipt(id, AttemptGuard::Unconfirmed, &delivered)
        );
        finished.expect("the timeout is recorded or finds its job gone");
        assert!(applied.expect("the receipt is recorded"), "try {i}");
        assert!(attempt(s, &session_id, id).await.delivered(), "try {i}");
        assert!(!job_keys(s).await.contains(&format!("receipt:{id}")));
    }
}

/// What only the PostgreSQL store promises: several nodes share its database.
mod postgres_only {
    use super::*;

    /// Waits for a wake-up, at most `secs` (a deadline for an event, not a speed check).
    async fn woken(wake: &tokio::sync::Notify, secs: u64) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(secs), wake.notified())
            .await
            .is_ok()
    }

    /// LISTEN/NOTIFY: a job made claimable by another node (a new due job, a released claim)
    /// wakes this node's idle workers; a job written already claimed, or another schema's job,
    /// does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_made_claimable_on_one_node_wakes_the_other() {
        let Some((url, _guard)) = pg_schema::fresh_schema("contract").await else {
            return;
        };
        let Some((other_url, _other_guard)) = pg_schema::fresh_schema("contract").await else {
            return;
        };
        let a = PgStore::connect(&url).await.unwrap();
        let b = PgStore::connect(&url).await.unwrap();
        let elsewhere = PgStore::connect(&other_url).await.unwrap();
        let wake = a.job_wakeups().expect("PostgreSQL signals");
        // The listener wakes once when it starts listening (it may have missed something).
        assert!(woken(&wake, 10).await, "the listener never started");
        // Another schema's job, then a claimed one: neither wakes this node.
        elsewhere
            .ensure_jobs(&[NewJob::receipt_timeout(9, T0)], T0)
            .await
            .unwrap();
        let (t, app) = tenant_with_app(&b, "wake", None).await;
        created(
            b.create_send(&send(t, &app, "966512345678", "w1", None, T0))
                .await
                .unwrap(),
        );
        assert!(
            !woken(&wake, 2).await,
            "woken by a claimed job or another schema"
        );
        // A due job written by the other node wakes it.
        b.ensure_jobs(&[NewJob::receipt_timeout(1, T0)], T0)
            .await
            .unwrap();
        assert!(woken(&wake, 10).await, "not woken by the other node's job");
        // So does a claim the other node releases.
        let held = b.claim_jobs("b", T0, T0 + 60_000, 10).await.unwrap();
        assert!(!held.is_empty());
        assert!(!woken(&wake, 1).await, "a claim is not a wake-up");
        assert!(b.release_claims("b").await.unwrap() >= 1);
        assert!(woken(&wake, 10).await, "not woken by a released claim");
    }

    /// A starting node frees only lapsed claims: the ones a running node holds stay its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recover_claims_keeps_live_claims_of_other_nodes() {
        let Some(opened) = open_postgres().await else {
            return;
        };
        let s = &*opened.store;
        s.ensure_jobs(
            &[
                NewJob::receipt_timeout(1, T0),
                NewJob::receipt_timeout(2, T0),
            ],
            T0,
        )
        .await
        .unwrap();
        let dead = s.claim_jobs("dead", T0, T0 + 10_000, 1).await.unwrap();
        let live = s.claim_jobs("live", T0, T0 + 60_000, 1).await.unwrap();
        assert_eq!((dead.len(), live.len()), (1, 1));
        assert_eq!(s.recover_claims(T0 + 20_000).await.unwrap(), 1);
        let jobs = s.list_jobs(10).await.unwrap();
        let held: Vec<_> = jobs.iter().filter_map(|j| j.owner.as_deref()).collect();
        assert_eq!(held, ["live"]);
        // The live claim still holds.
        assert!(
            s.finish_job(&JobOutcome {
                outbox: None,
                job: live[0].claim(),
                now_ms: T0 + 20_000,
                attempt: None,
                follow_ups: vec![],
                next: JobNext::Delete,
            })
            .await
            .unwrap()
        );
    }
}
