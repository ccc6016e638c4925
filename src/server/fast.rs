//! The fast path: a connection's plain requests (`http1/head.rs` says which) are read, handed
//! to the handler and answered here, one after another, pipelined ones included. A head whose
//! framing is ambiguous or malformed is answered 400 and the connection closed. The first
//! request it does not take ends it: hyper serves that request, reading the bytes already
//! read first, and closes the connection after it, so every head a connection sends is one
//! this path screened. Limits, the head timeout and graceful shutdown hold as on hyper's side:
//! the same [`HeadClock`] times heads, and a closing server ends the connection after the
//! answer in flight.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{Busy, HeadClock, Timed};
use crate::body::Inbound;
use crate::error_code::ErrorCode;
use crate::http1::answer;
use crate::http1::head::{self, NotTaken, Scratch, Taken};

/// A connection's read buffer: its first size, and the room below which it is grown before
/// a read.
const READ_SIZE: usize = 8 * 1024;
const READ_ROOM: usize = 1024;

/// How the fast path left a connection.
pub enum Ended {
    /// Closed, or to be closed: the caller went, the answer said so, or the server is closing.
    Closed,
    /// A request it does not take: these bytes, read already, are where hyper starts.
    HandOff(Bytes),
}

/// Serves `stream` until it closes or holds a request for hyper. `limit` is the largest head
/// read here.
pub async fn serve<S, F, Fut>(stream: &mut S, handler: &F, clock: &Arc<HeadClock>, limit: usize) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request<Inbound>, Busy) -> Fut,
    Fut: Future<Output = Result<Response<Timed>, Infallible>>,
{
    let mut read = BytesMut::with_capacity(READ_SIZE);
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    // Whether the read buffer has grown past its first size.
    let mut grown = false;
    loop {
        let (request, close) = loop {
            if !read.is_empty() {
                match head::parse(&mut read, &mut scratch, limit) {
                    Ok(Some(Taken { request, close })) => break (request, close),
                    Ok(None) => {}
                    Err(NotTaken::Hyper) => return Ended::HandOff(read.freeze()),
                    Err(NotTaken::Refused(reason)) => {
                        return refuse(stream, answer::refusal(ErrorCode::MalformedRequest, reason), &mut out).await
                    }
                    Err(NotTaken::TooLarge(reason)) => {
                        return refuse(stream, answer::refusal(ErrorCode::HeadersTooLarge, reason), &mut out).await
                    }
                }
            }
            if !fill(stream, &mut read, clock, &mut grown).await {
                return Ended::Closed;
            }
        };
        let head_only = request.method() == Method::HEAD;
        let Ok(response) = handler(request, Busy::begin(clock)).await;
        let keep = !close && !clock.closing();
        // An answer of unknown length (an event stream, say) may stay open for minutes, and
        // nothing is read from the caller meanwhile: the read buffer is given back until the
        // answer ends, unless it holds a pipelined request.
        if read.is_empty() && response.body().size_hint().exact().is_none() {
            read = BytesMut::new();
        }
        match answer::write(stream, response, head_only, keep, &mut out).await {
            Ok(true) => {
                if read.capacity() == 0 || (grown && read.is_empty()) {
                    // A buffer given back for a stream is taken again; the room a large head
                    // or body took is given back.
                    read = BytesMut::with_capacity(READ_SIZE);
                    grown = false;
                }
            }
            Ok(false) => {
                let _ = stream.shutdown().await;
                return Ended::Closed;
            }
            Err(e) => {
                tracing::debug!(error = %e, "connection ended while an answer was written");
                return Ended::Closed;
            }
        }
    }
}

/// Answers a refused head and closes: nothing after it on the connection can be trusted.
async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    refusal: Response<crate::body::Body>,
    out: &mut Vec<u8>,
) -> Ended {
    let _ = answer::write(stream, refusal, false, false, out).await;
    let _ = stream.shutdown().await;
    Ended::Closed
}

/// Reads more of the connection into `read`; false when it ended or failed, or when the
/// server is closing (a head not yet complete is not waited for). `grown` is set when the
/// buffer has to grow past [`READ_SIZE`] for what it holds.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, read: &mut BytesMut, clock: &HeadClock, grown: &mut bool) -> bool {
    if read.capacity() - read.len() < READ_ROOM {
        // Up to the first size, which takes back the room of heads already answered once
        // nothing holds them; past it, doubled, for a head that needs more.
        let past = read.len() + READ_ROOM > READ_SIZE;
        *grown |= past;
        read.reserve(if past { read.len() } else { READ_SIZE - read.len() });
    }
    std::future::poll_fn(|cx| {
        if clock.closing() {
            return Poll::Ready(false);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, read) {
            Poll::Ready(Ok(n)) => Poll::Ready(n > 0),
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "connection ended with an error");
                Poll::Ready(false)
            }
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
