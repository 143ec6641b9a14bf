use std::io::Write;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use dialer_core::store::{AuditReport, StoreError};

use super::{connect, CliResult, Failure};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One line per call, tab-separated, with a header.
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ComplianceCmd {
    /// Re-check every call of a campaign against its rules: the callee's local time in each zone, where
    /// the zone came from, the rules that applied and any violation. Exits 1 if a call broke a rule.
    Audit {
        #[arg(long)]
        campaign: i64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// List only the calls that broke a rule.
        #[arg(long)]
        violations_only: bool,
    },
}

pub async fn run(cmd: ComplianceCmd) -> CliResult {
    let ComplianceCmd::Audit { campaign, format, violations_only } = cmd;
    let store = connect().await?;
    let mut report = match store.compliance_audit(campaign).await {
        Err(e @ StoreError::NotFound(_)) => return Err(Failure::InvalidInput(e.to_string())),
        r => r.context("auditing the campaign's calls")?,
    };
    if violations_only {
        report.entries.retain(|e| !e.violations.is_empty());
    }
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &report).context("writing JSON")?,
        Format::Table => write_table(&report, &mut out).context("writing the table")?,
    }
    writeln!(out).context("writing")?;
    eprintln!("campaign {campaign}: {} call(s) audited, {} with a violation", report.calls, report.violations);
    if report.violations > 0 {
        return Err(Failure::Violations(report.violations));
    }
    Ok(())
}

fn write_table(report: &AuditReport, out: &mut impl Write) -> std::io::Result<()> {
    write!(out, "attempt_id\tphone\trequested_at\tlocal_time\tzone_source\tregion\trules\tviolations")?;
    for e in &report.entries {
        write!(
            out,
            "\n{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.attempt_id,
            e.phone,
            e.requested_at.to_rfc3339(),
            e.local_times.join(" | "),
            e.zone_source.as_str(),
            e.region.as_deref().unwrap_or(""),
            e.rules.join("; "),
            if e.violations.is_empty() { "none".to_string() } else { e.violations.join("; ") },
        )?;
    }
    Ok(())
}
