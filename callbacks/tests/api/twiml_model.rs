//! The Japanese delivery script's TwiML, checked against the shared voice TwiML model (read at test time).

use serde_json::Value;

use crate::helpers::{form, TestApp, JA_CAMPAIGN};

fn check_against_model(model: &Value, xml: &str) {
    let errors = testkit::twiml_model_errors(model, xml);
    assert!(errors.is_empty(), "{}\n\n{xml}", errors.join("\n"));
}

#[tokio::test]
async fn the_japanese_delivery_script_renders_valid_twiml_for_a_name_with_xml_specials() {
    let Some(model) = testkit::twiml_voice_model() else { return };
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let name = r#"山田 & <太郎> "様" 'x'"#;
    let call = app.call(app.contact(campaign, "+818033330001", name).await).await;
    let p = form(&[("CallSid", call.sid.as_str()), ("CallStatus", "in-progress"), ("AnsweredBy", "human")]);

    let r = app.post(&format!("/twiml/{}", call.token), &p).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/xml"));
    let xml = r.text().await.unwrap();
    check_against_model(&model, &xml);

    let doc = roxmltree::Document::parse(&xml).unwrap();
    let say = doc.descendants().find(|n| n.has_tag_name("Say")).expect("Say");
    assert_eq!(say.attribute("language"), Some("ja-JP"));
    assert_eq!(say.attribute("voice"), Some("Polly.Mizuki"));
    let text: String = say.children().filter_map(|n| n.text()).collect();
    assert!(text.contains(&format!("{name}様のお荷物 1234-5678")), "{text}");
    let gather = doc.descendants().find(|n| n.has_tag_name("Gather")).expect("Gather");
    assert_eq!(gather.attribute("action"), Some(format!("{}/gather/{}?menu=main&n=0", app.base, call.token).as_str()));
    assert_eq!(gather.attribute("numDigits"), Some("1"));
    let redirect = doc.descendants().find(|n| n.has_tag_name("Redirect")).expect("Redirect");
    assert_eq!(redirect.text(), Some(format!("{}/gather/{}?menu=main&n=1", app.base, call.token).as_str()));

    // Every other document of the script is valid too: the slot menu, a result, transfer, opt-out, retry,
    // goodbye, and the voicemail message.
    let gather_at = |menu: &str, n: u32| format!("/gather/{}?menu={menu}&n={n}", call.token);
    for (path, digits) in [
        (gather_at("main", 0), Some("1")),
        (gather_at("slot", 0), Some("3")),
        (gather_at("main", 0), Some("0")),
        (gather_at("main", 1), Some("5")),
        (gather_at("main", 3), None),
        (gather_at("main", 0), Some("9")),
    ] {
        let mut p = form(&[("CallSid", call.sid.as_str())]);
        if let Some(d) = digits {
            p.push(("Digits".into(), d.into()));
        }
        let xml = app.post(&path, &p).await.text().await.unwrap();
        check_against_model(&model, &xml);
    }
    let vm = app.call(app.contact(campaign, "+818033330002", name).await).await;
    let p = form(&[("CallSid", vm.sid.as_str()), ("AnsweredBy", "machine_end_silence")]);
    let xml = app.post(&format!("/twiml/{}", vm.token), &p).await.text().await.unwrap();
    check_against_model(&model, &xml);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let text: String =
        doc.descendants().find(|n| n.has_tag_name("Say")).unwrap().children().filter_map(|n| n.text()).collect();
    assert!(text.starts_with(&format!("{name}様、Example運輸です。")), "{text}");
}
