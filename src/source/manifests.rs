//! A directory of Kubernetes YAML manifests: every `*.yaml` / `*.yml` below it (recursively,
//! multi-document, hidden entries skipped — which also skips the `..data` links of a mounted
//! ConfigMap). A file that stops parsing is reported and its last good content is kept, so a
//! half-saved edit never takes routes down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::build::{ObjectRef, Reason, Report};
use crate::snapshot::{Object, Snapshot};

/// Objects of every document of a YAML stream; kinds hawser does not read are skipped.
pub fn parse_documents(content: &str) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(content).enumerate() {
        let value =
            serde_json::Value::deserialize(document).map_err(|e| format!("document {}: {e}", index + 1))?;
        if value.is_null() {
            continue;
        }
        if let Some(object) = Object::from_value(value).map_err(|e| format!("document {}: {e}", index + 1))? {
            objects.push(object);
        }
    }
    Ok(objects)
}

/// The manifests under one directory, with the last good content of every file.
#[derive(Debug)]
pub struct ManifestDir {
    root: PathBuf,
    files: BTreeMap<PathBuf, Vec<Object>>,
}

impl ManifestDir {
    /// Nothing is read until [`Self::load`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), files: BTreeMap::new() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads every manifest again. Files that fail keep their previous objects; each failure
    /// (and an unreadable directory) is reported against the file.
    pub fn load(&mut self) -> (Snapshot, Vec<Report>) {
        let mut reports = Vec::new();
        let mut paths = Vec::new();
        if let Err(error) = collect(&self.root, &mut paths) {
            reports.push(file_report(&self.root, format!("cannot read the directory: {error}")));
        }
        paths.sort();
        let mut files = BTreeMap::new();
        for path in paths {
            let parsed =
                std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|c| parse_documents(&c));
            match parsed {
                Ok(objects) => {
                    files.insert(path, objects);
                }
                Err(error) => {
                    let kept = self.files.remove(&path);
                    let note = if kept.is_some() { "; its previous content stays in effect" } else { "" };
                    reports.push(file_report(&path, format!("{error}{note}")));
                    files.insert(path, kept.unwrap_or_default());
                }
            }
        }
        self.files = files;
        (Snapshot::new(self.files.values().flatten().cloned()), reports)
    }
}

fn file_report(path: &Path, message: String) -> Report {
    Report {
        object: ObjectRef::new("File", "", &path.display().to_string()),
        field: String::new(),
        reason: Reason::Invalid,
        message,
    }
}

fn collect(dir: &Path, paths: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect(&path, paths)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| e == "yaml" || e == "yml") {
            paths.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_streams_and_skips_other_kinds() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
        let objects = parse_documents(yaml).expect("parses");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].describe(), "Service a");
    }

    #[test]
    fn reports_the_broken_document() {
        let error = parse_documents("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nkind: [")
            .expect_err("broken");
        assert!(error.starts_with("document 2"), "{error}");
        let error = parse_documents("metadata: {name: a}\n").expect_err("no kind");
        assert!(error.contains("apiVersion and kind"), "{error}");
        let error =
            parse_documents("apiVersion: v1\nkind: Service\nspec: {ports: 7}\n").expect_err("bad shape");
        assert!(error.contains("Service"), "{error}");
    }
}
