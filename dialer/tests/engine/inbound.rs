//! Customers reach back, end to end: real `dialer serve --role all`, the simulator over HTTP placing the
//! customers' calls and texts, every callback signed. A contact missed twice gets one SMS (delivery status
//! through duplicated and reordered callbacks), calls back and picks a slot, another opts out by SMS,
//! another replies with a code; an unknown caller hears the message and is transferred.

use std::time::{Duration, Instant};

use dialer_core::domain::ContactState;
use dialer_core::domain::E164;
use dialer_sim::{Faults, OutcomeMix};

use crate::helpers::*;
use crate::metrics::{scrape, wait_until_up};

const CALLER_ID: &str = "+14155550199";

fn campaign(zone: &str) -> String {
    format!(
        r#"
name = "re-delivery"
caller_id = "{CALLER_ID}"
timezone = "{zone}"
cps = 10
max_attempts = 2
[window]
start = "09:00"
end = "20:00"
[retry]
no_answer = {{ delay_s = 1, max = 1 }}
[script]
language = "en-US"
variables = ["name", "parcel"]
callback_greeting = "Hello {{name}}, thanks for calling us back."
unknown_caller = "Thank you for calling Example Freight. Connecting you to our team."
unknown_caller_transfer = "+15005550006"
[script.menus.main]
say = "We could not deliver parcel {{parcel}}. Press 1 to choose a time, 9 to stop these calls."
[script.menus.main.options]
"1" = {{ goto = "slot" }}
"9" = {{ opt_out = true }}
[script.menus.slot]
say = "Press 1 for morning, 2 for afternoon, 3 for evening."
[script.menus.slot.options]
"1" = {{ result = "reschedule:morning" }}
"2" = {{ result = "reschedule:afternoon" }}
"3" = {{ result = "reschedule:evening" }}
[sms]
after = ["no_answer"]
body = "{{name}}, we missed you about parcel {{parcel}}. Reply 1 morning, 2 afternoon, 3 evening. STOP to opt out."
reply_codes = {{ "1" = "reschedule:morning", "2" = "reschedule:afternoon", "3" = "reschedule:evening" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn missed_customers_get_one_text_call_back_reply_and_opt_out() {
    let mut config = sim_config(20.0);
    config.outcomes = OutcomeMix { human: 0.0, machine: 0.0, busy: 0.0, no_answer: 100.0, failed: 0.0, invalid: 0.0 };
    config.faults = Faults { duplicate: 0.5, reorder: 0.5, ..Faults::default() };
    let mut env = Env::new(config).await;
    let zone = open_zone();
    let mut contacts = contacts(3, Some(zone.name()), 0);
    for (i, c) in contacts.iter_mut().enumerate() {
        c.attributes.insert("parcel".into(), format!("P-{i}"));
    }
    let phones: Vec<String> = contacts.iter().map(|c| c.phone.to_string()).collect();
    let id = env.campaign(&campaign(zone.name()), &contacts).await;
    env.spawn("all", 20.0, &[]);
    let base = format!("http://{}", env.callbacks_addr);
    wait_until_up(&format!("{base}/metrics")).await;
    env.sim
        .set_number(CALLER_ID, Some(format!("{base}/voice/inbound")), Some(format!("{base}/sms/inbound")), None)
        .unwrap();

    // Two unanswered calls each, then exactly one text each once the contact is exhausted.
    let r = env.wait_finished(id, Duration::from_secs(60)).await;
    assert_eq!(r.by_state.get(&ContactState::Exhausted), Some(&3), "{r:#?}");
    env.assert_one_call_per_attempt(id).await;
    let start = Instant::now();
    loop {
        let m = env.store.messages_counts(id).await.unwrap();
        if m.delivered + m.undelivered + m.failed == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "texts not delivered: {m:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each contact's text, once, rendered from its attributes; our status is the simulator's final one,
    // whatever order and how many times its callbacks came.
    let sent: Vec<_> = env.sim.messages().into_iter().filter(|m| m.direction.as_str() == "outbound-api").collect();
    assert_eq!(sent.len(), 3, "one text per contact: {sent:#?}");
    for (i, phone) in phones.iter().enumerate() {
        let m = sent.iter().find(|m| &m.to == phone).expect("a text to each contact");
        assert!(m.body.contains(&format!("parcel P-{i}")) && m.body.starts_with("Contact "), "{}", m.body);
        let (sid, status): (Option<String>, Option<String>) =
            sqlx::query_as("SELECT message_sid, status FROM messages WHERE phone = $1")
                .bind(phone)
                .fetch_one(env.store.pool())
                .await
                .unwrap();
        assert_eq!(sid.as_deref(), Some(m.sid.as_str()));
        assert_eq!(status.as_deref(), Some(m.status.as_str()), "{m:?}");
    }
    let callbacks_sent: usize = sent.iter().map(|m| m.callbacks.len()).sum();
    let (events,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM message_events").fetch_one(env.store.pool()).await.unwrap();
    assert_eq!(events as usize, callbacks_sent, "each delivery callback stored once");

    // The first contact calls back and picks the afternoon.
    let call = env.sim.inbound_call(&phones[0], CALLER_ID, "12").await.unwrap();
    assert!(call.says.iter().any(|s| s.contains("Hello Contact 0, thanks for calling us back")), "{:?}", call.says);
    // The second replies STOP, the third replies 3.
    let stop = env.sim.inbound_sms(&phones[1], CALLER_ID, "STOP").await.unwrap();
    assert_eq!(stop.webhook_status, Some(200));
    assert!(stop.reply.iter().any(|r| r.contains("unsubscribed")), "{stop:?}");
    let three = env.sim.inbound_sms(&phones[2], CALLER_ID, "3").await.unwrap();
    assert_eq!(three.webhook_status, Some(200));
    // Someone we never called.
    let unknown = env.sim.inbound_call("+15005550123", CALLER_ID, "").await.unwrap();
    assert!(unknown.says.iter().any(|s| s.contains("Example Freight")), "{:?}", unknown.says);

    let result_of = |phone: String| {
        let pool = env.store.pool().clone();
        async move {
            sqlx::query_as::<_, (ContactState, Option<String>)>("SELECT state, result FROM contacts WHERE phone = $1")
                .bind(phone)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(result_of(phones[0].clone()).await, (ContactState::Done, Some("reschedule:afternoon".into())));
    assert_eq!(result_of(phones[2].clone()).await, (ContactState::Done, Some("reschedule:evening".into())));
    assert!(env.store.dnc_blocks(&E164::parse(&phones[1], None).unwrap(), id).await.unwrap());
    let r = env.store.campaigns_report(id).await.unwrap();
    assert_eq!(r.inbound_calls, 1, "the unknown caller is nobody's call back");
    assert_eq!(r.sms.replies, 2, "a reply code and a stop: {:?}", r.sms);
    assert_eq!(
        r.calls_requested as usize,
        env.sim.calls().iter().filter(|c| c.direction.as_str() == "outbound-api").count()
    );

    let (_, m) = scrape(&format!("{base}/metrics")).await;
    assert_eq!(m.sum("dialer_inbound_calls_total", &[("caller", "contact")]), 1.0);
    assert_eq!(m.sum("dialer_inbound_calls_total", &[("caller", "unknown")]), 1.0);
    assert_eq!(m.sum("dialer_sms_sent_total", &[("result", "accepted")]), 3.0);
    assert_eq!(m.sum("dialer_sms_replies_total", &[("kind", "stop")]), 1.0);
    // Nothing more is sent, however long we wait: one text per contact.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.sim.messages().iter().filter(|m| m.direction.as_str() == "outbound-api").count(), 3);
}
