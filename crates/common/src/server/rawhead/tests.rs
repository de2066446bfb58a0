//! Unit tests for the head scanner: what it queues for each head, that it follows bodies the way
//! hyper frames them (whole or byte by byte), and where it turns itself off.

use super::*;

/// Feed `stream` whole and byte by byte; the (method target, RawHead) queued, and whether the
/// scanner is still on. Both ways must agree.
fn scan(stream: &[u8]) -> (Vec<(String, RawHead)>, bool) {
    let whole = run(stream, stream.len());
    let trickled = run(stream, 1);
    assert_eq!(whole, trickled, "whole and byte-by-byte scans differ");
    whole
}

fn run(stream: &[u8], step: usize) -> (Vec<(String, RawHead)>, bool) {
    let heads = Heads::default();
    let mut scanner = HeadScanner::new(heads.clone(), 64 * 1024);
    for piece in stream.chunks(step) {
        scanner.feed(piece);
    }
    let queue = heads.0.queue.lock().expect("lock");
    let seen = queue
        .iter()
        .map(|q| {
            let target = String::from_utf8_lossy(&q.target);
            (format!("{} {target}", q.method), q.raw)
        })
        .collect();
    (seen, scanner.state != State::Off)
}

fn raw(cl: usize, te: usize) -> RawHead {
    RawHead {
        content_length_fields: cl,
        transfer_encoding_fields: te,
    }
}

#[test]
fn plain_and_pipelined_heads_are_queued_in_order() {
    let stream = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                   POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                   GET /c?q#frag HTTP/1.1\nHost: x\n\n";
    let (seen, on) = scan(stream);
    assert!(on);
    assert_eq!(
        seen,
        [
            ("GET /a".into(), raw(0, 0)),
            ("POST /b".into(), raw(1, 0)),
            ("GET /c?q".into(), raw(0, 0)),
        ]
    );
}

#[test]
fn content_length_beside_transfer_encoding_is_seen_in_both_orders() {
    let stream = b"POST /clte HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
                   Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                   POST /tecl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                   Content-Length: 99\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                   POST /dup HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi\
                   GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    let (seen, on) = scan(stream);
    assert!(on);
    assert_eq!(
        seen,
        [
            ("POST /clte".into(), raw(1, 1)),
            ("POST /tecl".into(), raw(1, 1)),
            ("POST /dup".into(), raw(2, 0)),
            ("GET /next".into(), raw(0, 0)),
        ]
    );
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_are_followed() {
    let stream = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                   A;name=value\r\n0123456789\r\n1 \r\nx\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n\
                   GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let (seen, on) = scan(stream);
    assert!(on);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].0, "GET /b");
}

#[test]
fn what_hyper_refuses_or_cannot_be_followed_turns_it_off() {
    for stream in [
        &b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"[..],
        b"POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    ] {
        let (_, on) = scan(stream);
        assert!(!on, "still on after {:?}", String::from_utf8_lossy(stream));
    }
}

#[test]
fn an_oversized_head_turns_it_off() {
    let heads = Heads::default();
    let mut scanner = HeadScanner::new(heads, 64);
    scanner.feed(format!("GET / HTTP/1.1\r\nX: {}\r\n", "v".repeat(100)).as_bytes());
    assert_eq!(scanner.state, State::Off);
}

#[test]
fn a_request_that_does_not_match_its_head_turns_it_off() {
    let heads = Heads::default();
    let mut scanner = HeadScanner::new(heads.clone(), 1024);
    scanner.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let a: Uri = "/a".parse().expect("uri");
    assert_eq!(heads.take(&Method::GET, &a), Some(raw(0, 0)));
    let other: Uri = "/other".parse().expect("uri");
    assert_eq!(heads.take(&Method::GET, &other), None);
    scanner.feed(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    let c: Uri = "/c".parse().expect("uri");
    assert_eq!(heads.take(&Method::GET, &c), None, "off after the mismatch");
    let absolute: Uri = "https://x/abs?q".parse().expect("uri");
    assert!(same_target(b"https://x/abs?q", &absolute));
}
