//! `hawser migrate`: for the person planning the move from ingress-nginx. Builds the Ingresses
//! of the class being left (`--from-class`, default `nginx`) as hawser would serve them and
//! says, per Ingress and in total, what will behave the same, what changes and how, and what
//! is refused. The findings are `hawser check`'s; only the grouping is for the move.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::model::NamespacedName;
use crate::snapshot::Snapshot;
use crate::translate::{Built, Kind, Level, Reason, Report};

/// What happens to one Ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Served as ingress-nginx served it.
    Same,
    /// Served, with the differences listed.
    Changes,
    /// Part of it is left out (a bad value, a lost conflict, a missing reference).
    PartlyLeftOut,
    /// Answers 503 on every path until changed: it asks for something hawser does not enforce,
    /// or states a security setting invalidly.
    Refused,
}

/// One Ingress's findings, grouped for the move.
#[derive(Debug, Default, Serialize)]
pub struct IngressMove {
    pub namespace: String,
    pub name: String,
    pub verdict: Option<Verdict>,
    /// Settings applied as written, or nginx tuning with nothing to tune.
    pub same: Vec<String>,
    /// Translated to hawser's nearest equivalent, or without effect in hawser.
    pub changes: Vec<String>,
    /// Errors: refused settings, invalid values, unresolved references.
    pub problems: Vec<String>,
    /// The state of the source rather than a difference (no ready endpoint, a certificate
    /// near expiry): true under ingress-nginx too.
    pub notes: Vec<String>,
}

/// Everything `hawser migrate` says.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub ingresses: Vec<IngressMove>,
    pub totals: BTreeMap<&'static str, usize>,
}

impl Plan {
    /// Whether anything would be refused or left out.
    pub fn has_problems(&self) -> bool {
        self.ingresses.iter().any(|i| i.verdict >= Some(Verdict::PartlyLeftOut))
    }
}

/// Groups `built`'s findings per Ingress of `snapshot`.
pub fn plan(snapshot: &Snapshot, built: &Built) -> Plan {
    let mut moves: BTreeMap<NamespacedName, IngressMove> = BTreeMap::new();
    for report in built.reports.iter().filter(|r| r.object.kind == Kind::Ingress) {
        let key = NamespacedName::new(&report.object.namespace, &report.object.name);
        let entry = moves.entry(key).or_insert_with(|| IngressMove {
            namespace: report.object.namespace.clone(),
            name: report.object.name.clone(),
            ..IngressMove::default()
        });
        let line = describe(report);
        match (report.level(), report.reason) {
            (Level::Error, _) => entry.problems.push(line),
            (_, Reason::Honored | Reason::NotNeeded) => entry.same.push(line),
            (_, Reason::NoEndpoints | Reason::Expiring) => entry.notes.push(line),
            _ => entry.changes.push(line),
        }
    }
    for ingress in &snapshot.ingresses {
        use kube::ResourceExt;
        let (namespace, name) = (ingress.namespace().unwrap_or_default(), ingress.name_any());
        moves.entry(NamespacedName::new(&namespace, &name)).or_insert(IngressMove {
            namespace,
            name,
            ..IngressMove::default()
        });
    }
    let refused = refused_ingresses(built);
    let mut ingresses: Vec<IngressMove> = moves.into_values().filter(|m| served(built, m)).collect();
    let mut totals = BTreeMap::new();
    for ingress in &mut ingresses {
        let verdict = if refused.contains(&(ingress.namespace.as_str(), ingress.name.as_str())) {
            Verdict::Refused
        } else if !ingress.problems.is_empty() {
            Verdict::PartlyLeftOut
        } else if !ingress.changes.is_empty() {
            Verdict::Changes
        } else {
            Verdict::Same
        };
        ingress.verdict = Some(verdict);
        *totals.entry(label(verdict)).or_default() += 1;
    }
    Plan { ingresses, totals }
}

/// Only Ingresses of the class being left (the build reported on them, or routes them).
fn served(built: &Built, ingress: &IngressMove) -> bool {
    let prefix = format!("ingress/{}/{}/", ingress.namespace, ingress.name);
    let routed = built.table.hosts().iter().flat_map(|h| &h.routes).any(|r| r.name.starts_with(&prefix));
    let reported = [&ingress.same, &ingress.changes, &ingress.problems, &ingress.notes];
    routed || reported.iter().any(|lines| !lines.is_empty())
}

/// (namespace, name) of every Ingress whose routes answer 503.
fn refused_ingresses(built: &Built) -> Vec<(&str, &str)> {
    let routes = built.table.hosts().iter().flat_map(|h| &h.routes);
    let refused = routes.filter(|r| r.policy.refused).filter_map(|r| {
        let mut parts = r.name.strip_prefix("ingress/")?.splitn(3, '/');
        Some((parts.next()?, parts.next()?))
    });
    refused.collect()
}

fn describe(report: &Report) -> String {
    let field = if report.field.is_empty() { String::new() } else { format!("{}: ", report.field) };
    format!("{field}{}", report.message)
}

fn label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Same => "same",
        Verdict::Changes => "changes",
        Verdict::PartlyLeftOut => "partly_left_out",
        Verdict::Refused => "refused",
    }
}

/// The plan as text or JSON.
pub fn render(plan: &Plan, format: OutputFormat, from_class: &str) -> String {
    match format {
        OutputFormat::Json => serde_json::to_string_pretty(plan).unwrap_or_default() + "\n",
        OutputFormat::Text => text(plan, from_class),
    }
}

fn text(plan: &Plan, from_class: &str) -> String {
    let mut out = String::new();
    if plan.ingresses.is_empty() {
        let _ = writeln!(out, "No Ingress of class {from_class:?} found.");
    }
    for ingress in &plan.ingresses {
        let verdict = match ingress.verdict {
            Some(Verdict::Same) => "behaves the same",
            Some(Verdict::Changes) => "served, with changes",
            Some(Verdict::PartlyLeftOut) => "served, part of it left out",
            Some(Verdict::Refused) => "REFUSED: answers 503 until changed",
            None => "",
        };
        let _ = writeln!(out, "Ingress {}/{}: {verdict}", ingress.namespace, ingress.name);
        let groups = [
            ("problem", &ingress.problems),
            ("changes", &ingress.changes),
            ("same", &ingress.same),
            ("note", &ingress.notes),
        ];
        for (heading, lines) in groups {
            for line in lines {
                let _ = writeln!(out, "  {heading:<8} {line}");
            }
        }
    }
    let count = |key| plan.totals.get(key).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "{} Ingresses: {} the same, {} with changes, {} partly left out, {} refused",
        plan.ingresses.len(),
        count("same"),
        count("changes"),
        count("partly_left_out"),
        count("refused")
    );
    out
}
