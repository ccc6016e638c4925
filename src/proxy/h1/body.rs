//! The answer's body, read from the upstream connection as the caller's side asks for it,
//! and the connection handed back once the body has been read to its end.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};

use super::{Conn, Error, Framing, READ_MAX, READ_MIN};
use crate::body::BoxError;
use crate::net::connect::Stream;
use crate::proxy::pool::Back;

/// Longest chunk-size line, extensions included.
const MAX_SIZE_LINE: usize = 4 * 1024;

/// Most bytes of trailer fields read (and dropped) after a chunked body.
const MAX_TRAILERS: usize = 16 * 1024;

enum Decode {
    Length(u64),
    Chunk(Chunk),
    UntilClose,
    Upgrade,
    Done,
}

#[derive(Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

/// An answer's body. Dropped before its end, it closes the connection.
pub struct ResponseBody {
    conn: Option<Conn>,
    decode: Decode,
    keep_alive: bool,
    back: Option<Back>,
}

impl ResponseBody {
    /// The body that follows a head with `framing` on `conn`. `back` says where the
    /// connection goes once the body has been read, if it may be reused.
    pub fn new(conn: Conn, framing: Framing, keep_alive: bool, back: Option<Back>) -> ResponseBody {
        let decode = match framing {
            Framing::None | Framing::Length(0) => Decode::Done,
            Framing::Length(n) => Decode::Length(n),
            Framing::Chunked => Decode::Chunk(Chunk::Size),
            Framing::UntilClose => Decode::UntilClose,
            Framing::Upgrade => Decode::Upgrade,
        };
        let mut body = ResponseBody { conn: Some(conn), decode, keep_alive, back };
        if matches!(body.decode, Decode::Done) {
            body.finish();
        }
        body
    }

    /// The connection of a `101 Switching Protocols` answer, for the new protocol.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        match self.decode {
            Decode::Upgrade => self.conn.take().map(|c| {
                let c = *c.0;
                Upgraded::new(c.read.freeze(), c.io)
            }),
            _ => None,
        }
    }

    /// The body has ended: the connection goes back if it can carry another request.
    fn finish(&mut self) {
        self.decode = Decode::Done;
        if let (Some(conn), Some(back)) = (self.conn.take(), self.back.take()) {
            if self.keep_alive && conn.read.is_empty() {
                back.give(conn);
            }
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.decode = Decode::Done;
        self.conn = None;
        self.back = None;
        Poll::Ready(Some(Err(Box::new(error))))
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(Ok(None)) };
        loop {
            let read = &mut conn.read;
            match &mut self.decode {
                Decode::Done | Decode::Upgrade => return Poll::Ready(Ok(None)),
                Decode::Length(left) => {
                    if !read.is_empty() {
                        let data = take(read, left);
                        if *left == 0 {
                            self.decode = Decode::Done;
                        }
                        return Poll::Ready(Ok(Some(data)));
                    }
                    let want = usize::try_from(*left).unwrap_or(READ_MAX);
                    if ready!(conn.poll_fill(cx, want))? == 0 {
                        return Poll::Ready(Err(Error::BodyCut));
                    }
                }
                Decode::UntilClose => {
                    if !read.is_empty() {
                        return Poll::Ready(Ok(Some(read.split().freeze())));
                    }
                    if ready!(conn.poll_fill(cx, READ_MIN))? == 0 {
                        self.decode = Decode::Done;
                        return Poll::Ready(Ok(None));
                    }
                }
                Decode::Chunk(chunk) => match step(chunk, read)? {
                    Step::Data(data) => return Poll::Ready(Ok(Some(data))),
                    Step::Again => {}
                    Step::End => {
                        self.decode = Decode::Done;
                        return Poll::Ready(Ok(None));
                    }
                    Step::More(want) => {
                        if ready!(conn.poll_fill(cx, want))? == 0 {
                            return Poll::Ready(Err(Error::BodyCut));
                        }
                    }
                },
            }
        }
    }
}

/// Up to `left` bytes from the front of the buffer.
fn take(read: &mut BytesMut, left: &mut u64) -> Bytes {
    let n = usize::try_from(*left).map_or(read.len(), |l| l.min(read.len()));
    *left -= n as u64;
    read.split_to(n).freeze()
}

/// What one step of the chunked decoder found.
enum Step {
    Data(Bytes),
    /// The state moved on; step again.
    Again,
    /// The last chunk and the trailers have been read.
    End,
    /// More bytes are needed, about this many.
    More(usize),
}

