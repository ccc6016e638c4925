//! Bodies, the request vocabulary every layer may use: the [`Inbound`] body of a request as
//! handlers see it (whichever side read its head), and the [`Body`] of every answer Tollgate
//! sends, streamed from upstream or made here. Imports nothing of the crate.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;

/// Boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body Tollgate sends: streamed from upstream or made here.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body of these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A body with nothing in it.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request's body: streamed by hyper as it arrives, or read whole with its head.
#[derive(Debug)]
pub enum Inbound {
    Streamed(Incoming),
    /// The whole body; `None` once yielded, or when there was none.
    Read(Option<Bytes>),
}

impl Inbound {
    /// A body read whole with its head.
    pub fn read(body: Bytes) -> Inbound {
        Inbound::Read((!body.is_empty()).then_some(body))
    }
}

impl From<Incoming> for Inbound {
    fn from(body: Incoming) -> Inbound {
        Inbound::Streamed(body)
    }
}

impl http_body::Body for Inbound {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Inbound::Streamed(body) => Pin::new(body).poll_frame(cx),
            Inbound::Read(body) => Poll::Ready(body.take().map(|data| Ok(Frame::data(data)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Streamed(body) => body.is_end_stream(),
            Inbound::Read(body) => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Streamed(body) => body.size_hint(),
            Inbound::Read(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_read_body_is_one_frame_of_known_length() {
        let mut body = Inbound::read(Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(body.size_hint().exact(), Some(7));
        assert!(!body.is_end_stream());
        let collected = BodyExt::collect(&mut body).await.map(|c| c.to_bytes());
        assert_eq!(collected.ok().as_deref(), Some(&b"{\"a\":1}"[..]));
        assert!(body.is_end_stream());
        let empty = Inbound::read(Bytes::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
