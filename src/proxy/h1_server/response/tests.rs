use http::{HeaderValue, Response, StatusCode, header};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::{Delimit, Framing, encode_head, write};
use crate::proxy::body::ProxyBody;

const PLAIN: Framing = Framing { head_request: false, close: false };
const HEAD: Framing = Framing { head_request: true, close: false };
const CLOSING: Framing = Framing { head_request: false, close: true };

fn encoded(response: Response<ProxyBody>, framing: Framing) -> (String, Delimit, bool) {
    let (parts, body) = response.into_parts();
    let mut out = Vec::new();
    let (delimit, close) = encode_head(&parts, &body, framing, &mut out);
    (String::from_utf8(out).expect("ASCII"), delimit, close)
}

fn response(status: u16, fields: &[(&str, &str)], body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).expect("a status");
    for (name, value) in fields {
        let name = header::HeaderName::from_bytes(name.as_bytes()).expect("a name");
        response.headers_mut().append(name, HeaderValue::from_str(value).expect("a value"));
    }
    response
}

/// What a head must and must not hold, and how its body goes.
struct Case {
    what: &'static str,
    response: Response<ProxyBody>,
    framing: Framing,
    present: &'static [&'static str],
    absent: &'static [&'static str],
    delimit: Delimit,
    close: bool,
}

#[test]
fn heads_are_framed_as_hyper_frames_them() {
    let full = || ProxyBody::full("hello");
    let upgrade = [("connection", "upgrade, close"), ("upgrade", "websocket"), ("content-length", "0")];
    let cases = [
        Case {
            what: "a known body gets its length",
            response: response(200, &[], full()),
            framing: PLAIN,
            present: &["HTTP/1.1 200 OK\r\n", "content-length: 5\r\n"],
            absent: &["transfer-encoding"],
            delimit: Delimit::Length(5),
            close: false,
        },
        Case {
            what: "an empty body gets a zero length",
            response: response(200, &[], ProxyBody::empty()),
            framing: PLAIN,
            present: &["content-length: 0\r\n"],
            absent: &[],
            delimit: Delimit::Length(0),
            close: false,
        },
        Case {
            what: "a declared length wins",
            response: response(200, &[("content-length", "5")], full()),
            framing: PLAIN,
            present: &["content-length: 5\r\n"],
            absent: &[],
            delimit: Delimit::Length(5),
            close: false,
        },
        Case {
            what: "a HEAD's answer says the length and sends nothing",
            response: response(200, &[], full()),
            framing: HEAD,
            present: &["content-length: 5\r\n"],
            absent: &[],
            delimit: Delimit::None,
            close: false,
        },
        Case {
            what: "a 204 has no length",
            response: response(204, &[("content-length", "0")], ProxyBody::empty()),
            framing: PLAIN,
            present: &["HTTP/1.1 204 No Content\r\n"],
            absent: &["content-length"],
            delimit: Delimit::None,
            close: false,
        },
        Case {
            what: "a 304 keeps its length and sends nothing",
            response: response(304, &[("content-length", "5")], ProxyBody::empty()),
            framing: PLAIN,
            present: &["content-length: 5\r\n"],
            absent: &[],
            delimit: Delimit::None,
            close: false,
        },
        Case {
            what: "a 101 has no length and stays open whatever it says",
            response: response(101, &upgrade, ProxyBody::empty()),
            framing: CLOSING,
            present: &["HTTP/1.1 101 Switching Protocols\r\n", "upgrade: websocket\r\n"],
            absent: &["content-length", "connection: close"],
            delimit: Delimit::None,
            close: false,
        },
        Case {
            what: "closing adds Connection: close",
            response: response(200, &[], full()),
            framing: CLOSING,
            present: &["connection: close\r\n"],
            absent: &[],
            delimit: Delimit::Length(5),
            close: true,
        },
        Case {
            what: "a response that says close closes",
            response: response(200, &[("connection", "Close")], full()),
            framing: PLAIN,
            present: &["connection: Close\r\n"],
            absent: &["connection: close"],
            delimit: Delimit::Length(5),
            close: true,
        },
        Case {
            what: "Transfer-Encoding is this hop's",
            response: response(200, &[("transfer-encoding", "gzip")], full()),
            framing: PLAIN,
            present: &["content-length: 5\r\n"],
            absent: &["transfer-encoding"],
            delimit: Delimit::Length(5),
            close: false,
        },
        Case {
            what: "a Date is kept",
            response: response(200, &[("date", "Tue, 01 Dec 2026 00:00:00 GMT")], full()),
            framing: PLAIN,
            present: &["date: Tue, 01 Dec 2026 00:00:00 GMT\r\n"],
            absent: &[],
            delimit: Delimit::Length(5),
            close: false,
        },
    ];
    for case in cases {
        let (head, delimit, close) = encoded(case.response, case.framing);
        let what = case.what;
        for part in case.present {
            assert!(head.contains(part), "{what}: no {part:?} in {head:?}");
        }
        for part in case.absent {
            assert!(!head.contains(part), "{what}: {part:?} in {head:?}");
        }
        assert_eq!(head.matches("date: ").count(), 1, "{what}: {head:?}");
        assert!(head.ends_with("\r\n\r\n"), "{what}");
        assert_eq!((delimit, close), (case.delimit, case.close), "{what}");
    }
}

#[test]
fn a_backend_reason_phrase_is_kept() {
    let mut answer = response(200, &[], ProxyBody::empty());
    answer.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Fine Thanks"));
    let (head, _, _) = encoded(answer, PLAIN);
    assert!(head.starts_with("HTTP/1.1 200 Fine Thanks\r\n"), "{head:?}");
}

#[tokio::test]
async fn a_body_longer_than_its_length_is_cut_there_and_the_connection_with_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
    let (mut server, _) = listener.accept().await.expect("accept");
    let answer = response(200, &[("content-length", "3")], ProxyBody::full("hello"));
    assert!(!write(&mut server, answer, PLAIN, &mut Vec::new()).await, "the connection must close");
    drop(server);
    let mut got = String::new();
    client.read_to_string(&mut got).await.expect("read");
    assert!(got.ends_with("\r\n\r\nhel"), "{got:?}");
}