/// One step of the chunked decoder over what has been read (RFC 9112 section 7.1). Lines
/// must end in CRLF; sizes are hexadecimal without sign or prefix; trailers are dropped.
fn step(chunk: &mut Chunk, read: &mut BytesMut) -> Result<Step, Error> {
    match *chunk {
        Chunk::Size => {
            let Some(end) = memchr::memchr(b'\n', read) else {
                return match read.len() > MAX_SIZE_LINE {
                    true => Err(Error::Chunk("chunk-size line too long")),
                    false => Ok(Step::More(READ_MIN)),
                };
            };
            let line = read.split_to(end + 1);
            let size = chunk_size(&line)?;
            *chunk = if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) };
            Ok(Step::Again)
        }
        Chunk::Data(mut left) => {
            if read.is_empty() {
                return Ok(Step::More(usize::try_from(left.saturating_add(2)).unwrap_or(READ_MAX)));
            }
            let data = take(read, &mut left);
            *chunk = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
            Ok(Step::Data(data))
        }
        Chunk::DataEnd => {
            if read.len() < 2 {
                return Ok(Step::More(READ_MIN));
            }
            if &read[..2] != b"\r\n" {
                return Err(Error::Chunk("chunk data not followed by CRLF"));
            }
            read.advance(2);
            *chunk = Chunk::Size;
            Ok(Step::Again)
        }
        Chunk::Trailers(seen) => {
            let Some(end) = memchr::memchr(b'\n', read) else {
                return match seen + read.len() > MAX_TRAILERS {
                    true => Err(Error::Chunk("trailers too long")),
                    false => Ok(Step::More(READ_MIN)),
                };
            };
            let line = read.split_to(end + 1);
            if !line.ends_with(b"\r\n") || line[..line.len() - 2].contains(&b'\r') {
                return Err(Error::Chunk("trailer line not ended by CRLF"));
            }
            if line.len() == 2 {
                return Ok(Step::End);
            }
            if seen + line.len() > MAX_TRAILERS {
                return Err(Error::Chunk("trailers too long"));
            }
            *chunk = Chunk::Trailers(seen + line.len());
            Ok(Step::Again)
        }
    }
}

/// The size on a chunk-size line (with its CRLF): hex digits, then nothing or extensions.
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let Some(text) = line.strip_suffix(b"\r\n") else {
        return Err(Error::Chunk("chunk-size line not ended by CRLF"));
    };
    let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Error::Chunk("bad chunk size"));
    }
    let rest = &text[digits..];
    let extensions_ok = match rest.first() {
        None => true,
        Some(b';' | b' ' | b'\t') => {
            let after = rest.trim_ascii_start();
            !rest.contains(&b'\r') && (after.is_empty() || after.starts_with(b";"))
        }
        Some(_) => false,
    };
    if !extensions_ok {
        return Err(Error::Chunk("bad chunk size"));
    }
    let size = text[..digits].iter().fold(0u64, |n, &d| (n << 4) | u64::from(hex_value(d)));
    Ok(size)
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit.wrapping_sub(b'A').wrapping_add(10),
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(this.poll_data(cx)) {
            Ok(Some(data)) => {
                if matches!(this.decode, Decode::Done) {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Err(e) => this.fail(e),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decode, Decode::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Length(n) => SizeHint::with_exact(n),
            Decode::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// An upstream connection that switched protocols: the bytes read past the `101` head
/// come first, then the connection.
pub type Upgraded = crate::net::prefixed::Prefixed<Stream>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `piece` bytes; the data, or the first error.
    fn decode(wire: &[u8], piece: usize) -> Result<(Vec<u8>, usize), Error> {
        let mut chunk = Chunk::Size;
        let mut read = BytesMut::new();
        let mut fed = 0;
        let mut out = Vec::new();
        loop {
            match step(&mut chunk, &mut read)? {
                Step::Data(data) => out.extend_from_slice(&data),
                Step::Again => {}
                // What follows the body: read already, or not yet fed.
                Step::End => return Ok((out, read.len() + wire.len() - fed)),
                Step::More(_) => {
                    if fed == wire.len() {
                        return Err(Error::BodyCut);
                    }
                    let next = (fed + piece).min(wire.len());
                    read.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies() {
        let wire = b"5\r\nhello\r\n1;ext=\"a b\"\r\n \r\nA \r\n0123456789\r\n0\r\nx-sum: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, wire.len()] {
            let decoded = decode(wire, piece).ok();
            assert_eq!(decoded, Some((b"hello 0123456789".to_vec(), 4)), "piece {piece}");
        }
        assert_eq!(decode(b"0\r\n\r\n", 1).ok(), Some((Vec::new(), 0)));
        assert_eq!(
            decode(b"ffffffffffffffff\r\nab", 100).err().map(|e| e.to_string()),
            Some(Error::BodyCut.to_string())
        );
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"10000000000000000\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"0\r\nx: 1\n\r\n",
        ] {
            assert!(matches!(decode(bad, 3), Err(Error::Chunk(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut long = b"5;".to_vec();
        long.resize(MAX_SIZE_LINE + 10, b'x');
        assert!(matches!(decode(&long, 1000), Err(Error::Chunk(_))));
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS + 100 {
            trailers.extend_from_slice(b"x-t: 0123456789\r\n");
        }
        assert!(matches!(decode(&trailers, 500), Err(Error::Chunk(_))));
        assert_eq!(chunk_size(b"fF\r\n").ok(), Some(255));
        assert_eq!(chunk_size(b"ffffffffffffffff\r\n").ok(), Some(u64::MAX));
    }
}
