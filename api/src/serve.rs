//! The HTTP server around the router: how long a client may take, how
//! many it may be, and how the server stops.
//!
//! HTTP/1.1 only: the API is meant to sit behind a proxy or be called by
//! programs, and HTTP/2 in the clear would add a protocol whose idle and
//! keep-alive timers need settings of their own (hyper-util's protocol
//! detection also waits for its first bytes with no timer at all).
//!
//! Each connection is its own task, so a slow client holds only its own
//! connection. A client gets [`Limits::header_timeout`] to send a request's
//! headers, counted from the moment it connects or its previous response
//! went out, so a silent or idle connection is closed too; a client that
//! stops reading its response is cut off once a write has waited
//! [`Limits::body_timeout`] ([`WriteDeadline`]); at most
//! [`Limits::max_connections`] are open at once (further ones wait in the
//! kernel's backlog until one closes). On shutdown the listener closes,
//! requests in flight get [`Limits::shutdown_grace`] to finish, and
//! connections still open after it are dropped: a client that never
//! finishes cannot hold the process up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Sleep;

use conveyor::config;

/// What the server allows each client, and how long it waits on shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body (408 after),
    /// and longest a response write may wait for the client to read
    /// (the connection is closed after).
    pub body_timeout: Duration,
    /// Longest a request may take in all (503 after).
    pub request_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Most requests handled at once; more are answered 503 at once.
    pub max_in_flight: usize,
    /// Time requests in flight get to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(config::DEFAULT_API_HEADER_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(config::DEFAULT_API_BODY_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(config::DEFAULT_API_REQUEST_TIMEOUT_SECS),
            max_connections: config::DEFAULT_API_MAX_CONNECTIONS,
            max_in_flight: config::DEFAULT_API_MAX_IN_FLIGHT,
            shutdown_grace: Duration::from_secs(config::DEFAULT_API_SHUTDOWN_GRACE_SECS),
        }
    }
}

/// Pause after an accept error that is not one connection's (out of file
/// descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` completes; then stops
/// accepting, lets requests in flight finish for `limits.shutdown_grace`,
/// and drops what is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    if !is_one_connections_error(&err) {
                        tracing::warn!(event = "accept_failed", error = %err,
                            "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small responses go out at once, not after Nagle's delay.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stream = WriteDeadline::new(stream, limits.body_timeout);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            // A client that hangs up or sends garbage ends its own
            // connection; hyper has answered what could be answered.
            let _ = connection.await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            event = "shutdown_grace_expired",
            open = connections.len(),
            "requests still in flight after the shutdown grace period; closing their connections"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Errors that concern only the connection being accepted (it was reset
/// before it could be taken), after which accepting goes on at once.
fn is_one_connections_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// A connection whose writes fail once one has waited longer than `limit`
/// for the client to make room: hyper has no write timeout, and a client
/// that asks for a large response and never reads it would otherwise hold
/// its connection, and the response's buffers, for ever.
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    /// Armed while a write waits.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a finished write through (disarming the deadline); on a
    /// waiting one, arms the deadline and fails once it has passed.
    fn deadline<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading its response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.deadline(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.deadline(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.deadline(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.deadline(cx, polled)
    }
}
