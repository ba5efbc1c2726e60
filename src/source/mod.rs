//! Where the build's inputs come from: a directory of YAML manifests watched for changes
//! (standalone), or the Kubernetes API (cluster); both debounced into bursts.

pub mod cluster;
pub mod debounce;
pub mod manifests;
pub mod watch;

pub use manifests::{ManifestDir, parse_documents};
