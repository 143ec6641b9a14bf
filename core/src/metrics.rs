//! Every Prometheus metric the dialer and the callbacks service export, in one registry.
//!
//! Both binaries share [`Metrics::global`] and serve [`Metrics::render`] on `/metrics`; the Grafana dashboard
//! and the alert rules in `dashboard/` refer to these names, and `core/tests/observability.rs` checks that
//! every name they use is exported here.
//!
//! **Label hygiene.** A `campaign` label carries the campaign id or name only — never a phone number, a
//! contact id, an attempt token or a call SID. Those are unbounded (a new time series per contact) and
//! personal data. The other labels take values from small closed sets, listed on each field.

use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Buckets for latencies in seconds: 1 ms .. 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets for waits that can grow past a few seconds (Twilio's queue, scheduler lag): 1 ms .. 5 min.
pub const WAIT_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Buckets for the number of contacts claimed in one batch: 1 .. 1000.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Buckets for webhook lag (event written → receiver acknowledged) in seconds: 10 ms .. 1 day, as retries
/// go on for a day.
pub const WEBHOOK_LAG_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0];

/// Buckets for an operator's conversation: 5 s .. 1 h.
pub const HANDLE_BUCKETS: &[f64] = &[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0];

/// The `outcome` values of `dialer_transfers_total`.
pub const TRANSFER_OUTCOMES: &[&str] = &["connected", "abandoned", "callback_requested", "no_operator"];

/// The `status` values of `dialer_operators`.
pub const OPERATOR_STATUSES: &[&str] = &["available", "away", "ringing", "busy"];

/// The `result` values of `dialer_webhook_deliveries_total`, exported from the start at 0.
pub const WEBHOOK_DELIVERY_RESULTS: &[&str] = &["delivered", "failed", "dead"];

/// The `route` values of `dialer_signature_rejections_total` (`callbacks::signature::route_label`), exported
/// from the start at 0 so the dashboard's rejection panels and the alert read 0, not "no data", in a healthy
/// run.
pub const SIGNATURE_ROUTES: &[&str] = &[
    "twiml",
    "gather",
    "status",
    "amd",
    "voice_inbound",
    "sms_status",
    "sms_inbound",
    "transfer",
    "operator",
    "other",
];

/// All metrics, registered in their own [`Registry`].
///
/// `campaign` labels are campaign ids or names only — never a phone number or a contact id.
pub struct Metrics {
    registry: Registry,

