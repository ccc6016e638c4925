//! Answers out, for the fast path: the head and the body's first frames in one write when the
//! body is at hand, a body as large as 16 KiB passed to the kernel beside the head rather than
//! copied after it. Framing as hyper would choose it: the `Content-Length` given, else the
//! body's known length, else chunked; no body for `HEAD`, 1xx, 204 and 304.

use std::io::{self, IoSlice, Write as _};
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, Bytes};
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use http_body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::chunked;
use super::fields::content_length;
use crate::error_code::ErrorCode;

/// Data frames up to this size are copied after the head; larger ones are written beside it.
const COPY_MAX: usize = 4 * 1024;

/// What is gathered is written once it reaches this size, however fast the body comes.
const GATHER_MAX: usize = 16 * 1024;

/// The answer to a head refused before anything could act on it (see `head.rs`): `code`'s
/// status with the refusal's JSON body and `Connection: close`, since where the request ends
/// is unknown.
pub fn refusal(code: ErrorCode, reason: &str) -> Response<crate::body::Body> {
    let id = crate::request_id::next_request_id();
    tracing::info!(request_id = %id, reason, "request head refused; connection closed");
    let message = match code {
        ErrorCode::MalformedRequest => {
            format!("{reason}; Tollgate refuses heads whose framing is ambiguous or malformed (RFC 9112)")
        }
        _ => reason.to_string(),
    };
    let body = serde_json::json!({ "error": code.as_str(), "message": message, "request_id": id.as_str() });
    let mut response = Response::new(crate::body::full(body.to_string()));
    *response.status_mut() = code.status(false);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    headers.insert(crate::error_code::X_TOLLGATE_ERROR, http::HeaderValue::from_static(code.as_str()));
    headers.insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    response
}

/// How an answer's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Writes `response` to `io`. `head_only` for an answer to `HEAD`; `keep` whether the
/// connection may carry another request, as far as the request and the server are concerned.
/// `out` is the connection's write buffer. Returns whether the connection may be reused: not
/// when the answer says `Connection: close`, nor when its body failed or fell short.
pub async fn write<W, B>(
    io: &mut W,
    response: Response<B>,
    head_only: bool,
    keep: bool,
    out: &mut Vec<u8>,
) -> io::Result<bool>
where
    W: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
{
    let (parts, mut body) = response.into_parts();
    out.clear();
    let (framing, keep) = head(out, parts.status, &parts.headers, head_only, keep, &body);
    drop(parts);
    let mut left = match framing {
        Framing::None => return finish(io, out, keep).await,
        Framing::Length(n) => n,
        Framing::Chunked => u64::MAX,
    };
    while !body.is_end_stream() {
        // A frame at hand goes into this write; otherwise what is written so far goes out
        // before waiting for one.
        let frame = match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                send(io, out, &[]).await?;
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => {
                // The answer cannot be completed: what was written goes, then the connection.
                send(io, out, &[]).await?;
                return Ok(false);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if framing == Framing::Chunked {
            chunked::size_line(data.len(), out);
        } else if data.len() as u64 > left {
            // More than the length said: the caller gets what fits, then the connection closes.
            send(io, out, &data[..left as usize]).await?;
            return Ok(false);
        }
        left -= data.len() as u64;
        if data.len() <= COPY_MAX {
            out.extend_from_slice(data.chunk());
        } else {
            send(io, out, &data).await?;
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(chunked::DATA_END);
        }
        if out.len() >= GATHER_MAX {
            send(io, out, &[]).await?;
        }
    }
    let keep = match framing {
        Framing::Chunked => {
            out.extend_from_slice(chunked::LAST_CHUNK);
            keep
        }
        // Short of its length: the caller sees the connection close before the end.
        _ => keep && left == 0,
    };
    finish(io, out, keep).await
}

async fn finish<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>, keep: bool) -> io::Result<bool> {
    send(io, out, &[]).await?;
    // A connection keeps a buffer the size of a usual answer, not of its largest.
    out.shrink_to(2 * GATHER_MAX);
    Ok(keep)
}

