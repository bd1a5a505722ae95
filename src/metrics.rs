//! Prometheus metrics, rendered at `/metrics`.
//!
//! Each server owns its recorder (nothing global), so servers in one process (the tests) keep
//! separate counts. Queue gauges are read from the store when scraped: the queue lives in the
//! database, shared by every node.

use metrics::{Recorder, counter, gauge, histogram, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::store::JobStats;

/// Seconds: from a millisecond to two minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let m = Self { recorder, handle };
        m.describe();
        m
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        with_local_recorder(&self.recorder as &dyn Recorder, f)
    }

    fn describe(&self) {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        self.with(|| {
            describe_counter!("otpgate_sends_total", "Sends accepted, by kind (send, sendRule, resend).");
            describe_counter!(
                "otpgate_attempts_total",
                "Attempt state changes, by channel and gateway state (pending, sending, success, fail, unknown)."
            );
            describe_counter!(
                "otpgate_receipts_total",
                "Delivery reports recorded, by channel and state (success, fail)."
            );
            describe_counter!("otpgate_verify_total", "Verify calls, by outcome.");
            describe_counter!(
                "otpgate_flow_steps_total",
                "Flow nodes that came due, by what they did (sent, or why the flow ended)."
            );
            describe_counter!("otpgate_jobs_total", "Jobs run, by kind and result.");
            describe_gauge!(
                "otpgate_jobs_queued",
                "Jobs in the queue, claimed or not, due or not, with the deliveries in flight."
            );
            describe_gauge!(
                "otpgate_deliveries_in_flight",
                "Attempts being handed to their routes now, their deliver jobs held on the attempts."
            );
            describe_gauge!("otpgate_jobs_due", "Jobs whose time has come and that no worker holds.");
            describe_gauge!(
                "otpgate_jobs_oldest_due_lag_seconds",
                "How long the oldest due job has waited past its due time."
            );
            describe_histogram!(
                "otpgate_job_lag_seconds",
                "From a job's due time to a worker starting it, by kind."
            );
            describe_counter!(
                "otpgate_hooks_total",
                "Upstream callbacks to /hooks, by route and outcome (ok, forbidden, bad_request, unknown_route, no_hook, unavailable)."
            );
            describe_gauge!("otpgate_route_up", "1 when the route is up (e.g. its SMPP bind is established).");
            describe_gauge!(
                "otpgate_route_circuit_open",
                "1 while the route's circuit is open after repeated failures."
            );
            describe_histogram!(
                "otpgate_provider_submit_seconds",
                "Time a route takes to answer a submit, by route and result."
            );
        });
    }

    pub fn send(&self, kind: &'static str) {
        self.with(|| counter!("otpgate_sends_total", "kind" => kind).increment(1));
    }

    pub fn attempt(&self, channel: &str, state: &'static str) {
        let channel = channel.to_string();
        self.with(|| {
            counter!("otpgate_attempts_total", "channel" => channel, "state" => state).increment(1)
        });
    }

    pub fn receipt(&self, channel: &str, state: &'static str) {
        let channel = channel.to_string();
        self.with(|| {
            counter!("otpgate_receipts_total", "channel" => channel, "state" => state).increment(1)
        });
    }

    pub fn verify(&self, outcome: &'static str) {
        self.with(|| counter!("otpgate_verify_total", "outcome" => outcome).increment(1));
    }

    pub fn flow_step(&self, result: &'static str) {
        self.with(|| counter!("otpgate_flow_steps_total", "result" => result).increment(1));
    }

    pub fn job(&self, kind: &str, result: &'static str, lag_secs: f64) {
        let kind = kind.to_string();
        self.with(|| {
            counter!("otpgate_jobs_total", "kind" => kind.clone(), "result" => result).increment(1);
            histogram!("otpgate_job_lag_seconds", "kind" => kind).record(lag_secs.max(0.0));
        });
    }

    pub fn submit(&self, route: &str, ok: bool, secs: f64) {
        let route = route.to_string();
        let result = if ok { "ok" } else { "error" };
        self.with(|| {
            histogram!("otpgate_provider_submit_seconds", "route" => route, "result" => result)
                .record(secs)
        });
    }

    pub fn hook(&self, route: &str, outcome: &'static str) {
        let route = route.to_string();
        self.with(|| {
            counter!("otpgate_hooks_total", "route" => route, "outcome" => outcome).increment(1)
        });
    }

    /// The exposition text, with the queue gauges set from `stats` and the route gauges from
    /// `routes` (`(name, up, circuit open)`) first.
    pub fn render(&self, stats: JobStats, now_ms: i64, routes: &[(String, bool, bool)]) -> String {
        self.with(|| {
            for (name, up, open) in routes {
                gauge!("otpgate_route_up", "route" => name.clone()).set(f64::from(u8::from(*up)));
                gauge!("otpgate_route_circuit_open", "route" => name.clone())
                    .set(f64::from(u8::from(*open)));
            }
            gauge!("otpgate_jobs_queued").set(stats.total as f64);
            gauge!("otpgate_jobs_due").set(stats.due as f64);
            gauge!("otpgate_deliveries_in_flight").set(stats.in_flight as f64);
            let lag = stats
                .oldest_due_ms
                .map_or(0.0, |due| (now_ms - due).max(0) as f64 / 1000.0);
            gauge!("otpgate_jobs_oldest_due_lag_seconds").set(lag);
        });
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_per_instance_and_rendered() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.send("send");
        a.send("send");
        a.submit("console", true, 0.003);
        let text = a.render(
            JobStats {
                total: 3,
                due: 1,
                oldest_due_ms: Some(1_000),
                in_flight: 2,
            },
            3_500,
            &[("smpp-a".to_string(), false, true)],
        );
        assert!(
            text.contains("otpgate_route_up{route=\"smpp-a\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("otpgate_route_circuit_open{route=\"smpp-a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("otpgate_sends_total{kind=\"send\"} 2"),
            "{text}"
        );
        assert!(text.contains("otpgate_jobs_queued 3"), "{text}");
        assert!(text.contains("otpgate_deliveries_in_flight 2"), "{text}");
        assert!(
            text.contains("otpgate_jobs_oldest_due_lag_seconds 2.5"),
            "{text}"
        );
        assert!(
            text.contains("otpgate_provider_submit_seconds_bucket"),
            "{text}"
        );
        let other = b.render(JobStats::default(), 0, &[]);
        assert!(!other.contains("otpgate_sends_total{"), "{other}");
    }
}
