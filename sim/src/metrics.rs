//! The simulator's own Prometheus metrics (a private registry, served at `/metrics`).

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub(crate) struct SimMetrics {
    registry: Registry,
    pub calls_created: IntCounter,
    pub calls_ended: IntCounterVec,
    pub calls_active: IntGauge,
    pub rest_requests: IntCounterVec,
    pub callbacks_sent: IntCounter,
    pub callbacks_failed: IntCounter,
    pub callbacks_lost: IntCounter,
    pub webhooks_sent: IntCounter,
    pub webhooks_failed: IntCounter,
    pub queue_time: Histogram,
    pub messages_created: IntCounter,
    pub messages_ended: IntCounterVec,
    pub messages_received: IntCounter,
    pub inbound_calls: IntCounter,
}

impl SimMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let calls_created = IntCounter::new("sim_calls_created_total", "Calls created through the REST API")?;
        let calls_ended = IntCounterVec::new(
            Opts::new("sim_calls_ended_total", "Calls that reached a terminal status"),
            &["status"],
        )?;
        let calls_active = IntGauge::new("sim_calls_active", "Calls out of the queue and not yet ended")?;
        let rest_requests = IntCounterVec::new(
            Opts::new("sim_rest_requests_total", "REST API requests by operation and HTTP status"),
            &["operation", "code"],
        )?;
        let callbacks_sent = IntCounter::new(
            "sim_callbacks_sent_total",
            "StatusCallback and AMD callback requests sent (incl. retries)",
        )?;
        let callbacks_failed = IntCounter::new(
            "sim_callbacks_failed_total",
            "StatusCallback and AMD callback requests that failed (error or non-2xx)",
        )?;
        let callbacks_lost = IntCounter::new("sim_callbacks_lost_total", "StatusCallbacks dropped by fault injection")?;
        let webhooks_sent =
            IntCounter::new("sim_webhooks_sent_total", "TwiML requests sent (Url, Gather, Redirect...)")?;
        let webhooks_failed = IntCounter::new("sim_webhooks_failed_total", "TwiML requests that failed")?;
        let queue_time = Histogram::with_opts(
            HistogramOpts::new("sim_queue_time_seconds", "Time calls waited in the CPS queue")
                .buckets(vec![0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )?;
        let messages_created = IntCounter::new("sim_messages_created_total", "Messages created through the REST API")?;
        let messages_ended = IntCounterVec::new(
            Opts::new("sim_messages_ended_total", "Outbound messages that reached a final status"),
            &["status"],
        )?;
        let messages_received =
            IntCounter::new("sim_messages_received_total", "Inbound messages posted to our numbers' SmsUrl")?;
        let inbound_calls = IntCounter::new("sim_inbound_calls_total", "Inbound calls to our numbers")?;
        registry.register(Box::new(messages_created.clone()))?;
        registry.register(Box::new(messages_ended.clone()))?;
        registry.register(Box::new(messages_received.clone()))?;
        registry.register(Box::new(inbound_calls.clone()))?;
        registry.register(Box::new(calls_created.clone()))?;
        registry.register(Box::new(calls_ended.clone()))?;
        registry.register(Box::new(calls_active.clone()))?;
        registry.register(Box::new(rest_requests.clone()))?;
        registry.register(Box::new(callbacks_sent.clone()))?;
        registry.register(Box::new(callbacks_failed.clone()))?;
        registry.register(Box::new(callbacks_lost.clone()))?;
        registry.register(Box::new(webhooks_sent.clone()))?;
        registry.register(Box::new(webhooks_failed.clone()))?;
        registry.register(Box::new(queue_time.clone()))?;
        Ok(Self {
            registry,
            calls_created,
            calls_ended,
            calls_active,
            rest_requests,
            callbacks_sent,
            callbacks_failed,
            callbacks_lost,
            webhooks_sent,
            webhooks_failed,
            queue_time,
            messages_created,
            messages_ended,
            messages_received,
            inbound_calls,
        })
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