/// Writes the status line and fields, in one pass over the fields: those that frame the body
/// are this side's to write, as the body's framing says; `Connection: close` when the
/// connection is not kept; a `Date` when the answer has none. Returns the framing and
/// whether the connection is kept.
fn head<B: Body>(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    head_only: bool,
    keep: bool,
    body: &B,
) -> (Framing, bool) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // 1xx and 204 have no body and say no length; HEAD and 304 say the length a GET would get.
    let bodiless = status.is_informational() || status == StatusCode::NO_CONTENT;
    let (mut length, mut close, mut date) = (None, false, false);
    for (name, value) in headers {
        if *name == header::TRANSFER_ENCODING {
            continue;
        }
        if *name == header::CONTENT_LENGTH {
            if bodiless || length.is_some() {
                continue;
            }
            match content_length(value.as_bytes()) {
                Some(n) => length = Some(n),
                None => continue,
            }
        } else if *name == header::CONNECTION {
            close |= value.as_bytes().split(|&b| b == b',').any(|o| o.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if *name == header::DATE {
            date = true;
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = if bodiless || head_only || status == StatusCode::NOT_MODIFIED {
        Framing::None
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        let _ = write!(out, "content-length: {n}\r\n");
        Framing::Length(n)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    let keep = keep && !close && !status.is_informational();
    if !keep && !close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !date {
        field(out, b"date", httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `out` then `data`, in one vectored write when there are both; empties `out`.
async fn send<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        io.write_all(out).await?;
    } else {
        let mut slices = [IoSlice::new(out), IoSlice::new(data)];
        let mut slices = &mut slices[..];
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            let n = io.write_vectored(slices).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, n);
        }
    }
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::task::Context;

    /// A body of given frames, an error where a frame is `None`; its length known or not.
    struct Frames {
        frames: VecDeque<Option<&'static [u8]>>,
        exact: Option<u64>,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.frames.pop_front().map(|frame| match frame {
                Some(data) => Ok(http_body::Frame::data(Bytes::from_static(data))),
                None => Err(std::io::Error::other("upstream went away")),
            }))
        }

        fn size_hint(&self) -> http_body::SizeHint {
            self.exact.map(http_body::SizeHint::with_exact).unwrap_or_default()
        }
    }

    fn frames(list: &[Option<&'static [u8]>], exact: Option<u64>) -> Frames {
        Frames { frames: list.iter().copied().collect(), exact }
    }

    async fn written(
        status: u16,
        fields: &[(&'static str, &'static str)],
        body: Frames,
        head_only: bool,
        keep: bool,
    ) -> (String, bool) {
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        for (name, value) in fields {
            response.headers_mut().append(*name, http::HeaderValue::from_static(value));
        }
        let mut wire = Vec::new();
        let kept = write(&mut wire, response, head_only, keep, &mut Vec::new()).await;
        (String::from_utf8_lossy(&wire).into_owned(), kept.unwrap_or(false))
    }

    const DATE: (&str, &str) = ("date", "Sun, 22 Nov 2026 10:00:00 GMT");

    #[tokio::test]
    async fn lengths_are_given_or_known_or_chunked() {
        let (wire, kept) = written(200, &[DATE], frames(&[Some(b"hello")], Some(5)), false, true).await;
        assert_eq!(wire, "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\ncontent-length: 5\r\n\r\nhello");
        assert!(kept);
        let given = [("content-length", "5"), ("transfer-encoding", "gzip"), DATE];
        let (wire, kept) = written(201, &given, frames(&[Some(b"he"), Some(b"llo")], None), false, true).await;
        assert_eq!(
            wire,
            "HTTP/1.1 201 Created\r\ncontent-length: 5\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\n\r\nhello"
        );
        assert!(kept);
        let (wire, kept) =
            written(200, &[DATE], frames(&[Some(b"he"), Some(b""), Some(b"llo")], None), false, true).await;
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\ntransfer-encoding: chunked\r\n\r\n\
             2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"
        );
        assert!(kept);
        // A frame past the copy limit is written beside the head, whole.
        let big: &'static [u8] = Box::leak(vec![b'x'; COPY_MAX * 3].into_boxed_slice());
        let (wire, kept) =
            written(200, &[DATE], frames(&[Some(b"ab"), Some(big)], Some(2 + big.len() as u64)), false, true).await;
        assert!(wire.ends_with(&format!("\r\n\r\nab{}", "x".repeat(COPY_MAX * 3))), "{}", &wire[..120]);
        assert!(kept);
    }

    /// Records the size of every write.
    #[derive(Default)]
    struct Writes(Vec<usize>, Vec<u8>);

    impl AsyncWrite for Writes {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.0.push(buf.len());
            self.1.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_fast_body_of_small_frames_goes_out_in_bounded_writes() {
        let frame: &'static [u8] = &[b'y'; 1000];
        let body = frames(&vec![Some(frame); 200], None);
        let mut writes = Writes::default();
        let mut out = Vec::new();
        let kept = write(&mut writes, Response::new(body), false, true, &mut out).await;
        assert!(kept.unwrap_or(false));
        assert!(writes.0.len() > 10, "{:?}", writes.0);
        assert!(writes.0.iter().all(|&n| n < GATHER_MAX + 1100), "{:?}", writes.0);
        let wire = String::from_utf8_lossy(&writes.1);
        let body = wire.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        assert_eq!(body.matches("3e8\r\n").count(), 200);
        assert_eq!(body.matches('y').count(), 200_000);
        assert!(body.ends_with("\r\n0\r\n\r\n"));
        assert!(out.capacity() <= 2 * GATHER_MAX);
    }

    #[tokio::test]
    async fn bodiless_answers() {
        let fields = [("content-length", "9"), DATE];
        let (wire, kept) = written(200, &fields, frames(&[Some(b"never")], Some(5)), true, true).await;
        assert_eq!(wire, "HTTP/1.1 200 OK\r\ncontent-length: 9\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\n\r\n");
        assert!(kept);
        let (wire, _) = written(204, &fields, frames(&[], Some(0)), false, true).await;
        assert_eq!(wire, "HTTP/1.1 204 No Content\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\n\r\n");
        let (wire, _) = written(304, &fields, frames(&[], None), false, true).await;
        assert_eq!(
            wire,
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn closing_and_broken_answers() {
        // The server closing: the answer says so.
        let (wire, kept) = written(200, &[DATE], frames(&[Some(b"ok")], Some(2)), false, false).await;
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 10:00:00 GMT\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
        );
        assert!(!kept);
        // The handler closing: said once.
        let (wire, kept) = written(200, &[("connection", "Close"), DATE], frames(&[], Some(0)), false, true).await;
        assert_eq!(wire.matches("onnection").count(), 1, "{wire}");
        assert!(!kept);
        // More than the length said: cut at the length, not kept.
        let (wire, kept) =
            written(200, &[("content-length", "3"), DATE], frames(&[Some(b"abcdef")], None), false, true).await;
        assert!(wire.ends_with("\r\n\r\nabc"), "{wire}");
        assert!(!kept);
        // Less: not kept, so the caller sees the end.
        let (_, kept) =
            written(200, &[("content-length", "9"), DATE], frames(&[Some(b"abc")], None), false, true).await;
        assert!(!kept);
        // A body that fails: what came is written, the connection is not kept.
        let (wire, kept) = written(200, &[DATE], frames(&[Some(b"ab"), None], None), false, true).await;
        assert!(wire.ends_with("\r\n\r\n2\r\nab\r\n"), "{wire}");
        assert!(!kept);
        // No date given: one is written.
        let (wire, _) = written(200, &[], frames(&[], Some(0)), false, true).await;
        let date = wire.lines().find_map(|l| l.strip_prefix("date: ")).unwrap_or("");
        assert!(httpdate::parse_http_date(date).is_ok(), "{wire}");
    }
}
