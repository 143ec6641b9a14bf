//! Scale: claim latency (`Store::attempts_claim_due`, batch 200) and dialer RSS with a large backlog,
//! plus `EXPLAIN (ANALYZE, BUFFERS)` of the claim (in a rolled-back transaction).
//!
//! ```text
//! benches scale --contacts 10000
//! benches scale --contacts 1000000
//! benches scale --contacts 10000000 --keep-db   # --reuse skips the load on the next run
//! ```

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args as ClapArgs;
use sqlx::Row;

use crate::common::{self, loadavg, pct};
use crate::db;
use crate::stats::Summary;

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    contacts: i64,
    /// Claims per run (each is released again, so the backlog stays the same size).
    #[arg(long, default_value_t = 50)]
    claims: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds the dialer process runs against the backlog (at ACCOUNT_CPS 100) for its RSS.
    #[arg(long, default_value_t = 20)]
    rss_seconds: u64,
    /// Keep database `bench_scale_N` for another run.
    #[arg(long)]
    keep_db: bool,
    /// Use an existing `bench_scale_N` (from --keep-db) instead of loading.
    #[arg(long)]
    reuse: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let server = db::server_url().await?;
    let name = format!("bench_scale_{}", args.contacts);
    let url = localpg::with_database(&server, &name);
    let store = if args.reuse {
        dialer_core::store::Store::connect(&url, 4).await?
    } else {
        let (store, _) = db::fresh(&server, &name, 4).await?;
        let cid = common::campaign(&store, 100.0, 10_000_000).await?;
        let t = Instant::now();
        // Due over the past day, so every contact is due and the order is not the insert order.
        common::load_contacts(
            &store,
            cid,
            args.contacts,
            Utc::now().timestamp_millis() - 86_400_000,
            Some(args.contacts as f64 / 86_000.0),
        )
        .await?;
        sqlx::query("VACUUM ANALYZE contacts").execute(store.pool()).await?;
        println!("loaded {} contacts in {:.1} s", args.contacts, t.elapsed().as_secs_f64());
        store
    };
    let cid: i64 = sqlx::query_scalar("SELECT id FROM campaigns LIMIT 1").fetch_one(store.pool()).await?;
    sqlx::query("UPDATE campaigns SET status = 'running' WHERE id = $1").bind(cid).execute(store.pool()).await?;
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size('contacts'))").fetch_one(store.pool()).await?;
    println!("contacts {} rows, table+indexes {size}", args.contacts);

    let mut medians = Vec::new();
    let mut p90s = Vec::new();
    for run in 1..=args.runs {
        let before = loadavg();
        let mut lat = Vec::new();
        for _ in 0..args.claims {
            let t = Instant::now();
            let got = store.attempts_claim_due(cid, 200, "bench", 120.0).await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(got.len() == 200, "claimed {} not 200", got.len());
            // Put them back where they were (same next_attempt_at), outside the timing.
            let ids: Vec<i64> = got.iter().map(|a| a.attempt_id).collect();
            let at: Vec<_> = got.iter().map(|a| a.next_attempt_at).collect();
            store.attempts_release_many("bench", &ids, &at).await?;
        }
        let mut l2 = lat.clone();
        let (m, p90) = (pct(&mut lat, 50.0), pct(&mut l2, 90.0));
        println!(
            "run {run}: claim(200) median {m:.2} ms, p90 {p90:.2} ms over {} claims, load {before} -> {}",
            args.claims,
            loadavg()
        );
        medians.push(m);
        p90s.push(p90);
    }
    let ms = Summary::of(&medians);
    println!(
        "claim median ms: {:.2} (min {:.2}, max {:.2}); p90 median {:.2}",
        ms.median,
        ms.min,
        ms.max,
        Summary::of(&p90s).median
    );

    // EXPLAIN (ANALYZE, BUFFERS), rolled back.
    let mut tx = store.pool().begin().await?;
    let rows = sqlx::query(&format!("EXPLAIN (ANALYZE, BUFFERS) {}", dialer_core::store::ATTEMPTS_CLAIM_DUE_SQL))
        .bind(cid)
        .bind(200i64)
        .bind("bench")
        .bind(120.0f64)
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    println!("--- EXPLAIN (ANALYZE, BUFFERS) claim 200 at {} contacts", args.contacts);
    for r in rows {
        println!("{}", r.get::<String, _>(0));
    }

    // Dialer RSS against this backlog: ACCOUNT_CPS 100, simulator answering at once.
    if args.rss_seconds > 0 {
        let sim = common::start_sim(false, Duration::ZERO).await?;
        let cb_addr = format!("127.0.0.1:{}", common::free_port());
        let d_addr = format!("127.0.0.1:{}", common::free_port());
        let d = common::serve(
            "dialer",
            &url,
            &sim.base_url(),
            &format!("http://{cb_addr}"),
            &d_addr,
            &[("ACCOUNT_CPS".into(), "100".into())],
        )?;
        let mut peak: f64 = 0.0;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(args.rss_seconds) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak = peak.max(common::rss_mb(d.pid()).unwrap_or(0.0));
        }
        println!(
            "dialer RSS: peak {peak:.1} MB, end {:.1} MB after {} s ({} calls created)",
            common::rss_mb(d.pid()).unwrap_or(0.0),
            args.rss_seconds,
            sim.stats().calls_created
        );
        drop(d);
        sim.shutdown().await;
    }
    store.pool().close().await;
    if !args.keep_db {
        db::drop_database(&server, &name).await?;
    }
    Ok(())
}
