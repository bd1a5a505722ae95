//! Routes: which provider carries a channel, with its sender, prices and receipt timeout.
//!
//! A route carries some channels to some destinations (countries and/or E.164 prefixes).
//! For an attempt, the routes that carry its channel to its number are ranked: routes whose
//! circuit is closed before open ones, routes that are up (e.g. bound) before ones that are
//! down, then by `priority` (lower first), then in configuration order. A retryable failure
//! moves the attempt to the next route; a flow node with `channelCut` 0 moves to another route
//! than the previous attempt on its channel used, when there is one; `channelCut` 1 keeps it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Provider;
use crate::clock::SharedClock;
use crate::domain::Channel;
use crate::domain::mcc::mcc_for_region;
use crate::domain::phone::PhoneNumber;
use crate::domain::validate::parse_price;

/// `[[routes]]`: one upstream route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique; shown in records, logs and metrics, and part of the hook URL.
    pub name: String,
    /// `smpp`, `kannel`, `twilio`, `twilio-voice`, `vonage` or `console`.
    pub provider: String,
    /// Channels this route carries (`sms`, `call`); default: every channel its provider can.
    pub channels: Option<Vec<String>>,
    /// ISO 3166 countries this route serves (e.g. `["NL", "BE"]`); empty: every country.
    #[serde(default)]
    pub countries: Vec<String>,
    /// E.164 prefixes this route serves (e.g. `["3161", "3162"]`); empty: every number.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Lower goes first (default 100); equal priorities keep configuration order.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// Sender id when the template names none.
    pub sender: Option<String>,
    /// Receipt timeout of this route, seconds (default `delivery.receipt_timeout_secs`).
    pub receipt_timeout_secs: Option<i64>,
    /// Throughput cap, messages per second.
    pub max_per_second: Option<f64>,
    /// Most submits waiting for the upstream's answer at once (the SMPP window).
    pub window: Option<usize>,
    /// Price of one SMS segment by destination: keys `default`, ISO countries (`NL`) or E.164
    /// prefixes (`3161`); the longest matching prefix wins, then the country, then `default`.
    #[serde(default)]
    pub sms_price: BTreeMap<String, String>,
    /// Price of one started call billing block, keyed as `sms_price`.
    #[serde(default)]
    pub call_price: BTreeMap<String, String>,
    /// Call billing increments, e.g. `20+20` (default `60+60`).
    pub bill_period: Option<String>,
    /// Consecutive failures that open the route's circuit (default 5).
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit keeps the route out of use, seconds (default 30).
    #[serde(default = "default_circuit_cooldown")]
    pub circuit_cooldown_secs: u64,
    pub smpp: Option<super::smpp::SmppConfig>,
    pub kannel: Option<super::kannel::KannelConfig>,
    pub twilio: Option<super::twilio::TwilioConfig>,
    pub vonage: Option<super::vonage::VonageConfig>,
}

/// The provider kinds a route can name, with the channels each can carry.
pub const PROVIDER_KINDS: &[(&str, &[Channel])] = &[
    ("smpp", &[Channel::Sms]),
    ("kannel", &[Channel::Sms]),
    ("twilio", &[Channel::Sms]),
    ("twilio-voice", &[Channel::Call]),
    ("vonage", &[Channel::Sms]),
    ("console", &[Channel::Sms, Channel::Call]),
];

impl RouteConfig {
    /// The channels the route carries: the configured ones, else all its provider can.
    pub fn channel_list(&self) -> Vec<Channel> {
        match &self.channels {
            Some(list) => list.iter().filter_map(|c| Channel::parse(c)).collect(),
            None => PROVIDER_KINDS
                .iter()
                .find(|(k, _)| *k == self.provider)
                .map(|(_, c)| c.to_vec())
                .unwrap_or_default(),
        }
    }