    /// `dialer_calls_created_total{campaign, result}`: Twilio call-create requests by result
    /// (`created` | `not_created` | `fate_unknown` | `rejected`).
    pub calls_created: IntCounterVec,
    /// `dialer_twilio_api_errors_total{code}`: failed Twilio REST requests by Twilio error code, or
    /// `transport` when no response came back.
    pub twilio_api_errors: IntCounterVec,
    /// `dialer_twilio_request_duration_seconds{operation}`: Twilio REST request latency by operation
    /// (`create` | `fetch` | `list` | `update`).
    pub twilio_request_duration: HistogramVec,
    /// `dialer_twilio_queue_time_seconds`: Twilio's reported `queue_time` of created calls.
    pub queue_time: Histogram,
    /// `dialer_calls_in_flight{campaign}`: calls created and not yet finished.
    pub calls_in_flight: IntGaugeVec,
    /// `dialer_claim_batch_size`: contacts claimed per scheduler claim.
    pub claim_batch_size: Histogram,
    /// `dialer_claim_duration_seconds`: time one claim query takes.
    pub claim_duration: Histogram,
    /// `dialer_scheduler_lag_seconds`: dial time minus the contact's `next_attempt_at`.
    pub scheduler_lag: Histogram,
    /// `dialer_callbacks_received_total{event}`: callbacks and TwiML requests received (`initiated` |
    /// `ringing` | `in-progress` | `completed` | `busy` | `no-answer` | `failed` | `canceled` | `amd` |
    /// `gather` | `twiml`), each counted once (duplicates are not counted here).
    pub callbacks_received: IntCounterVec,
    /// `dialer_callbacks_duplicate_total`: callbacks already seen (same call, same event).
    pub callbacks_duplicate: IntCounter,
    /// `dialer_claims_rescued_total`: claims whose lease expired before they were sent (their dialer died
    /// or held them too long); the contacts went back to pending.
    pub claims_rescued: IntCounter,
    /// `dialer_callbacks_out_of_order_total`: callbacks older than the state already recorded.
    pub callbacks_out_of_order: IntCounter,
    /// `dialer_signature_rejections_total{route}`: requests rejected with 403 (bad `X-Twilio-Signature` or
    /// token) by route.
    pub signature_rejections: IntCounterVec,
    /// `dialer_outcomes_total{campaign, outcome, answered_by}`: finished attempts by outcome and Twilio's
    /// `AnsweredBy` (empty when no answering machine detection ran).
    pub outcomes: IntCounterVec,
    /// `dialer_retries_scheduled_total{campaign, reason}`: retries scheduled, by the outcome that caused them.
    pub retries_scheduled: IntCounterVec,
    /// `dialer_contacts{campaign, state}`: contacts by state (`pending` | `claimed` | `calling` | `done` |
    /// `exhausted` | `invalid` | `blocked` | `canceled`).
    pub contacts: IntGaugeVec,
    /// `dialer_deferrals_total{campaign, reason}`: dials put off (`window` | `dnc` | `limit`).
    pub deferrals: IntCounterVec,
    /// `dialer_calls_by_zone_source_total{campaign, zone_source}`: calls requested, by where the callee's
    /// zone came from (`given` | `number` | `campaign`): `number` and `campaign` are calls on a derived zone.
    pub calls_by_zone_source: IntCounterVec,
    /// `dialer_keypress_results_total{campaign, result}`: keypad results collected by `<Gather>`.
    pub keypress_results: IntCounterVec,
    /// `dialer_inbound_calls_total{campaign, caller}`: calls to our caller IDs, by whether the caller is a
    /// contact (`contact`, campaign = the contact's) or not (`unknown`, campaign = the dialled number's
    /// newest campaign, or empty).
    pub inbound_calls: IntCounterVec,
    /// `dialer_sms_sent_total{campaign, result}`: SMS fallback sends by what came of the request
    /// (`accepted` | `rejected` | `unknown` | `skipped`).
    pub sms_sent: IntCounterVec,
    /// `dialer_sms_status_total{status}`: SMS delivery callbacks by `MessageStatus`, each stored once.
    pub sms_status: IntCounterVec,
    /// `dialer_sms_replies_total{kind}`: inbound texts by what they meant (`stop` | `code` | `other`).
    pub sms_replies: IntCounterVec,
    /// `dialer_transfer_requests_total{campaign}`: callees who pressed the operator key (entered the
    /// waiting room).
    pub transfer_requests: IntCounterVec,
    /// `dialer_transfers_total{campaign, outcome}`: how waiting-room stays ended (`connected` |
    /// `abandoned` | `callback_requested` | `no_operator`). `abandoned` over live-answered calls is the
    /// abandonment rate the 3 % alert watches.
    pub transfers: IntCounterVec,
    /// `dialer_transfer_wait_seconds{campaign}`: from the key press until an operator answered.
    pub transfer_wait: HistogramVec,
    /// `dialer_operator_handle_seconds`: from an operator answering until the conversation ended.
    pub operator_handle: Histogram,
    /// `dialer_operator_rings_total{result}`: operator rings by result (`answered` | `missed` | `failed`).
    pub operator_rings: IntCounterVec,
    /// `dialer_operators{status}`: operators by status (`available` | `away` | `ringing` | `busy`).
    pub operators: IntGaugeVec,
    /// `dialer_waiting_room_callers{campaign}`: callees in the waiting room now.
    pub waiting_callers: IntGaugeVec,
    /// `dialer_announcements_total{via, result}`: console announcements (`conference` | `call`;
    /// `sent` | `failed`).
    pub announcements: IntCounterVec,
    /// `dialer_account_cps_limit`: the account-wide calls-per-second limit in force.
    pub account_cps_limit: Gauge,
    /// `dialer_campaign_cps_limit{campaign}`: each campaign's calls-per-second limit.
    pub campaign_cps_limit: GaugeVec,
    /// `dialer_callback_duration_seconds{route}`: time to answer a callback or TwiML request, by route.
    pub callback_duration: HistogramVec,
    /// `dialer_internal_errors_total{component}`: internal operations that failed and were logged, by
    /// component ([`INTERNAL_ERROR_COMPONENTS`]): database writes and reads of the engine's loops,
    /// housekeeping job registration, a callback answered 500. Count them with [`Metrics::internal_error`].
    pub internal_errors: IntCounterVec,
    /// `dialer_geo_permission_refusals_total{campaign,country}`: creates Twilio refused with 21215 (the
    /// account may not call that country); that country's contacts of the campaign are skipped.
    pub geo_refusals: IntCounterVec,
    /// `dialer_api_requests_total{route, method, status}`: management API requests by route template (e.g.
    /// `/api/v1/campaigns/{id}`, never the raw path), method and HTTP status code.
    pub api_requests: IntCounterVec,
    /// `dialer_api_request_duration_seconds{route, method}`: time to answer a management API request.
    pub api_request_duration: HistogramVec,
    /// `dialer_webhook_deliveries_total{result}`: webhook delivery attempts by what came of them
    /// ([`WEBHOOK_DELIVERY_RESULTS`]): `delivered` (2xx), `failed` (retry scheduled), `dead` (given up).
    pub webhook_deliveries: IntCounterVec,
    /// `dialer_webhook_delivery_attempts_total`: webhook POSTs sent (every try, retries included).
    pub webhook_delivery_attempts: IntCounter,
    /// `dialer_webhook_lag_seconds`: from an event's commit to its delivery.
    pub webhook_lag: Histogram,
    /// `dialer_webhook_backlog`: webhook events neither delivered nor dead (all campaigns).
    pub webhook_backlog: IntGauge,
    /// `dialer_webhook_dead`: webhook events given up after the maximum age, awaiting a replay.
    pub webhook_dead: IntGauge,
}

