//! The access log: a line per request and per closed tunnel, formatted and written off the
//! request path. The proxy hands each line to a bounded queue and never waits; one thread
//! formats the lines (text, or JSON with `--log-format json`) and writes them to stdout in
//! batches. When the queue is full — stdout is slower than the traffic — a line is dropped and
//! counted (`hawser_log_dropped_total`) rather than slowing the proxy.
//!
//! Lines have the shape `tracing`'s formatter gives the rest of the log, with the target
//! `hawser::access`, so `RUST_LOG` turns them off as before (`RUST_LOG=info,hawser::access=off`)
//! and one log pipeline reads both.

use std::fmt::Display;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;

/// The target of access-log lines, for `RUST_LOG`.
pub const TARGET: &str = "hawser::access";

/// Lines waiting for the writer at most; more are dropped.
const QUEUE: usize = 8192;

/// How long the writer lets lines gather while traffic flows. It looks at the queue again after
/// this instead of waiting on it, so a busy proxy never has to wake it.
const BATCH_WINDOW: Duration = Duration::from_millis(5);

static WRITER: OnceLock<SyncSender<Message>> = OnceLock::new();
static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// One request as the access log has it.
#[derive(Debug)]
pub struct RequestLine {
    pub client: IpAddr,
    pub method: http::Method,
    pub path: String,
    /// Empty when no route matched.
    pub route: Option<Arc<str>>,
    pub request_id: http::HeaderValue,
    pub endpoint: Option<SocketAddr>,
    pub status: u16,
    /// The client's protocol (`h1`, `h2`) when it asked for an upgrade the route tunnels.
    pub upgrade: Option<&'static str>,
    /// hawser's own error, and who caused it (`Client`, `Backend`, `Config`).
    pub error: Option<(String, &'static str)>,
    pub duration: Duration,
}

/// One closed tunnel as the access log has it.
#[derive(Debug)]
pub struct TunnelLine {
    pub route: Arc<str>,
    pub endpoint: SocketAddr,
    /// The client's protocol (`h1`, `h2`).
    pub protocol: &'static str,
    /// Who or what closed it (`client`, `idle`, `shutdown`, …).
    pub closed_by: &'static str,
    /// The first close frame: its code, reason and sender (`client`, `backend`, `hawser`).
    pub close: Option<(Option<u16>, String, &'static str)>,
    pub duration: Duration,
    pub bytes_from_client: u64,
    pub bytes_from_backend: u64,
    /// WebSocket data messages: (from the client, from the backend).
    pub messages: Option<(u64, u64)>,
}

/// A line of either kind, stamped when it was made.
#[derive(Debug)]
enum Line {
    Request(RequestLine),
    Tunnel(TunnelLine),
}

enum Message {
    /// Boxed: the queue's slots stay small (a line is some 250 bytes).
    Line(SystemTime, Box<Line>),
    /// Write everything before this, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

/// Starts the writer thread. `json`: JSON lines, as `--log-format json`; text otherwise.
/// Later calls change nothing.
pub fn start(json: bool) -> std::io::Result<()> {
    if WRITER.get().is_some() {
        return Ok(());
    }
    let (sender, receiver) = sync_channel(QUEUE);
    std::thread::Builder::new().name("access-log".into()).spawn(move || write_lines(&receiver, json))?;
    let _ = WRITER.set(sender);
    Ok(())
}

/// Whether lines are wanted: the writer runs and `RUST_LOG` lets the target through. Checked
/// before a line is put together, so nothing is copied for it otherwise.
pub fn enabled() -> bool {
    WRITER.get().is_some() && tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// Hands a request's line to the writer; dropped and counted when the writer is behind.
pub fn request(line: RequestLine) {
    send(Line::Request(line));
}

/// Hands a closed tunnel's line to the writer; dropped and counted when the writer is behind.
pub fn tunnel(line: TunnelLine) {
    send(Line::Tunnel(line));
}

fn send(line: Line) {
    let Some(writer) = WRITER.get() else { return };
    match writer.try_send(Message::Line(SystemTime::now(), Box::new(line))) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            DROPPED.inc();
        }
    }
}

/// Lines dropped so far because the writer was behind (`hawser_log_dropped_total`).
pub fn dropped() -> Counter {
    DROPPED.clone()
}

/// Writes every line handed over so far, waiting at most `limit` (at shutdown). A full queue
/// means stdout is stalled: then nothing is waited for, so a stalled log never holds up the exit.
pub fn flush(limit: Duration) {
    let Some(writer) = WRITER.get() else { return };
    let (done, written) = std::sync::mpsc::channel();
    if writer.try_send(Message::Flush(done)).is_ok() {
        let _ = written.recv_timeout(limit);
    }
}

/// The writer thread: waits for a line, then keeps taking what arrives in batches until the
/// queue stays empty for a window, writing each batch with one call.
fn write_lines(receiver: &Receiver<Message>, json: bool) {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            take(message, &mut out, json);
            while let Ok(message) = receiver.try_recv() {
                take(message, &mut out, json);
            }
            write_out(&mut out);
            std::thread::sleep(BATCH_WINDOW);
            next = receiver.try_recv().ok();
        }
    }
}

