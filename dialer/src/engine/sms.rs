//! The SMS fallback sender: texts queued when a contact ended with an outcome its campaign's `[sms]
//! after` names are sent inside the callee's calling window (the same `CallPolicy` as calls), never to a
//! number on a DNC list, and at most once: the text is committed before the POST, and a POST whose fate
//! is unknown is never sent again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dialer_core::domain::campaign::{CampaignFile, SmsFallback};
use dialer_core::domain::compliance::ContactZone;
use dialer_core::domain::script::{contact_attributes, render_text};
use dialer_core::domain::sms::MessageStatus;
use dialer_core::domain::{CampaignStatus, MessageToken, E164};
use dialer_core::metrics::Metrics;
use dialer_core::store::{CampaignRow, DueMessage, StoreError};
use dialer_core::twilio::{CreateMessage, RetryClass};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::Engine;

/// Texts leased per pass; the pass repeats at once while there are more.
const BATCH: i64 = 100;
/// POSTs to the Messages API in flight at once.
const CONCURRENCY: usize = 8;
const IDLE: Duration = Duration::from_millis(250);
const LEASE_S: f64 = 60.0;
/// A paused or draft campaign's texts wait this long before they are looked at again.
const PAUSED_RETRY: chrono::Duration = chrono::Duration::seconds(30);

pub async fn run(engine: Arc<Engine>) {
    let posts = Arc::new(Semaphore::new(CONCURRENCY));
    let mut last_rescue = std::time::Instant::now();
    loop {
        if last_rescue.elapsed() > Duration::from_secs(5) {
            last_rescue = std::time::Instant::now();
            if let Err(e) = engine.store.messages_rescue_expired().await {
                tracing::warn!(error = %e, "rescuing SMS leases failed");
                Metrics::global().internal_error("sms");
            }
        }
        let due = match engine.store.messages_claim_due(&engine.node_id, BATCH, LEASE_S).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "claiming due SMS failed");
                Metrics::global().internal_error("sms");
                Vec::new()
            }
        };
        let full = due.len() as i64 == BATCH;
        let mut campaigns: HashMap<i64, Option<Arc<(CampaignRow, CampaignFile)>>> = HashMap::new();
        let mut tasks = Vec::with_capacity(due.len());
        for m in due {
            let campaign = match campaigns.get(&m.campaign_id) {
                Some(c) => c.clone(),
                None => {
                    let c = load_campaign(&engine, m.campaign_id).await;
                    campaigns.insert(m.campaign_id, c.clone());
                    c
                }
            };
            let Ok(permit) = posts.clone().acquire_owned().await else { return };
            let engine = engine.clone();
            let span = tracing::info_span!("sms", message_id = m.id, contact_id = m.contact_id);
            tasks.push(tokio::spawn(
                async move {
                    send_one(&engine, m, campaign.as_deref()).await;
                    drop(permit);
                }
                .instrument(span),
            ));
        }
        for t in tasks {
            let _ = t.await;
        }
        if !full {
            tokio::select! {
                _ = engine.shutdown.cancelled() => return,
                _ = tokio::time::sleep(IDLE) => {}
            }
        } else if engine.shutdown.is_cancelled() {
            return;
        }
    }
}

async fn load_campaign(engine: &Engine, id: i64) -> Option<Arc<(CampaignRow, CampaignFile)>> {
    match engine.store.campaigns_get(id).await {
        Ok(row) => match serde_json::from_value::<CampaignFile>(row.spec.clone()) {
            Ok(file) => Some(Arc::new((row, file))),
            Err(e) => {
                tracing::error!(campaign = id, error = %e, "stored campaign file does not parse");
                None
            }
        },
        Err(StoreError::NotFound(_)) => None,
        Err(e) => {
            tracing::warn!(campaign = id, error = %e, "reading the campaign failed");
            Metrics::global().internal_error("sms");
            None
        }
    }
}