/// The `component` values of `dialer_internal_errors_total`, each exported from the start at 0 so a rate
/// or an alert sees the series before the first error.
pub const INTERNAL_ERROR_COMPONENTS: &[&str] =
    &["scheduler", "dispatch", "reconcile", "housekeeping", "callbacks", "webhooks", "sms", "operators"];

fn reg<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry.register(Box::new(c.clone())).expect("metric registered twice or with a bad name");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn gauge_vec_int(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(r, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    reg(r, Histogram::with_opts(opts).expect("valid metric"))
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    reg(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

impl Metrics {
    /// Counts a settled attempt once: its outcome, and the retry it scheduled if any. Callers pass only
    /// settles that were applied (a duplicate report is not counted again).
    pub fn settled(&self, s: &crate::store::Settled) {
        if !s.applied {
            return;
        }
        let campaign = s.campaign_id.to_string();
        let outcome = s.outcome.map(|o| o.as_str()).unwrap_or("unknown");
        let answered_by = s.answered_by.map(|a| a.as_str()).unwrap_or("");
        self.outcomes.with_label_values(&[campaign.as_str(), outcome, answered_by]).inc();
        if let Some(crate::domain::Next::Retry { reason, .. }) = &s.next {
            self.retries_scheduled.with_label_values(&[campaign.as_str(), reason]).inc();
        }
        match s.transfer {
            Some(crate::domain::TransferState::Abandoned) => self.transfer_ended(&campaign, "abandoned"),
            Some(crate::domain::TransferState::NoOperator) => self.transfer_ended(&campaign, "no_operator"),
            _ => {}
        }
    }

    /// Counts how a waiting-room stay ended (one of [`TRANSFER_OUTCOMES`]).
    pub fn transfer_ended(&self, campaign: &str, outcome: &'static str) {
        debug_assert!(TRANSFER_OUTCOMES.contains(&outcome), "unknown transfer outcome {outcome}");
        self.transfers.with_label_values(&[campaign, outcome]).inc();
    }

    /// Counts one failed internal operation of `component` (one of [`INTERNAL_ERROR_COMPONENTS`]); the
    /// caller logs it with its context.
    pub fn api_request(&self, route: &str, method: &str, status: u16, took: std::time::Duration) {
        self.api_requests.with_label_values(&[route, method, &status.to_string()]).inc();
        self.api_request_duration.with_label_values(&[route, method]).observe(took.as_secs_f64());
    }

    pub fn internal_error(&self, component: &'static str) {
        debug_assert!(INTERNAL_ERROR_COMPONENTS.contains(&component), "unknown component {component}");
        self.internal_errors.with_label_values(&[component]).inc();
    }

    /// A fresh set of metrics in a new registry (tests; production uses [`Metrics::global`]).
    pub fn new() -> Self {
        let r = Registry::new();
        let m = Metrics {
            calls_created: counter_vec(
                &r,
                "dialer_calls_created_total",
                "Twilio call-create requests by result: created, not_created (nothing was created), \
                 fate_unknown (parked for reconciliation) or rejected (permanent error).",
                &["campaign", "result"],
            ),
            twilio_api_errors: counter_vec(
                &r,
                "dialer_twilio_api_errors_total",
                "Failed Twilio REST requests by Twilio error code, or \"transport\" when no response came back.",
                &["code"],
            ),
            twilio_request_duration: histogram_vec(
                &r,
                "dialer_twilio_request_duration_seconds",
                "Twilio REST request latency in seconds by operation (create, fetch, list, update).",
                &["operation"],
                LATENCY_BUCKETS,
            ),
            queue_time: histogram(
                &r,
                "dialer_twilio_queue_time_seconds",
                "Time Twilio held created calls in its queue before dialling (queue_time), in seconds.",
                WAIT_BUCKETS,
            ),
            calls_in_flight: gauge_vec_int(
                &r,
                "dialer_calls_in_flight",
                "Calls created and not yet finished, by campaign.",
                &["campaign"],
            ),
            claim_batch_size: histogram(
                &r,
                "dialer_claim_batch_size",
                "Number of due contacts claimed by one scheduler claim.",
                BATCH_SIZE_BUCKETS,
            ),
            claim_duration: histogram(
                &r,
                "dialer_claim_duration_seconds",
                "Time one scheduler claim query takes, in seconds.",
                LATENCY_BUCKETS,
            ),
            scheduler_lag: histogram(
                &r,
                "dialer_scheduler_lag_seconds",
                "Delay between a contact's next_attempt_at and the moment it is dialled, in seconds.",
                WAIT_BUCKETS,
            ),
            inbound_calls: counter_vec(
                &r,
                "dialer_inbound_calls_total",
                "Calls to the campaigns' caller IDs, by campaign and whether the caller is a contact.",
                &["campaign", "caller"],
            ),
            sms_sent: counter_vec(
                &r,
                "dialer_sms_sent_total",
                "SMS fallback sends by campaign and what came of the request.",
                &["campaign", "result"],
            ),
            sms_status: counter_vec(
                &r,
                "dialer_sms_status_total",
                "SMS delivery status callbacks by MessageStatus, each counted once.",
                &["status"],
            ),
            sms_replies: counter_vec(
                &r,
                "dialer_sms_replies_total",
                "Inbound SMS by meaning: stop word, reply code, or other.",
                &["kind"],
            ),
            transfer_requests: counter_vec(
                &r,
                "dialer_transfer_requests_total",
                "Callees who pressed the operator key and entered the waiting room, by campaign.",
                &["campaign"],
            ),
            transfers: counter_vec(
                &r,
                "dialer_transfers_total",
                "Waiting-room stays by how they ended: connected, abandoned, callback_requested, no_operator.",
                &["campaign", "outcome"],
            ),
            transfer_wait: histogram_vec(
                &r,
                "dialer_transfer_wait_seconds",
                "Time from the operator key press until an operator answered, in seconds.",
                &["campaign"],
                WAIT_BUCKETS,
            ),
            operator_handle: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "dialer_operator_handle_seconds",
                        "Time from an operator answering until the conversation ended, in seconds.",
                    )
                    .buckets(HANDLE_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            operator_rings: counter_vec(
                &r,
                "dialer_operator_rings_total",
                "Operator rings by result: answered, missed, failed.",
                &["result"],
            ),
            operators: gauge_vec_int(&r, "dialer_operators", "Operators by status.", &["status"]),
            waiting_callers: gauge_vec_int(
                &r,
                "dialer_waiting_room_callers",
                "Callees in the waiting room (no operator yet), by campaign.",
                &["campaign"],
            ),
            announcements: counter_vec(
                &r,
                "dialer_announcements_total",
                "Announcements from the console into live calls, by how they were sent and the result.",
                &["via", "result"],
            ),
            callbacks_received: counter_vec(
                &r,
                "dialer_callbacks_received_total",
                "Callbacks and TwiML requests received from Twilio by event, each counted once.",
                &["event"],
            ),
            claims_rescued: reg(
                &r,
                IntCounter::new(
                    "dialer_claims_rescued_total",
                    "Claims whose lease expired before they were sent; their contacts went back to pending.",
                )
                .expect("valid metric"),
            ),
            callbacks_duplicate: reg(
                &r,
                IntCounter::new(
                    "dialer_callbacks_duplicate_total",
                    "Callbacks received again for an event already recorded (ignored).",
                )
                .expect("valid metric"),
            ),
            callbacks_out_of_order: reg(
                &r,
                IntCounter::new(
                    "dialer_callbacks_out_of_order_total",
                    "Callbacks older than the call state already recorded (never overwrite it).",
                )
                .expect("valid metric"),
            ),
            signature_rejections: counter_vec(
                &r,
                "dialer_signature_rejections_total",
                "Requests rejected with 403 for a bad X-Twilio-Signature or token, by route.",
                &["route"],
            ),
            outcomes: counter_vec(
                &r,
                "dialer_outcomes_total",
                "Finished call attempts by outcome and Twilio AnsweredBy.",
                &["campaign", "outcome", "answered_by"],
            ),
            retries_scheduled: counter_vec(
                &r,
                "dialer_retries_scheduled_total",
                "Retries scheduled by campaign and the outcome that caused them.",
                &["campaign", "reason"],
            ),
            contacts: gauge_vec_int(
                &r,
                "dialer_contacts",
                "Contacts by campaign and state (pending, claimed, calling, done, exhausted, invalid, \
                 blocked, canceled).",
                &["campaign", "state"],
            ),
            deferrals: counter_vec(
                &r,
                "dialer_deferrals_total",
                "Dials put off by campaign and reason: outside the calling window, DNC, or a \
                 communication limit.",
                &["campaign", "reason"],
            ),
            calls_by_zone_source: counter_vec(
                &r,
                "dialer_calls_by_zone_source_total",
                "Calls requested by campaign and where the callee's zone came from: given by the import, \
                 derived from the number, or the campaign's (fallback).",
                &["campaign", "zone_source"],
            ),
            keypress_results: counter_vec(
                &r,
                "dialer_keypress_results_total",
                "Keypad results collected by Gather, by campaign and result.",
                &["campaign", "result"],
            ),
            account_cps_limit: reg(
                &r,
                Gauge::new(
                    "dialer_account_cps_limit",
                    "Account-wide calls-per-second limit shared by all dialer replicas.",
                )
                .expect("valid metric"),
            ),
            campaign_cps_limit: reg(
                &r,
                GaugeVec::new(
                    Opts::new("dialer_campaign_cps_limit", "Calls-per-second limit of each campaign."),
                    &["campaign"],
                )
                .expect("valid metric"),
            ),
            callback_duration: histogram_vec(
                &r,
                "dialer_callback_duration_seconds",
                "Time taken to answer a Twilio callback or TwiML request, in seconds, by route.",
                &["route"],
                LATENCY_BUCKETS,
            ),
            internal_errors: counter_vec(
                &r,
                "dialer_internal_errors_total",
                "Internal operations that failed and were logged (database writes and reads, job \
                 registration, callbacks answered 500), by component.",
                &["component"],
            ),
            geo_refusals: counter_vec(
                &r,
                "dialer_geo_permission_refusals_total",
                "Calls Twilio refused because the account may not call the destination country (21215), by \
                 campaign and country calling code; that country's contacts are skipped.",
                &["campaign", "country"],
            ),
            api_requests: counter_vec(
                &r,
                "dialer_api_requests_total",
                "Management API requests by route template, method and HTTP status code.",
                &["route", "method", "status"],
            ),
            api_request_duration: histogram_vec(
                &r,
                "dialer_api_request_duration_seconds",
                "Time to answer a management API request, in seconds, by route template and method.",
                &["route", "method"],
                LATENCY_BUCKETS,
            ),
            webhook_deliveries: counter_vec(
                &r,
                "dialer_webhook_deliveries_total",
                "Result webhook delivery attempts by result: delivered (2xx), failed (retry scheduled) or dead \
                 (given up after the maximum age).",
                &["result"],
            ),
            webhook_delivery_attempts: reg(
                &r,
                IntCounter::new(
                    "dialer_webhook_delivery_attempts_total",
                    "Result webhook POSTs sent, retries included.",
                )
                .expect("valid metric"),
            ),
            webhook_lag: histogram(
                &r,
                "dialer_webhook_lag_seconds",
                "Time from a result webhook event's commit to its delivery, in seconds.",
                WEBHOOK_LAG_BUCKETS,
            ),
            webhook_backlog: reg(
                &r,
                IntGauge::new("dialer_webhook_backlog", "Result webhook events neither delivered nor dead.")
                    .expect("valid metric"),
            ),
            webhook_dead: reg(
                &r,
                IntGauge::new(
                    "dialer_webhook_dead",
                    "Result webhook events given up after the maximum age, awaiting a replay.",
                )
                .expect("valid metric"),
            ),
            registry: r,
        };
        for component in INTERNAL_ERROR_COMPONENTS {
            m.internal_errors.with_label_values(&[component]);
        }
        for result in WEBHOOK_DELIVERY_RESULTS {
            m.webhook_deliveries.with_label_values(&[result]);
        }
        for route in SIGNATURE_ROUTES {
            m.signature_rejections.with_label_values(&[route]);
        }
        for result in ["answered", "missed", "failed"] {
            m.operator_rings.with_label_values(&[result]);
        }
        for via in ["conference", "call"] {
            for result in ["sent", "failed"] {
                m.announcements.with_label_values(&[via, result]);
            }
        }

        m
    }

    /// The process-wide metrics, created on first use.
    pub fn global() -> &'static Metrics {
        static GLOBAL: OnceLock<Metrics> = OnceLock::new();
        GLOBAL.get_or_init(Metrics::new)
    }

    /// The registry every metric here is registered in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric family name registered here, from the collectors' descriptors (present even for a vec
    /// that has no labelled child yet, unlike [`Registry::gather`]).
    pub fn family_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.collectors().iter().flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone())).collect();
        names.sort();
        names
    }

    fn collectors(&self) -> Vec<&dyn Collector> {
        vec![
            &self.calls_created,
            &self.twilio_api_errors,
            &self.twilio_request_duration,
            &self.queue_time,
            &self.calls_in_flight,
            &self.claim_batch_size,
            &self.claim_duration,
            &self.scheduler_lag,
            &self.callbacks_received,
            &self.callbacks_duplicate,
            &self.claims_rescued,
            &self.callbacks_out_of_order,
            &self.signature_rejections,
            &self.outcomes,
            &self.retries_scheduled,
            &self.contacts,
            &self.deferrals,
            &self.calls_by_zone_source,
            &self.keypress_results,
            &self.account_cps_limit,
            &self.campaign_cps_limit,
            &self.callback_duration,
            &self.internal_errors,
            &self.geo_refusals,
            &self.api_requests,
            &self.api_request_duration,
            &self.webhook_deliveries,
            &self.webhook_delivery_attempts,
            &self.webhook_lag,
            &self.webhook_backlog,
            &self.webhook_dead,
            &self.inbound_calls,
            &self.sms_sent,
            &self.sms_status,
            &self.sms_replies,
            &self.transfer_requests,
            &self.transfers,
            &self.transfer_wait,
            &self.operator_handle,
            &self.operator_rings,
            &self.operators,
            &self.waiting_callers,
            &self.announcements,
        ]
    }

    /// All metrics in the Prometheus text exposition format (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding of gathered metrics");
        String::from_utf8(buf).expect("text exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
