//! `hawser quickstart`: the example manifests, the echo backends they point at, and the words
//! that tell a new user what to try.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The quickstart manifests, built into the binary so the command works from anywhere.
const MANIFESTS: [(&str, &str); 3] = [
    ("echo-service.yaml", include_str!("../examples/quickstart/echo-service.yaml")),
    ("web-ingress.yaml", include_str!("../examples/quickstart/web-ingress.yaml")),
    ("chat-route.yaml", include_str!("../examples/quickstart/chat-route.yaml")),
];

/// The echo backends the manifests' EndpointSlices point at: (name, address).
pub const ECHO_BACKENDS: [(&str, &str); 2] = [("echo-a", "127.0.0.1:18081"), ("echo-b", "127.0.0.1:18082")];

/// Where the manifests in the repository live, relative to its root.
const REPOSITORY_DIR: &str = "examples/quickstart";

/// The directory to serve: `requested`, else `examples/quickstart` when it exists here, else a
/// fresh copy of the built-in manifests in a temporary directory.
pub fn manifests_dir(requested: Option<PathBuf>) -> std::io::Result<PathBuf> {
    if let Some(dir) = requested {
        return Ok(dir);
    }
    if Path::new(REPOSITORY_DIR).is_dir() {
        return Ok(PathBuf::from(REPOSITORY_DIR));
    }
    let dir = std::env::temp_dir().join(format!("hawser-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (name, content) in MANIFESTS {
        std::fs::write(dir.join(name), content)?;
    }
    Ok(dir)
}

/// What to try, printed once everything listens.
pub fn instructions(http: SocketAddr, admin: SocketAddr, manifests: &Path) -> String {
    format!(
        "\nhawser quickstart is running.\n\
         \n  HTTP through the Ingress:        curl -s http://{http}/hello\
         \n  WebSocket through the route:     python3 -m websockets ws://{http}/ws   (pip install websockets)\
         \n  The live routing table:          curl -s http://{admin}/debug/routes\
         \n  Metrics:                         curl -s http://{admin}/metrics\
         \n  Manifests served:                {}  (edit them: changes are live within a second)\
         \n\nCtrl-C stops everything.\n",
        manifests.display()
    )
}