/// What to do with one leased text.
enum Decision<'a> {
    Skip(&'static str),
    Defer(chrono::DateTime<Utc>),
    Send { sms: &'a SmsFallback, from: E164 },
}

fn decide<'a>(m: &DueMessage, campaign: Option<&'a (CampaignRow, CampaignFile)>) -> Decision<'a> {
    let now = Utc::now();
    let Some((row, file)) = campaign else { return Decision::Skip("campaign gone or unreadable") };
    let Some(sms) = &file.sms else { return Decision::Skip("the campaign no longer has an [sms] section") };
    match row.status {
        CampaignStatus::Canceled => return Decision::Skip("campaign canceled"),
        CampaignStatus::Paused | CampaignStatus::Draft => return Decision::Defer(now + PAUSED_RETRY),
        CampaignStatus::Running | CampaignStatus::Completed => {}
    }
    if m.dnc {
        return Decision::Skip("number on a do-not-call list");
    }
    if m.reference_notified && file.limits.one_per_external_id {
        return Decision::Skip("already notified about this reference");
    }
    let zone = ContactZone::from_stored(m.zones.clone(), m.zone_source, m.region.clone(), row.timezone);
    if let Some(at) = row.policy().closed_until(&zone, now) {
        return Decision::Defer(at);
    }
    let from = match &sms.from {
        Some(f) => match E164::parse(f, None) {
            Ok(f) => f,
            Err(_) => return Decision::Skip("sms.from is not a valid number"),
        },
        None => row.caller_id.clone(),
    };
    Decision::Send { sms, from }
}

async fn send_one(engine: &Engine, m: DueMessage, campaign: Option<&(CampaignRow, CampaignFile)>) {
    let store = &engine.store;
    let owner = engine.node_id.as_str();
    let metrics = Metrics::global();
    let label = m.campaign_id.to_string();
    let result = async {
        match decide(&m, campaign) {
            Decision::Skip(reason) => {
                store.messages_skip(m.id, owner, reason).await?;
                metrics.sms_sent.with_label_values(&[&label, "skipped"]).inc();
                tracing::info!(reason, "SMS not sent");
            }
            Decision::Defer(at) => {
                store.messages_defer(m.id, owner, at).await?;
            }
            Decision::Send { sms, from } => {
                let (row, file) = campaign.expect("Send only with a campaign");
                let attrs = contact_attributes(&m.attributes, &m.phone, m.external_id.as_deref());
                let tz = m.zones.first().copied().unwrap_or(row.timezone);
                let body = render_text(&sms.body, &attrs, tz.get(), &file.script.language);
                if !store.messages_mark_requested(m.id, owner, &body, &from).await? {
                    return Ok(()); // The lease was lost; whoever holds it now decides.
                }
                let token = MessageToken::new(m.id).encode(&engine.token_key);
                let req = CreateMessage {
                    to: m.phone.clone(),
                    from,
                    body,
                    status_callback: Some(format!("{}/sms/status/{token}", engine.public_base_url)),
                };
                match engine.twilio.create_message(&req).await {
                    Ok(res) => {
                        let status = MessageStatus::parse(&res.status).unwrap_or(MessageStatus::Queued);
                        store.messages_accepted(m.id, &res.sid, status).await?;
                        metrics.sms_sent.with_label_values(&[&label, "accepted"]).inc();
                        tracing::info!(message_sid = %res.sid, "SMS sent");
                    }
                    Err(e) => match e.class() {
                        RetryClass::NotCreatedRetry => {
                            let wait = e.retry_after().unwrap_or(Duration::from_secs(30));
                            let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(PAUSED_RETRY);
                            store.messages_defer(m.id, owner, at).await?;
                        }
                        RetryClass::FateUnknown => {
                            store.messages_unknown(m.id, owner, &e.to_string()).await?;
                            metrics.sms_sent.with_label_values(&[&label, "unknown"]).inc();
                            tracing::warn!(error = %e, "SMS fate unknown; it will not be sent again");
                        }
                        RetryClass::FinalForContact | RetryClass::FinalForCampaign | RetryClass::FinalForCountry => {
                            let code = e.code().map(|c| c as i32);
                            store.messages_reject(m.id, owner, code, &e.to_string()).await?;
                            metrics.sms_sent.with_label_values(&[&label, "rejected"]).inc();
                            tracing::warn!(error = %e, "Twilio refused the SMS");
                        }
                    },
                }
            }
        }
        Ok::<(), StoreError>(())
    }
    .await;
    if let Err(e) = result {
        // The lease runs out and the rescue decides: not requested → sent later; requested → never again.
        tracing::warn!(error = %e, "SMS step failed");
        metrics.internal_error("sms");
    }
}
