//! A directory of Kubernetes YAML manifests: every `*.yaml` / `*.yml` below it (recursively,
//! multi-document, hidden entries skipped — which also skips the `..data` links of a mounted
//! ConfigMap). A file that stops parsing is reported and its last good content is kept, so a
//! half-saved edit never takes routes down.
//!
//! A change costs what it touches. A reload told which paths changed ([`ManifestDir::reload`]
//! with the watcher's paths) reads only those; a full one looks at every file but reads only
//! those whose size, modification time or inode changed. Either way only a file whose content
//! changed is parsed again. A file modified within [`RACY_WINDOW`] of being read is read again
//! by the next full reload, since a second write within the file system's timestamp granularity
//! could leave its stamp unchanged (git's "racy" files).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64;

use super::watch::Change;
use crate::snapshot::{Object, ObjectError, Snapshot};
use crate::translate::{Kind, ObjectRef, Reason, Report};

/// How recent a modification must be for a file's stamp not to be trusted.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Why a YAML stream could not be read: which document (from 1), and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("document {number}: {problem}")]
pub struct DocumentError {
    pub number: usize,
    pub problem: DocumentProblem,
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentProblem {
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("{0}")]
    Object(#[from] ObjectError),
}

/// Objects of every document of a YAML stream; kinds hawser does not read are skipped.
pub fn parse_documents(content: &str) -> Result<Vec<Object>, DocumentError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(content).enumerate() {
        let at = |problem: DocumentProblem| DocumentError { number: index + 1, problem };
        let value = serde_json::Value::deserialize(document).map_err(|e| at(e.into()))?;
        if value.is_null() {
            continue;
        }
        if let Some(object) = Object::from_value(value).map_err(|e| at(e.into()))? {
            objects.push(object);
        }
    }
    Ok(objects)
}

/// The manifests under one directory, with the last good content of every file.
#[derive(Debug)]
pub struct ManifestDir {
    root: PathBuf,
    /// By path (as bytes: cheaper to order than by path components).
    files: BTreeMap<OsString, File>,
    last_reports: Option<Vec<Report>>,
}

/// One file as last read.
#[derive(Debug)]
struct File {
    /// Size, modification time and inode when read; `None` when they cannot be trusted to
    /// show the next change (a recent modification, or a file that failed to read).
    stamp: Option<Stamp>,
    /// Hash of the content the objects came from.
    content: u64,
    /// Its objects (the last good ones when it stopped parsing).
    objects: Vec<Object>,
    /// Why the current content is not in effect.
    problem: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: SystemTime,
    inode: u64,
}

impl ManifestDir {
    /// Nothing is read until [`Self::load`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), files: BTreeMap::new(), last_reports: None }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every object and every problem. Files that fail keep their previous objects; each
    /// failure (and an unreadable directory) is reported against the file.
    pub fn load(&mut self) -> (Snapshot, Vec<Report>) {
        let (_, reports) = self.refresh();
        self.last_reports = Some(reports.clone());
        (self.snapshot(), reports)
    }

