//! Command-line interface: subcommands, flags, their defaults and validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::model::{NamespacedName, ValueError};
use crate::proxy::{EncodedSlashes, ProxyConfig};
use crate::translate::BuildConfig;

/// hawser: a Kubernetes ingress controller built first for WebSocket and other long-lived
/// connections.
#[derive(Debug, Parser)]
#[command(name = "hawser", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "HAWSER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Runtime worker threads; defaults to the cores this process may run on. With one, hawser
    /// runs a single-threaded runtime: no work-stealing, no cross-thread wake-ups.
    #[arg(long, global = true, env = "HAWSER_WORKERS", value_name = "N")]
    pub workers: Option<std::num::NonZeroUsize>,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy and the admin endpoints.
    Run(Box<RunArgs>),
    /// Load a manifests directory, print the routing table and every problem; exit 1 on errors.
    Check(CheckArgs),
    /// For a move from ingress-nginx: per Ingress of `--from-class` (a manifests directory, or
    /// the cluster with `--cluster`), what behaves the same, what changes and what is refused;
    /// exit 1 when anything would be refused or left out.
    Migrate(MigrateArgs),
    /// Print the WebSocketRoute CustomResourceDefinition.
    Crd,
    /// Print the Kubernetes API access hawser needs (JSON RBAC rules).
    Rbac,
    /// Run a WebSocket + HTTP echo backend for smoke tests and demos.
    Echo(EchoArgs),
    /// Run echo backends and the proxy on the quickstart manifests, and say what to try.
    Quickstart(QuickstartArgs),
}

