//! Rendered TwiML checked against the voice TwiML model of Twilio's helper libraries (read at test time from
//! the workspace's sibling `shared/twilio/`, never copied here), plus escaping round trips.

use std::collections::BTreeSet;

use dialer_core::twilio::twiml::{
    Dial, DialNoun, Gather, GatherChild, GatherInput, Method, Pause, Play, Record, Redirect, Reject, RejectReason,
    Response, Say, Verb,
};

// Each list below is followed by a match without a wildcard: adding a variant to the builder stops this test
// compiling until the new variant is listed (and so rendered and checked).

fn all_methods() -> Vec<Method> {
    let all = vec![Method::Get, Method::Post];
    for m in &all {
        match m {
            Method::Get | Method::Post => {}
        }
    }
    all
}

fn all_gather_inputs() -> Vec<GatherInput> {
    let all = vec![GatherInput::Dtmf, GatherInput::Speech, GatherInput::DtmfSpeech];
    for i in &all {
        match i {
            GatherInput::Dtmf | GatherInput::Speech | GatherInput::DtmfSpeech => {}
        }
    }
    all
}

fn all_reject_reasons() -> Vec<RejectReason> {
    let all = vec![RejectReason::Busy, RejectReason::Rejected];
    for r in &all {
        match r {
            RejectReason::Busy | RejectReason::Rejected => {}
        }
    }
    all
}

/// A response with every verb, noun and attribute the builder can emit, and every enum value. Struct
/// literals (no `..Default::default()`) so that a new field fails to compile here until it is set.
fn everything() -> Response {
    let say = Say {
        text: "山田 太郎様、お荷物 1234-5678 について & <お知らせ>".into(),
        language: Some("ja-JP".into()),
        voice: Some("Polly.Mizuki".into()),
        loop_: Some(2),
    };
    let play = Play { url: "https://cdn.example.com/chime.mp3?v=1&lang=ja".into(), loop_: Some(1) };
    let pause = Pause { length: Some(2) };

    let mut verbs = vec![Verb::Say(say.clone()), Verb::Play(play.clone()), Verb::Pause(pause.clone())];

    let methods = all_methods();
    for (n, input) in all_gather_inputs().into_iter().enumerate() {
        let children =
            vec![GatherChild::Say(say.clone()), GatherChild::Play(play.clone()), GatherChild::Pause(pause.clone())];
        for child in &children {
            match child {
                GatherChild::Say(_) | GatherChild::Play(_) | GatherChild::Pause(_) => {}
            }
        }
        verbs.push(Verb::Gather(Gather {
            input: Some(input),
            num_digits: Some(1),
            timeout: Some(5),
            action: Some(format!("https://dialer.example.com/twiml/tok_1/menu?step={n}&retry=0")),
            method: Some(methods[n % methods.len()]),
            finish_on_key: Some("#".into()),
            action_on_empty_result: Some(n % 2 == 0),
            language: Some("ja-JP".into()),
            children,
        }));
    }
    for method in &methods {
        verbs.push(Verb::Record(Record {
            action: Some("https://dialer.example.com/twiml/tok_1/voicemail".into()),
            method: Some(*method),
            max_length: Some(60),
            play_beep: Some(*method == Method::Post),
            timeout: Some(5),
            finish_on_key: Some("*".into()),
        }));
        verbs.push(Verb::Dial(Dial {
            targets: vec![DialNoun::Number("+81312345678".into()), DialNoun::Client("front-desk".into())],
            caller_id: Some("+815012345678".into()),
            timeout: Some(20),
            action: Some("https://dialer.example.com/twiml/tok_1/dial-done".into()),
            method: Some(*method),
        }));
        verbs.push(Verb::Redirect(Redirect {
            url: "https://dialer.example.com/twiml/tok_1/next?a=1&b=2".into(),
            method: Some(*method),
        }));
    }
    verbs.push(Verb::Hangup);
    for reason in all_reject_reasons() {
        verbs.push(Verb::Reject(Reject { reason: Some(reason) }));
    }
    for verb in &verbs {
        match verb {
            Verb::Say(_)
            | Verb::Play(_)
            | Verb::Pause(_)
            | Verb::Gather(_)
            | Verb::Record(_)
            | Verb::Dial(_)
            | Verb::Hangup
            | Verb::Redirect(_)
            | Verb::Reject(_) => {}
        }
    }
    Response { verbs }
}

#[test]
fn every_element_attribute_and_enum_value_we_render_is_valid_twiml() {
    let Some(model) = testkit::twiml_voice_model() else { return };
    let xml = everything().render();
    assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#), "{xml}");
    let errors = testkit::twiml_model_errors(&model, &xml);
    assert!(errors.is_empty(), "{}\n\n{xml}", errors.join("\n"));
}

