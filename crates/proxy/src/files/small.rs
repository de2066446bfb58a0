//! Small static files answered from memory: when a plain GET (no `Range`, no date condition)
//! names a file of at most [`SMALL`] bytes, the blocking call that resolves it also reads it, and
//! the 200 is built here with the headers `ServeFile` would give (`Content-Type`,
//! `Accept-Ranges`, `Last-Modified`, `Content-Length`). One trip to the blocking pool instead of
//! about six (open, metadata, reads in chunks); every other request still goes to `ServeFile`.

use std::fs::{File, Metadata};
use std::io::Read;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};

use crate::body::ProxyBody;

/// Files up to this size are read whole and sent from memory.
pub const SMALL: u64 = 256 * 1024;

/// Whether `req` may be answered from memory: GET without the headers `ServeFile` acts on.
pub fn eligible<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    req.method() == Method::GET
        && !h.contains_key(header::RANGE)
        && !h.contains_key(header::IF_MODIFIED_SINCE)
        && !h.contains_key(header::IF_UNMODIFIED_SINCE)
}

/// Read the file at `path` whole when it is a regular file of at most [`SMALL`] bytes: its
/// contents and the metadata of the same open file (so tag and body agree). `None`: too big,
/// or any error (the caller then lets `ServeFile` answer, which reports it).
pub fn read(path: &std::path::Path) -> Option<(Bytes, Metadata)> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > SMALL {
        return None;
    }
    // `len` is a hint (the file may change); never read more than `SMALL`.
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).ok()?);
    file.take(SMALL + 1).read_to_end(&mut buf).ok()?;
    if buf.len() as u64 != meta.len() {
        return None;
    }
    Some((Bytes::from(buf), meta))
}

/// The 200 for `body` as `ServeFile` builds it.
pub fn respond(body: Bytes, meta: &Metadata, mime: &mime::Mime) -> Response<ProxyBody> {
    let mut headers = HeaderMap::with_capacity(8);
    if let Ok(ct) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(modified) = meta.modified()
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        headers.insert(header::LAST_MODIFIED, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut resp = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *resp.headers_mut() = headers;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_small_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = dir.path().join("small.css");
        std::fs::write(&small, b"body{}").expect("write");
        let (bytes, meta) = read(&small).expect("small file read");
        assert_eq!((&bytes[..], meta.len()), (&b"body{}"[..], 6));
        let big = dir.path().join("big.bin");
        let len = usize::try_from(SMALL).expect("fits") + 1;
        std::fs::write(&big, vec![b'x'; len]).expect("write");
        assert!(read(&big).is_none(), "a file over SMALL streams");
        assert!(read(dir.path()).is_none(), "a folder is never read");
    }
}