/// Flags of `hawser run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Standalone mode: serve the Kubernetes manifests (`*.yaml`, `*.yml`, recursively) in this
    /// directory and reload them when they change. Without it, hawser watches the cluster of its
    /// in-cluster configuration or `KUBECONFIG`.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// What is served and how it is translated.
    #[command(flatten)]
    pub translation: TranslationArgs,
    /// Kubernetes mode: watch only this namespace (IngressClasses are cluster-wide regardless).
    #[arg(long, value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Kubernetes mode: publish this Service's load-balancer address (else its cluster IP) in the
    /// status of served Ingresses.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = clap::value_parser!(NamespacedName))]
    pub publish_service: Option<NamespacedName>,
    /// Kubernetes mode: publish these addresses (IPs or host names, comma-separated) instead.
    #[arg(long, value_delimiter = ',', value_name = "ADDR")]
    pub publish_status_address: Vec<String>,
    /// Kubernetes mode: name of the Lease used to elect the replica that writes status.
    #[arg(long, default_value = "hawser-leader")]
    pub election_id: String,
    /// Kubernetes mode: namespace of that Lease (the Pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub election_namespace: String,
    /// Kubernetes mode: this replica's identity in the election (the Pod name).
    #[arg(long, env = "POD_NAME")]
    pub election_identity: Option<String>,
    /// Kubernetes mode: how long a leader that stopped renewing keeps the Lease.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub election_lease_duration: Duration,
    /// Kubernetes mode: how often API discovery is asked whether the WebSocketRoute CRD is
    /// served; its watch starts when the CRD is installed and stops when it is removed.
    #[arg(long, default_value = "10s", value_parser = crate::translate::values::bounded_timeout)]
    pub crd_probe_interval: Duration,
    /// Address of the plain-HTTP listener (HTTP/1.1 and h2c).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Address of the HTTPS listener (TLS 1.2/1.3, ALPN h2 and http/1.1, SNI from Secrets).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub https_addr: SocketAddr,
    /// Secret (`NAMESPACE/NAME`) served when no host's certificate fits the SNI name; without it a
    /// self-signed certificate generated at start is served.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = clap::value_parser!(NamespacedName))]
    pub default_ssl_certificate: Option<NamespacedName>,
    /// Expect a PROXY protocol v1 or v2 header on every connection of both listeners and take the
    /// client address from it; connections without a valid header are refused.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// What a request path with `%2F`, `%5C` or `\` gets: `reject` (400) or `keep` (passed on
    /// unchanged, never treated as a separator).
    #[arg(long, value_enum, default_value_t = EncodedSlashes::Reject)]
    pub encoded_slashes: EncodedSlashes,
    /// Add `Server: hawser` (no version) to responses that carry no `Server` of their own.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub server_header: bool,
    /// Error bodies name the failure's details (endpoint addresses, objects): for development
    /// only. By default they say only the status; details are in the access log.
    #[arg(long)]
    pub verbose_errors: bool,
    /// Client connections served at once (tunnels included); more are closed at accept, so the
    /// admin port and live connections never run out of descriptors. Default: half of the
    /// open-files limit less 100 (each proxied connection holds two).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// The secret affinity cookies are keyed with. Give every replica the same one (the chart
    /// does, from a Secret) so that a cookie one replica issued is honoured by the others and
    /// after restarts. Unset: a random key of this process.
    #[arg(long, env = "HAWSER_AFFINITY_KEY", hide_env_values = true, value_name = "SECRET")]
    pub affinity_key: Option<String>,
    /// Offer WebSockets over HTTP/2 (RFC 8441 extended CONNECT) on both listeners. `false`
    /// makes browsers open a separate HTTP/1.1 connection for each WebSocket.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub http2_websockets: bool,
    /// Listen backlog of the proxy listeners (the kernel caps it at net.core.somaxconn), so a
    /// reconnect storm is queued rather than dropped.
    #[arg(long, default_value_t = 4096)]
    pub listen_backlog: u32,
    /// Time a connection has to send its PROXY protocol header.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub proxy_protocol_timeout: Duration,
    /// Address of the admin listener (/healthz, /readyz, /metrics; /debug/routes and /drain
    /// for loopback callers only).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,
    /// Peers (comma-separated CIDRs) whose X-Forwarded-* headers are trusted and extended;
    /// from anyone else they are replaced.
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request head accepted, in bytes (at least 8192); larger heads get 431.
    #[arg(long, default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(8192..))]
    pub max_header_bytes: u32,
    /// Upgrade handshakes (WebSocket, either protocol) waiting for their backend at once; more
    /// get `503` with `Retry-After`, so slow backends cannot make pending handshakes eat memory.
    #[arg(long, default_value_t = 4096)]
    pub max_pending_handshakes: usize,
    /// Idle keep-alive connections kept per backend endpoint for reuse (ingress-nginx's
    /// `upstream-keepalive-connections`); 0 closes every connection after its response.
    #[arg(long, default_value_t = crate::proxy::DEFAULT_KEEPALIVE_CONNECTIONS)]
    pub upstream_keepalive_connections: usize,
    /// The status of a request over its route's rate limit (`limit-rps`, `limit-rpm`): 503, as
    /// ingress-nginx answers by default, or 429.
    #[arg(long, default_value = "503", value_parser = parse_rate_limited_status)]
    pub rate_limited_status: http::StatusCode,
    /// Time a client has between two parts of a request body; a client that stalls longer
    /// gets `408` and the backend exchange is abandoned (nginx's `client_body_timeout`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub request_body_timeout: Duration,
    /// Time a client has to send a complete request head (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// On SIGTERM: everything (requests, tunnels, close handshakes) ends within this; what is
    /// still open then is closed. Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// On SIGTERM: keep accepting new connections this long (while /readyz says 503) so the load
    /// balancer stops sending before the listeners close.
    #[arg(long, default_value = "5s", env = "HAWSER_SHUTDOWN_DELAY", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// On SIGTERM: spread the tunnels' close frames (1001) over this window, so clients
    /// reconnect to the other replicas gradually. Default: half of --shutdown-grace.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drain_window: Option<Duration>,
}

