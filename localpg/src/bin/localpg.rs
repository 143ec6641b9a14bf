//! `localpg [DATABASE]`: prints the URL of a local PostgreSQL database (`DATABASE_URL`'s server when set,
//! else one found on 127.0.0.1:5432 or started under `target/pg`), creating the database if needed.
//! Scripts use it before anything that needs the store compiled (the offline SQL check).

use std::path::Path;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let db = std::env::args().nth(1).unwrap_or_else(|| "postgres".into());
    let explicit = std::env::var("DATABASE_URL").ok();
    let workdir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pg");
    let server = match localpg::find_or_start(explicit.as_deref(), &workdir).await {
        Ok(url) => localpg::with_database(&url, "postgres"),
        Err(e) => {
            eprintln!("localpg: {e}");
            return ExitCode::from(4);
        }
    };
    if let Err(e) = localpg::ensure_database(&server, &db).await {
        eprintln!("localpg: {e}");
        return ExitCode::from(4);
    }
    println!("{}", localpg::with_database(&server, &db));
    ExitCode::SUCCESS
}
