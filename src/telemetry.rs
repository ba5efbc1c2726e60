//! Logging setup: `RUST_LOG`-style filtering (default `info`), text or JSON lines on stdout.
//! Access-log lines (target `hawser::access`) are written by [`crate::access_log`]'s own thread
//! in the same format.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. Call once, first thing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    if let Err(error) = crate::access_log::start(format == LogFormat::Json) {
        tracing::error!(%error, "cannot start the access-log writer; there is no access log");
    }
}
