//! Finding PostgreSQL for newcomers: `DATABASE_URL` when set; else a reachable local server; else a
//! throwaway cluster under `target/pg` started with the system's `initdb`/`pg_ctl` (installing Debian's
//! `postgresql` when missing and running as root); else a clear message saying what to do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "no PostgreSQL found: DATABASE_URL is not set, nothing answers on 127.0.0.1:5432, and {0}.\n\
         Set DATABASE_URL=postgres://user@host/db, or install PostgreSQL (Debian: apt-get install postgresql)."
    )]
    NotFound(String),
    #[error("starting a local PostgreSQL failed: {0}")]
    Start(String),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// Port of the throwaway cluster (not 5432, which a system server may want).
const LOCAL_PORT: u16 = 55432;

async fn reachable(url: &str) -> bool {
    let Ok(opts) = url.parse::<PgConnectOptions>() else { return false };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), opts.log_statements(tracing::log::LevelFilter::Off).connect())
            .await,
        Ok(Ok(_))
    )
}

/// Ensures `db` exists on the server that `admin_url` reaches (connected to its maintenance database).
pub async fn ensure_database(admin_url: &str, db: &str) -> Result<(), PgError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(db)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        // Identifiers can't be bound; `db` comes from our own code, quoted anyway.
        let r = sqlx::query(&format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\""))).execute(&mut conn).await;
        if let Err(e) = r {
            // Lost a race with another process creating it: fine.
            if !e.to_string().contains("already exists") {
                return Err(e.into());
            }
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// Returns a URL to a usable server's maintenance database (`postgres`), starting one if needed.
/// `workdir` is where a throwaway cluster lives (`target/pg`).
pub async fn find_or_start(explicit: Option<&str>, workdir: &Path) -> Result<String, PgError> {
    if let Some(url) = explicit {
        return Ok(url.to_string());
    }
    for candidate in
        ["postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/postgres"]
    {
        if reachable(candidate).await {
            return Ok(candidate.to_string());
        }
    }
    let local = format!("postgres://postgres@127.0.0.1:{LOCAL_PORT}/postgres");
    if reachable(&local).await {
        return Ok(local);
    }
    let dir = workdir.to_path_buf();
    tokio::task::spawn_blocking(move || start_cluster(&dir)).await.map_err(|e| PgError::Start(e.to_string()))??;
    for _ in 0..60 {
        if reachable(&local).await {
            return Ok(local);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(PgError::Start(format!("the cluster under {} did not accept connections", workdir.display())))
}

/// The server's URL with another database name.
pub fn with_database(url: &str, db: &str) -> String {
    match url.parse::<url::Url>() {
        Ok(mut u) if u.scheme().starts_with("postgres") => {
            u.set_path(&format!("/{db}"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn pg_bin(name: &str) -> Option<PathBuf> {
    if let Ok(out) = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output() {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    versions.sort();
    versions.into_iter().rev().map(|v| v.join("bin").join(name)).find(|p| p.exists())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<(), PgError> {
    let out = cmd.output().map_err(|e| PgError::Start(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(PgError::Start(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Runs a PostgreSQL tool; as root, as the `postgres` user (initdb refuses root).
fn pg_command(bin: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn start_cluster(workdir: &Path) -> Result<(), PgError> {
    let root = is_root();
    if pg_bin("initdb").is_none() {
        let apt = Command::new("sh").arg("-c").arg("command -v apt-get").output().map(|o| o.status.success());
        if !(root && apt.unwrap_or(false)) {
            return Err(PgError::NotFound(
                "initdb/pg_ctl are not installed (and installing them needs root with apt-get)".into(),
            ));
        }
        eprintln!("PostgreSQL not found: installing Debian's postgresql package…");
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let initdb = pg_bin("initdb").ok_or_else(|| PgError::NotFound("initdb is still missing".into()))?;
    let pg_ctl = pg_bin("pg_ctl").ok_or_else(|| PgError::NotFound("pg_ctl is missing".into()))?;
    std::fs::create_dir_all(workdir).map_err(|e| PgError::Start(e.to_string()))?;
    let workdir = workdir.canonicalize().map_err(|e| PgError::Start(e.to_string()))?;
    let data = workdir.join("data");
    let sock = workdir.join("sock");
    std::fs::create_dir_all(&sock).map_err(|e| PgError::Start(e.to_string()))?;
    if root {
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&workdir))?;
    }
    if !data.join("PG_VERSION").exists() {
        eprintln!("starting a throwaway PostgreSQL cluster in {}", data.display());
        run(pg_command(&initdb, root).arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]))?;
    }
    run(pg_command(&pg_ctl, root)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(workdir.join("postgres.log"))
        .arg("-o")
        .arg(format!("-p {LOCAL_PORT} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400", sock.display()))
        .arg("-w")
        .arg("start"))
}