#[test]
fn the_model_check_covers_every_element_attribute_and_value_the_builder_emits() {
    let xml = everything().render();
    let doc = roxmltree::Document::parse(&xml).expect("XML");
    let mut attributes = BTreeSet::new();
    let mut values = BTreeSet::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let tag = node.tag_name().name().to_owned();
        attributes.insert((tag.clone(), String::new()));
        for attr in node.attributes() {
            attributes.insert((tag.clone(), attr.name().to_owned()));
            if ["input", "method", "reason", "actionOnEmptyResult", "playBeep"].contains(&attr.name()) {
                values.insert(format!("{tag}@{}={}", attr.name(), attr.value()));
            }
        }
    }
    let expected_attributes: BTreeSet<(String, String)> = [
        ("Response", ""),
        ("Say", ""),
        ("Say", "language"),
        ("Say", "voice"),
        ("Say", "loop"),
        ("Play", ""),
        ("Play", "loop"),
        ("Pause", ""),
        ("Pause", "length"),
        ("Gather", ""),
        ("Gather", "input"),
        ("Gather", "numDigits"),
        ("Gather", "timeout"),
        ("Gather", "action"),
        ("Gather", "method"),
        ("Gather", "finishOnKey"),
        ("Gather", "actionOnEmptyResult"),
        ("Gather", "language"),
        ("Record", ""),
        ("Record", "action"),
        ("Record", "method"),
        ("Record", "maxLength"),
        ("Record", "playBeep"),
        ("Record", "timeout"),
        ("Record", "finishOnKey"),
        ("Dial", ""),
        ("Dial", "callerId"),
        ("Dial", "timeout"),
        ("Dial", "action"),
        ("Dial", "method"),
        ("Number", ""),
        ("Client", ""),
        ("Hangup", ""),
        ("Redirect", ""),
        ("Redirect", "method"),
        ("Reject", ""),
        ("Reject", "reason"),
    ]
    .into_iter()
    .map(|(t, a)| (t.to_owned(), a.to_owned()))
    .collect();
    assert_eq!(attributes, expected_attributes);

    let expected_values: BTreeSet<String> = [
        "Gather@input=dtmf",
        "Gather@input=speech",
        "Gather@input=dtmf speech",
        "Gather@method=GET",
        "Gather@method=POST",
        "Gather@actionOnEmptyResult=true",
        "Gather@actionOnEmptyResult=false",
        "Record@method=GET",
        "Record@method=POST",
        "Record@playBeep=true",
        "Record@playBeep=false",
        "Dial@method=GET",
        "Dial@method=POST",
        "Redirect@method=GET",
        "Redirect@method=POST",
        "Reject@reason=busy",
        "Reject@reason=rejected",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(values, expected_values);
}

#[test]
fn a_name_with_xml_specials_and_japanese_renders_escaped_and_parses_back_exactly() {
    let name = r#"山田 太郎様 & <Co> "Ltd" 'JP'"#;
    let text = format!("{name}、お電話ありがとうございます。\r\n改行\tタブ");
    let action = format!("https://dialer.example.com/twiml/t?name={name}&x=1\n2");
    let xml = Response::new()
        .verb(
            Gather::new().action(action.as_str()).finish_on_key("'\"").child(Say::new(text.as_str()).language("ja-JP")),
        )
        .render();

    assert!(xml.contains("山田 太郎様 &amp; &lt;Co&gt; &quot;Ltd&quot; &apos;JP&apos;"), "{xml}");
    assert!(!xml.contains("<Co>") && !xml.contains("\"Ltd\""), "{xml}");

    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("not XML ({e}):\n{xml}"));
    let gather = doc.descendants().find(|n| n.has_tag_name("Gather")).expect("Gather");
    assert_eq!(gather.attribute("action"), Some(action.as_str()));
    assert_eq!(gather.attribute("finishOnKey"), Some("'\""));
    let say = gather.children().find(|n| n.has_tag_name("Say")).expect("Say");
    let parsed: String = say.children().filter_map(|n| n.text()).collect();
    assert_eq!(parsed, text);
}

#[test]
fn builder_and_struct_literal_give_the_same_twiml() {
    let built = Response::new()
        .verb(Say::new("こんにちは").language("ja-JP").voice("Polly.Takumi").loop_(1))
        .verb(Dial::new().number("+81312345678").client("desk").caller_id("+815012345678").method(Method::Post))
        .verb(Reject::new(RejectReason::Busy));
    let literal = Response::from(vec![
        Verb::Say(Say {
            text: "こんにちは".into(),
            language: Some("ja-JP".into()),
            voice: Some("Polly.Takumi".into()),
            loop_: Some(1),
        }),
        Verb::Dial(Dial {
            targets: vec![DialNoun::Number("+81312345678".into()), DialNoun::Client("desk".into())],
            caller_id: Some("+815012345678".into()),
            timeout: None,
            action: None,
            method: Some(Method::Post),
        }),
        Verb::Reject(Reject { reason: Some(RejectReason::Busy) }),
    ]);
    assert_eq!(built, literal);
    assert_eq!(
        built.render(),
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
            r#"<Say language="ja-JP" voice="Polly.Takumi" loop="1">こんにちは</Say>"#,
            r#"<Dial callerId="+815012345678" method="POST"><Number>+81312345678</Number><Client>desk</Client></Dial>"#,
            r#"<Reject reason="busy"/>"#,
            r#"</Response>"#
        )
    );
}