    /// Everything wrong with this route, each problem naming `routes.<name>.<field>`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let at = format!("routes.{}", self.name);
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.push(format!(
                "routes: name {:?} must be 1-64 letters, digits, '-' or '_' (it is part of the hook URL)",
                self.name
            ));
        }
        let Some((_, can)) = PROVIDER_KINDS.iter().find(|(k, _)| *k == self.provider) else {
            let kinds: Vec<&str> = PROVIDER_KINDS.iter().map(|(k, _)| *k).collect();
            p.push(format!(
                "{at}.provider = {:?} is not one of {}",
                self.provider,
                kinds.join(", ")
            ));
            return p;
        };
        match &self.channels {
            Some(list) if list.is_empty() => p.push(format!("{at}.channels is empty")),
            Some(list) => {
                for c in list {
                    match Channel::parse(c) {
                        Some(ch) if can.contains(&ch) => {}
                        Some(_) => p.push(format!(
                            "{at}.channels: a {} route cannot carry {c}",
                            self.provider
                        )),
                        None => {
                            p.push(format!("{at}.channels: {c:?} is not a channel (sms, call)"))
                        }
                    }
                }
            }
            None => {}
        }
        for c in &self.countries {
            if !is_country(c) {
                p.push(format!(
                    "{at}.countries: {c:?} is not an ISO 3166 country code in upper case (e.g. NL)"
                ));
            }
        }
        for x in &self.prefixes {
            if !is_prefix(x) {
                p.push(format!(
                    "{at}.prefixes: {x:?} is not an E.164 prefix (1-15 digits, country code first, e.g. 3161)"
                ));
            }
        }
        if let Some(s) = &self.sender
            && !crate::domain::validate::is_valid_sender_id(s)
        {
            p.push(format!(
                "{at}.sender = {s:?} is not a sender id (up to 11 letters/digits, or up to 15 digits)"
            ));
        }
        if let Some(t) = self.receipt_timeout_secs
            && !(1..=7 * 86_400).contains(&t)
        {
            p.push(format!("{at}.receipt_timeout_secs = {t} must be 1-604800"));
        }
        if let Some(r) = self.max_per_second
            && !(r > 0.0 && r <= 100_000.0)
        {
            p.push(format!(
                "{at}.max_per_second = {r} must be above 0 and at most 100000"
            ));
        }
        if let Some(w) = self.window
            && !(1..=10_000).contains(&w)
        {
            p.push(format!("{at}.window = {w} must be 1-10000"));
        }
        if let Err(e) = PriceTable::parse(&format!("{at}.sms_price"), &self.sms_price) {
            p.extend(e);
        }
        if let Err(e) = PriceTable::parse(&format!("{at}.call_price"), &self.call_price) {
            p.extend(e);
        }
        if let Some(b) = &self.bill_period
            && crate::domain::validate::parse_bill_period(b).is_none()
        {
            p.push(format!(
                "{at}.bill_period = {b:?} is not two positive whole seconds like 20+20"
            ));
        }
        if self.circuit_failures == 0 || self.circuit_failures > 1000 {
            p.push(format!("{at}.circuit_failures must be 1-1000"));
        }
        if !(1..=3600).contains(&self.circuit_cooldown_secs) {
            p.push(format!("{at}.circuit_cooldown_secs must be 1-3600"));
        }
        // Exactly the section of its provider.
        let sections = [
            ("smpp", self.smpp.is_some()),
            ("kannel", self.kannel.is_some()),
            ("twilio", self.twilio.is_some()),
            ("vonage", self.vonage.is_some()),
        ];
        let wanted = match self.provider.as_str() {
            "twilio-voice" => Some("twilio"),
            "console" => None,
            k => Some(k),
        };
        for (section, present) in sections {
            if Some(section) == wanted && !present {
                p.push(format!(
                    "{at}: provider {} needs a [routes.{section}] section (see README, Routes)",
                    self.provider
                ));
            } else if Some(section) != wanted && present {
                p.push(format!(
                    "{at}: a [routes.{section}] section does not belong to a {} route",
                    self.provider
                ));
            }
        }
        if let Some(c) = &self.smpp {
            p.extend(c.problems(&self.name));
        }
        if let Some(c) = &self.kannel {
            p.extend(c.problems(&self.name));
        }
        if let Some(c) = &self.twilio {
            p.extend(c.problems(&self.name));
        }
        if let Some(c) = &self.vonage {
            p.extend(c.problems(&self.name));
        }
        p
    }
}

/// Problems of the whole route list: each route's, and names used twice.
pub fn routes_problems(routes: &[RouteConfig]) -> Vec<String> {
    let mut p: Vec<String> = routes.iter().flat_map(|r| r.problems()).collect();
    let mut seen = std::collections::HashSet::new();
    for r in routes {
        if !seen.insert(r.name.as_str()) || r.name == "console" && r.provider != "console" {
            p.push(format!(
                "routes: the name {:?} is used twice (the console provider's route is called console)",
                r.name
            ));
        }
    }
    p
}

