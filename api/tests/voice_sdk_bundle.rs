//! The console's copy of Twilio's Voice SDK (api/src/console/assets/twilio-voice.min.js) is the official
//! `@twilio/voice-sdk` bundle of the version locked in api/console-web, unmodified. The version check needs
//! nothing; the byte comparison runs `scripts/console-assets --check` (npm ci of the locked version) and
//! says it skipped when npm or its registry is unusable, or fails when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BUNDLE: &str = "api/src/console/assets/twilio-voice.min.js";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn json(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The version package-lock.json pins, which package.json must name exactly.
fn locked_version() -> String {
    let lock = json("api/console-web/package-lock.json");
    let locked = lock["packages"]["node_modules/@twilio/voice-sdk"]["version"].as_str().expect("locked version");
    let wanted = json("api/console-web/package.json");
    assert_eq!(
        wanted["dependencies"]["@twilio/voice-sdk"].as_str(),
        Some(locked),
        "package.json must pin the exact version package-lock.json has"
    );
    locked.to_owned()
}

fn header(version: &str) -> String {
    format!(
        "/*! @twilio/voice-sdk {version} (Apache-2.0), dist/twilio.min.js unmodified; written by \
         scripts/console-assets */\n"
    )
}

#[test]
fn the_committed_bundle_names_the_locked_version() {
    let version = locked_version();
    assert!(version.starts_with("2."), "the console is written for Voice SDK 2.x, not {version}");
    let bundle = std::fs::read_to_string(root().join(BUNDLE)).expect("the committed bundle");
    assert!(bundle.starts_with(&header(&version)), "{BUNDLE} is not {version}: run scripts/console-assets");
    assert!(bundle.contains("Twilio.Device=Twilio.Device||Voice.Device"), "the bundle defines window.Twilio.Device");
}

#[test]
fn the_committed_bundle_is_the_packages_dist_file() {
    let root = root();
    let out = Command::new(root.join("scripts/console-assets")).arg("--check").current_dir(&root).output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("scripts/console-assets does not run: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        // npm missing or its registry unreachable.
        Some(3) if std::env::var_os("CI").is_some() => {
            panic!("npm and its registry are needed under CI to check the Voice SDK bundle:\n{stderr}")
        }
        Some(3) => {
            println!("skipped: npm could not install @twilio/voice-sdk, so the bundle was not compared:\n{stderr}");
            return;
        }
        _ => panic!("scripts/console-assets --check: {}\n{stderr}", out.status),
    }
    // The script's verdict, checked once more here: header line + the package's file, byte for byte.
    let version = locked_version();
    let package = root.join("api/console-web/node_modules/@twilio/voice-sdk");
    let installed = json("api/console-web/node_modules/@twilio/voice-sdk/package.json");
    assert_eq!(installed["version"].as_str(), Some(version.as_str()));
    let dist = std::fs::read(package.join("dist/twilio.min.js")).expect("the package's dist/twilio.min.js");
    let mut expected = header(&version).into_bytes();
    expected.extend_from_slice(&dist);
    let committed = std::fs::read(root.join(BUNDLE)).expect("the committed bundle");
    assert!(committed == expected, "{BUNDLE} differs from @twilio/voice-sdk {version}: run scripts/console-assets");
}