fn take(message: Message, out: &mut Vec<u8>, json: bool) {
    match message {
        Message::Line(at, line) => {
            let fields = line.fields();
            if json {
                out.extend_from_slice(json_line(at, &line, &fields).as_bytes());
            } else {
                text_line(out, at, &line, &fields);
            }
        }
        Message::Flush(done) => {
            write_out(out);
            let _ = done.send(());
        }
    }
}

fn write_out(out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    // Nowhere to report a failed write to: the line is lost, as with any logger.
    let _ = stdout.write_all(out).and_then(|()| stdout.flush());
    out.clear();
}

/// A field's value: quoted in text (a string), or as it shows (an address, a method).
enum Value<'a> {
    Str(&'a str),
    Shown(&'a dyn Display),
    Number(u64),
    Flag(bool),
}

impl Line {
    /// The message, if the line has one.
    fn message(&self) -> Option<&'static str> {
        match self {
            Self::Request(_) => None,
            Self::Tunnel(_) => Some("tunnel closed"),
        }
    }

    /// Named values in the order they are written; absent ones left out.
    fn fields(&self) -> Vec<(&'static str, Value<'_>)> {
        let millis = |d: &Duration| Value::Number(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        match self {
            Self::Request(r) => {
                let mut fields = Vec::with_capacity(12);
                fields.extend([
                    ("client", Value::Shown(&r.client)),
                    ("method", Value::Shown(&r.method)),
                    ("path", Value::Str(&r.path)),
                    ("route", Value::Str(r.route.as_deref().unwrap_or(""))),
                    ("request_id", Value::Str(r.request_id.to_str().unwrap_or_default())),
                ]);
                fields.extend(r.endpoint.as_ref().map(|e| ("endpoint", Value::Shown(e))));
                fields.push(("status", Value::Number(u64::from(r.status))));
                fields.push(("upgrade", Value::Flag(r.upgrade.is_some())));
                fields.extend(r.upgrade.map(|p| ("protocol", Value::Str(p))));
                if let Some((error, culprit)) = &r.error {
                    fields.push(("error", Value::Str(error)));
                    fields.push(("culprit", Value::Str(culprit)));
                }
                fields.push(("duration_ms", millis(&r.duration)));
                fields
            }
            Self::Tunnel(t) => {
                let mut fields = vec![
                    ("route", Value::Str(&t.route)),
                    ("endpoint", Value::Shown(&t.endpoint)),
                    ("protocol", Value::Str(t.protocol)),
                    ("closed_by", Value::Str(t.closed_by)),
                ];
                if let Some((code, reason, initiator)) = &t.close {
                    fields.extend(code.map(|c| ("close_code", Value::Number(u64::from(c)))));
                    fields.push(("close_reason", Value::Str(reason)));
                    fields.push(("close_initiator", Value::Str(initiator)));
                }
                fields.push(("duration_ms", millis(&t.duration)));
                fields.push(("bytes_from_client", Value::Number(t.bytes_from_client)));
                fields.push(("bytes_from_backend", Value::Number(t.bytes_from_backend)));
                if let Some((from_client, from_backend)) = t.messages {
                    fields.push(("messages_from_client", Value::Number(from_client)));
                    fields.push(("messages_from_backend", Value::Number(from_backend)));
                }
                fields
            }
        }
    }
}

/// `2026-11-30T19:45:29.293945Z  INFO hawser::access: MESSAGE key=value …`, as `tracing`'s
/// text formatter writes, appended to `out` (no line is built on its own first).
fn text_line(out: &mut Vec<u8>, at: SystemTime, line: &Line, fields: &[(&'static str, Value<'_>)]) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}  INFO {TARGET}:", humantime::format_rfc3339_micros(at));
    if let Some(message) = line.message() {
        let _ = write!(out, " {message}");
    }
    for (name, value) in fields {
        let _ = match value {
            Value::Str(s) => write!(out, " {name}=").map(|()| quote(out, s)),
            Value::Shown(s) => write!(out, " {name}={s}"),
            Value::Number(n) => write!(out, " {name}={n}"),
            Value::Flag(b) => write!(out, " {name}={b}"),
        };
    }
    out.push(b'\n');
}

