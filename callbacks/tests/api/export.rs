use dialer_core::domain::{ContactState, Outcome};

use crate::helpers::{Event, TestApp, EN_CAMPAIGN};

#[tokio::test]
async fn results_export_lists_every_contact_with_its_outcome_and_result() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(EN_CAMPAIGN).await;
    let confirmed = app.call(app.contact(campaign, "+14155550121", "Ann, \"the\" first").await).await;
    let path = format!("/gather/{}?menu=main&n=0", confirmed.token);
    let p = crate::helpers::form(&[("CallSid", confirmed.sid.as_str()), ("Digits", "1")]);
    assert_eq!(app.post(&path, &p).await.status(), 200);
    assert_eq!(app.status(&confirmed, &Event::new("completed", 3)).await, 200);
    let busy = app.call(app.contact(campaign, "+14155550122", "Bob").await).await;
    assert_eq!(app.status(&busy, &Event::new("busy", 1)).await, 200);
    app.contact(campaign, "+14155550123", "Never called").await;

    let rows = app.store.results_export(campaign).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0].state, rows[0].outcome, rows[0].result.as_deref(), rows[0].attempts),
        (ContactState::Done, Some(Outcome::AnsweredResult), Some("confirmed"), 1)
    );
    assert!(rows[0].last_call_at.is_some());
    assert_eq!((rows[1].state, rows[1].outcome), (ContactState::Pending, Some(Outcome::Busy)));
    assert_eq!((rows[2].attempts, rows[2].last_call_at), (0, None));

    let mut csv = Vec::new();
    callbacks::export::write_csv(&rows, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("contact_id,external_id,phone,state,outcome,result,attempts,last_call_at\n"), "{csv}");
    assert!(csv.contains(",ext-+14155550121,+14155550121,done,answered_result,confirmed,1,"), "{csv}");
    let mut json = Vec::new();
    callbacks::export::write_json(&rows, &mut json).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(parsed[0]["result"], "confirmed");
    assert_eq!(parsed[2]["outcome"], serde_json::Value::Null);
}