impl Route {
    /// The route a validated `[[routes]]` entry describes, carried by `provider`.
    pub fn from_config(
        cfg: &RouteConfig,
        provider: Arc<dyn Provider>,
        default_receipt_timeout_ms: i64,
    ) -> Self {
        Self {
            name: cfg.name.clone(),
            provider,
            channels: cfg.channel_list(),
            destinations: Destinations {
                countries: cfg.countries.clone(),
                prefixes: cfg.prefixes.clone(),
            },
            priority: cfg.priority,
            default_sender: cfg.sender.clone(),
            sms_price: PriceTable::parse("sms_price", &cfg.sms_price).unwrap_or_default(),
            call_price: PriceTable::parse("call_price", &cfg.call_price).unwrap_or_default(),
            bill_period: cfg
                .bill_period
                .as_deref()
                .and_then(crate::domain::validate::parse_bill_period)
                .unwrap_or((60, 60)),
            receipt_timeout_ms: cfg
                .receipt_timeout_secs
                .map_or(default_receipt_timeout_ms, |s| s * 1000),
            gate: Gate::new(cfg.max_per_second, cfg.window),
            health: Health::new(cfg.circuit_failures, cfg.circuit_cooldown_secs),
        }
    }
}

const DEFAULT_PRIORITY: i64 = 100;
const DEFAULT_CIRCUIT_FAILURES: u32 = 5;
const DEFAULT_CIRCUIT_COOLDOWN: u64 = 30;

fn default_priority() -> i64 {
    DEFAULT_PRIORITY
}
fn default_circuit_failures() -> u32 {
    DEFAULT_CIRCUIT_FAILURES
}
fn default_circuit_cooldown() -> u64 {
    DEFAULT_CIRCUIT_COOLDOWN
}

/// Prices by destination, in micros of the configured currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable {
    default: i64,
    countries: HashMap<String, i64>,
    /// Longest first.
    prefixes: Vec<(String, i64)>,
}

impl PriceTable {
    /// One price for every destination.
    pub fn flat(micros: i64) -> Self {
        Self {
            default: micros,
            ..Self::default()
        }
    }

    /// Reads a `{default = "0.05", NL = "0.07", "3161" = "0.08"}` table; every problem names
    /// `field` and the key.
    pub fn parse(field: &str, table: &BTreeMap<String, String>) -> Result<Self, Vec<String>> {
        let mut t = Self::default();
        let mut problems = Vec::new();
        for (key, value) in table {
            let Some(micros) = parse_price(value) else {
                problems.push(format!(
                    "{field}.{key} = {value:?} is not a price (a decimal with at most 6 places)"
                ));
                continue;
            };
            if key == "default" {
                t.default = micros;
            } else if is_country(key) {
                t.countries.insert(key.clone(), micros);
            } else if is_prefix(key) {
                t.prefixes.push((key.clone(), micros));
            } else {
                problems.push(format!(
                    "{field}: key {key:?} is neither `default`, an ISO country (NL) nor an E.164 prefix (3161)"
                ));
            }
        }
        t.prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(problems)
        }
    }

    /// The price for a number: the longest matching prefix, else its country, else the
    /// default.
    pub fn price(&self, phone: &PhoneNumber) -> i64 {
        let digits = phone.digits();
        self.prefixes
            .iter()
            .find(|(p, _)| digits.starts_with(p.as_str()))
            .map(|(_, m)| *m)
            .or_else(|| phone.region().and_then(|r| self.countries.get(r).copied()))
            .unwrap_or(self.default)
    }
}

fn is_country(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) && mcc_for_region(s).is_some()
}

fn is_prefix(s: &str) -> bool {
    (1..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0')
}

/// Which destinations a route serves: any listed country or any listed prefix; with neither
/// listed, every number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    pub countries: Vec<String>,
    pub prefixes: Vec<String>,
}

impl Destinations {
    pub fn matches(&self, phone: &PhoneNumber) -> bool {
        if self.countries.is_empty() && self.prefixes.is_empty() {
            return true;
        }
        phone
            .region()
            .is_some_and(|r| self.countries.iter().any(|c| c == r))
            || self
                .prefixes
                .iter()
                .any(|p| phone.digits().starts_with(p.as_str()))
    }
}

/// A route's throughput cap and in-flight window, shared by every submit through it.
#[derive(Debug, Default)]
pub struct Gate {
    /// Seconds between two submits at the cap.
    interval: Option<Duration>,
    next_slot: Mutex<Option<tokio::time::Instant>>,
    window: Option<Arc<Semaphore>>,
}