    /// Like [`Self::load`] after `changes` (a burst of the watcher's), reading only the files
    /// they name when they name only manifest files; `None` when no object and no problem
    /// changed since the last load: there is nothing to rebuild.
    pub fn reload(&mut self, changes: &[Change]) -> Option<(Snapshot, Vec<Report>)> {
        let (changed, reports) = match self.changed_files(changes) {
            Some(paths) => self.refresh_files(paths),
            None => self.refresh(),
        };
        if !changed && self.last_reports.as_ref() == Some(&reports) {
            return None;
        }
        self.last_reports = Some(reports.clone());
        Some((self.snapshot(), reports))
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.files.values().flat_map(|f| f.objects.iter().cloned()))
    }

    /// The manifest files `changes` name (to read, or gone), or `None` when everything must be
    /// looked at: the watcher lost events, or a path is a directory or a link (a mounted
    /// ConfigMap swaps its `..data` link), lies outside the root, or is gone and held files hawser
    /// read. Any other file that is not a visible manifest (an editor's swap file, the temporary
    /// file of an atomic write) holds nothing hawser reads and is passed over.
    fn changed_files<'c>(&self, changes: &'c [Change]) -> Option<BTreeSet<&'c Path>> {
        let mut files = BTreeSet::new();
        for change in changes {
            let Change::Paths(paths) = change else { return None };
            for path in paths {
                let relative = path.strip_prefix(&self.root).ok()?;
                let visible =
                    relative.components().all(|c| !c.as_os_str().as_encoded_bytes().starts_with(b"."));
                let read = visible && is_manifest(path);
                match std::fs::symlink_metadata(path) {
                    Ok(meta) if meta.is_file() => {
                        if read {
                            files.insert(path.as_path());
                        }
                    }
                    Ok(_) => return None,
                    Err(_) if read => {
                        files.insert(path.as_path());
                    }
                    Err(_) if self.held_under(path) => return None,
                    Err(_) => {}
                }
            }
        }
        Some(files)
    }

    /// Whether hawser read a file under the directory `path` (keys under it sort right after
    /// `path/`).
    fn held_under(&self, path: &Path) -> bool {
        let mut under = path.as_os_str().to_owned();
        under.push("/");
        self.files.range(under..).next().is_some_and(|(held, _)| Path::new(held).starts_with(path))
    }

    /// Reads `paths` (each a manifest file, or gone); whether any file's objects changed, and
    /// the problems of every file.
    fn refresh_files(&mut self, paths: BTreeSet<&Path>) -> (bool, Vec<Report>) {
        let mut changed = false;
        for path in paths {
            let before = self.files.remove(path.as_os_str());
            if !path.exists() {
                changed |= before.is_some();
                continue;
            }
            let (file, file_changed) = read(path, before);
            changed |= file_changed;
            self.files.insert(path.as_os_str().to_owned(), file);
        }
        (changed, self.problems())
    }

    /// The problem of every file that has one.
    fn problems(&self) -> Vec<Report> {
        let problems = self.files.iter().filter_map(|(path, f)| f.problem.as_ref().map(|p| (path, p)));
        problems.map(|(path, problem)| file_report(Path::new(path), problem.clone())).collect()
    }

    /// Looks at every file; whether any file's objects changed, and the problems.
    fn refresh(&mut self) -> (bool, Vec<Report>) {
        let mut reports = Vec::new();
        let mut paths = Vec::new();
        if let Err(error) = collect(&self.root, &mut paths) {
            reports.push(file_report(&self.root, format!("cannot read the directory: {error}")));
        }
        let mut changed = paths.len() != self.files.len();
        let mut files = BTreeMap::new();
        for path in paths {
            let (file, file_changed) = read(&path, self.files.remove(path.as_os_str()));
            changed |= file_changed;
            if let Some(problem) = &file.problem {
                reports.push(file_report(&path, problem.clone()));
            }
            files.insert(path.into_os_string(), file);
        }
        changed |= !self.files.is_empty();
        self.files = files;
        (changed, reports)
    }
}

/// `path` as it is now, reusing `before` where the file is unchanged; whether its objects
/// changed.
fn read(path: &Path, mut before: Option<File>) -> (File, bool) {
    let stamp = std::fs::metadata(path).ok().map(|m| Stamp {
        len: m.len(),
        modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        inode: m.ino(),
    });
    if let Some(unchanged) = before.take_if(|b| b.stamp.is_some() && b.stamp == stamp) {
        return (unchanged, false);
    }
    let trusted = stamp.filter(|s| s.modified.elapsed().is_ok_and(|age| age > RACY_WINDOW));
    let content = match std::fs::read_to_string(path) {
        Ok(content) => content,
        Err(error) => return failed(before, error.to_string(), None),
    };
    let hash = xxh3_64(content.as_bytes());
    if let Some(mut same) = before.take_if(|b| b.content == hash && b.problem.is_none()) {
        same.stamp = trusted;
        return (same, false);
    }
    match parse_documents(&content) {
        Ok(objects) => (File { stamp: trusted, content: hash, objects, problem: None }, true),
        Err(error) => failed(before, error.to_string(), trusted),
    }
}

/// A file that cannot be read or parsed now: its previous objects stay in effect.
fn failed(before: Option<File>, error: String, stamp: Option<Stamp>) -> (File, bool) {
    let (objects, changed, note) = match before {
        Some(before) => (before.objects, false, "; its previous content stays in effect"),
        None => (Vec::new(), false, ""),
    };
    let file = File { stamp, content: 0, objects, problem: Some(format!("{error}{note}")) };
    (file, changed)
}

fn file_report(path: &Path, message: String) -> Report {
    Report {
        object: ObjectRef::new(Kind::File, "", &path.display().to_string()),
        field: String::new(),
        reason: Reason::Invalid,
        message,
    }
}

fn collect(dir: &Path, paths: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        // The directory entry's type costs no system call; a link is followed (a mounted
        // ConfigMap's files are links).
        let file_type = entry.file_type()?;
        let is_dir = if file_type.is_symlink() { path.is_dir() } else { file_type.is_dir() };
        if is_dir {
            collect(&path, paths)?;
        } else if is_manifest(&path) {
            paths.push(path);
        }
    }
    Ok(())
}

