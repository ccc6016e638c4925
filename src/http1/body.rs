//! The answer's body, read from the upstream connection as the caller's side asks for it,
//! and the connection handed back once the body has been read to its end.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::chunked::{self, Step};
use super::client::{Conn, Error, READ_MAX, READ_MIN};
use super::response::Framing;
use crate::body::BoxError;
use crate::net::connect::Stream;

/// Where a connection goes once its answer's body has been read to the end and it may be
/// reused (a pool, say). Dropping the body before then closes the connection instead.
pub trait Return: Send + Unpin + 'static {
    fn give(self, conn: Conn);
}

enum Decode {
    Length(u64),
    Chunk(chunked::Decoder),
    UntilClose,
    Upgrade,
    Done,
}

/// An answer's body. Dropped before its end, it closes the connection.
pub struct ResponseBody<R> {
    conn: Option<Conn>,
    decode: Decode,
    keep_alive: bool,
    back: Option<R>,
}

impl<R: Return> ResponseBody<R> {
    /// The body that follows a head with `framing` on `conn`. `back` says where the
    /// connection goes once the body has been read, if it may be reused.
    pub fn new(conn: Conn, framing: Framing, keep_alive: bool, back: Option<R>) -> ResponseBody<R> {
        let decode = match framing {
            Framing::None | Framing::Length(0) => Decode::Done,
            Framing::Length(n) => Decode::Length(n),
            Framing::Chunked => Decode::Chunk(chunked::Decoder::default()),
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
                        let data = chunked::take(read, left);
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
                    if ready!(conn.poll_fill_streaming(cx, READ_MIN))? == 0 {
                        self.decode = Decode::Done;
                        return Poll::Ready(Ok(None));
                    }
                }
                Decode::Chunk(chunk) => match chunk.step(read).map_err(Error::Chunk)? {
                    Step::Data(data) => return Poll::Ready(Ok(Some(data))),
                    Step::Again => {}
                    Step::End => {
                        self.decode = Decode::Done;
                        return Poll::Ready(Ok(None));
                    }
                    Step::More(want) => {
                        if ready!(conn.poll_fill_streaming(cx, want))? == 0 {
                            return Poll::Ready(Err(Error::BodyCut));
                        }
                    }
                },
            }
        }
    }
}

impl<R: Return> hyper::body::Body for ResponseBody<R> {
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
    use std::future::poll_fn;
    use std::task::Poll;

    use tokio::io::AsyncWriteExt;

    use super::{Conn, Stream, READ_MIN};

    async fn pair() -> (Conn, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        (Conn::new(Stream::Plain(ours)), theirs)
    }

    /// A streamed body waiting for its next event holds no read buffer; a fill that finds bytes
    /// takes one again.
    #[tokio::test]
    async fn a_streamed_body_waits_without_a_read_buffer() {
        let (mut conn, mut upstream) = pair().await;
        let waited = poll_fn(|cx| Poll::Ready(conn.poll_fill_streaming(cx, READ_MIN).is_pending())).await;
        assert!(waited, "nothing was sent yet");
        assert_eq!(conn.read.capacity(), 0, "the buffer is given back while the stream waits");

        upstream.write_all(b"data: 1\n\n").await.unwrap();
        let n = poll_fn(|cx| conn.poll_fill_streaming(cx, READ_MIN)).await.unwrap();
        assert_eq!(&conn.read[..n], b"data: 1\n\n");
        assert!(conn.read.capacity() >= READ_MIN);
    }

    /// Other waits (an answer's head, a body of known length) keep theirs.
    #[tokio::test]
    async fn a_plain_fill_keeps_its_buffer_while_it_waits() {
        let (mut conn, _upstream) = pair().await;
        let waited = poll_fn(|cx| Poll::Ready(conn.poll_fill(cx, READ_MIN).is_pending())).await;
        assert!(waited);
        assert!(conn.read.capacity() >= READ_MIN);
    }
}
