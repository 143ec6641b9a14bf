//! Criterion micro-benchmarks for the hot pure functions (issue 7, item 6):
//! signature validation, TwiML rendering, script text, outcome classification, calling windows,
//! E.164 parsing and CSV parsing.
//!
//! Run: `cargo bench -p benches --bench hot_paths` (add `-- <filter>` to run one group, e.g. `-- signature`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dialer_core::domain::campaign::WindowFile;
use dialer_core::domain::script::render_text;
use dialer_core::domain::{
    classify, decide, AnsweredBy, CallFacts, CallStatus, CallingWindow, Outcome, RetryPolicy, E164,
};
use dialer_core::import::parse_csv;
use dialer_core::twilio::signature::{compute_signature, validate};
use dialer_core::twilio::twiml::{Dial, Gather, GatherInput, Method, Pause, Record, Response, Say, Verb};

const AUTH_TOKEN: &str = "9f3c1b7e2d4a6c8e0f1a3b5c7d9e1f20";
const STATUS_URL: &str =
    "https://dialer.example.com/status/AT1kYmQ5ZjQxYS0zYzJlLTRmNWQtOGE2Yi0xYzJkM2U0ZjVhNmI.Zm9vYmFyYmF6cXV4";

/// A realistic terminal StatusCallback form body (what Twilio posts for `completed`): 17 fields.
fn status_callback_params() -> Vec<(String, String)> {
    [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CAfedcba9876543210fedcba9876543210"),
        ("CallStatus", "completed"),
        ("Called", "+818012345678"),
        ("CalledCountry", "JP"),
        ("Caller", "+815012345678"),
        ("CallerCountry", "JP"),
        ("Direction", "outbound-api"),
        ("From", "+815012345678"),
        ("To", "+818012345678"),
        ("Timestamp", "Tue, 24 Nov 2026 03:00:42 +0000"),
        ("CallbackSource", "call-progress-events"),
        ("SequenceNumber", "3"),
        ("CallDuration", "42"),
        ("Duration", "1"),
        ("SipResponseCode", "200"),
        ("AnsweredBy", "human"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn signature(c: &mut Criterion) {
    let params = status_callback_params();
    let good = compute_signature(AUTH_TOKEN, STATUS_URL, &params);
    let mut g = c.benchmark_group("signature");
    g.bench_function("compute_signature/18_params", |b| {
        b.iter(|| compute_signature(black_box(AUTH_TOKEN), black_box(STATUS_URL), black_box(&params)))
    });
    // validate() checks the URL as given and with :443 added (two HMACs, constant time).
    g.bench_function("validate/18_params/valid", |b| {
        b.iter(|| assert!(validate(black_box(AUTH_TOKEN), black_box(STATUS_URL), black_box(&params), black_box(&good))))
    });
    g.bench_function("validate/18_params/forged", |b| {
        b.iter(|| {
            assert!(!validate(
                black_box(AUTH_TOKEN),
                black_box(STATUS_URL),
                black_box(&params),
                black_box("bm90IGEgcmVhbCBzaWduYXR1cmU=")
            ))
        })
    });
    g.finish();
}

/// The Japanese delivery-reschedule main menu as the callbacks service answers `/twiml/{token}`.
fn delivery_menu(attrs: &BTreeMap<String, String>, tz: Tz) -> Response {
    const MAIN: &str = "こちらはExample運輸です。{name}様のお荷物 {parcel} をお届けできませんでした。\
        再配達の日時を選ぶには1を、担当者とお話しになるには0を、今後のお電話を停止するには9を押してください。";
    let say = |text: String| Say::new(text).language("ja-JP").voice("Polly.Mizuki");
    let base = "https://dialer.example.com";
    let token = "AT1kYmQ5ZjQxYS0zYzJlLTRmNWQtOGE2Yi0xYzJkM2U0ZjVhNmI.Zm9vYmFyYmF6cXV4";
    Response::new()
        .verb(
            Gather::new()
                .input(GatherInput::Dtmf)
                .num_digits(1)
                .timeout(6)
                .action(format!("{base}/gather/{token}?menu=main"))
                .method(Method::Post)
                .action_on_empty_result(true)
                .child(say(render_text(MAIN, attrs, tz, "ja-JP")))
                .child(Pause::seconds(1)),
        )
        .verb(say("恐れ入ります、もう一度お願いいたします。".to_string()))
        .verb(Verb::Redirect(dialer_core::twilio::twiml::Redirect::new(format!("{base}/twiml/{token}?repeat=1"))))
}

fn transfer(tz: Tz, attrs: &BTreeMap<String, String>) -> Response {
    Response::new()
        .verb(Say::new(render_text("{name}様、担当者におつなぎします。", attrs, tz, "ja-JP")).language("ja-JP"))
        .verb(Dial::new().number("+81312345678").caller_id("+815012345678").timeout(20))
        .verb(Record::new().max_length(60).play_beep(true).action("https://dialer.example.com/record/x"))
        .verb(Verb::Hangup)
}

fn attrs() -> BTreeMap<String, String> {
    [("name", "山田 花子"), ("parcel", "1234-5678"), ("delivery_at", "2026-11-25T05:30:00Z")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn twiml(c: &mut Criterion) {
    let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
    let attrs = attrs();
    let built = delivery_menu(&attrs, tokyo);
    let mut g = c.benchmark_group("twiml");
    g.bench_function("delivery_menu_ja/build_and_render", |b| {
        b.iter(|| delivery_menu(black_box(&attrs), tokyo).render())
    });
    g.bench_function("delivery_menu_ja/render_only", |b| b.iter(|| black_box(&built).render()));
    g.bench_function("transfer_dial_record/build_and_render", |b| {
        b.iter(|| transfer(tokyo, black_box(&attrs)).render())
    });
    g.finish();

    let mut g = c.benchmark_group("script");
    let main = "こちらはExample運輸です。{name}様のお荷物 {parcel} をお届けできませんでした。";
    g.bench_function("render_text/ja_2_vars", |b| {
        b.iter(|| render_text(black_box(main), black_box(&attrs), tokyo, "ja-JP"))
    });
    g.bench_function("render_text/ja_time_var", |b| {
        b.iter(|| render_text(black_box("{name}様、{delivery_at}にお届けします。"), black_box(&attrs), tokyo, "ja-JP"))
    });
    g.finish();
}

fn outcome(c: &mut Criterion) {
    let f = |status, answered_by, sip, has_result, voicemail_left| CallFacts {
        status,
        answered_by,
        sip_response_code: sip,
        has_result,
        opted_out: false,
        voicemail_left,
    };
    let cases = [
        f(CallStatus::Completed, Some(AnsweredBy::Human), Some(200), true, false),
        f(CallStatus::Completed, Some(AnsweredBy::Human), Some(200), false, false),
        f(CallStatus::Completed, Some(AnsweredBy::MachineEndBeep), Some(200), false, true),
        f(CallStatus::Busy, None, Some(486), false, false),
        f(CallStatus::NoAnswer, None, Some(487), false, false),
        f(CallStatus::Failed, None, Some(404), false, false),
        f(CallStatus::Failed, None, Some(503), false, false),
        f(CallStatus::Canceled, None, None, false, false),
    ];
    let policy = RetryPolicy::default();
    let now: DateTime<Utc> = "2026-11-24T03:00:00Z".parse().unwrap();
    let mut g = c.benchmark_group("outcome");
    g.throughput(Throughput::Elements(cases.len() as u64));
    g.bench_function("classify/8_mixed_calls", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for facts in black_box(&cases) {
                n += classify(*facts) as u32;
            }
            n
        })
    });
    g.bench_function("classify_then_decide/8_mixed_calls", |b| {
        b.iter(|| {
            let mut retries = 0u32;
            for facts in black_box(&cases) {
                let o = classify(*facts);
                if let dialer_core::domain::Next::Retry { .. } = decide(&policy, 3, o, 1, 0, now) {
                    retries += 1;
                }
            }
            retries
        })
    });
    g.finish();
    let mut g = c.benchmark_group("outcome");
    g.bench_function("decide/busy_retry", |b| {
        b.iter(|| decide(black_box(&policy), 3, black_box(Outcome::Busy), 1, 0, now))
    });
    g.bench_function("decide/busy_exhausted", |b| {
        b.iter(|| decide(black_box(&policy), 3, black_box(Outcome::Busy), 3, 2, now))
    });
    g.finish();
}

fn window(c: &mut Criterion) {
    let w = |start: &str, end: &str, days: &[&str], holidays: &[&str]| {
        CallingWindow::parse(&WindowFile {
            start: start.into(),
            end: end.into(),
            days: days.iter().map(|s| s.to_string()).collect(),
            holidays: holidays.iter().map(|s| s.to_string()).collect(),
            public_holidays: None,
        })
        .unwrap()
    };
    let day = w("09:00", "20:00", &[], &["2027-01-01"]);
    let overnight = w("22:00", "02:00", &["fri"], &[]);
    let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
    let ny: Tz = "America/New_York".parse().unwrap();
    let london: Tz = "Europe/London".parse().unwrap();
    let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let cases = [
        ("tokyo/open", &day, tokyo, t("2026-11-24T03:00:00Z")),
        ("tokyo/before_opening", &day, tokyo, t("2026-11-23T22:00:00Z")),
        ("tokyo/after_close_next_day", &day, tokyo, t("2026-11-24T12:00:00Z")),
        ("new_york/open_dst", &day, ny, t("2026-07-01T15:00:00Z")),
        ("new_york/closed_winter", &day, ny, t("2026-12-01T05:00:00Z")),
        ("overnight_fri/open_after_midnight", &overnight, london, t("2026-11-28T01:00:00Z")),
        ("overnight_fri/closed_next_week", &overnight, london, t("2026-11-28T03:00:00Z")),
    ];
    let mut g = c.benchmark_group("window");
    for (name, win, tz, now) in cases {
        g.bench_function(format!("next_opening/{name}"), |b| {
            b.iter(|| black_box(win).next_opening(tz, black_box(now)))
        });
    }
    g.finish();
}

fn phone(c: &mut Criterion) {
    let mut g = c.benchmark_group("phone");
    g.bench_function("e164_parse/jp_local_080", |b| {
        b.iter(|| E164::parse(black_box("080-1234-5678"), Some("JP")).unwrap())
    });
    g.bench_function("e164_parse/international", |b| b.iter(|| E164::parse(black_box("+818012345678"), None).unwrap()));
    g.bench_function("e164_parse/jp_invalid", |b| b.iter(|| E164::parse(black_box("12345"), Some("JP")).is_err()));
    g.finish();
}

/// The same rows the load harness generates: unique 090/080/070 mobiles, name, parcel, timezone.
fn csv_rows(n: usize) -> Vec<u8> {
    const PREFIXES: [&str; 3] = ["090", "080", "070"];
    const SURNAMES: [&str; 8] = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村"];
    const GIVEN: [&str; 8] = ["太郎", "花子", "翔太", "美咲", "健一", "陽菜", "大輔", "さくら"];
    let mut out = String::from("phone,name,parcel,timezone\n");
    for i in 0..n {
        let sub = 10_000_000 + i / 3;
        let p = 10_000_000 + i;
        out.push_str(&format!(
            "{}-{:04}-{:04},{} {},{:04}-{:04},Asia/Tokyo\n",
            PREFIXES[i % 3],
            sub / 10_000,
            sub % 10_000,
            SURNAMES[i % 8],
            GIVEN[(i / 8) % 8],
            p / 10_000 % 10_000,
            p % 10_000
        ));
    }
    out.into_bytes()
}

fn csv(c: &mut Criterion) {
    let data = csv_rows(10_000);
    let zoning = dialer_core::domain::compliance::Zoning {
        campaign_tz: dialer_core::domain::Tz::parse("Asia/Tokyo").unwrap(),
        fallback: false,
        require_reference: false,
        rules: None,
    };
    assert_eq!(parse_csv(&data, Some("JP"), &["name", "parcel"], &zoning).rows.len(), 10_000);
    let mut g = c.benchmark_group("import");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(10_000));
    // Includes dropping the 10k parsed rows: a real import pays that too.
    g.bench_function("parse_csv/10k_rows_jp", |b| {
        b.iter(|| {
            let p = parse_csv(black_box(&data), Some("JP"), &["name", "parcel"], &zoning);
            assert!(p.errors.is_empty());
            p
        })
    });
    g.finish();
}

criterion_group!(benches, signature, twiml, outcome, window, phone, csv);
criterion_main!(benches);