impl RunArgs {
    /// The proxy settings these flags describe.
    pub fn proxy_config(&self) -> ProxyConfig {
        ProxyConfig {
            max_header_bytes: self.max_header_bytes as usize,
            header_read_timeout: self.header_read_timeout,
            trusted_proxies: self.trusted_proxies.clone(),
            proxy_protocol: self.proxy_protocol.then_some(self.proxy_protocol_timeout),
            encoded_slashes: self.encoded_slashes,
            server_header: self.server_header,
            max_connections: self.max_connections.unwrap_or_else(crate::proxy::default_max_connections),
            verbose_errors: self.verbose_errors,
            affinity_key: self
                .affinity_key
                .as_deref()
                .map_or_else(crate::proxy::AffinityKey::random, crate::proxy::AffinityKey::from_secret),
            extended_connect: self.http2_websockets,
            request_body_timeout: self.request_body_timeout,
            max_pending_handshakes: self.max_pending_handshakes,
            pool_max_idle_per_endpoint: self.upstream_keepalive_connections,
            rate_limited_status: self.rate_limited_status,
            ..ProxyConfig::default()
        }
    }

    /// The Kubernetes-mode settings these flags describe.
    pub fn cluster_options(&self) -> crate::controller::ClusterOptions {
        let identity = self.election_identity.clone().unwrap_or_else(default_identity);
        crate::controller::ClusterOptions {
            crd_probe: self.crd_probe_interval,
            namespace: self.watch_namespace.clone(),
            publish: crate::status::writer::Publish {
                service: self.publish_service.clone(),
                addresses: self.publish_status_address.clone(),
            },
            election: crate::status::lease::Election {
                name: self.election_id.clone(),
                namespace: self.election_namespace.clone(),
                identity,
                duration: self.election_lease_duration,
                renew: self.election_lease_duration / 3,
            },
        }
    }

    /// The translation settings these flags describe.
    pub fn build_config(&self) -> BuildConfig {
        BuildConfig {
            default_certificate: self.default_ssl_certificate.clone(),
            ..self.translation.build_config()
        }
    }
}

/// Translation flags shared by `hawser run` and `hawser check`.
#[derive(Debug, Args)]
pub struct TranslationArgs {
    /// IngressClass name served even without an IngressClass object (unless an IngressClass of
    /// that name belongs to another controller).
    #[arg(long, default_value = "hawser")]
    pub ingress_class: String,
    /// The IngressClass `spec.controller` this install serves. Two installs in one cluster need
    /// different names (and classes).
    #[arg(long, env = "HAWSER_CONTROLLER_NAME", default_value = crate::translate::CONTROLLER_NAME)]
    pub controller_name: String,
    /// Access-restricting ingress-nginx annotations (comma-separated keys such as `auth-url`)
    /// to serve WITHOUT enforcement instead of refusing the Ingress. Default: none.
    #[arg(long, value_delimiter = ',', value_name = "KEY")]
    pub ignore_annotations: Vec<String>,
    /// How hosts are shared between namespaces: `path` (each host and path goes to the
    /// namespace that claimed it first) or `namespace` (each whole host does; other namespaces
    /// join only where the owner's objects allow them with `hawser.dev/allowed-namespaces`).
    #[arg(long, value_enum, default_value_t = crate::translate::HostOwnership::Path)]
    pub host_ownership: crate::translate::HostOwnership,
    /// The GatewayClass `spec.controllerName` this install serves.
    #[arg(long, env = "HAWSER_GATEWAY_CONTROLLER_NAME", default_value = crate::translate::GATEWAY_CONTROLLER_NAME)]
    pub gateway_controller_name: String,
    /// The Gateway listener port of protocol HTTP that the plain-HTTP listener serves (the
    /// port the Service in front of hawser publishes for it).
    #[arg(long, default_value_t = 80)]
    pub gateway_http_port: u16,
    /// The Gateway listener port of protocol HTTPS that the TLS listener serves.
    #[arg(long, default_value_t = 443)]
    pub gateway_https_port: u16,
}

