//! A connection with bytes already read from it put back in front: what the lobby read of a
//! request head is read again by hyper, which then sees the connection as the client sent it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project! {
    /// `inner`, read from `prefix` first.
    #[derive(Debug)]
    pub(crate) struct Prefixed<S> {
        prefix: Option<Replay>,
        #[pin]
        inner: S,
    }
}

/// Bytes to read before the connection's own.
#[derive(Debug)]
struct Replay {
    bytes: Box<[u8]>,
    read: usize,
    /// Set once every byte has been read again.
    drained: Arc<AtomicBool>,
}

impl<S> Prefixed<S> {
    /// `inner` with `bytes` before it; the flag is set once they have all been read.
    pub fn new(bytes: Box<[u8]>, inner: S) -> (Self, Arc<AtomicBool>) {
        let drained = Arc::new(AtomicBool::new(bytes.is_empty()));
        let prefix = (!bytes.is_empty()).then(|| Replay {
            bytes,
            read: 0,
            drained: drained.clone(),
        });
        (Self { prefix, inner }, drained)
    }
}

impl<S: AsyncRead> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if let Some(replay) = this.prefix {
            let rest = &replay.bytes[replay.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            replay.read += n;
            if replay.read == replay.bytes.len() {
                replay.drained.store(true, Ordering::Release);
                *this.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    // hyper writes a response's head and body in one call only when told it can.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_prefix_is_read_first_then_the_connection() {
        let (mut client, server) = tokio::io::duplex(64);
        client
            .write_all(b" world")
            .await
            .expect("duplex takes the bytes");
        drop(client);
        let (mut prefixed, drained) = Prefixed::new(Box::from(&b"hello"[..]), server);
        let mut first = [0u8; 3];
        prefixed
            .read_exact(&mut first)
            .await
            .expect("the prefix reads");
        assert_eq!(&first, b"hel");
        assert!(!drained.load(Ordering::Acquire));
        let mut rest = Vec::new();
        prefixed
            .read_to_end(&mut rest)
            .await
            .expect("the rest reads");
        assert_eq!(rest, b"lo world");
        assert!(drained.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn an_empty_prefix_is_drained_from_the_start() {
        let (_client, server) = tokio::io::duplex(64);
        let (_prefixed, drained) = Prefixed::new(Box::from(&b""[..]), server);
        assert!(drained.load(Ordering::Acquire));
    }
}
