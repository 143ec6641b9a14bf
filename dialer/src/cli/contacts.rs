use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use dialer_core::domain::script::Script;
use dialer_core::domain::E164;
use dialer_core::import::{parse_csv, RowError};
use dialer_core::store::NewContact;
use indicatif::{ProgressBar, ProgressStyle};

use super::{connect, CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum ContactsCmd {
    /// Import contacts from a CSV file with a header row (`phone` required; `timezone`, `external_id`
    /// optional; every other column becomes an attribute the script can use).
    Import {
        #[arg(long)]
        campaign: i64,
        /// Region for numbers written in local form, e.g. JP for "080-1234-5678".
        #[arg(long)]
        region: Option<String>,
        /// Import the good rows and report the bad ones (default: any bad row imports nothing).
        #[arg(long)]
        skip_invalid: bool,
        file: PathBuf,
    },
}

pub async fn run(cmd: ContactsCmd) -> CliResult {
    let ContactsCmd::Import { campaign, region, skip_invalid, file } = cmd;
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let store = connect().await?;
    let c = store.campaigns_get(campaign).await.map_err(|e| Failure::InvalidInput(e.to_string()))?;
    let zoning = c.zoning();
    let script: Script = serde_json::from_value(c.script).context("campaign script")?;
    let required: Vec<&str> = script.required_attributes().collect();
    let mut parsed = parse_csv(&bytes, region.as_deref(), &required, &zoning);

    // Numbers and references the campaign already has are duplicates too.
    let phones: Vec<E164> = parsed.rows.iter().map(|r| r.contact.phone.clone()).collect();
    let refs: Vec<&str> = parsed.rows.iter().filter_map(|r| r.contact.external_id.as_deref()).collect();
    let (phones, refs) = store.contacts_existing(campaign, &phones, &refs).await.context("checking duplicates")?;
    let (phones, refs): (HashSet<E164>, HashSet<String>) = (phones.into_iter().collect(), refs.into_iter().collect());
    if !phones.is_empty() || !refs.is_empty() {
        parsed.rows.retain(|r| {
            let dup = if phones.contains(&r.contact.phone) {
                Some(("phone", r.contact.phone.to_string()))
            } else {
                r.contact.external_id.as_ref().filter(|x| refs.contains(*x)).map(|x| ("external_id", x.clone()))
            };
            if let Some((column, value)) = &dup {
                parsed.errors.push(RowError {
                    line: r.line,
                    column: Some(column.to_string()),
                    reason: format!("{value} is already in campaign {campaign}"),
                });
            }
            dup.is_none()
        });
        parsed.errors.sort_by_key(|e| e.line);
    }

    for e in &parsed.errors {
        eprintln!("{}: {e}", file.display());
    }
    if !parsed.errors.is_empty() && !skip_invalid {
        return Err(Failure::InvalidInput(format!(
            "{} invalid row(s); nothing imported (use --skip-invalid to import the {} good rows)",
            parsed.errors.len(),
            parsed.rows.len()
        )));
    }
    let rows: Vec<NewContact> = parsed.rows.into_iter().map(|r| r.contact).collect();
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(rows.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{spinner} importing [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let n = store
        .contacts_insert_many(campaign, &rows, |done| bar.set_position(done as u64))
        .await
        .context("importing contacts")?;
    bar.finish_and_clear();
    eprintln!("imported {n} contact(s), skipped {} invalid row(s)", parsed.errors.len());
    Ok(())
}
