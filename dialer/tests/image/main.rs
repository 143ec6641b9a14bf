//! The container image end to end, without a registry or a Docker engine: `scripts/image build` packs the
//! binary cargo built for these tests into an OCI archive, `scripts/image run` unpacks that archive and runs
//! its entrypoint. The image says its version; served, it answers `/healthz` and `/metrics` as the image's
//! non-root user (65532), from a root filesystem under 100 MB.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/image");
/// The image's user and group (the Dockerfile's `USER`, the chart's `runAsUser`).
const NONROOT: u32 = 65532;
/// The uncompressed root filesystem must stay below this (100 MB).
const MAX_ROOTFS_BYTES: u64 = 100_000_000;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// The first thing `scripts/image` needs that this machine lacks, and how to get it. Its runtime is podman when
/// installed, else chroot, which needs root.
fn runtime_missing() -> Option<(&'static str, &'static str)> {
    for (tool, how) in [
        ("python3", "apt-get install python3"),
        ("ldd", "apt-get install libc-bin"),
        ("strip", "apt-get install binutils"),
    ] {
        if !on_path(tool) {
            return Some((tool, how));
        }
    }
    if on_path("podman") {
        return None;
    }
    if !on_path("chroot") {
        return Some(("chroot", "coreutils' chroot (run as root) or podman"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some(("a container runtime", "run the tests as root (chroot) or install podman"));
    }
    None
}

/// `scripts/image SUBCOMMAND --dir DIR ARGS…`, which must succeed.
fn image(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(SCRIPT)
        .arg(args[0])
        .arg("--dir")
        .arg(dir)
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/image");
    assert!(
        out.status.success(),
        "scripts/image {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The inode and owner of the socket listening on 127.0.0.1:`port` (`/proc/net/tcp`).
fn listening_socket(port: u16) -> Option<(u64, u32)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[1] != local || f[3] != "0A" {
            return None;
        }
        Some((f[9].parse().ok()?, f[7].parse().ok()?))
    })
}

/// The process holding socket `inode`.
fn socket_owner_pid(inode: u64) -> Option<u32> {
    let target = format!("socket:[{inode}]");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        let fds = std::fs::read_dir(p.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
            .then_some(pid)
    })
}

/// The real, effective, saved and filesystem ids on a `/proc/<pid>/status` line (`Uid:` or `Gid:`).
fn proc_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|ids| ids.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// The image directory and `scripts/image run`: removed and stopped however the test ends.
struct Running {
    dir: PathBuf,
    run: Option<Child>,
    served_by: Option<u32>,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.log")).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.run.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = self.served_by {
            // SAFETY: plain kill(2) of the process this test found serving its port.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_image_built_without_an_engine_serves_healthz_and_metrics_as_user_65532() {
    if let Some((what, how)) = runtime_missing() {
        testkit::missing(what, how);
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("image-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut running = Running { dir: dir.clone(), run: None, served_by: None };

    // Build from the (debug) binary these tests run; the script strips it.
    let built = image(&dir, &["build", "--binary", env!("CARGO_BIN_EXE_dialer")]);
    eprintln!("{}", String::from_utf8_lossy(&built.stdout));
    let sizes = String::from_utf8(image(&dir, &["size", "--bytes"]).stdout).unwrap();
    let [rootfs, layer]: [u64; 2] =
        sizes.split_whitespace().map(|n| n.parse().unwrap()).collect::<Vec<_>>().try_into().unwrap();
    eprintln!("image: root filesystem {rootfs} bytes uncompressed, layer {layer} bytes gzip");
    assert!(rootfs < MAX_ROOTFS_BYTES, "the root filesystem is {rootfs} bytes, not under 100 MB");
    assert!(layer < rootfs, "the layer is compressed: {layer} of {rootfs} bytes");

    let version = image(&dir, &["run", "--version"]);
    assert_eq!(String::from_utf8_lossy(&version.stdout), format!("dialer {}\n", env!("CARGO_PKG_VERSION")));

    // Served against a fresh database, on the host's network.
    let db = testkit::fresh_database_url().await;
    let (port, api_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{port}");
    let env = [
        format!("DATABASE_URL={db}"),
        "TWILIO_ACCOUNT_SID=AC11111111111111111111111111111111".into(),
        "TWILIO_AUTH_TOKEN=image-test-token".into(),
        "ATTEMPT_TOKEN_SECRET=image-test-attempt-token-secret-0123456789".into(),
        // Nothing is dialled: no campaign runs.
        "TWILIO_API_BASE_URL=http://127.0.0.1:9".into(),
        format!("PUBLIC_BASE_URL=http://{listen}"),
        format!("LISTEN_ADDR={listen}"),
        format!("API_LISTEN_ADDR=127.0.0.1:{api_port}"),
        "RUST_LOG=warn".into(),
    ];
    let log = std::fs::File::create(dir.join("run.log")).unwrap();
    let mut cmd = Command::new(SCRIPT);
    cmd.arg("run").arg("--dir").arg(&dir);
    for e in &env {
        cmd.args(["-e", e]);
    }
    cmd.args(["serve", "--role", "all"]).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
    running.run = Some(cmd.spawn().expect("start scripts/image run"));

    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = running.run.as_mut().unwrap().try_wait().unwrap() {
            panic!("scripts/image run exited ({status}) before /healthz answered:\n{}", running.log());
        }
        // 503 until the database answers with every migration applied; then 200.
        if http.get(format!("http://{listen}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "/healthz not 200 within 90 s:\n{}", running.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = http.get(format!("http://{listen}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200, "/metrics");
    let content_type = metrics.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "/metrics content type {content_type}");
    let text = metrics.text().await.unwrap();
    assert!(text.lines().any(|l| l.starts_with("# TYPE ")), "/metrics is Prometheus text:\n{text}");

    // The process serving the port is the image's `dialer`, as 65532 — not root.
    let (inode, socket_uid) = listening_socket(port).expect("the listening socket in /proc/net/tcp");
    assert_eq!(socket_uid, NONROOT, "the listening socket's owner");
    let pid = socket_owner_pid(inode).expect("the process holding the listening socket");
    running.served_by = Some(pid);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "dialer", "the serving process");
    assert_eq!(proc_ids(pid, "Uid:"), [NONROOT; 4], "/proc/{pid}/status Uid");
    assert_eq!(proc_ids(pid, "Gid:"), [NONROOT; 4], "/proc/{pid}/status Gid");

    // SIGTERM to `scripts/image run` reaches the entrypoint, which drains and exits; the script follows.
    let mut run = running.run.take().unwrap();
    // SAFETY: plain kill(2) of the child this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = run.kill();
            let _ = run.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.is_some(), "scripts/image run still running 30 s after SIGTERM:\n{}", running.log());
    assert!(!Path::new("/proc").join(pid.to_string()).exists(), "dialer {pid} outlived scripts/image run");
    running.served_by = None;
}
