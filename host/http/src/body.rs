//! A streamed response body fed through a channel by a blocking producer (export on a single
//! node, export through the select role).

use std::fmt::Display;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use tokio::sync::mpsc;

/// A response body whose chunks come from `rx`, after `first` (which the caller received
/// before committing to a 200). An error after the first chunk can no longer change the
/// status: it is logged and ends the body early, so the client sees a truncated stream (as
/// with VictoriaMetrics).
pub struct ChannelBody<E> {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, E>>,
}

impl<E> ChannelBody<E> {
    /// A body that sends `first`, then whatever `rx` yields until it closes.
    pub fn new(first: Bytes, rx: mpsc::Receiver<Result<Bytes, E>>) -> Self {
        Self { first: Some(first), rx }
    }
}

impl<E: Display> http_body::Body for ChannelBody<E> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(http_body::Frame::data(bytes)))),
            Poll::Ready(Some(Err(err))) => {
                tracing::error!("export failed after the response started: {err}");
                Poll::Ready(Some(Err(std::io::Error::other(err.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
