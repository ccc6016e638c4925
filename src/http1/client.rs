//! The HTTP/1.1 client of the request path (the other half of this module is the server
//! side: `head.rs` and `answer.rs`). The request's own task writes the request and
//! reads the answer on the upstream connection: no connection task, no channel between the
//! two, and the answer's body is read from the connection as the caller's side asks for it.
//!
//! A connection carries one exchange at a time (no pipelining). It can be reused only when
//! the answer's body was read to its end, its framing was certain, neither side asked to
//! close, and nothing arrived that was not asked for.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use hyper::body::Body as _;
use tokio::io::AsyncWrite;

use super::chunked;
use super::request::{self, Outbound, RequestFraming};
use super::response::{self, Framing, ResponseHead};

use crate::body::Body;
use crate::net::connect::Stream;

/// The smallest read, and the largest one asked for at once.
pub(super) const READ_MIN: usize = 8 * 1024;
pub(super) const READ_MAX: usize = 64 * 1024;

/// Why an exchange failed. None of these carry header values or bodies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the target cannot be written in a request line")]
    Target,
    #[error("the credential cannot be written in a header field")]
    Credential,
    #[error("the upstream closed the connection before answering")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed answer head: {0}")]
    Head(&'static str),
    #[error("answer head larger than {} KiB", response::MAX_HEAD / 1024)]
    HeadTooLarge,
    #[error("the upstream switched protocols though no upgrade was asked for")]
    UnaskedUpgrade,
    #[error("the caller's request body failed")]
    RequestBody,
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
    #[error("the upstream closed the connection before the answer's body ended")]
    BodyCut,
}

/// Why `Conn::send` gave up.
pub enum SendError {
    /// The connection turned out to be closed before the request could have reached the
    /// upstream; the body is handed back untouched, for another connection.
    Stale(Body),
    Failed(Error),
}

/// One upstream connection (plain TCP or TLS) with its read buffer and head buffer. Boxed:
/// handing it between the pool, the request and its answer's body moves a pointer, not the
/// whole state.
pub struct Conn(pub(super) Box<ConnState>);

/// What an upstream connection holds.
pub struct ConnState {
    pub(super) io: Stream,
    pub(super) read: BytesMut,
    pub(super) write: Vec<u8>,
    pub(super) scratch: response::Scratch,
    /// Answers read on this connection so far.
    pub(super) answered: u64,
    /// Bytes read for the answer in progress, and for the one before it: the next read asks
    /// for that much room, so an upstream that answers the same size each time is read in one
    /// call (and its body passed on in one frame).
    pub(super) pulled: usize,
    pub(super) hint: usize,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("answered", &self.0.answered).finish_non_exhaustive()
    }
}

impl Conn {
    pub fn new(io: Stream) -> Conn {
        Conn(Box::new(ConnState {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            scratch: response::Scratch::default(),
            answered: 0,
            pulled: 0,
            hint: 0,
        }))
    }
}

impl std::ops::Deref for Conn {
    type Target = ConnState;

    fn deref(&self) -> &ConnState {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut ConnState {
        &mut self.0
    }
}

impl ConnState {
    /// Whether an idle connection can take a request: the upstream has not closed it and has
    /// sent nothing unasked. Costs no system call unless the socket was signalled readable.
    pub fn is_open(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        match &self.io {
            // A plain socket is only looked at: without a readiness signal since the last
            // read, nothing has arrived, and no waker is registered for the look.
            Stream::Plain(tcp) => {
                matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            // Under TLS whatever arrived (a closing alert, say) is the TLS layer's to read.
            Stream::Tls(_) => {
                let mut cx = Context::from_waker(Waker::noop());
                self.poll_fill(&mut cx, 1).is_pending()
            }
        }
    }

    /// Reads more of the answer into the read buffer; `Ok(0)` at the end of the stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        self.read.reserve(want.max(self.hint).clamp(READ_MIN, READ_MAX));
        let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read);
        if let Poll::Ready(Ok(n)) = read {
            self.pulled = self.pulled.saturating_add(n);
        }
        read
    }

    /// [`poll_fill`](Self::poll_fill) for a body whose length is not known (chunked, or
    /// until close: an event stream, say), which may wait minutes for its next bytes: while
    /// it waits with nothing unread, the read buffer is given back.
    pub(super) fn poll_fill_streaming(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let read = self.poll_fill(cx, want);
        if read.is_pending() && self.read.is_empty() {
            self.read = BytesMut::new();
        }
        read
    }

    /// Writes the request and reads the answer's head. The body is sent while the answer is
    /// awaited, so an upstream that answers early (a 413, say) is heard.
    pub async fn send(&mut self, out: &Outbound<'_>, body: Body) -> Result<ResponseHead, SendError> {
        let framing = RequestFraming::of(out.method, out.headers, body.is_end_stream(), body.size_hint().exact());
        self.write.clear();
        if let Err(e) = request::write_request(&mut self.write, out, framing) {
            return Err(SendError::Failed(e));
        }
        let reused = self.answered > 0;
        self.hint = std::mem::take(&mut self.pulled).min(READ_MAX);
        if let Err(e) = poll_fn(|cx| self.poll_write_head(cx)).await {
            return Err(match reused {
                true => SendError::Stale(body),
                false => SendError::Failed(e.into()),
            });
        }
        let mut sending = Sending::new(body, framing);
        let mut heard = false;
        let answer = poll_fn(|cx| self.poll_answer(cx, &mut sending, out.method, &mut heard)).await;
        match answer {
            Ok(head) if head.framing == Framing::Upgrade && !out.upgrade => {
                Err(SendError::Failed(Error::UnaskedUpgrade))
            }
            Ok(mut head) => {
                if !sending.is_complete() {
                    head.keep_alive = false;
                }
                self.answered += 1;
                Ok(head)
            }
            Err(e) if reused && !heard && sending.untouched() && is_idempotent(out.method) && is_hang_up(&e) => {
                Err(SendError::Stale(sending.body))
            }
            Err(e) => Err(SendError::Failed(e)),
        }
    }