/// `s` in double quotes, escaped as `{:?}` escapes it; most values (paths, routes, ids) need
/// no escaping and are copied as they are.
fn quote(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| (b.is_ascii_graphic() || b == b' ') && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// One JSON object per line, with the keys `tracing`'s JSON formatter writes (`timestamp`,
/// `level`, `message`, `target`) and the fields beside them.
fn json_line(at: SystemTime, line: &Line, fields: &[(&'static str, Value<'_>)]) -> String {
    let mut object = serde_json::Map::new();
    object.insert("timestamp".into(), humantime::format_rfc3339_micros(at).to_string().into());
    object.insert("level".into(), "INFO".into());
    if let Some(message) = line.message() {
        object.insert("message".into(), message.into());
    }
    for (name, value) in fields {
        let value = match value {
            Value::Str(s) => serde_json::Value::from(*s),
            Value::Shown(s) => serde_json::Value::from(s.to_string()),
            Value::Number(n) => serde_json::Value::from(*n),
            Value::Flag(b) => serde_json::Value::from(*b),
        };
        object.insert((*name).into(), value);
    }
    object.insert("target".into(), TARGET.into());
    let mut text = serde_json::Value::Object(object).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel_line() -> Line {
        Line::Tunnel(TunnelLine {
            route: Arc::from("ingress/default/chat/0/0"),
            endpoint: ([10, 0, 0, 7], 8080).into(),
            protocol: "h1",
            closed_by: "client",
            close: Some((Some(1000), "bye \"now\"".into(), "client")),
            duration: Duration::from_millis(1500),
            bytes_from_client: 12,
            bytes_from_backend: 34,
            messages: Some((1, 2)),
        })
    }

    fn request_line() -> Line {
        Line::Request(RequestLine {
            client: [192, 0, 2, 1].into(),
            method: http::Method::GET,
            path: "/a b".into(),
            route: None,
            request_id: http::HeaderValue::from_static("abc"),
            endpoint: None,
            status: 404,
            upgrade: None,
            error: Some(("no route".into(), "Client")),
            duration: Duration::from_micros(1500),
        })
    }

    fn text(at: SystemTime, line: &Line) -> String {
        let mut out = Vec::new();
        text_line(&mut out, at, line, &line.fields());
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn strings_are_quoted_as_debug_quotes_them() {
        for s in
            ["/a b", "", "bye \"now\"", "back\\slash", "tab\there", "ünïcode", "bell\u{7}", "line\nbreak"]
        {
            let mut out = Vec::new();
            quote(&mut out, s);
            assert_eq!(String::from_utf8(out).expect("UTF-8"), format!("{s:?}"));
        }
    }

    #[test]
    fn text_lines_read_like_the_rest_of_the_log() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_531_929_293_945);
        let line = tunnel_line();
        assert_eq!(
            text(at, &line),
            "2025-11-30T19:45:29.293945Z  INFO hawser::access: tunnel closed route=\"ingress/default/chat/0/0\" endpoint=10.0.0.7:8080 protocol=\"h1\" closed_by=\"client\" close_code=1000 close_reason=\"bye \\\"now\\\"\" close_initiator=\"client\" duration_ms=1500 bytes_from_client=12 bytes_from_backend=34 messages_from_client=1 messages_from_backend=2\n"
        );
        let line = request_line();
        assert_eq!(
            text(at, &line),
            "2025-11-30T19:45:29.293945Z  INFO hawser::access: client=192.0.2.1 method=GET path=\"/a b\" route=\"\" request_id=\"abc\" status=404 upgrade=false error=\"no route\" culprit=\"Client\" duration_ms=1\n"
        );
    }

    #[test]
    fn json_lines_carry_typed_fields() {
        let line = tunnel_line();
        let text = json_line(SystemTime::UNIX_EPOCH, &line, &line.fields());
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
        assert_eq!(parsed["message"], "tunnel closed");
        assert_eq!(parsed["target"], TARGET);
        assert_eq!(parsed["close_code"], 1000);
        assert_eq!(parsed["close_reason"], "bye \"now\"");
        assert_eq!(parsed["endpoint"], "10.0.0.7:8080");
        let line = request_line();
        let parsed: serde_json::Value =
            serde_json::from_str(&json_line(SystemTime::UNIX_EPOCH, &line, &line.fields())).expect("JSON");
        assert_eq!((parsed["status"].as_u64(), parsed["upgrade"].as_bool()), (Some(404), Some(false)));
        assert!(parsed.get("endpoint").is_none() && parsed.get("message").is_none());
    }
}
