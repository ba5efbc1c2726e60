use bytes::BytesMut;
use http::{Method, Version};

use super::{Asked, Parsed, parse};

const LIMIT: usize = 8 * 1024;

fn parsed(bytes: &[u8]) -> (Parsed, BytesMut) {
    let mut read = BytesMut::from(bytes);
    let parsed = parse(&mut read, LIMIT, true);
    (parsed, read)
}

#[test]
fn simple_requests_are_read_here_and_taken_out_of_the_buffer() {
    let (parsed, rest) = parsed(
        b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Custom: one\r\nx-custom: two\r\nConnection: keep-alive\r\n\r\nGET /next",
    );
    let Parsed::Request(request, asked) = parsed else { panic!("not read here: {parsed:?}") };
    assert!(!asked.close && !asked.upgrade);
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.uri().path(), "/a/b");
    assert_eq!(request.uri().query(), Some("c=d"));
    assert_eq!(request.version(), Version::HTTP_11);
    assert_eq!(request.headers()["host"], "example.com");
    let custom: Vec<_> = request.headers().get_all("x-custom").iter().collect();
    assert_eq!(custom, ["one", "two"]);
    assert!(http_body::Body::is_end_stream(request.body()), "no body");
    assert_eq!(&rest[..], b"GET /next", "a pipelined request stays for the next read");
}

#[test]
fn connection_close_in_any_field_or_case_is_noted() {
    for head in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nconnection: keep-alive, Close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo\r\nConnection: close \r\n\r\n",
    ] {
        let (parsed, _) = parsed(head);
        assert!(matches!(parsed, Parsed::Request(_, Asked { close: true, upgrade: false })), "{parsed:?}");
    }
}

#[test]
fn heads_not_yet_whole_wait_for_more() {
    for head in [&b"GET / HT"[..], b"GET / HTTP/1.1\r\nHost: a\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r"] {
        let (parsed, rest) = parsed(head);
        assert!(matches!(parsed, Parsed::Partial), "{parsed:?}");
        assert_eq!(&rest[..], head, "nothing taken");
    }
}

#[test]
fn everything_else_goes_to_hyper_with_every_byte() {
    let many_fields = with_fields(65);
    let too_long = [&b"GET / HTTP/1.1\r\nx-long: "[..], &vec![b'a'; LIMIT], b"\r\n\r\n"].concat();
    let cases: &[(&str, &[u8])] = &[
        ("a body by length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"),
        ("an empty body by length", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
        ("a chunked body", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        (
            "an upgrade other than a GET",
            b"OPTIONS / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        ),
        ("an expectation", b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"),
        ("TE", b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n"),
        ("HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"),
        ("an absolute-form target", b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("an asterisk-form target", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
        ("a malformed head", b"GET / HTTP/1.1\r\nHost a\r\n\r\n"),
        ("a bad request line", b"GET  / HTTP/1.1\r\n\r\n"),
        ("a target Uri refuses", b"GET /a\xffb HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("more fields than read here", &many_fields),
        ("a head over the limit", &too_long),
    ];
    for (what, head) in cases {
        let (parsed, rest) = parsed(head);
        let Parsed::Other(bytes) = parsed else { panic!("{what}: {parsed:?}") };
        assert_eq!(&bytes[..], *head, "{what}: every byte for hyper");
        assert!(rest.is_empty(), "{what}");
    }
}

#[test]
fn a_request_behind_a_refused_target_goes_to_hyper_too() {
    let bytes = b"GET /a\xffb HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let (parsed, _) = parsed(bytes);
    let Parsed::Other(all) = parsed else { panic!("{parsed:?}") };
    assert_eq!(&all[..], bytes);
}

#[test]
fn head_request_and_other_methods_are_read_here() {
    for (head, method) in [
        (&b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"[..], Method::HEAD),
        (b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n", Method::DELETE),
        (b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", Method::from_bytes(b"PURGE").expect("a token")),
    ] {
        let (parsed, _) = parsed(head);
        let Parsed::Request(request, _) = parsed else { panic!("{parsed:?}") };
        assert_eq!(request.method(), method);
    }
}

#[test]
fn upgrade_requests_are_read_here_and_marked() {
    for head in [
        &b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
    ] {
        let (parsed, _) = parsed(head);
        assert!(matches!(parsed, Parsed::Request(_, Asked { upgrade: true, close: false })), "{parsed:?}");
    }
}

#[test]
fn upgrades_of_a_connection_not_tunnelled_here_go_to_hyper_with_every_byte() {
    let head = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /";
    let mut read = BytesMut::from(&head[..]);
    let parsed = parse(&mut read, LIMIT, false);
    let Parsed::Other(bytes) = parsed else { panic!("read here: {parsed:?}") };
    assert_eq!(&bytes[..], head);
    assert!(read.is_empty());
    // The same connection's other requests stay here.
    let mut read = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]);
    assert!(matches!(parse(&mut read, LIMIT, false), Parsed::Request(..)));
}

#[test]
fn a_head_is_parsed_again_only_once_a_blank_line_may_have_come() {
    use super::may_end_head;
    let cases: &[(&[u8], usize, bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n", 10, false),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 25, true),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r", 25, false),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, true),
        (b"GET / HTTP/1.1\nHost: a\n\n", 23, true),
        (b"GET / HTTP/1.1\r\n\r\nHost: a\r\n", 27, false),
        (b"\n\n", 0, true),
    ];
    for (read, scanned, expected) in cases {
        assert_eq!(
            may_end_head(read, *scanned),
            *expected,
            "{:?} from {scanned}",
            String::from_utf8_lossy(read)
        );
    }
}

/// A GET with `count` fields `x-N: N`.
fn with_fields(count: usize) -> Vec<u8> {
    let fields: String = (0..count).map(|i| format!("x-{i}: {i}\r\n")).collect();
    format!("GET / HTTP/1.1\r\n{fields}\r\n").into_bytes()
}

#[test]
fn sixty_four_fields_are_read_here_every_one() {
    let (parsed, _) = parsed(&with_fields(64));
    let Parsed::Request(request, _) = parsed else { panic!("not read here: {parsed:?}") };
    assert_eq!(request.headers().len(), 64);
    assert_eq!(request.headers()["x-0"], "0");
    assert_eq!(request.headers()["x-63"], "63");
}
