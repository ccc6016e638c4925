//! Echo redaction: an upstream that echoes request headers back (debug endpoints, error pages
//! that quote the request) would hand the injected credential to the agent, and from there to
//! a model's context. Every response to a request that carried an injected credential has
//! each occurrence of that credential, in header values and in the body, replaced by a marker
//! of the same length, so `Content-Length` stays true and nothing is buffered: the body streams
//! through, holding back only a chunk's tail that could be the start of the credential.
//!
//! Limits: a compressed body (`Content-Encoding`) is not inspected, and a credential shorter
//! than [`MIN_LEN`] bytes is not looked for (it would match ordinary text).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use memchr::memmem::Finder;

use crate::body::{Body, BoxError};
use crate::secret::Secret;

/// Shorter credentials are not redacted.
pub const MIN_LEN: usize = 8;

/// Header values up to this long are searched without building a searcher.
const SHORT: usize = 256;

/// The marker for a credential of `len` bytes: `[redacted]`, padded with `*` or cut to fit.
fn marker(len: usize) -> Vec<u8> {
    let mut m = b"[redacted".to_vec();
    m.resize(len.max(m.len()).saturating_sub(1), b'*');
    m.push(b']');
    m.truncate(len);
    m
}

/// The credential being looked for. The general searcher is built only when a haystack could
/// hold the credential at all, so the common answer (no echo) costs a byte scan.
struct Needle {
    token: Secret,
    finder: Option<Finder<'static>>,
}

impl Needle {
    fn new(token: &Secret) -> Needle {
        Needle { token: token.clone(), finder: None }
    }

    fn bytes(&self) -> &[u8] {
        self.token.expose().as_bytes()
    }

    fn finder(&mut self) -> &Finder<'static> {
        let token = &self.token;
        self.finder.get_or_insert_with(|| Finder::new(token.expose().as_bytes()).into_owned())
    }

    /// Whether `haystack` holds the credential. A header value is short: comparing at each
    /// place its first byte occurs costs less than building the searcher (a `Date` holds the
    /// first byte of many tokens), which a long value still gets, so no value costs more
    /// than [`SHORT`] times the credential's length.
    fn holds(&mut self, haystack: &[u8]) -> bool {
        let needle = self.bytes();
        if haystack.len() > SHORT {
            return self.finder().find(haystack).is_some();
        }
        let Some(last) = haystack.len().checked_sub(needle.len()) else { return false };
        memchr::memchr_iter(needle[0], &haystack[..=last]).any(|i| haystack[i..].starts_with(needle))
    }

    /// Whether `haystack` holds the credential or ends with a start of it: only then is there
    /// anything to replace or hold back.
    fn touches(&mut self, haystack: &[u8]) -> bool {
        let needle = self.bytes();
        if memchr::memchr(needle[0], haystack).is_none() {
            return false;
        }
        partial_tail(needle, haystack, 0) > 0 || self.finder().find(haystack).is_some()
    }
}

/// Replaces the credential wherever the response repeats it.
pub fn echoed<B>(mut response: Response<B>, token: &Secret) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Send + Sync + Unpin + 'static,
{
    if token.expose().len() < MIN_LEN {
        return response.map(BodyExt::boxed);
    }
    // The needle (a copy of the credential) is made only once something could hold it.
    let mut needle: Option<Needle> = None;
    let first = token.expose().as_bytes()[0];
    let mut compressed = false;
    for (name, value) in response.headers_mut().iter_mut() {
        compressed |= name == http::header::CONTENT_ENCODING;
        let bytes = value.as_bytes();
        if memchr::memchr(first, bytes).is_none() {
            continue;
        }
        let needle = needle.get_or_insert_with(|| Needle::new(token));
        if needle.holds(bytes) {
            let (replaced, _) = replace(needle.finder(), &marker(token.expose().len()), value.as_bytes());
            if let Ok(clean) = HeaderValue::from_bytes(&replaced) {
                *value = clean;
            }
        }
    }
    // A body shorter than the credential cannot hold it.
    let short = response.body().size_hint().exact().is_some_and(|n| n < token.expose().len() as u64);
    if compressed || short {
        return response.map(BodyExt::boxed);
    }
    let needle = needle.unwrap_or_else(|| Needle::new(token));
    response
        .map(|body| Redacting { inner: body, needle, pending: BytesMut::new(), trailers: None, done: false }.boxed())
}