impl TranslationArgs {
    /// The translation settings these flags describe.
    pub fn build_config(&self) -> BuildConfig {
        let prefix = crate::translate::NGINX_ANNOTATION_PREFIX;
        let ignore_annotations = self
            .ignore_annotations
            .iter()
            .map(|key| key.trim().strip_prefix(prefix).unwrap_or(key.trim()).to_owned())
            .collect();
        BuildConfig {
            ingress_class: self.ingress_class.clone(),
            controller_name: self.controller_name.clone(),
            ignore_annotations,
            host_ownership: self.host_ownership,
            gateway: crate::translate::GatewaySettings {
                controller_name: self.gateway_controller_name.clone(),
                ports: crate::translate::GatewayPorts {
                    http: self.gateway_http_port,
                    https: self.gateway_https_port,
                },
            },
            ..BuildConfig::default()
        }
    }
}

/// Flags of `hawser check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The manifests directory.
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// What is served and how it is translated.
    #[command(flatten)]
    pub translation: TranslationArgs,
}

/// Flags of `hawser migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// A manifests directory holding the Ingresses (and their Services and Secrets).
    #[arg(required_unless_present = "cluster", conflicts_with = "cluster")]
    pub dir: Option<PathBuf>,
    /// Read the cluster instead (in-cluster configuration, `KUBECONFIG`, or `--kubeconfig`).
    #[arg(long)]
    pub cluster: bool,
    /// The kubeconfig file for `--cluster`.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// The IngressClass being left: its Ingresses are read as if they named hawser's.
    #[arg(long, default_value = "nginx", value_name = "CLASS")]
    pub from_class: String,
    /// Access-restricting annotations the move will serve without enforcement, as
    /// `--ignore-annotations` would on `hawser run`.
    #[arg(long, value_delimiter = ',', value_name = "KEY")]
    pub ignore_annotations: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Output format of `hawser check` and `hawser migrate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document: table, TLS mapping, reports.
    Json,
}

/// Flags of `hawser quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Address of the proxy.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Address of the HTTPS proxy (self-signed certificate).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub https_addr: SocketAddr,
    /// Address of the admin endpoints.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,
    /// Manifests to serve; by default `examples/quickstart` when it exists here, else a copy of
    /// it written to a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
}

/// Flags of `hawser echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// Name reported in HTTP answers, to tell several echo backends apart.
    #[arg(long, default_value = "echo")]
    pub name: String,
}

/// The host name and process id: unique enough among replicas outside a Pod.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// `503` or `429`.
fn parse_rate_limited_status(value: &str) -> Result<http::StatusCode, ValueError> {
    match value.trim() {
        "503" => Ok(http::StatusCode::SERVICE_UNAVAILABLE),
        "429" => Ok(http::StatusCode::TOO_MANY_REQUESTS),
        other => Err(ValueError::malformed(other, "503 or 429")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_defaults() {
        let cli = Cli::try_parse_from(["hawser", "run"]).expect("parses");
        let Command::Run(args) = cli.command else { panic!("not run") };
        let args = *args;
        assert_eq!(args.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(args.admin_addr.to_string(), "127.0.0.1:9090");
        assert_eq!(args.shutdown_grace, Duration::from_secs(30));
        assert_eq!(args.proxy_config().max_header_bytes, 32 * 1024);
        assert_eq!(args.proxy_config().pool_max_idle_per_endpoint, 320);
        let cli =
            Cli::try_parse_from(["hawser", "run", "--upstream-keepalive-connections", "0"]).expect("parses");
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.proxy_config().pool_max_idle_per_endpoint, 0);
    }

    #[test]
    fn rejects_bad_flags() {
        for argv in [
            &["hawser", "run", "--trusted-proxies", "10.0.0.0/33"][..],
            &["hawser", "run", "--max-header-bytes", "100"],
            &["hawser", "run", "--header-read-timeout", "soon"],
            &["hawser", "run", "--http-addr", "nowhere"],
            &["hawser", "run", "--default-ssl-certificate", "no-namespace"],
            &["hawser", "run", "--crd-probe-interval", "0s"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
        let cli = Cli::try_parse_from(["hawser", "run", "--trusted-proxies", "10.0.0.0/8,::1/128"])
            .expect("parses");
        let Command::Run(args) = cli.command else { panic!("not run") };
        let args = *args;
        assert_eq!(args.trusted_proxies.len(), 2);
    }
}
