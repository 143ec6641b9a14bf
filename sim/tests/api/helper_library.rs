//! The official Twilio helper library for Python (`twilio` from PyPI, unmodified) against the simulator:
//! `helper_library/messages.py` creates a number, a call and messages, fetches and lists them. The only
//! change from talking to Twilio is the base URL. Needs `target/pyenv/bin/python` (scripts/test makes it)
//! or a `python3` that can import `twilio`; without either the test says it skipped, or fails when `CI` is
//! set.

use std::path::Path;
use std::process::Command;

use dialer_sim::SimConfig;

use crate::support::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_helper_library_works_against_the_simulator() {
    let Some(python) = testkit::twilio_python() else { return };
    let config = SimConfig { cps: 100.0, speed: 100.0, ..SimConfig::default() };
    let sim = start(config).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helper_library/messages.py");
    let args = [
        script.display().to_string(),
        sim.base_url(),
        sim.config().account_sid.clone(),
        sim.config().auth_token.clone(),
    ];
    // The script blocks (its HTTP client is synchronous), so it runs off the runtime's workers.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(&args)
            // Region / edge settings would make the library rewrite the host name.
            .env_remove("TWILIO_REGION")
            .env_remove("TWILIO_EDGE")
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "messages.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout.trim(), "ok");
    // What the library did is in the simulator's record.
    assert_eq!(sim.calls().len(), 1);
    assert_eq!(sim.messages().len(), 5);
    assert_eq!(sim.stats().message_create_errors.values().sum::<u64>(), 2);
}
