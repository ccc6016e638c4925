//! A connection whose first bytes were already read by someone else: they are read again
//! first, then the connection itself. Used where a connection changes hands mid-stream (a
//! client connection handed from the fast path to hyper, an upstream connection after `101`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug)]
pub struct Prefixed<T> {
    read: Bytes,
    io: T,
}

impl<T> Prefixed<T> {
    pub fn new(read: Bytes, io: T) -> Prefixed<T> {
        Prefixed { read, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_bytes_read_already_come_first() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = Prefixed::new(Bytes::from_static(b"GET / HT"), near);
        far.write_all(b"TP/1.1\r\n").await.ok();
        let mut first = [0u8; 5];
        io.read_exact(&mut first).await.ok();
        assert_eq!(&first, b"GET /");
        let mut rest = [0u8; 11];
        io.read_exact(&mut rest).await.ok();
        assert_eq!(&rest, b" HTTP/1.1\r\n");
        io.write_all(b"ok").await.ok();
        let mut back = [0u8; 2];
        far.read_exact(&mut back).await.ok();
        assert_eq!(&back, b"ok");
    }
}