/// Held while a submit is in flight (it keeps the window slot).
pub struct GatePass {
    _window: Option<OwnedSemaphorePermit>,
}

impl Gate {
    pub fn new(max_per_second: Option<f64>, window: Option<usize>) -> Self {
        Self {
            interval: max_per_second
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next_slot: Mutex::new(None),
            window: window.map(|w| Arc::new(Semaphore::new(w.max(1)))),
        }
    }

    /// Waits for a window slot, then for the next free moment under the cap. Callers bound
    /// the wait with the submit timeout.
    pub async fn enter(&self) -> GatePass {
        let permit = match &self.window {
            Some(w) => w.clone().acquire_owned().await.ok(),
            None => None,
        };
        if let Some(interval) = self.interval {
            let slot = {
                let now = tokio::time::Instant::now();
                let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
                let slot = next.map_or(now, |n| n.max(now));
                *next = Some(slot + interval);
                slot
            };
            tokio::time::sleep_until(slot).await;
        }
        GatePass { _window: permit }
    }
}

/// A circuit breaker: `threshold` failures in a row keep the route out of use for
/// `cooldown_ms`; then it is tried again (one more failure opens it again at once), and a
/// success closes it.
#[derive(Debug)]
pub struct Health {
    threshold: u32,
    cooldown_ms: i64,
    failures: AtomicU32,
    open_until_ms: AtomicI64,
}

