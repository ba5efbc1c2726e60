//! `hawser check DIR`: the standalone source and the build, without serving anything. Prints
//! the routing table and every finding; the exit code says whether any finding is an error.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::source::ManifestDir;
use crate::translate::{BuildConfig, Builder, Built, Level, Report};

#[derive(Serialize)]
struct JsonReport<'r> {
    level: Level,
    #[serde(flatten)]
    report: &'r Report,
}

/// Loads and builds `dir`; returns what to print and whether there were errors.
pub fn check(dir: &Path, config: &BuildConfig, format: OutputFormat) -> (String, bool) {
    let (snapshot, reports) = ManifestDir::new(dir).load();
    let built = Builder::default().build_with(&snapshot, config, reports);
    let text = match format {
        OutputFormat::Text => text(&built),
        OutputFormat::Json => json(&built),
    };
    (text, built.has_errors())
}

fn text(built: &Built) -> String {
    let mut out = String::from("Routes:\n");
    let routes = built.table.summary();
    if routes.is_empty() {
        out.push_str("  (none)\n");
    }
    for line in routes {
        let _ = writeln!(out, "  {line}");
    }
    if !built.tls.is_empty() {
        out.push_str("TLS:\n");
        for (host, secret) in &built.tls {
            let _ = writeln!(out, "  {host}: Secret {secret}");
        }
    }
    if !built.reports.is_empty() {
        out.push_str("Findings:\n");
    }
    let mut reports: Vec<&Report> = built.reports.iter().collect();
    reports.sort_by_key(|r| r.level());
    for report in reports {
        let level = format!("{:?}", report.level()).to_lowercase();
        let field = if report.field.is_empty() { String::new() } else { format!(" {}", report.field) };
        let _ = writeln!(out, "  {level:<7} {}{field}: {}", report.object, report.message);
    }
    let count = |level| built.reports.iter().filter(|r| r.level() == level).count();
    let _ = writeln!(out, "{} errors, {} warnings", count(Level::Error), count(Level::Warning));
    out
}

fn json(built: &Built) -> String {
    let reports: Vec<JsonReport<'_>> =
        built.reports.iter().map(|report| JsonReport { level: report.level(), report }).collect();
    let document = serde_json::json!({ "table": &built.table, "tls": &built.tls, "reports": reports });
    serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
}
