//! The compressing body: each data frame goes through the encoder as it arrives; when the inner
//! body has nothing ready, what was written so far is flushed (a sync flush), so a slow stream
//! reaches the client piece by piece instead of when it ends. What the inner body has ready is
//! gathered into one frame (up to 64 KiB); the encoder exists from the first byte to the end.

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

/// Most compressed bytes gathered into one frame while the inner body has more ready.
const BATCH: usize = 64 * 1024;

/// Where a [`Compressed`] body is: no encoder until the first byte is written (an answer the
/// client never lets through holds none, issue 26 item 3), then one, dropped at the end.
enum Stage {
    Waiting { coding: Coding, length: Option<u64> },
    Running(Encoder),
    Done,
}

/// `inner`, compressed with one coding, streamed.
pub struct Compressed<B> {
    inner: B,
    stage: Stage,
    /// Input written since the last flush.
    dirty: bool,
}

impl<B> Compressed<B> {
    /// `length`: the body's size, when known (zstd sizes its tables from it).
    pub fn new(inner: B, coding: Coding, length: Option<u64>) -> Self {
        Compressed {
            inner,
            stage: Stage::Waiting { coding, length },
            dirty: false,
        }
    }

    /// The encoder, made now if this is the first byte.
    fn encoder(&mut self) -> io::Result<&mut Encoder> {
        if let Stage::Waiting { coding, length } = self.stage {
            self.stage = Stage::Running(Encoder::new(coding, length)?);
        }
        match &mut self.stage {
            Stage::Running(e) => Ok(e),
            _ => Err(io::Error::other("compressor used after its end")),
        }
    }

    /// The end: the encoder's last bytes (an empty body still gets its coding's framing).
    fn finish(&mut self) -> io::Result<Vec<u8>> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Waiting { coding, length } => Encoder::new(coding, length)?.finish(),
            Stage::Running(e) => e.finish(),
            Stage::Done => Ok(Vec::new()),
        }
    }

    #[cfg(test)]
    fn holds_encoder(&self) -> bool {
        matches!(self.stage, Stage::Running(_))
    }
}

fn data(out: Vec<u8>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
}

/// `more` appended to `out` (moved when `out` is empty).
fn gather(out: &mut Vec<u8>, more: Vec<u8>) {
    if out.is_empty() {
        *out = more;
    } else {
        out.extend_from_slice(&more);
    }
}

impl<B> Body for Compressed<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    /// Everything the inner body has ready goes through the encoder before a frame is given
    /// (up to [`BATCH`]): a small answer is compressed whole, and its encoder dropped, in one
    /// poll, so an answer waiting for the client's window holds bytes, not a compressor.
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut out = Vec::new();
        loop {
            if matches!(this.stage, Stage::Done) {
                return if out.is_empty() {
                    Poll::Ready(None)
                } else {
                    data(out)
                };
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are dropped: nothing compressible carries them.
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    if chunk.is_empty() {
                        continue;
                    }
                    let encoder = this.encoder()?;
                    encoder.write(&chunk)?;
                    gather(&mut out, encoder.take());
                    this.dirty = true;
                    if out.len() >= BATCH {
                        return data(out);
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    let tail = this.finish()?;
                    gather(&mut out, tail);
                }
                Poll::Pending => {
                    if this.dirty {
                        this.dirty = false;
                        let encoder = this.encoder()?;
                        encoder.flush()?;
                        gather(&mut out, encoder.take());
                    }
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
        matches!(self.stage, Stage::Done)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use http_body_util::{BodyExt, Full};

    use super::*;

    /// A page compressed whole in its first poll: one frame, the end known at once (hyper
    /// sends it with END_STREAM) and no encoder left; none made before the first poll. Before:
    /// the first frame was the gzip header alone and the encoder (~190 KB) stayed until the
    /// client's window let the body be polled again.
    #[tokio::test]
    async fn a_small_answer_is_compressed_whole_in_one_poll_and_its_encoder_dropped() {
        let page = "<p>an error page</p>\n".repeat(200);
        let inner = Full::new(Bytes::from(page.clone()))
            .map_err(|n| match n {})
            .boxed();
        let mut body = Compressed::new(inner, Coding::Gzip, Some(page.len() as u64));
        assert!(!body.holds_encoder(), "an encoder before the first byte");
        let frame = body.frame().await.expect("a frame").expect("data");
        assert!(
            body.is_end_stream(),
            "the end is known with the first frame"
        );
        assert!(!body.holds_encoder());
        let mut text = String::new();
        flate2::read::GzDecoder::new(&frame.into_data().expect("data")[..])
            .read_to_string(&mut text)
            .expect("gzip");
        assert_eq!(text, page);
    }
}