impl Health {
    pub fn new(threshold: u32, cooldown_secs: u64) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown_ms: cooldown_secs as i64 * 1000,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicI64::new(0),
        }
    }

    pub fn is_open(&self, now_ms: i64) -> bool {
        self.open_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Records a submit's outcome; returns true when this failure opened the circuit.
    pub fn record(&self, ok: bool, now_ms: i64) -> bool {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            self.open_until_ms.store(0, Ordering::Relaxed);
            return false;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold && !self.is_open(now_ms) {
            self.open_until_ms
                .store(now_ms + self.cooldown_ms, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }
}

pub struct Route {
    pub name: String,
    pub provider: Arc<dyn Provider>,
    /// Channels this route carries.
    pub channels: Vec<Channel>,
    pub destinations: Destinations,
    /// Lower goes first.
    pub priority: i64,
    /// Sender id when the template names none.
    pub default_sender: Option<String>,
    pub sms_price: PriceTable,
    pub call_price: PriceTable,
    /// Call billing increments (first block, further blocks), seconds.
    pub bill_period: (u32, u32),
    /// How long an accepted message may wait for its receipt before it counts as failed.
    pub receipt_timeout_ms: i64,
    pub gate: Gate,
    pub health: Health,
}

impl Route {
    /// A route for every channel the provider carries and every destination, with flat
    /// prices, no cap, no window, and the default circuit.
    pub fn simple(name: impl Into<String>, provider: Arc<dyn Provider>) -> Self {
        let channels = Channel::ALL
            .into_iter()
            .filter(|c| provider.supports(*c))
            .collect();
        Self {
            name: name.into(),
            provider,
            channels,
            destinations: Destinations::default(),
            priority: DEFAULT_PRIORITY,
            default_sender: None,
            sms_price: PriceTable::default(),
            call_price: PriceTable::default(),
            bill_period: (60, 60),
            receipt_timeout_ms: 600_000,
            gate: Gate::default(),
            health: Health::new(DEFAULT_CIRCUIT_FAILURES, DEFAULT_CIRCUIT_COOLDOWN),
        }
    }

    pub fn carries(&self, channel: Channel, phone: &PhoneNumber) -> bool {
        self.channels.contains(&channel) && self.destinations.matches(phone)
    }
}

/// Which route a flow node wants, relative to the route the previous attempt on its channel
/// used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteChoice<'a> {
    /// The best route that carries the channel to the number.
    First,
    /// Another route than this one, if there is one (`channelCut` 0, or failover).
    Other(&'a str),
    /// This route, if it still carries the channel (`channelCut` 1).
    Same(&'a str),
}

pub struct Routing {
    routes: Vec<Route>,
    clock: SharedClock,
}

impl Routing {
    pub fn new(routes: Vec<Route>, clock: SharedClock) -> Self {
        Self { routes, clock }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// The routes that carry `channel` to `phone`, best first: closed circuits before open
    /// ones, bound routes before ones that are down, then by priority, then in configuration
    /// order.
    pub fn candidates(&self, channel: Channel, phone: &PhoneNumber) -> Vec<(usize, &Route)> {
        let now = self.now_ms();
        let mut c: Vec<(usize, &Route)> = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.carries(channel, phone))
            .collect();
        c.sort_by_key(|(i, r)| (r.health.is_open(now), !r.provider.is_up(), r.priority, *i));
        c
    }

    /// The route for a channel and number as `choice` asks, else the best that carries it.
    pub fn choose(
        &self,
        channel: Channel,
        phone: &PhoneNumber,
        choice: RouteChoice<'_>,
    ) -> Option<(usize, &Route)> {
        let candidates = self.candidates(channel, phone);
        let wanted = match choice {
            RouteChoice::First => None,
            RouteChoice::Other(prev) => candidates.iter().find(|(_, r)| r.name != prev),
            RouteChoice::Same(prev) => candidates.iter().find(|(_, r)| r.name == prev),
        };
        wanted.or(candidates.first()).copied()
    }

    /// Another route than `current` for a retry, only if a better-or-equal one exists: not
    /// the same route, and not one whose circuit is open.
    pub fn failover(
        &self,
        channel: Channel,
        phone: &PhoneNumber,
        current: &str,
    ) -> Option<(usize, &Route)> {
        let now = self.now_ms();
        self.candidates(channel, phone)
            .into_iter()
            .find(|(_, r)| r.name != current && !r.health.is_open(now))
    }

    /// Records a submit's outcome on a route's circuit.
    pub fn record(&self, index: usize, ok: bool) {
        let now = self.now_ms();
        if let Some(r) = self.routes.get(index)
            && r.health.record(ok, now)
        {
            tracing::warn!(
                route.name = %r.name,
                circuit.failures = r.health.consecutive_failures(),
                circuit.cooldown_ms = r.health.cooldown_ms,
                "route circuit opened: the route is used only when no other can take the message"
            );
        }
    }

    /// `(name, up, circuit open)` of every route.
    pub fn status(&self) -> Vec<(String, bool, bool)> {
        let now = self.now_ms();
        self.routes
            .iter()
            .map(|r| (r.name.clone(), r.provider.is_up(), r.health.is_open(now)))
            .collect()
    }

    /// A route by name, with its index.
    pub fn by_name(&self, name: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, r)| r.name == name)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use crate::providers::memory::MemoryProvider;

    fn route(name: &str) -> Route {
        Route::simple(
            name,
            Arc::new(MemoryProvider::named(name, Arc::new(SystemClock))),
        )
    }

    fn phone(digits: &str) -> PhoneNumber {
        PhoneNumber::parse_international(digits).unwrap()
    }

    fn routing(routes: Vec<Route>) -> (Routing, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::starting_now());
        (Routing::new(routes, clock.clone()), clock)
    }

    const NL: &str = "31612345678";
    const BE: &str = "32470123456";

    #[test]
    fn channel_cut_moves_or_keeps_the_route() {
        let (r, _) = routing(vec![route("a"), route("b")]);
        let p = phone(NL);
        let name = |c| r.choose(Channel::Sms, &p, c).map(|(_, r)| r.name.clone());
        assert_eq!(name(RouteChoice::First).as_deref(), Some("a"));
        assert_eq!(name(RouteChoice::Other("a")).as_deref(), Some("b"));
        assert_eq!(name(RouteChoice::Other("b")).as_deref(), Some("a"));
        assert_eq!(name(RouteChoice::Same("b")).as_deref(), Some("b"));
        // A route that is gone: the best one.
        assert_eq!(name(RouteChoice::Same("gone")).as_deref(), Some("a"));
        assert!(r.choose(Channel::Sna, &p, RouteChoice::First).is_none());
    }

    #[test]
    fn one_route_is_used_even_when_another_is_asked_for() {
        let (r, _) = routing(vec![route("only")]);
        let (_, chosen) = r
            .choose(Channel::Call, &phone(NL), RouteChoice::Other("only"))
            .unwrap();
        assert_eq!(chosen.name, "only");
    }

    #[test]
    fn destinations_and_priority_pick_the_route() {
        let mut nl = route("nl");
        nl.destinations.countries = vec!["NL".into()];
        nl.priority = 50;
        let mut be_mobile = route("be-mobile");
        be_mobile.destinations.prefixes = vec!["32470".into()];
        let mut cheap = route("cheap");
        cheap.priority = 10;
        cheap.destinations.countries = vec!["DE".into()];
        let catch_all = route("any");
        let (r, _) = routing(vec![catch_all, nl, be_mobile, cheap]);
        let best = |d: &str| {
            r.choose(Channel::Sms, &phone(d), RouteChoice::First)
                .map(|(_, r)| r.name.clone())
                .unwrap()
        };
        assert_eq!(best(NL), "nl");
        // Equal priority: configuration order.
        assert_eq!(best(BE), "any");
        assert_eq!(best("4915112345678"), "cheap");
        let be: Vec<_> = r
            .candidates(Channel::Sms, &phone(BE))
            .into_iter()
            .map(|(_, r)| r.name.clone())
            .collect();
        assert_eq!(be, ["any", "be-mobile"]);
    }

    #[test]
    fn an_open_circuit_sends_traffic_elsewhere_until_it_cools_down() {
        let mut a = route("a");
        a.health = Health::new(3, 30);
        let (r, clock) = routing(vec![a, route("b")]);
        let p = phone(NL);
        let best = || {
            r.choose(Channel::Sms, &p, RouteChoice::First)
                .unwrap()
                .1
                .name
                .clone()
        };
        r.record(0, false);
        r.record(0, false);
        assert_eq!(best(), "a");
        r.record(0, false);
        assert!(r.status()[0].2);
        assert_eq!(best(), "b");
        assert_eq!(
            r.failover(Channel::Sms, &p, "b")
                .map(|(_, r)| r.name.clone()),
            None
        );
        clock.advance(chrono::Duration::seconds(31));
        assert_eq!(best(), "a", "half-open after the cool-down");
        r.record(0, false);
        assert!(r.status()[0].2, "one more failure opens it again");
        clock.advance(chrono::Duration::seconds(31));
        r.record(0, true);
        r.record(0, false);
        assert!(!r.status()[0].2, "a success closed it");
    }

    #[test]
    fn prices_by_prefix_then_country_then_default() {
        let table: BTreeMap<String, String> = [
            ("default", "0.05"),
            ("NL", "0.07"),
            ("3161", "0.08"),
            ("31612", "0.09"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let t = PriceTable::parse("sms_price", &table).unwrap();
        assert_eq!(t.price(&phone(NL)), 90_000);
        assert_eq!(t.price(&phone("31201234567")), 70_000);
        assert_eq!(t.price(&phone(BE)), 50_000);
        let bad: BTreeMap<String, String> = [("XX", "0.1"), ("NL", "abc")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let problems = PriceTable::parse("routes.a.sms_price", &bad).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.starts_with("routes.a.sms_price")));
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_spaces_submits_under_the_cap() {
        let gate = Gate::new(Some(10.0), None);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            let _pass = gate.enter().await;
        }
        let elapsed = start.elapsed();
        assert_eq!(elapsed, Duration::from_millis(400));
    }

    #[tokio::test]
    async fn the_window_bounds_submits_in_flight() {
        let gate = Arc::new(Gate::new(None, Some(2)));
        let a = gate.enter().await;
        let _b = gate.enter().await;
        assert_eq!(gate.window.as_ref().map(|w| w.available_permits()), Some(0));
        let g = gate.clone();
        let third = tokio::spawn(async move {
            let _c = g.enter().await;
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(a);
        third.await.unwrap();
    }

    #[test]
    fn route_configuration_is_explained() {
        let cfg: RouteConfig = serde_json::from_value(serde_json::json!({
            "name": "bad name",
            "provider": "kannel",
            "channels": ["call"],
            "countries": ["Netherlands"],
            "prefixes": ["+31"],
            "max_per_second": 0.0,
            "window": 0,
            "bill_period": "20",
        }))
        .unwrap();
        let p = cfg.problems();
        for needle in [
            "name \"bad name\"",
            "cannot carry call",
            "countries",
            "prefixes",
            "max_per_second",
            "window",
            "bill_period",
            "needs a [routes.kannel] section",
        ] {
            assert!(p.iter().any(|x| x.contains(needle)), "{needle}: {p:?}");
        }
        let unknown: RouteConfig =
            serde_json::from_value(serde_json::json!({"name": "x", "provider": "carrier-pigeon"}))
                .unwrap();
        assert!(unknown.problems()[0].contains("not one of smpp, kannel"));
    }
}
