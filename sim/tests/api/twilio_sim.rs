//! The product's Twilio client against the built-in simulator over real HTTP, with every fault the
//! simulator can inject turned on; callbacks land on a local listener and are checked with the product's
//! own signature validator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use axum::Router;
use dialer_core::domain::E164;
use dialer_core::twilio::signature::validate;
use dialer_core::twilio::{
    CreateCall, HttpMethod, ListCalls, RetryClass, StartTimeAfter, StatusCallbackEvent, TwilioClient,
};
use dialer_sim::{self as sim, DigitDist, Faults, OutcomeMix, SecsRange, SimConfig};

#[derive(Clone)]
struct Listener {
    base: String,
    token: String,
    seen: Arc<Mutex<Vec<(String, bool)>>>,
}

async fn hook(State(l): State<Listener>, uri: Uri, headers: HeaderMap, body: Bytes) -> &'static str {
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let url = format!("{}{}", l.base, uri);
    let sig = headers.get("X-Twilio-Signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    l.seen.lock().unwrap().push((uri.path().to_string(), validate(&l.token, &url, &params, sig)));
    "<Response><Say>Hello</Say><Hangup/></Response>"
}

async fn listener(token: &str) -> Listener {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l =
        Listener { base: format!("http://{}", tcp.local_addr().unwrap()), token: token.into(), seen: Arc::default() };
    let app = Router::new().route("/{*rest}", post(hook)).with_state(l.clone());
    tokio::spawn(async move { axum::serve(tcp, app).await });
    l
}

fn request(to: &E164, base: &str, i: usize) -> CreateCall {
    let mut req = CreateCall::new(to.clone(), E164::parse("+815012345678", None).unwrap(), format!("{base}/twiml/{i}"));
    req.method = Some(HttpMethod::Post);
    req.status_callback = Some(format!("{base}/status/{i}"));
    req.status_callback_events = vec![
        StatusCallbackEvent::Initiated,
        StatusCallbackEvent::Ringing,
        StatusCallbackEvent::Answered,
        StatusCallbackEvent::Completed,
    ];
    req
}

#[tokio::test]
async fn every_fault_on_callbacks_stay_signed_429s_retry_and_timeouts_are_found_by_number() {
    let config = SimConfig {
        cps: 500.0,
        speed: 500.0,
        seed: Some(7),
        outcomes: OutcomeMix::all_human(),
        ring_time: SecsRange::fixed(1.0),
        digits: DigitDist::always(None),
        faults: Faults {
            rate_429: 0.2,
            rate_5xx: 0.1,
            timeout: 0.1,
            duplicate: 0.3,
            reorder: 0.3,
            delay: 0.3,
            lost: 0.1,
            timeout_delay: Duration::from_secs(3),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let token = config.auth_token.clone();
    let cb = listener(&token).await;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = sim::spawn(config, tcp).await.unwrap();
    let client =
        TwilioClient::new(&sim.base_url(), &sim.config().account_sid, &token, Duration::from_millis(800)).unwrap();

    let (mut retried, mut unknown, mut found) = (0, 0, 0);
    for i in 0..40 {
        let to = E164::parse(&format!("+8180{:08}", 10_000_000 + i), None).unwrap();
        let req = request(&to, &cb.base, i);
        loop {
            match client.create_call(&req).await {
                Ok(_) => break,
                Err(e) => match e.class() {
                    // Nothing was created: safe to send again.
                    RetryClass::NotCreatedRetry => retried += 1,
                    RetryClass::FateUnknown => {
                        unknown += 1;
                        // Never re-sent blindly: ask the API whether it exists.
                        let list = ListCalls {
                            to: Some(to.clone()),
                            start_time_after: Some(StartTimeAfter::Date(chrono::Utc::now().date_naive())),
                            ..Default::default()
                        };
                        let calls = client.list_calls(&list).await.unwrap();
                        if calls.is_empty() {
                            continue; // proven not created (a 500 that created nothing)
                        }
                        assert_eq!(calls.len(), 1);
                        found += 1;
                        break;
                    }
                    other => panic!("unexpected {other:?}: {e}"),
                },
            }
        }
    }
    assert!(retried > 0 && unknown > 0 && found > 0, "faults fired: {retried} {unknown} {found}");
    assert!(sim.wait_idle(Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(2500)).await; // delayed callbacks
    let stats = sim.stats();
    assert_eq!(stats.calls_created, 40, "one call per number");
    assert_eq!(stats.duplicate_to_url_pairs, 0, "no attempt dialled twice");
    let seen = cb.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(p, _)| p.starts_with("/status/")));
    assert!(seen.iter().all(|(_, ok)| *ok), "every callback validates: {seen:?}");
}

#[tokio::test]
async fn the_client_reads_retry_after_from_a_429_burst_and_the_code_of_a_geo_refusal() {
    let burst = dialer_sim::Burst { every: Duration::from_secs(60), length: Duration::from_millis(59_900) };
    let config = SimConfig {
        faults: Faults { burst_429: Some(burst), geo_blocked: vec!["+44".into()], ..Faults::default() },
        ..SimConfig::default()
    };
    let token = config.auth_token.clone();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = sim::spawn(config, tcp).await.unwrap();
    let client = TwilioClient::new(&sim.base_url(), &sim.config().account_sid, &token, Duration::from_secs(5)).unwrap();
    let base = "http://127.0.0.1:9";

    // A destination without geo permission: 400 / 21215, nothing created.
    let uk = E164::parse("+447400123456", None).unwrap();
    let e = client.create_call(&request(&uk, base, 1)).await.unwrap_err();
    assert_eq!(e.code(), Some(21215), "{e}");
    assert!(e.to_string().contains("Account not authorized to call +447400123456"), "{e}");

    tokio::time::sleep(Duration::from_millis(200)).await; // into the burst
    let jp = E164::parse("+818012345678", None).unwrap();
    let e = client.create_call(&request(&jp, base, 2)).await.unwrap_err();
    assert_eq!((e.code(), e.class()), (Some(20429), RetryClass::NotCreatedRetry));
    let after = e.retry_after().expect("Retry-After is read");
    assert!(after >= Duration::from_secs(1) && after <= Duration::from_secs(60), "{after:?}");
    assert!(sim.calls().is_empty());
}
