//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3): the client's q-values decide, the server's
//! order breaks ties; `q=0` refuses a coding, `*` stands for every coding not named.

use http::HeaderMap;
use http::header::ACCEPT_ENCODING;

use crate::config::Coding;

/// Most `Accept-Encoding` entries looked at (a longer list is cut; the rest counts as absent).
const MAX_ENTRIES: usize = 32;

/// The coding to use among `offered` (server preference first), or `None` for identity. No
/// `Accept-Encoding` field: identity (RFC 9110 would allow any coding, but every client that
/// can decode one says so).
pub fn negotiate(headers: &HeaderMap, offered: &[Coding]) -> Option<Coding> {
    let mut best: Option<(Coding, u16)> = None;
    for &coding in offered {
        let q = quality(headers, coding.token());
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

/// The client's weight for `token` in thousandths: its own entry, else `*`'s, else 0.
fn quality(headers: &HeaderMap, token: &str) -> u16 {
    let mut star = None;
    let entries = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(MAX_ENTRIES);
    for entry in entries {
        let Some((name, q)) = crate::accept::element(entry) else {
            continue;
        };
        let alias = token == "gzip" && name.eq_ignore_ascii_case("x-gzip");
        if name.eq_ignore_ascii_case(token) || alias {
            return q;
        }
        if name == "*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    fn pick(accept: &str, offered: &[Coding]) -> Option<Coding> {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_str(accept).expect("value"),
        );
        negotiate(&h, offered)
    }

    #[test]
    fn q_values_then_server_order() {
        assert_eq!(pick("gzip, zstd", &ALL), Some(Coding::Zstd));
        assert_eq!(pick("gzip, zstd;q=0.5", &ALL), Some(Coding::Gzip));
        assert_eq!(pick("gzip;q=0, zstd;q=0", &ALL), None);
        assert_eq!(pick("identity", &ALL), None);
        assert_eq!(pick("*", &ALL), Some(Coding::Zstd));
        assert_eq!(pick("*;q=0.1, gzip", &ALL), Some(Coding::Gzip));
        assert_eq!(pick("*, zstd;q=0", &ALL), Some(Coding::Br));
        assert_eq!(pick("x-gzip", &ALL), Some(Coding::Gzip));
        assert_eq!(pick("GZIP;Q=1.000", &ALL), Some(Coding::Gzip));
        assert_eq!(pick("gzip;q=2, br;q=abc", &ALL), None);
        assert_eq!(pick("br, gzip;q=0.9", &[Coding::Gzip]), Some(Coding::Gzip));
        assert_eq!(negotiate(&HeaderMap::new(), &ALL), None);
    }
}
