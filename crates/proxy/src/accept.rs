//! One element of an `Accept`-style list (`Accept`, `Accept-Encoding`): its value and its RFC 9110
//! q-value, parsed once for the error page's media types and the compression's codings. A leaf.

/// `text/html;level=1;q=0.5` → (`text/html`, 500): the value before its parameters (trimmed) and
/// its weight in thousandths (1000 without `q`). `None` when the q-value is malformed: RFC 9110
/// makes such an element invalid, so it is skipped.
pub fn element(item: &str) -> Option<(&str, u16)> {
    let mut parts = item.split(';');
    let value = parts.next().unwrap_or_default().trim();
    let mut q = 1000;
    for param in parts {
        if let Some((k, v)) = param.split_once('=')
            && k.trim().eq_ignore_ascii_case("q")
        {
            q = parse_q(v.trim())?;
        }
    }
    Some((value, q))
}

/// RFC 9110 qvalue: `0`, `0.5`, `0.125`, `1`, `1.000` in thousandths; anything else is `None`.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_follow_rfc_9110() {
        assert_eq!(element(" gzip "), Some(("gzip", 1000)));
        assert_eq!(element("text/html;level=1;q=0.5"), Some(("text/html", 500)));
        assert_eq!(element("br;Q=0.125"), Some(("br", 125)));
        assert_eq!(element("zstd;q=1.000"), Some(("zstd", 1000)));
        assert_eq!(element("x;q=0"), Some(("x", 0)));
        for bad in [
            "x;q=1.5",
            "x;q=0.1234",
            "x;q=2",
            "x;q=",
            "x;q=.5",
            "x;q=0.a",
            "x;q=abc",
        ] {
            assert_eq!(element(bad), None, "{bad}");
        }
    }
}