/// Whether `path` names a manifest file: `*.yaml` or `*.yml`.
fn is_manifest(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e == "yaml" || e == "yml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_streams_and_skips_other_kinds() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: c}\n";
        let objects = parse_documents(yaml).expect("parses");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].describe(), "Service default/a");
    }

    fn write(dir: &Path, name: &str, service: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("in the directory")).expect("a directory");
        std::fs::write(&path, format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {service}}}\n"))
            .expect("write");
        path
    }

    fn services(snapshot: &Snapshot) -> Vec<&str> {
        let names = ["a", "b", "c", "a2", "b2", "c2"];
        names.into_iter().filter(|n| snapshot.service("default", n).is_some()).collect()
    }

    #[test]
    fn a_reload_reads_the_files_the_watcher_names_or_everything() {
        let dir = std::env::temp_dir().join(format!("hawser-manifests-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".hidden")).expect("a temporary directory");
        let (a, b) = (write(&dir, "a.yaml", "a"), write(&dir, "b.yaml", "b"));
        let mut manifests = ManifestDir::new(&dir);
        assert_eq!(services(&manifests.load().0), ["a", "b"]);
        assert!(
            manifests.reload(&[Change::Paths(vec![a.clone()])]).is_none(),
            "nothing changed: nothing to build"
        );
        write(&dir, "a.yaml", "a2");
        write(&dir, "b.yaml", "b2");
        let (snapshot, _) = manifests.reload(&[Change::Paths(vec![a.clone()])]).expect("a changed");
        assert_eq!(services(&snapshot), ["b", "a2"], "only the file named is read");
        std::fs::remove_file(&b).expect("remove");
        let c = write(&dir, "c.yaml", "c");
        let (snapshot, _) = manifests.reload(&[Change::Paths(vec![b, c])]).expect("b went, c came");
        assert_eq!(services(&snapshot), ["c", "a2"]);
        write(&dir, "c.yaml", "c2");
        write(&dir, ".hidden/x.yaml", "b");
        let hidden = Change::Paths(vec![dir.join(".hidden")]);
        let (snapshot, _) = manifests.reload(&[hidden]).expect("a hidden entry: everything is looked at");
        assert_eq!(services(&snapshot), ["a2", "c2"], "hidden files are never read");
        write(&dir, "a.yaml", "a");
        let (snapshot, _) = manifests.reload(&[Change::Anything]).expect("everything");
        assert_eq!(services(&snapshot), ["a", "c2"]);
        // An atomic write: a hidden temporary file, renamed over the manifest. Only the
        // manifest is read; the temporary file is passed over, gone or not.
        write(&dir, ".c.yaml.tmp", "b2");
        write(&dir, "b.yaml", "b2");
        write(&dir, "c.yaml", "c");
        let atomic = Change::Paths(vec![dir.join(".c.yaml.tmp"), dir.join("c.yaml")]);
        let (snapshot, _) = manifests.reload(&[atomic]).expect("c changed");
        assert_eq!(services(&snapshot), ["a", "c"], "b.yaml, not named, is not read");
        std::fs::remove_file(dir.join(".c.yaml.tmp")).expect("remove");
        let gone = Change::Paths(vec![dir.join(".c.yaml.tmp")]);
        assert!(manifests.reload(&[gone]).is_none(), "a gone temporary file changes nothing");
        // A directory of read files removed: everything is looked at.
        let sub = write(&dir, "sub/d.yaml", "b");
        let (snapshot, _) = manifests.reload(&[Change::Paths(vec![sub])]).expect("d came");
        assert_eq!(services(&snapshot), ["a", "b", "c"]);
        std::fs::remove_dir_all(dir.join("sub")).expect("remove");
        let (snapshot, _) =
            manifests.reload(&[Change::Paths(vec![dir.join("sub")])]).expect("a directory went");
        assert_eq!(services(&snapshot), ["a", "c", "b2"], "d went; the full look found b.yaml too");
        std::fs::write(&a, "kind: [").expect("write");
        let (snapshot, reports) = manifests.reload(&[Change::Paths(vec![a])]).expect("a problem appeared");
        assert_eq!(services(&snapshot), ["a", "c", "b2"], "the last good content stays");
        assert_eq!(reports.len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reports_the_broken_document() {
        let error = parse_documents("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nkind: [")
            .expect_err("broken")
            .to_string();
        assert!(error.starts_with("document 2"), "{error}");
        let error = parse_documents("metadata: {name: a}\n").expect_err("no kind").to_string();
        assert!(error.contains("apiVersion and kind"), "{error}");
        let error = parse_documents("apiVersion: v1\nkind: Service\nspec: {ports: 7}\n")
            .expect_err("bad shape")
            .to_string();
        assert!(error.contains("Service"), "{error}");
    }
}