/// Every occurrence replaced; also returns where the last replacement ended.
fn replace(finder: &Finder<'static>, mark: &[u8], haystack: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(haystack.len());
    let mut at = 0;
    while let Some(i) = finder.find(&haystack[at..]) {
        out.extend_from_slice(&haystack[at..at + i]);
        out.extend_from_slice(mark);
        at += i + mark.len();
    }
    out.extend_from_slice(&haystack[at..]);
    (out, at)
}

/// How many bytes at the end of `data` (after `from`) could begin the credential.
fn partial_tail(needle: &[u8], data: &[u8], from: usize) -> usize {
    let longest = (needle.len() - 1).min(data.len() - from);
    let start = data.len() - longest;
    // Only a position holding the credential's first byte can start it: the longest tail first.
    memchr::memchr_iter(needle[0], &data[start..])
        .map(|i| data.len() - (start + i))
        .find(|&n| data.ends_with(&needle[..n]))
        .unwrap_or(0)
}

struct Redacting<B> {
    inner: B,
    needle: Needle,
    /// A tail held back because it could be the start of the credential.
    pending: BytesMut,
    /// Trailers that arrived while bytes were held back; sent after them.
    trailers: Option<Frame<Bytes>>,
    done: bool,
}

impl<B> hyper::body::Body for Redacting<B>
where
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(trailers) = this.trailers.take() {
                this.done = true;
                return Poll::Ready(Some(Ok(trailers)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    this.done = true;
                    if this.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.pending).freeze()))));
                }
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(trailers) if this.pending.is_empty() => return Poll::Ready(Some(Ok(trailers))),
                Err(trailers) => {
                    this.trailers = Some(trailers);
                    return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.pending).freeze()))));
                }
            };
            // Nothing held back and nothing in this chunk to replace or hold: it goes as it came.
            if this.pending.is_empty() && !this.needle.touches(&data) {
                if this.inner.is_end_stream() {
                    this.done = true;
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            this.pending.extend_from_slice(&data);
            let mark = marker(this.needle.bytes().len());
            let (out, replaced_to) = replace(this.needle.finder(), &mark, &this.pending);
            let ready = out.len() - partial_tail(this.needle.bytes(), &out, replaced_to);
            let out = Bytes::from(out);
            this.pending = BytesMut::from(&out[ready..]);
            if ready > 0 {
                return Poll::Ready(Some(Ok(Frame::data(out.slice(..ready)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Replacement keeps the length: what is held back plus what is still to come.
        let inner = self.inner.size_hint();
        let held = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_keep_the_length() {
        for len in [8, 9, 10, 11, 40] {
            assert_eq!(marker(len).len(), len);
        }
        assert_eq!(marker(12), b"[redacted**]");
        assert_eq!(marker(8), b"[redacte");
    }

    #[test]
    fn short_and_long_values_are_searched_alike() {
        let mut needle = Needle::new(&Secret::new("tok-secret-1"));
        for (value, holds) in [
            ("tok-secret-1", true),
            ("Bearer tok-secret-1", true),
            ("tok-secret-", false),
            ("t tok tok-secret-2 tok-secret-1x", true),
            ("Sun, 06 Dec 2026 05:00:00 GMT", false),
        ] {
            assert_eq!(needle.holds(value.as_bytes()), holds, "{value}");
            let long = format!("{}{value}", "t".repeat(SHORT));
            assert_eq!(needle.holds(long.as_bytes()), holds, "long {value}");
        }
    }

    #[test]
    fn partial_tails() {
        let token = b"tok-secret-1";
        assert_eq!(partial_tail(token, b"abc tok-se", 0), 6);
        assert_eq!(partial_tail(token, b"abc t", 0), 1);
        assert_eq!(partial_tail(token, b"abc\n\n", 0), 0);
        assert_eq!(partial_tail(token, b"tok", 3), 0, "bytes before `from` were already replaced");
    }
}
