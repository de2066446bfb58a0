//! The compressing body: each data frame goes through the encoder as it arrives; when the inner
//! body has nothing ready, what was written so far is flushed (a sync flush), so a slow stream
//! reaches the client piece by piece instead of when it ends. Never buffers more than what one
//! input frame produces.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

use crate::body::BoxError;
use crate::config::Coding;

/// gzip level 1, nginx's default `gzip_comp_level`: on the fly, CPU matters more than the last
/// tenth of the ratio (precompressed `.gz` siblings are for the best ratio).
const GZIP_LEVEL: u32 = 1;
/// zstd level 3 (zstd's default).
const ZSTD_LEVEL: i32 = 3;
/// zstd window: 256 KiB bounds the encoder's memory per response (level 3 would take 2 MiB).
const ZSTD_WINDOW_LOG: u32 = 18;

/// One streaming encoder writing into a buffer that is drained after every write.
pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl Encoder {
    /// An encoder for `coding` (one the proxy encodes on the fly); `length`: the body's size,
    /// when known (zstd sizes its tables from it).
    pub fn new(coding: Coding, length: Option<u64>) -> io::Result<Self> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Coding::Zstd | Coding::Br => {
                let mut enc = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                enc.window_log(ZSTD_WINDOW_LOG)?;
                enc.set_pledged_src_size(length)?;
                Encoder::Zstd(Box::new(enc))
            }
        })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// What the encoder produced so far.
    fn take(&mut self) -> Vec<u8> {
        match self {
            Encoder::Gzip(e) => std::mem::take(e.get_mut()),
            Encoder::Zstd(e) => std::mem::take(e.get_mut()),
        }
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// `inner`, compressed with one coding, streamed.
pub struct Compressed<B> {
    inner: B,
    /// `None` once the end was written.
    encoder: Option<Encoder>,
    /// Input written since the last flush.
    dirty: bool,
}

impl<B> Compressed<B> {
    pub fn new(inner: B, encoder: Encoder) -> Self {
        Compressed {
            inner,
            encoder: Some(encoder),
            dirty: false,
        }
    }
}

fn data(out: Vec<u8>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
}

impl<B> Body for Compressed<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are dropped: nothing compressible carries them.
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    encoder.write(&chunk)?;
                    this.dirty = true;
                    let out = encoder.take();
                    if !out.is_empty() {
                        return data(out);
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    let out = this.encoder.take().map(Encoder::finish).transpose()?;
                    return match out {
                        Some(out) if !out.is_empty() => data(out),
                        _ => Poll::Ready(None),
                    };
                }
                Poll::Pending => {
                    if !this.dirty {
                        return Poll::Pending;
                    }
                    this.dirty = false;
                    encoder.flush()?;
                    let out = encoder.take();
                    return if out.is_empty() {
                        Poll::Pending
                    } else {
                        data(out)
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
}
