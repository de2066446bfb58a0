//! Request and response header rewriting for forwarding: hop-by-hop removal, the X-Forwarded-*
//! rule, request ids, names with `_`, cookie crumbs. Pure functions over `HeaderMap`, so they
//! can be tested and fuzzed alone.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1; `HTTP2-Settings`
/// belongs to the h2c upgrade, RFC 7540 §3.2.1).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "http2-settings",
];

/// [`HOP_BY_HOP`] as header names (no parsing per request).
static HOP_BY_HOP_NAMES: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("http2-settings"),
];

/// The request-id header, sent upstream and returned to the client.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// nginx's `$remote_addr`.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// nginx's `$proxy_add_x_forwarded_for` (or the socket address alone, by default).
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The host the client named (also as `Host`, or `:authority` over HTTP/2).
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The path prefix a route stripped.
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
/// Always `https` here.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// True when `peer` is inside one of the trusted-proxy networks.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = canonical(peer);
    trusted.iter().any(|net| net.contains(&peer))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `Upgrade` value when this is an HTTP/1.1 upgrade request (WebSocket and friends):
/// `Connection` must name `upgrade`.
pub fn upgrade_request(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    connection_tokens(headers)
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        .then(|| upgrade.clone())
}

/// The comma-separated tokens of every `Connection` header, as bytes: a value carrying
/// obs-text still has its other tokens honoured.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Remove hop-by-hop headers and every header `Connection` names. `TE: trailers` survives (it
/// is end-to-end in meaning) and so does an upgrade when `upgrade` is `Some`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    // Read before `Connection` is applied: a sender of TE lists it there (RFC 9110 §10.1.4).
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    remove_named(headers, &HOP_BY_HOP_NAMES);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(up) = upgrade {
        headers.insert(header::UPGRADE, up.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The request's id: the one a trusted proxy sent when sane (1–128 of `[A-Za-z0-9._:-]`),
/// else a new one (a client choosing its own id could pass for another request in the logs).
pub fn request_id(headers: &HeaderMap, trusted: bool) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID).filter(|_| trusted) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
        {
            return v.clone();
        }
    }
    new_request_id()
}

/// The headers for upstreams that build URLs: `X-Forwarded-Host` the host the client named, and
/// `X-Forwarded-Prefix` the path prefix the route stripped (when it strips one).
pub fn forwarded_route(headers: &mut HeaderMap, host: &HeaderValue, prefix: Option<&HeaderValue>) {
    headers.insert(&X_FORWARDED_HOST, host.clone());
    match prefix {
        Some(p) => headers.insert(&X_FORWARDED_PREFIX, p.clone()),
        None => headers.remove(&X_FORWARDED_PREFIX),
    };
}

/// 32 random hex digits.
///
/// Marked sensitive: HPACK then sends it as a never-indexed literal instead of adding a value
/// used once to the upstream's (and an HTTP/2 client's) dynamic table, where it would only
/// evict the fields that do repeat.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut id = [0u8; 32];
    for digit in id.iter_mut().rev() {
        *digit = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    let mut value = HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"));
    value.set_sensitive(true);
    value
}

/// Rewrite a request's headers for the upstream: hop-by-hop gone, `Host` the original host,
/// `X-Real-IP` the peer, `X-Forwarded-Proto: https`, `X-Forwarded-For` replaced by the peer —
/// or, when the peer is a trusted proxy, the incoming list with the peer appended.
pub fn request_headers(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted: bool,
    host: &HeaderValue,
    request_id: &HeaderValue,
    upgrade: Option<&HeaderValue>,
) {
    strip_hop_by_hop(headers, upgrade);
    // The proxy answers Expect: 100-continue itself (hyper sends 100 when the body is read).
    remove_named(headers, &[header::EXPECT]);
    let peer = canonical(peer);
    let peer_text = peer.to_string();
    let xff = if trusted {
        let incoming: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if incoming.is_empty() {
            peer_text.clone()
        } else {
            format!("{}, {peer_text}", incoming.join(", "))
        }
    } else {
        // Untrusted clients cannot speak for the proxy chain: every X-Forwarded-* header
        // (Host, Port, Server, Prefix, Ssl, …) and Forwarded go.
        remove_where(headers, |name| {
            name.starts_with("x-forwarded-") || name == FORWARDED.as_str()
        });
        peer_text.clone()
    };
    // `insert` replaces every value of the name.
    match HeaderValue::from_str(&xff) {
        Ok(v) => headers.insert(&X_FORWARDED_FOR, v),
        Err(_) => headers.remove(&X_FORWARDED_FOR),
    };
    if let Ok(v) = HeaderValue::from_str(&peer_text) {
        headers.insert(&X_REAL_IP, v);
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    headers.insert(header::HOST, host.clone());
    headers.insert(&X_REQUEST_ID, request_id.clone());
}

/// Remove header fields whose names contain `_` (nginx `underscores_in_headers off`): CGI,
/// WSGI, PHP and Rack map `_` and `-` to the same variable, so `X-Real_IP` would pass for the
/// proxy's `X-Real-IP`.
pub fn drop_underscored(headers: &mut HeaderMap) {
    remove_where(headers, |name| name.contains('_'));
}

/// Remove the fields named in `names`: one pass over the (few) names present, not a hashed
/// lookup per name (callgrind: ~24 absent names per exchange cost ~4,000 instructions).
fn remove_named(headers: &mut HeaderMap, names: &[HeaderName]) {
    remove_where_name(headers, |name| names.contains(name));
}

/// Remove every field whose (lower-case) name satisfies `doomed`.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    remove_where_name(headers, |name| doomed(name.as_str()));
}

