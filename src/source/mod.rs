//! Where the build's inputs come from. Standalone: a directory of YAML manifests, watched for
//! changes. (The Kubernetes watch plugs into the same controller loop.)

pub mod cluster;
pub mod manifests;
pub mod watch;

pub use manifests::{ManifestDir, parse_documents};