    fn poll_write_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut at = 0;
        while at < self.write.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.write[at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Keep what is left for the next poll.
                    self.write.drain(..at);
                    return Poll::Pending;
                }
            }
        }
        self.write.clear();
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
        sending: &mut Sending,
        method: &Method,
        heard: &mut bool,
    ) -> Poll<Result<ResponseHead, Error>> {
        if !sending.done {
            match sending.poll_send(cx, &mut self.io) {
                Poll::Ready(Ok(())) | Poll::Pending => {}
                Poll::Ready(Err(Stop::Body)) => return Poll::Ready(Err(Error::RequestBody)),
                // The upstream stopped reading; it may have answered already.
                Poll::Ready(Err(Stop::Io(e))) => sending.broken = Some(e),
            }
        }
        loop {
            if !self.read.is_empty() {
                if let Some(head) = response::parse_response(&mut self.read, method, &mut self.scratch)? {
                    return Poll::Ready(Ok(head));
                }
            }
            match ready!(self.poll_fill(cx, READ_MIN)) {
                Ok(0) => {
                    return Poll::Ready(Err(match sending.broken.take() {
                        Some(e) => Error::Io(e),
                        None => Error::Closed,
                    }))
                }
                Ok(_) => *heard = true,
                Err(e) => return Poll::Ready(Err(Error::Io(e))),
            }
        }
    }
}

/// Methods a client may repeat on its own (RFC 9110 section 9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

/// The upstream hung up: what a keep-alive connection it had just closed looks like.
fn is_hang_up(error: &Error) -> bool {
    match error {
        Error::Closed => true,
        Error::Io(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
                // TLS: closed without close_notify.
                | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Why sending the body stopped.
enum Stop {
    Body,
    Io(io::Error),
}

/// The request body on its way out, in its framing.
struct Sending {
    body: Body,
    chunked: bool,
    /// What the framing promised, checked against what the body gives.
    declared: Option<u64>,
    sent: u64,
    /// Bytes to write before the next frame is asked for, in order.
    pending: [Bytes; 3],
    at: usize,
    /// The body's end was reached and everything written.
    done: bool,
    finished: bool,
    broken: Option<io::Error>,
    untouched: bool,
}

impl Sending {
    fn new(body: Body, framing: RequestFraming) -> Sending {
        let empty = matches!(framing, RequestFraming::Empty | RequestFraming::Length(0));
        Sending {
            body,
            chunked: framing == RequestFraming::Chunked,
            declared: match framing {
                RequestFraming::Length(n) => Some(n),
                _ => None,
            },
            sent: 0,
            pending: [Bytes::new(), Bytes::new(), Bytes::new()],
            at: 3,
            done: empty,
            finished: empty,
            broken: None,
            untouched: empty,
        }
    }

    /// The whole body went out.
    fn is_complete(&self) -> bool {
        self.done && self.broken.is_none()
    }

    /// Nothing of the body was taken from the caller: it can go again as it is.
    fn untouched(&self) -> bool {
        self.untouched
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, io: &mut Stream) -> Poll<Result<(), Stop>> {
        let result = self.poll_write_all(cx, io);
        if let Poll::Ready(done) = &result {
            self.done = true;
            if done.is_err() {
                self.finished = true;
            }
        }
        result
    }

    fn poll_write_all(&mut self, cx: &mut Context<'_>, io: &mut Stream) -> Poll<Result<(), Stop>> {
        loop {
            while let Some(buf) = self.pending.get_mut(self.at) {
                if buf.is_empty() {
                    self.at += 1;
                    continue;
                }
                match ready!(Pin::new(&mut *io).poll_write(cx, buf)) {
                    Ok(0) => return Poll::Ready(Err(Stop::Io(io::ErrorKind::WriteZero.into()))),
                    Ok(n) => buf.advance(n),
                    Err(e) => return Poll::Ready(Err(Stop::Io(e))),
                }
            }
            if self.finished {
                return Pin::new(&mut *io).poll_flush(cx).map_err(Stop::Io);
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => {
                    if self.declared.is_some_and(|n| n != self.sent) {
                        return Poll::Ready(Err(Stop::Body));
                    }
                    if self.chunked {
                        self.queue([Bytes::from_static(chunked::LAST_CHUNK), Bytes::new(), Bytes::new()]);
                    }
                    self.finished = true;
                }
                Some(Err(_)) => return Poll::Ready(Err(Stop::Body)),
                Some(Ok(frame)) => {
                    // Trailers from the caller are not forwarded.
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    self.sent += data.len() as u64;
                    if self.declared.is_some_and(|n| self.sent > n) {
                        return Poll::Ready(Err(Stop::Body));
                    }
                    if self.chunked {
                        let mut size = Vec::with_capacity(18);
                        chunked::size_line(data.len(), &mut size);
                        self.queue([Bytes::from(size), data, Bytes::from_static(chunked::DATA_END)]);
                    } else {
                        self.queue([data, Bytes::new(), Bytes::new()]);
                    }
                }
            }
        }
    }

    fn queue(&mut self, bufs: [Bytes; 3]) {
        self.pending = bufs;
        self.at = 0;
    }
}