fn remove_where_name(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&doomed) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|k| doomed(k)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Several `cookie` fields as one, joined with `; ` (HTTP/2 sends each cookie as its own field;
/// RFC 9113 §8.2.3: they MUST be joined for HTTP/1.1, and one field is valid HTTP/2 too).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(_), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// Rewrite an upstream answer's headers for the client: hop-by-hop fields go, and so does the
/// app's `Server` (nginx hides it by default: it names the app's stack to every client).
pub fn response_headers(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    strip_hop_by_hop(headers, upgrade);
    remove_named(headers, &[header::TE, header::SERVER]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn untrusted_client_cannot_spoof_forwarding_headers() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-prefix", "/evil"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        let host = HeaderValue::from_static("example.test");
        let rid = HeaderValue::from_static("abc");
        request_headers(
            &mut h,
            "203.0.113.9".parse().expect("ip"),
            false,
            &host,
            &rid,
            None,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["host"], "example.test");
        for gone in [
            "x-forwarded-host",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "forwarded",
        ] {
            assert!(h.get(gone).is_none(), "{gone} leaked");
        }
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn trusted_peer_appends_to_the_incoming_list() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        let host = HeaderValue::from_static("h");
        let rid = HeaderValue::from_static("r");
        let peer: IpAddr = "10.0.0.5".parse().expect("ip");
        let nets = vec!["10.0.0.0/8".parse().expect("net")];
        assert!(is_trusted(peer, &nets));
        assert!(is_trusted(
            "::ffff:10.1.2.3".parse().expect("mapped"),
            &nets
        ));
        request_headers(&mut h, peer, true, &host, &rid, None);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.5");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, None);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-connection",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(h.get(gone).is_none(), "{gone} leaked");
        }
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn te_trailers_survives_being_named_in_connection() {
        let mut h = map(&[("connection", "TE"), ("te", "trailers, gzip")]);
        strip_hop_by_hop(&mut h, None);
        assert_eq!(h["te"], "trailers");
        assert!(h.get("connection").is_none());
    }

    #[test]
    fn websocket_upgrade_is_kept() {
        let h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let up = upgrade_request(&h).expect("upgrade");
        let mut h = h;
        strip_hop_by_hop(&mut h, Some(&up));
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(upgrade_request(&map(&[("upgrade", "websocket")])).is_none());
    }

    #[test]
    fn hop_by_hop_names_match_the_list() {
        let names: Vec<&str> = HOP_BY_HOP_NAMES.iter().map(HeaderName::as_str).collect();
        assert_eq!(names, HOP_BY_HOP);
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_trusted() {
        let sane = map(&[("x-request-id", "abc-123")]);
        assert_eq!(request_id(&sane, true), "abc-123");
        assert_ne!(request_id(&sane, false), "abc-123");
        let fresh = request_id(&map(&[("x-request-id", "a b\"c")]), true);
        assert_eq!(fresh.len(), 32);
        assert_ne!(
            request_id(&HeaderMap::new(), true),
            request_id(&HeaderMap::new(), true)
        );
    }

    #[test]
    fn a_new_request_id_is_32_hex_digits_never_indexed_by_hpack() {
        let ids: Vec<HeaderValue> = (0..64).map(|_| new_request_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(
                id.as_bytes()
                    .iter()
                    .all(|b| b"0123456789abcdef".contains(b)),
                "{id:?}"
            );
            assert!(id.is_sensitive());
        }
        // Every digit position varies (not a fixed prefix from a short random number).
        for i in 0..32 {
            assert!(
                ids.iter()
                    .any(|id| id.as_bytes()[i] != ids[0].as_bytes()[i]),
                "digit {i}"
            );
        }
    }

    #[test]
    fn underscored_names_go_and_cookies_are_joined() {
        let mut h = map(&[
            ("x-real_ip", "6.6.6.6"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-kept", "1"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ]);
        drop_underscored(&mut h);
        join_cookies(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["x-kept"], "1");
        assert_eq!(h.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1; b=2"]);
        let mut one = map(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut one);
        assert_eq!(one["cookie"], "a=1; b=2");
    }
}
